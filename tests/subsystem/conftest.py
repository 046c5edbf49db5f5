"""Fixtures of the subsystem suite: one real `placement-manager serve` process per backend
(PostgreSQL, SQLite) per test module, the two stand-ins for the whole session, and a
clean slate (stand-ins reset, `resources` table emptied) before every test."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import psycopg
import pytest
from placement_dev.standins import PolicyStandIn, SprmStandIn
from placement_manager_client import Client
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from tests.processes import ServeProcess
from tests.subsystem.support import Upstreams

# What the service is told besides its database and upstreams: retries that do not slow
# the suite, and an SPRM timeout short enough for the tests of calls that hang.
SERVICE_ENV = {
    "UPSTREAM_RETRY_INITIAL_INTERVAL": "10ms",
    "UPSTREAM_RETRY_MAX_INTERVAL": "20ms",
    "SP_RESOURCE_MANAGER_TIMEOUT": "1s",
    "SVC_LOG_LEVEL": "info",
    "LOG_FORMAT": "text",
}


@dataclass(frozen=True)
class Backend:
    """A database the service runs on: its settings, and how to empty it."""

    kind: str  # "pgsql" or "sqlite"
    env: dict[str, str]

    def empty(self) -> None:
        """DELETE every resource record and pending deletion, directly in the database."""
        self._run("DELETE FROM resources", "DELETE FROM placement_retired")

    def in_flight(self) -> int:
        """Records an operation or the reconciler has yet to settle, and pending deletions
        of replaced resources (read directly in the database)."""
        return self._run(
            "SELECT (SELECT count(*) FROM resources WHERE state <> 'READY')"
            " + (SELECT count(*) FROM placement_retired)"
        )

    def _run(self, *statements: str) -> int:
        """Run the statements in one transaction; the first column of the last one's row
        (0 without one)."""
        env = self.env
        row = None
        if self.kind == "sqlite":
            lite = sqlite3.connect(env["DB_NAME"], timeout=10)
            try:
                with lite:  # commits
                    for statement in statements:
                        row = lite.execute(statement).fetchone()
            finally:
                lite.close()
        else:
            with psycopg.connect(
                host=env["DB_HOST"],
                port=env["DB_PORT"],
                dbname=env["DB_NAME"],
                user=env["DB_USER"],
                password=env.get("DB_PASSWORD"),
            ) as conn:  # commits
                for statement in statements:
                    cursor = conn.execute(statement)
                    row = cursor.fetchone() if cursor.description else None
        return int(row[0]) if row else 0


@dataclass(frozen=True)
class Service:
    process: ServeProcess
    backend: Backend


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    policy, sprm = PolicyStandIn(), SprmStandIn()
    with policy.serve() as policy_server, sprm.serve() as sprm_server:
        yield Upstreams(policy, sprm, policy_server, sprm_server)


@pytest.fixture(scope="module", params=["pgsql", "sqlite"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    """A new, empty database for one module: in the session's PostgreSQL (started only
    when a PostgreSQL test runs), or a SQLite file."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "placement.db"
        yield Backend("sqlite", {"DB_TYPE": "sqlite", "DB_NAME": str(path)})
        return
    proc: PostgreSQLExecutor = request.getfixturevalue("postgresql_proc")
    name = f"subsystem_{uuid.uuid4().hex[:12]}"
    env = {
        "DB_TYPE": "pgsql",
        "DB_HOST": proc.host,
        "DB_PORT": str(proc.port),
        "DB_NAME": name,
        "DB_USER": proc.user,
    }
    if proc.password:
        env["DB_PASSWORD"] = proc.password
    janitor = DatabaseJanitor(
        user=proc.user, host=proc.host, port=proc.port, dbname=name, password=proc.password
    )
    with janitor:
        yield Backend("pgsql", env)


@pytest.fixture(scope="module")
def service(
    request: pytest.FixtureRequest,
    backend: Backend,
    upstreams: Upstreams,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """`placement-manager serve` in its own process, until the module's tests are done;
    a module may give settings of its own in `SERVICE_ENV`."""
    env = getattr(request.module, "SERVICE_ENV", SERVICE_ENV) | backend.env
    env |= {
        "POLICY_MANAGER_EVALUATION_URL": upstreams.policy_server.url,
        "SP_RESOURCE_MANAGER_URL": upstreams.sprm_server.url,
    }
    with ServeProcess(env, tmp_path_factory.mktemp("serve") / "serve.log") as process:
        process.wait_healthy()
        yield Service(process, backend)


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def clean_slate(
    request: pytest.FixtureRequest, service: Service, upstreams: Upstreams
) -> Iterator[None]:
    """Every test starts with no resources, no instances, no faults, nothing recorded.
    When it fails, what the service logged meanwhile is shown with it."""
    upstreams.reset()
    service.backend.empty()
    logged_before = service.process.log_path.stat().st_size
    yield
    if request.node.stash.get(_FAILED, False):
        with service.process.log_path.open(errors="replace") as log:
            log.seek(logged_before)
            print(f"--- the service's log during the test ({service.backend.kind}):")
            print(log.read())


@pytest.fixture
def client(service: Service) -> Iterator[Client]:
    with Client(base_url=service.process.api, timeout=30) as client:
        yield client
