"""Fixtures of the status events suite: per module and database (PostgreSQL, SQLite, the
subsystem API suite's `database` fixture), a private `nats-server -js` and a real
`placement-manager serve` reading status events from it, the stand-ins as its upstreams.
Tests that kill or add processes start their own with `start_serve`. When a test fails,
what every service process logged meanwhile is shown with it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from placement_manager_client import Client

from placement.config import Database
from tests.harness.calls import create, resource
from tests.harness.databases import database_env
from tests.harness.nats import NatsServer
from tests.harness.processes import FAILED, ServeProcess, Service, launch
from tests.harness.standins import StandInUpstreams
from tests.harness.status_events import eventually, nats_connected
from tests.subsystem.api.conftest import SERVICE_ENV

# The subsystem API suite's fixtures, reused: a database per module and database type, the
# stand-ins for the session (`x as x`: imported to be found by pytest, not to be used here).
from tests.subsystem.api.conftest import database as database
from tests.subsystem.api.conftest import suite_standins as suite_standins

# Every serve process a test may have started, with how much it had logged at its start.
_WATCHED: list[tuple[ServeProcess, int]] = []


def serve_env(db: Database, standins: StandInUpstreams, nats_url: str | None) -> dict[str, str]:
    """The settings of a serve process on `db`, the stand-ins and (unless None) NATS."""
    env = SERVICE_ENV | database_env(db) | standins.env()
    return env | {"NATS_URL": nats_url} if nats_url else env


def start_serve(env: dict[str, str], log: Path) -> ServeProcess:
    """A healthy serve process; with NATS_URL, once it says it is connected to NATS."""
    process = launch(env, log)
    _WATCHED.append((process, 0))
    if "NATS_URL" in env:
        try:
            eventually(lambda: nats_connected(process.url), bool, "connected to NATS", 15)
        except AssertionError as error:
            process.stop()
            raise AssertionError(f"{error}; its log:\n{process.log()}") from None
    return process


@pytest.fixture(scope="module")
def nats(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A private NATS server with JetStream for one module and database."""
    server = NatsServer(tmp_path_factory.mktemp(f"nats-{database.type}") / "jetstream")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(
    database: Database,
    nats: NatsServer,
    suite_standins: StandInUpstreams,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """`placement-manager serve` reading status events from `nats`, for one module."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    process = start_serve(serve_env(database, suite_standins, nats.url), log)
    yield Service(process, database)
    process.stop()


@pytest.fixture
def client(service: Service) -> Iterator[Client]:
    """The generated client, on the module's service process."""
    with Client(base_url=service.process.api, timeout=30) as c:
        yield c


def create_all(client: Client, ids: list[str]) -> dict[str, datetime]:
    """Create the resources `ids` through the API (a few at a time); each one's create_time."""

    def one(rid: str) -> tuple[str, datetime]:
        created = resource(create(client, rid))
        assert isinstance(created.create_time, datetime)
        return rid, created.create_time

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, ids))


@pytest.fixture(autouse=True)
def show_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test fails, print what each serve process logged during it."""
    _WATCHED[:] = [(p, p.log_path.stat().st_size) for p, _ in _WATCHED if p.process.poll() is None]
    yield
    if request.node.stash.get(FAILED, False):
        for process, offset in _WATCHED:
            with process.log_path.open(errors="replace") as log:
                log.seek(offset)
                print(f"--- {process.url} ({process.log_path}) logged during the test:")
                print(log.read()[-20000:])
