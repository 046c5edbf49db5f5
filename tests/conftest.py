"""Shared fixtures: a private PostgreSQL (pytest-postgresql), databases in it, SQLite files."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import responses
from placement_manager_client import Client
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from placement.config import Config, Database, Upstream
from placement.store import ResourceStore, make_store
from tests.support import POLICY_URL, SPRM_URL, Upstreams, serve, service_app


def _pg_ctl() -> str:
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


# Durability is not under test here: skip fsync so CREATE DATABASE per test is cheap.
postgresql_proc = factories.postgresql_proc(
    executable=_pg_ctl(),
    postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
)

# A server that checks passwords (the one above trusts every local connection), for the
# tests of credentials; its superuser's password is PG_PASSWORD.
PG_PASSWORD = "placement-test-password"
postgresql_password_proc = factories.postgresql_proc(
    executable=_pg_ctl(),
    port=None,
    password=PG_PASSWORD,
    postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
)


@pytest.fixture
def base_config() -> Config:
    """Defaults from an empty environment, with retries that do not wait."""
    return Config.from_env(
        {"UPSTREAM_RETRY_INITIAL_INTERVAL": "0", "UPSTREAM_RETRY_MAX_INTERVAL": "0"}
    )


def pg_database(proc: PostgreSQLExecutor, name: str) -> Database:
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


@pytest.fixture
def pg_db(postgresql_proc: PostgreSQLExecutor) -> Iterator[Database]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(
        user=postgresql_proc.user,
        host=postgresql_proc.host,
        port=postgresql_proc.port,
        dbname=name,
        password=postgresql_proc.password,
    )
    with janitor:
        yield pg_database(postgresql_proc, name)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    return Database(
        type="sqlite",
        host="",
        port=0,
        name=str(tmp_path / "placement.db"),
        user="",
        password="",
        connect_timeout=1.0,
        pool_size=1,
    )


@pytest.fixture(params=["pgsql", "sqlite"])
def db(request: pytest.FixtureRequest) -> Database:
    """Each test using this runs once on PostgreSQL and once on SQLite."""
    fixture = "pg_db" if request.param == "pgsql" else "sqlite_db"
    database: Database = request.getfixturevalue(fixture)
    return database


@pytest.fixture
def store(db: Database) -> Iterator[ResourceStore]:
    """An opened store on `db` (both databases, through `db`'s parameters)."""
    store = make_store(db)
    store.open()
    yield store
    store.close()


@pytest.fixture
def config(base_config: Config, db: Database) -> Config:
    return replace(base_config, database=db)


@pytest.fixture
def upstreams() -> Iterator[Upstreams]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield Upstreams(mock)


@pytest.fixture
def base_url(config: Config, upstreams: Upstreams) -> Iterator[str]:
    config = replace(config, policy=Upstream(POLICY_URL, 5.0), sprm=Upstream(SPRM_URL, 5.0))
    with serve(service_app(config)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url=f"{base_url}/api/v1alpha1", timeout=30) as client:
        yield client
