"""The store's modules share the SQL engine through its public API: none reads another
object's private members (`x._name`, but on `self` or `cls`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import placement.store

STORE = Path(placement.store.__file__).parent


def private_reads(source: str) -> list[str]:
    """Each `x._name` whose `x` is not `self` or `cls` (dunder names allowed), as
    `line: x._name`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("module", sorted(STORE.glob("*.py")), ids=lambda p: p.name)
def test_no_store_module_reads_a_private_member_of_another(module: Path) -> None:
    assert private_reads(module.read_text(encoding="utf-8")) == []


def test_the_check_finds_private_reads() -> None:
    source = "def f(store):\n    return store._rows, self._rows, store.__class__, a.b._c\n"
    assert private_reads(source) == ["2: store._rows", "2: a.b._c"]
