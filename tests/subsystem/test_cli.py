"""The `placement-manager` command: start-up errors are one clear line and a non-zero exit."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from pytest_postgresql.executors import PostgreSQLExecutor

from placement.config import Database
from placement.store import make_store, migrations
from tests.harness.databases import PG_PASSWORD, database_env
from tests.harness.processes import ENTRY, free_port, launch, run
from tests.harness.records import execute


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


def _pg_env(proc: PostgreSQLExecutor, **settings: str) -> dict[str, str]:
    return {
        "DB_HOST": proc.host,
        "DB_PORT": str(proc.port),
        "DB_USER": proc.user,
        "DB_NAME": "postgres",
        "DB_CONNECT_TIMEOUT": "60s",  # what waiting would cost: the refusals below must not
        **settings,
    }


def _refused_at_once(env: dict[str, str]) -> str:
    """Run `serve`; it must stop with status 1 in under 2 s (not wait DB_CONNECT_TIMEOUT);
    its one-line error."""
    started = time.monotonic()
    result = run([str(ENTRY), "serve"], env, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "retrying" not in result.stderr
    assert elapsed < 2.0, f"took {elapsed:.2f}s: {result.stderr}"
    [line] = result.stderr.splitlines()
    return line


def test_a_missing_database_stops_serve_at_once(postgresql_proc: PostgreSQLExecutor) -> None:
    line = _refused_at_once(_pg_env(postgresql_proc, DB_NAME="no-such-db"))
    assert line.startswith(
        "placement-manager: database unavailable: "
        f"postgresql://{postgresql_proc.host}:{postgresql_proc.port}/no-such-db refuses the "
        "connection (SQLSTATE 3D000; not retried): "
    )
    assert 'database "no-such-db" does not exist' in line


def test_an_unknown_role_stops_serve_at_once(postgresql_proc: PostgreSQLExecutor) -> None:
    line = _refused_at_once(_pg_env(postgresql_proc, DB_USER="nobody"))
    assert "(SQLSTATE 28000; not retried)" in line


def test_a_wrong_password_stops_serve_at_once(
    postgresql_password_proc: PostgreSQLExecutor,
) -> None:
    line = _refused_at_once(_pg_env(postgresql_password_proc, DB_PASS="wrong"))
    assert "(SQLSTATE 28P01; not retried)" in line
    assert "wrong" not in line.replace("wrong-", "")


def test_a_missing_password_stops_serve_at_once(
    postgresql_password_proc: PostgreSQLExecutor,
) -> None:
    line = _refused_at_once(_pg_env(postgresql_password_proc))
    assert "refuses the connection (no password set; not retried)" in line


def test_the_right_password_from_a_file_is_accepted(
    postgresql_password_proc: PostgreSQLExecutor, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text(PG_PASSWORD + "\n")
    env = _pg_env(postgresql_password_proc, DB_PASSWORD_FILE=str(secret))
    with launch(env, tmp_path / "serve.log") as server:
        assert server.stop() == 0


def test_sqlite_file_in_a_missing_directory_fails_clearly(tmp_path: Path) -> None:
    env = {"DB_TYPE": "sqlite", "DB_NAME": str(tmp_path / "missing" / "x.db")}

    result = run([str(ENTRY), "serve"], env)

    assert result.returncode == 1
    assert "does not exist" in result.stderr.strip().splitlines()[-1]


def test_unknown_command_is_a_usage_error() -> None:
    result = run([str(ENTRY), "launch"], {})
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_connect_timeout_of_zero_is_one_try(pg_db: Database, tmp_path: Path) -> None:
    """DB_CONNECT_TIMEOUT=0: one connection attempt, no waiting for another."""
    env = database_env(pg_db) | {"DB_CONNECT_TIMEOUT": "0"}
    with launch(env, tmp_path / "serve.log") as server:
        assert requests.get(f"{server.api}/resources", timeout=10).status_code == 200
        assert server.stop() == 0
    assert "Traceback" not in server.log()

    closed = {"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "0"}
    result = run([str(ENTRY), "serve"], closed)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "cannot reach postgresql://127.0.0.1:" in line
    assert "within 0s" in line


@contextmanager
def dml_role(db: Database) -> Iterator[str]:
    """A role that may read and write the tables of `db` and nothing more (as the Go
    service's deployments grant), dropped afterwards."""
    role = f"dml_{uuid.uuid4().hex[:8]}"
    execute(
        db,
        f"CREATE ROLE {role} LOGIN",
        f'GRANT CONNECT ON DATABASE "{db.name}" TO {role}',
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    )
    try:
        yield role
    finally:
        execute(db, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


def test_a_role_that_may_only_read_and_write_serves_a_current_schema(
    pg_db: Database, tmp_path: Path
) -> None:
    store = make_store(pg_db)
    store.open()  # the schema made current by its owner
    store.close()
    with dml_role(pg_db) as role:
        env = database_env(pg_db) | {"DB_USER": role}
        with launch(env, tmp_path / "serve.log") as server:
            assert requests.get(f"{server.api}/resources", timeout=10).status_code == 200
            assert server.stop() == 0


def test_a_role_that_may_not_migrate_an_old_schema_is_one_line(pg_db: Database) -> None:
    execute(pg_db, *migrations.statements("pgsql", up_to=1))  # the Go service's table
    with dml_role(pg_db) as role:
        line = _refused_at_once(database_env(pg_db) | {"DB_USER": role})
    assert line.startswith(f"placement-manager: database unavailable: role '{role}' ")
    assert "(SQLSTATE 42501; not retried)" in line
    assert f"needs migrations 1 to {len(migrations.VERSIONS)}" in line
