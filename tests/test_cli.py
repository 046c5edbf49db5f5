"""The `placement-manager` command: start-up errors are one clear line and a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ENTRY, free_port


def run(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SVC_", "POLICY_", "SP_"))
    }
    return subprocess.run(
        args, env=clean | env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_console_script_is_installed() -> None:
    assert ENTRY is not None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_TYPE": "mysql"}, "DB_TYPE='mysql': must be one of pgsql, sqlite"),
        ({"SVC_ADDRESS": "8080"}, "SVC_ADDRESS='8080'"),
        ({"BIND_ADDRESS": "x:y"}, "BIND_ADDRESS='x:y'"),
        (
            {"SP_RESOURCE_MANAGER_TIMEOUT": "soon"},
            "SP_RESOURCE_MANAGER_TIMEOUT='soon': not a duration",
        ),
    ],
)
def test_invalid_configuration_stops_start_up(env: dict[str, str], message: str) -> None:
    result = run([sys.executable, "-m", "placement", "serve"], env)

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("placement-manager: invalid configuration: ")
    assert message in line


def test_unreachable_database_is_retried_then_fails_clearly() -> None:
    env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "1s"}

    result = run([str(ENTRY), "serve"], env)

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "placement-manager: database unavailable: cannot reach postgresql://127.0.0.1:"
    )
    assert "within 1s" in last
    assert "Traceback" not in result.stderr


def test_sqlite_file_in_a_missing_directory_fails_clearly(tmp_path: Path) -> None:
    env = {"DB_TYPE": "sqlite", "DB_NAME": str(tmp_path / "missing" / "x.db")}

    result = run([str(ENTRY), "serve"], env)

    assert result.returncode == 1
    assert "does not exist" in result.stderr.strip().splitlines()[-1]


def test_unknown_command_is_a_usage_error() -> None:
    result = run([str(ENTRY), "launch"], {})
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
