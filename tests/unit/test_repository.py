"""What the repository says of itself is true: every path, module and command that the
READMEs, tox.ini, pyproject.toml, .ci/run, the Containerfile and the deployment files name
exists, and the README's picture of the structure is the one the code draws."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
from placement_dev.structure import graph

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / name
    for name in (
        "README.md",
        "tests/README.md",
        "tox.ini",
        "pyproject.toml",
        ".ci/run",
        "Containerfile",
    )
] + sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file())
TOP = "placement|tests|api|dev|bench|deploy|docs|codegen|spectral|generated_client"
# A repository path: starts at a top-level folder, not inside a URL or a longer path.
PATH = re.compile(rf"(?<![\w/.:-])((?:{TOP})/[\w.*/-]*[\w*])")
MODULE = re.compile(r"python -m ([\w.]+)")
COMMAND = re.compile(r"`placement-manager ([a-z]+)\b")


def named(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(file, what it names) for every match in the sources."""
    return [
        (source.relative_to(ROOT).as_posix(), found)
        for source in SOURCES
        for found in pattern.findall(source.read_text(encoding="utf-8"))
    ]


def test_the_sources_name_paths_at_all() -> None:
    """The pattern finds what it is meant to (else the next test would pass on nothing)."""
    found = {path for _, path in named(PATH)}
    assert {"placement/bootstrap.py", "tests/harness/lifecycle.py"} <= found


@pytest.mark.parametrize(("source", "path"), sorted(set(named(PATH))))
def test_every_path_named_exists(source: str, path: str) -> None:
    matches = list(ROOT.glob(path)) if "*" in path else [ROOT / path]
    assert any(m.exists() for m in matches), f"{source} names {path}, which does not exist"


@pytest.mark.parametrize(("source", "module"), sorted(set(named(MODULE))))
def test_every_module_named_can_be_run(source: str, module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{source} runs `python -m {module}`, which is not importable"


@pytest.mark.parametrize(("source", "command"), sorted(set(named(COMMAND))))
def test_every_command_named_exists(source: str, command: str) -> None:
    commands = {"serve", "audit", "dev"}  # placement/cli/__init__.py
    cli = (ROOT / "placement/cli/__init__.py").read_text(encoding="utf-8")
    assert all(f'"{c}"' in cli for c in commands)
    assert command in commands, f"{source} names `placement-manager {command}`"


def test_the_readme_structure_is_the_one_the_code_draws() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(
        r"<!-- structure: python -m placement_dev.structure -->\n(.*?)<!-- /structure -->",
        readme,
        re.S,
    )
    assert block is not None, "README.md has no structure block"
    assert block.group(1) == graph(ROOT), (
        "README.md's structure differs from the code's: paste the output of"
        " `python -m placement_dev.structure` over it"
    )


def test_no_module_of_the_package_imports_itself_back() -> None:
    """No import cycle among the modules of `placement/` (a package counts as the module
    its `__init__` is)."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "placement").rglob("*.py")
    }
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for importer, imported in _module_imports(modules):
        if imported in modules and imported != importer:
            graph[importer].add(imported)
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _module_imports(modules: set[str]) -> list[tuple[str, str]]:
    """(importer, module imported): `from a.b import c` imports `a.b.c` when that is a
    module (beyond `a.b`'s `__init__`, which has no edge of its own then), else `a.b`."""
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / "placement").rglob("*.py")):
        importer = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.append((importer, sub if sub in modules else node.module))
            elif isinstance(node, ast.Import):
                found.extend((importer, alias.name) for alias in node.names)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph`, if it has one (depth-first, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return [*path[path.index(step) :], step]
            elif not state.get(step):
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph[step])))
    return None
