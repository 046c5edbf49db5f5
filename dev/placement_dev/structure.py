"""Draw the service's structure from its code: the README's Mermaid graph of the packages
of `placement/`, in the layers that `[tool.importlinter]` in `pyproject.toml` declares,
with an arrow for each package that imports another, and the import rules under it.

Run from the repository's root and paste the output over the README's block (a test
fails while they differ):

    python -m placement_dev.structure
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PACKAGE = "placement"
# Generated clients: drawn as part of the package that holds them.
GENERATED = ("placement.upstream.policy_api", "placement.upstream.sprm_api")


def contracts(root: Path) -> list[dict[str, Any]]:
    """The import contracts, as `pyproject.toml` declares them."""
    with (root / "pyproject.toml").open("rb") as file:
        found: list[dict[str, Any]] = tomllib.load(file)["tool"]["importlinter"]["contracts"]
    return found


def layers(root: Path) -> list[tuple[str, list[str]]]:
    """The package's layers, top first: (name, modules). The first layers contract names
    them in its own name ("Layers: the command line, ..., the model")."""
    contract = next(c for c in contracts(root) if c["type"] == "layers" and "containers" not in c)
    names = contract["name"].split(":", 1)[1].split(",")
    modules = [[m.strip() for m in layer.split("|")] for layer in contract["layers"]]
    if len(names) != len(modules):
        raise SystemExit("the layers contract's name does not name each of its layers")
    return [(name.strip(), group) for name, group in zip(names, modules, strict=True)]


def imports(root: Path) -> Iterator[tuple[str, str]]:
    """(importer, imported) for every import of one `placement` module by another."""
    for path in sorted((root / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(GENERATED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield module, node.module
                yield from ((module, f"{node.module}.{a.name}") for a in node.names)
            elif isinstance(node, ast.Import):
                yield from ((module, a.name) for a in node.names)


def graph(root: Path) -> str:
    """The Mermaid graph and the rules, as the README shows them."""
    drawn = layers(root)
    units = [m for _, group in drawn for m in group]

    def unit(module: str) -> str | None:
        owners = [u for u in units if module == u or module.startswith(u + ".")]
        return max(owners, key=len) if owners else None

    arrows = sorted(
        {
            (a, b)
            for a, b in ((unit(x), unit(y)) for x, y in imports(root))
            if a is not None and b is not None and a != b
        },
        key=lambda pair: (units.index(pair[0]), units.index(pair[1])),
    )
    lines = ["```mermaid", "flowchart TD"]
    for number, (name, group) in enumerate(drawn):
        lines.append(f'  subgraph layer{number}["{name}"]')
        lines.extend(f'    {_node(m)}["{m.removeprefix(PACKAGE + ".")}"]' for m in group)
        lines.append("  end")
    lines.extend(f"  {_node(a)} --> {_node(b)}" for a, b in arrows)
    lines.append("```")
    lines.append("")
    lines.append(
        "The import rules (`lint-imports`, from `[tool.importlinter]` in `pyproject.toml`):"
    )
    lines.extend(f"- {c['name']}" for c in contracts(root))
    return "\n".join(lines) + "\n"


def _node(module: str) -> str:
    return module.replace(".", "_")


if __name__ == "__main__":
    sys.stdout.write(graph(Path.cwd()))
