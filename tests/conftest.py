"""Shared fixtures: a private PostgreSQL (pytest-postgresql), databases in it, SQLite
files; the app in this process with mocked upstreams (`mocked_upstreams`, `client`); the
stand-in servers (`standin_upstreams`; `sprm_standin`, `sprm_url` and `sprm_client`).
What they use is in tests/harness/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import responses
from placement_dev.standins import SprmStandIn
from placement_manager_client import Client
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor

from placement.config import Config, Database, RetryPolicy, Upstream
from placement.store import ResourceStore, make_store
from placement.upstream.sprm import SprmClient
from tests.harness.app import serve_config
from tests.harness.databases import (
    PG_PASSWORD,
    POSTGRES_OPTIONS,
    new_pg_database,
    pg_ctl,
    sqlite_database,
)
from tests.harness.mocked import MockedUpstreams
from tests.harness.standins import StandInUpstreams

postgresql_proc = factories.postgresql_proc(executable=pg_ctl(), postgres_options=POSTGRES_OPTIONS)

# A server that checks passwords (the one above trusts every local connection), for the
# tests of credentials; its superuser's password is PG_PASSWORD.
postgresql_password_proc = factories.postgresql_proc(
    executable=pg_ctl(), port=None, password=PG_PASSWORD, postgres_options=POSTGRES_OPTIONS
)


@pytest.fixture
def base_config() -> Config:
    """Defaults from an empty environment, with retries that do not wait."""
    return Config.from_env(
        {"UPSTREAM_RETRY_INITIAL_INTERVAL": "0", "UPSTREAM_RETRY_MAX_INTERVAL": "0"}
    )


@pytest.fixture
def pg_db(postgresql_proc: PostgreSQLExecutor) -> Iterator[Database]:
    """A fresh, empty PostgreSQL database for one test."""
    with new_pg_database(postgresql_proc, "t_") as database:
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    return sqlite_database(tmp_path / "placement.db")


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
def mocked_upstreams() -> Iterator[MockedUpstreams]:
    """The upstreams mocked with `responses` (loopback passes through to real servers)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru("http://127.0.0.1")
        yield MockedUpstreams(mock)


@pytest.fixture
def base_url(config: Config, mocked_upstreams: MockedUpstreams) -> Iterator[str]:
    """The service's app on `config` in this process, its upstreams mocked."""
    with serve_config(config) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    """The generated client, on the app at `base_url`."""
    with Client(base_url=f"{base_url}/api/v1alpha1", timeout=30) as client:
        yield client


@pytest.fixture
def standin_upstreams() -> Iterator[StandInUpstreams]:
    """New stand-in servers for one test (their default rules)."""
    with StandInUpstreams.serving() as standins:
        yield standins


@pytest.fixture
def sprm_standin() -> SprmStandIn:
    """The SPRM stand-in alone, for what calls nothing else; it serves at `sprm_url`."""
    return SprmStandIn()


@pytest.fixture
def sprm_url(sprm_standin: SprmStandIn) -> Iterator[str]:
    with sprm_standin.serve() as server:
        yield server.url


@pytest.fixture
def sprm_client(sprm_url: str) -> Iterator[SprmClient]:
    """The service's SPRM client, on `sprm_standin`: two tries, no waits between them."""
    client = SprmClient(
        Upstream(sprm_url, 5.0), RetryPolicy(tries=2, initial=0, maximum=0), pool_size=4
    )
    yield client
    client.close()
