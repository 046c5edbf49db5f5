"""Fixtures for the AEP ruleset tests (run them with ``tox -e aep``).

The tests drive the real Spectral CLI. ``tox -e aep`` installs it and passes
its path in ``SPECTRAL_BIN``; without that variable every test fails (never
skips), so a run that cannot lint is never mistaken for a passing one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RULESET = REPO_ROOT / ".spectral.yaml"
SPEC = REPO_ROOT / "api" / "v1alpha1" / "openapi.yaml"
SPECTRAL_ENV = "SPECTRAL_BIN"


@pytest.fixture(scope="session")
def spectral_bin() -> str:
    path = os.environ.get(SPECTRAL_ENV)
    if not path:
        pytest.fail(
            f"{SPECTRAL_ENV} is not set: these tests need the Spectral CLI; "
            "run them with `tox -e aep`, which installs it and sets the variable.",
            pytrace=False,
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{SPECTRAL_ENV}={path} is not an executable file.", pytrace=False)
    return path


@pytest.fixture(scope="session")
def spec_path() -> Path:
    return SPEC


@pytest.fixture(scope="session")
def original_spec() -> dict[str, Any]:
    with SPEC.open(encoding="utf-8") as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


@pytest.fixture(scope="session")
def aep_rule_codes() -> set[str]:
    with RULESET.open(encoding="utf-8") as f:
        ruleset = yaml.safe_load(f)
    return {code for code in ruleset["rules"] if code.startswith("aep-")}


class Spectral:
    """Runs the Spectral CLI against our ruleset."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(self, *args: Path | str) -> subprocess.CompletedProcess[str]:
        """``spectral lint --ruleset .spectral.yaml ARGS...`` (options and documents)."""
        return subprocess.run(
            [self.binary, "lint", "--ruleset", str(RULESET), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=120,
            check=False,
        )

    def results(self, *documents: Path) -> list[dict[str, Any]]:
        """Every Spectral result (all severities) for ``documents``, linted in one run."""
        proc = self.run(*documents, "--format", "json", "--fail-severity", "error")
        # 0: no error-level result, 1: some; anything else: Spectral itself failed.
        assert proc.returncode in (0, 1), (
            f"spectral exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        try:
            results = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"spectral printed no JSON ({exc}):\n{proc.stdout}\n{proc.stderr}"
            ) from exc
        assert isinstance(results, list), results
        return results

    def results_by_document(self, documents: list[Path]) -> dict[Path, list[dict[str, Any]]]:
        """Lint ``documents`` in one Spectral run; results grouped by document."""
        grouped: dict[Path, list[dict[str, Any]]] = {doc.resolve(): [] for doc in documents}
        for result in self.results(*documents):
            source = Path(result["source"]).resolve()
            assert source in grouped, f"result for an unexpected document: {result}"
            grouped[source].append(result)
        return grouped

    @staticmethod
    def write(spec: dict[str, Any], directory: Path) -> Path:
        """Write ``spec`` as YAML to ``directory``/openapi.yaml."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "openapi.yaml"
        with path.open("w", encoding="utf-8") as f:
            yaml.safe_dump(spec, f, sort_keys=False, allow_unicode=True)
        return path


@pytest.fixture(scope="session")
def spectral(spectral_bin: str) -> Spectral:
    return Spectral(spectral_bin)
