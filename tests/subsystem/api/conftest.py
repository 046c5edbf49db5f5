"""Fixtures of the subsystem suite: one real `placement-manager serve` process per backend
(PostgreSQL, SQLite) per test module, the two stand-ins for the whole session, and a
clean slate (stand-ins reset, `resources` table emptied) before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from placement_manager_client import Client

from placement.config import Database
from tests.harness.calls import create, resource
from tests.harness.databases import database_env, new_pg_database, sqlite_database
from tests.harness.processes import FAILED, Service, launch
from tests.harness.records import empty
from tests.harness.standins import StandInUpstreams

# What the service is told besides its database and upstreams: retries that do not slow
# the suite, and an SPRM timeout short enough for the tests of calls that hang.
SERVICE_ENV = {
    "UPSTREAM_RETRY_INITIAL_INTERVAL": "10ms",
    "UPSTREAM_RETRY_MAX_INTERVAL": "20ms",
    "SP_RESOURCE_MANAGER_TIMEOUT": "1s",
    "SVC_LOG_LEVEL": "info",
    "LOG_FORMAT": "text",
}


@pytest.fixture(scope="session")
def suite_standins() -> Iterator[StandInUpstreams]:
    """The stand-ins of the whole suite, reset before every test (`clean_slate`)."""
    with StandInUpstreams.serving() as standins:
        yield standins


@pytest.fixture(scope="module", params=["pgsql", "sqlite"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A new, empty database for one module: in the session's PostgreSQL (started only
    when a PostgreSQL test runs), or a SQLite file."""
    if request.param == "sqlite":
        yield sqlite_database(tmp_path_factory.mktemp("sqlite") / "placement.db")
        return
    with new_pg_database(request.getfixturevalue("postgresql_proc"), "subsystem_") as database:
        yield database


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest,
    database: Database,
    suite_standins: StandInUpstreams,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """`placement-manager serve` in its own process, until the module's tests are done;
    a module may give settings of its own in `SERVICE_ENV`."""
    env = getattr(request.module, "SERVICE_ENV", SERVICE_ENV) | database_env(database)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with launch(env | suite_standins.env(), log) as process:
        yield Service(process, database)


@pytest.fixture(autouse=True)
def clean_slate(
    request: pytest.FixtureRequest, service: Service, suite_standins: StandInUpstreams
) -> Iterator[None]:
    """Every test starts with no resources, no instances, no faults, nothing recorded.
    When it fails, what the service logged meanwhile is shown with it."""
    suite_standins.reset()
    empty(service.database)
    logged_before = service.process.log_path.stat().st_size
    yield
    if request.node.stash.get(FAILED, False):
        with service.process.log_path.open(errors="replace") as log:
            log.seek(logged_before)
            print(f"--- the service's log during the test ({service.database.type}):")
            print(log.read())


@pytest.fixture
def service_client(service: Service) -> Iterator[Client]:
    """The generated client, on the module's service process."""
    with Client(base_url=service.process.api, timeout=30) as client:
        yield client


@pytest.fixture
def web_1(service_client: Client, suite_standins: StandInUpstreams) -> str:
    """A resource "web-1" (spec `SPEC`, on the suite's default provider, test-provider),
    created through the API; the stand-ins' recordings cleared."""
    resource(create(service_client, "web-1"))
    suite_standins.policy.clear()
    suite_standins.sprm.clear()
    return "web-1"
