"""What the repository says of itself is true: every path, module and command that the
READMEs, tox.ini, pyproject.toml, .ci/run, the Containerfile and the deployment files name
exists, and the README's picture of the structure is the one the code draws."""

from __future__ import annotations

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
