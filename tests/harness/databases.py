"""The databases the tests run on: PostgreSQL servers of their own (pytest-postgresql,
fixtures in tests/conftest.py), a database in them, and a database as the service's
settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from placement.config import Database

# Durability is not under test here: skip fsync so CREATE DATABASE per test is cheap.
POSTGRES_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
# The superuser's password on the server that checks passwords (`postgresql_password_proc`).
PG_PASSWORD = "placement-test-password"


def pg_ctl() -> str:
    """pg_ctl from PG_BINDIR, `pg_config --bindir`, PATH, or Debian's versioned
    directories (Debian keeps the server binaries off PATH)."""
    bindir = os.environ.get("PG_BINDIR")
    if not bindir and shutil.which("pg_config"):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    candidates = [Path(bindir or "") / "pg_ctl"] if bindir else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    found = next((str(c) for c in candidates if c.exists()), None)
    return found or shutil.which("pg_ctl") or "pg_ctl"


def pg_database(proc: PostgreSQLExecutor, name: str) -> Database:
    """The database `name` on the server `proc`."""
    return Database(
        type="pgsql",
        host=proc.host,
        port=int(proc.port),
        name=name,
        user=proc.user,
        password=proc.password or "",
        connect_timeout=10.0,
        pool_size=10,
    )


@contextmanager
def new_pg_database(proc: PostgreSQLExecutor, prefix: str) -> Iterator[Database]:
    """A new, empty database on the server `proc`, named `prefix` and a random suffix;
    dropped at the end."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with DatabaseJanitor(
        user=proc.user, host=proc.host, port=proc.port, dbname=name, password=proc.password
    ):
        yield pg_database(proc, name)


def sqlite_database(path: Path, connect_timeout: float = 1.0) -> Database:
    """The SQLite database in the file `path`."""
    return Database(
        type="sqlite",
        host="",
        port=0,
        name=str(path),
        user="",
        password="",
        connect_timeout=connect_timeout,
        pool_size=1,
    )


def database_env(db: Database) -> dict[str, str]:
    """The service's settings for the database `db`."""
    env = {"DB_TYPE": db.type, "DB_NAME": db.name}
    if db.type == "pgsql":
        env |= {"DB_HOST": db.host, "DB_PORT": str(db.port), "DB_USER": db.user}
        if db.password:
            env["DB_PASSWORD"] = db.password
    return env
