"""Fault tests on real processes: the `placement-manager serve` process on PostgreSQL, with
the Policy Engine and SPRM stand-ins as its upstreams, broken the ways production breaks:
the service killed mid-create, an SPRM that acts and then times out or errs, many clients
racing on one id, PostgreSQL stopped and started again under load. The service is driven
only over HTTP.

Each test fails on the naive design (record written, SPRM called, record deleted on any
SPRM failure, no reconciler), except where a test says it is the control of one that does.
Timeouts are small so that the file runs in under a minute: an SPRM call times out after
1 s and is tried twice, so an operation's lease is about 4 s (`LEASE`). The tests read the
database only to know when the reconciler has settled a record, never to change it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests
from placement_dev.standins import HANG
from placement_manager_client import Client
from placement_manager_client.api.resource import delete_resource, get_resource
from placement_manager_client.types import Response
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor

from placement.config import Database
from tests.harness.calls import body, create
from tests.harness.concurrency import in_background, wait_for
from tests.harness.databases import POSTGRES_OPTIONS, database_env, new_pg_database, pg_ctl
from tests.harness.problems import problem_type
from tests.harness.processes import API, ServeProcess, launch
from tests.harness.records import in_flight, record_state
from tests.harness.standins import StandInUpstreams

# The service's settings in every test here (the Go syntax of the real variables).
FAST = {
    "SVC_LOG_LEVEL": "info",
    "SP_RESOURCE_MANAGER_TIMEOUT": "1s",
    "POLICY_MANAGER_EVALUATION_TIMEOUT": "5s",
    "UPSTREAM_RETRY_MAX_TRIES": "2",
    "UPSTREAM_RETRY_INITIAL_INTERVAL": "10ms",
    "UPSTREAM_RETRY_MAX_INTERVAL": "20ms",
    "RECONCILE_GRACE": "0s",
    "RECONCILE_INTERVAL": "200ms",
    "DB_CONNECT_TIMEOUT": "10s",
    "DB_POOL_TIMEOUT": "500ms",
}
# Config.operation_lease() for FAST: 2 x (2 tries x 1 s + 10 ms of backoff) + 0 s grace.
LEASE = 2 * (2 * 1.0 + 0.01)
# How long the reconciler may take to settle an abandoned operation: the lease, a few
# rounds, and room for a slow CI machine.
SETTLE = LEASE + 15.0


# PostgreSQL of its own for the test that stops it (the shared `postgresql_proc` serves
# every other test of the session). Its data directory survives stop() and start():
# the executor runs initdb only once.
postgresql_faults_proc = factories.postgresql_proc(
    executable=pg_ctl(), postgres_options=POSTGRES_OPTIONS
)


@pytest.fixture
def faults_pg(
    postgresql_faults_proc: PostgreSQLExecutor,
) -> Iterator[tuple[PostgreSQLExecutor, Database]]:
    """The private PostgreSQL and a fresh database in it; running again afterwards."""
    proc = postgresql_faults_proc
    with new_pg_database(proc, "f_") as database:
        try:
            yield proc, database
        finally:
            if not proc.running():  # a test that failed while it was stopped
                proc.start()


@dataclass
class Launcher:
    """Starts services on a database with the stand-ins as upstreams; stops them all."""

    standins: StandInUpstreams
    logs: Path
    started: list[ServeProcess] = field(default_factory=list)

    def start(self, db: Database, **overrides: str) -> ServeProcess:
        env = FAST | database_env(db) | self.standins.env() | overrides
        service = launch(env, self.logs / f"service-{len(self.started)}.log")
        self.started.append(service)
        return service


@pytest.fixture
def launcher(standin_upstreams: StandInUpstreams, tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(standin_upstreams, tmp_path)
    try:
        yield launcher
    finally:
        standin_upstreams.sprm.reset_faults()  # release held calls before their servers stop
        for service in launcher.started:
            service.stop(signal.SIGKILL, timeout=10)


# 1. The service killed (SIGKILL) while the SPRM holds its create.


@pytest.mark.parametrize("sprm_acts", [True, False], ids=["sprm-acts-later", "sprm-never-acts"])
def test_service_killed_mid_create_is_settled_after_restart(
    pg_db: Database, standin_upstreams: StandInUpstreams, launcher: Launcher, sprm_acts: bool
) -> None:
    """The record outlives the process; after a restart the reconciler asks the SPRM and
    completes it (the instance exists) or removes it (it does not), so record and SPRM
    agree. The naive design keeps a record with no instance in the second case, which
    its own delete can never remove (SPRM 404). The first case is the control: there a
    naive service is right by accident; here it shows that the reconciler completes the
    record (READY, usable) rather than undoing it or leaving it in PROVISIONING."""
    sprm = standin_upstreams.sprm
    service = launcher.start(pg_db)
    sprm.hold("create")
    answer = in_background(lambda: create(service.client, "crash-1"))
    sprm.wait_held("create", timeout=10)

    service.kill()

    with pytest.raises(requests.ConnectionError):
        answer.result(timeout=10)
    if not sprm_acts:
        sprm.fail("create", 503, times=1)  # the held call answers 503 without acting
    sprm.release("create")  # the held call goes on although its client is gone
    wait_for(lambda: standin_upstreams.held("create") == 0, what="the held create to end")
    assert set(sprm.instances) == ({"crash-1"} if sprm_acts else set())
    assert standin_upstreams.creates() == ["crash-1"]
    assert record_state(pg_db, "crash-1") == "PROVISIONING"  # left as the crash left it

    restarted = launcher.start(pg_db)
    client = restarted.client
    wait_for(
        lambda: record_state(pg_db, "crash-1") != "PROVISIONING",
        timeout=SETTLE,
        what="the reconciler to settle crash-1",
    )
    if sprm_acts:
        assert record_state(pg_db, "crash-1") == "READY"
        assert set(sprm.instances) == {"crash-1"}
        assert get_resource.sync_detailed("crash-1", client=client).status_code == 200
        assert delete_resource.sync_detailed("crash-1", client=client).status_code == 204
    else:
        assert record_state(pg_db, "crash-1") is None
    assert sprm.instances == {}
    assert get_resource.sync_detailed("crash-1", client=client).status_code == 404
    assert standin_upstreams.creates() == ["crash-1"]  # the reconciler only asks, never re-creates
    # The id is free again: a new create works end to end.
    assert create(client, "crash-1").status_code == 201
    assert set(sprm.instances) == {"crash-1"}


# 2. The SPRM acts on a create, then times out or answers 5xx.


@pytest.mark.parametrize(
    ("after", "tries"),
    [(HANG, "2"), (HANG, "1"), (500, "2")],
    ids=["hangs-once-then-retry-meets-409", "hangs-no-retry-get-finds-it", "answers-500-always"],
)
def test_create_the_sprm_acted_on_before_failing_is_created(
    pg_db: Database, standin_upstreams: StandInUpstreams, launcher: Launcher, after: Any, tries: str
) -> None:
    """The naive design rolls the record back (its retry meets 409, or it gives up) and
    answers an error while the instance exists."""
    sprm = standin_upstreams.sprm
    service = launcher.start(pg_db, UPSTREAM_RETRY_MAX_TRIES=tries)
    sprm.after_acting("create", after, times=1 if after == HANG else None)

    started = time.monotonic()
    response = create(service.client, "slow-1")

    assert response.status_code == 201, response.content
    assert body(response)["id"] == "slow-1"
    if after == HANG:
        assert time.monotonic() - started >= 1.0  # the SPRM timeout did fire
    assert set(sprm.instances) == {"slow-1"}
    assert set(standin_upstreams.creates()) == {"slow-1"}
    got = get_resource.sync_detailed("slow-1", client=service.client)
    assert got.status_code == 200
    assert body(got)["provider_name"] == sprm.instances["slow-1"]["provider_name"]
    # It is a normal, usable resource: not left in flight.
    sprm.reset_faults()
    assert delete_resource.sync_detailed("slow-1", client=service.client).status_code == 204
    assert sprm.instances == {}


# 3. Many clients racing on one id through the real process.


@pytest.mark.parametrize("fault", [False, True], ids=["clean", "sprm-acts-then-500-once"])
def test_many_clients_creating_one_id_have_one_winner(
    pg_db: Database, standin_upstreams: StandInUpstreams, launcher: Launcher, fault: bool
) -> None:
    """Exactly one 201, every other client a 409 resource-conflict, one instance. With
    the fault, the naive design answers no 201 at all (the winner's retry meets 409
    and rolls back) and leaves an instance without a record; the clean race is the
    control (the primary key decides it in either design)."""
    sprm = standin_upstreams.sprm
    service = launcher.start(pg_db)
    if fault:
        sprm.after_acting("create", 500, times=1)
    racers = 20
    barrier = threading.Barrier(racers)

    def race(_: int) -> tuple[int, str | None]:
        with Client(base_url=service.api, timeout=30) as client:
            barrier.wait(10)
            response = create(client, "contested")
            return response.status_code, problem_type(response)

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(race, range(racers)))

    assert Counter(status for status, _ in answers) == {201: 1, 409: racers - 1}, answers
    assert {kind for status, kind in answers if status == 409} == {"resource-conflict"}
    assert set(sprm.instances) == {"contested"}
    # One create; with the fault, the winner's own retry as well (it met 409: success).
    assert standin_upstreams.creates() == ["contested"] * (2 if fault else 1)
    assert get_resource.sync_detailed("contested", client=service.client).status_code == 200


# 4. PostgreSQL stopped and started again under a steady load of creates and deletes.


@dataclass(frozen=True)
class Answer:
    """What one request of the load was answered (status None: no HTTP answer at all)."""

    op: str  # "create" or "delete"
    rid: str
    sent: str  # the phase of the test when the request was sent
    answered: str  # and when its answer arrived
    status: int | None
    kind: str | None  # the problem type of an error answer
    seconds: float


class Load:
    """Client threads, one request after another until stopped, recording every answer:
    each creates resources under ids of its own and deletes every other one it created."""

    def __init__(self, url: str, threads: int) -> None:
        self.phase = "before"
        self._url = url
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    @property
    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def count(self, phase: str, status: int) -> int:
        """Answers with `status` to requests sent and answered in `phase`."""
        return sum(1 for a in self.answers if a.sent == a.answered == phase and a.status == status)

    def _run(self, worker: int) -> None:
        with Client(base_url=f"{self._url}{API}", timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                rid = f"load-{worker}-{n}"
                created = self._send("create", rid, partial(create, client, rid))
                if created == 201 and n % 2 == 0:
                    delete = partial(delete_resource.sync_detailed, rid, client=client)
                    self._send("delete", rid, delete)

    def _send(self, op: str, rid: str, call: Callable[[], Response[Any]]) -> int | None:
        phase, started = self.phase, time.monotonic()
        status: int | None
        try:
            response = call()
            status, kind = int(response.status_code), problem_type(response)
        except requests.RequestException as exc:
            status, kind = None, type(exc).__name__
        answer = Answer(op, rid, phase, self.phase, status, kind, time.monotonic() - started)
        with self._lock:
            self._answers.append(answer)
        return status


def test_postgresql_stopped_and_started_under_load(
    faults_pg: tuple[PostgreSQLExecutor, Database],
    standin_upstreams: StandInUpstreams,
    launcher: Launcher,
) -> None:
    """While PostgreSQL is down every request is a 503 service-unavailable; once
    it is back the same process serves again; and once the reconciler has settled what
    the outage cut off (an SPRM call made, the database gone before the record could
    follow), records and SPRM instances are the same set, holding every resource whose
    create succeeded and none whose delete did. The naive design leaves a record whose
    instance was deleted (and that it can never delete: SPRM 404), and answers 500."""
    proc, db = faults_pg
    sprm = standin_upstreams.sprm
    # SPRM calls take a while, so that the outage finds some requests inside one.
    sprm.delay("create", 0.05)
    sprm.delay("delete", 0.05)
    service = launcher.start(db, DB_POOL_SIZE="4")
    url, client = service.url, service.client
    assert create(client, "before-outage").status_code == 201

    with Load(url, threads=6) as load:
        wait_for(lambda: load.count("before", 201) >= 20, timeout=30, what="creates under load")
        load.phase = "stopping"
        proc.stop()
        assert (Path(proc.datadir) / "PG_VERSION").exists()  # a restart keeps the data
        load.phase = "down"

        # Every kind of request answers 503 problem details.
        spec = {"catalog_item_instance_id": "c", "spec": {"a": 1}}
        probes = [
            ("GET", f"{API}/health", None),
            ("GET", f"{API}/resources", None),
            ("GET", f"{API}/resources/before-outage", None),
            ("DELETE", f"{API}/resources/before-outage", None),
            ("POST", f"{API}/resources?id=probe-1", spec),
            ("POST", f"{API}/resources/before-outage:rehydrate", {"new_resource_id": "probe-2"}),
        ]
        for _ in range(2):
            for method, path, payload in probes:
                # (No wall-clock bound but the client's generous timeout: a hang fails.)
                answer = requests.request(method, f"{url}{path}", json=payload, timeout=30)
                assert answer.status_code == 503, (method, path, answer.status_code, answer.text)
                assert problem_type(answer) == "service-unavailable", answer.text
        wait_for(lambda: load.count("down", 503) >= 8, timeout=30, what="503s under load")

        load.phase = "starting"
        proc.start()
        load.phase = "restarted"
        wait_for(service.healthy, timeout=30, what="health once PostgreSQL is back")
        load.phase = "up"
        wait_for(lambda: load.count("up", 201) >= 20, timeout=30, what="creates after recovery")

    answers = load.answers
    report = "\n".join(map(str, answers))
    assert service.process.poll() is None, "the service died"
    # Nothing but success or a 503 problem: no 500, no hang, no dropped connection.
    assert {(a.op, a.status, a.kind) for a in answers} <= {
        ("create", 201, None),
        ("delete", 204, None),
        ("create", 503, "service-unavailable"),
        ("delete", 503, "service-unavailable"),
    }, report
    assert {a.status for a in answers if a.sent == a.answered == "down"} == {503}, report
    # After health is 200 again, requests succeed (at most one stale pooled connection
    # each may fail first).
    late_failures = [a for a in answers if a.sent == "up" and a.status not in (201, 204)]
    assert len(late_failures) <= 4, report

    # Once the reconciler has settled what the outage left in flight, records and
    # instances agree.
    def outcome(op: str, status: int | None) -> set[str]:
        return {a.rid for a in answers if a.op == op and a.status == status}

    delete_tried = {a.rid for a in answers if a.op == "delete"}
    must_exist = (outcome("create", 201) - delete_tried) | {"before-outage"}
    must_be_gone = outcome("delete", 204)
    failed_creates = {a.rid for a in answers if a.op == "create" and a.status != 201}

    def records() -> set[str]:
        ids: set[str] = set()
        token = ""
        while True:
            params: dict[str, str | int] = {"max_page_size": 100}
            if token:
                params["page_token"] = token
            page = requests.get(f"{url}{API}/resources", params=params, timeout=10).json()
            ids |= {r["id"] for r in page["resources"]}
            token = page.get("next_page_token", "")
            if not token:
                return ids

    wait_for(lambda: in_flight(db) == 0, timeout=SETTLE, what="the reconciler to settle all")
    kept = records()
    assert kept == set(sprm.instances)
    assert must_exist <= kept, sorted(must_exist - kept)
    assert not must_be_gone & kept, sorted(must_be_gone & kept)
    assert kept <= outcome("create", 201) | failed_creates | {"before-outage"}
    left_behind = sorted(kept & failed_creates)
    # Each resource is usable: deleting every one removes it from both.
    for rid in sorted(kept):
        assert delete_resource.sync_detailed(rid, client=client).status_code == 204, rid
    assert sprm.instances == {}
    assert records() == set()
    assert not left_behind, f"creates answered 503 yet completed by the reconciler: {left_behind}"


def test_create_cut_off_from_the_database_after_the_sprm_acted_tells_the_truth(
    faults_pg: tuple[PostgreSQLExecutor, Database],
    standin_upstreams: StandInUpstreams,
    launcher: Launcher,
) -> None:
    """PostgreSQL stops while the SPRM works on a create; the SPRM then creates the
    instance. Whatever the client is answered must be what ends up true: 201 and the
    resource exists, or an error and nothing is left once the reconciler has settled."""
    proc, db = faults_pg
    sprm = standin_upstreams.sprm
    # One try of 2 s: PostgreSQL stops (about 0.1 s) well within the held SPRM call.
    service = launcher.start(db, SP_RESOURCE_MANAGER_TIMEOUT="2s", UPSTREAM_RETRY_MAX_TRIES="1")
    sprm.hold("create")
    answer = in_background(lambda: create(service.client, "cut-off-1"))
    sprm.wait_held("create", timeout=10)
    proc.stop()
    sprm.release("create")
    response = answer.result(timeout=30)
    assert set(sprm.instances) == {"cut-off-1"}
    assert response.status_code in (201, 503), response.content
    proc.start()
    wait_for(service.healthy, timeout=30, what="health once PostgreSQL is back")

    wait_for(
        lambda: record_state(db, "cut-off-1") in (None, "READY"),
        timeout=SETTLE,
        what="the reconciler to settle cut-off-1",
    )
    exists = get_resource.sync_detailed("cut-off-1", client=service.client).status_code == 200
    assert exists == ("cut-off-1" in sprm.instances)
    assert exists == (response.status_code == 201), (
        f"answered {response.status_code} {response.content!r}; resource exists: {exists}"
    )


# 5. The SPRM acts on a delete, then times out (and possibly fails after).


@pytest.mark.parametrize(
    "then",
    ["retry-meets-404", "fails-look-up-confirms", "fails-reconciler-settles"],
)
def test_delete_the_sprm_acted_on_before_failing_ends_with_both_gone(
    pg_db: Database, standin_upstreams: StandInUpstreams, launcher: Launcher, then: str
) -> None:
    """The SPRM deletes, then hangs past the service's timeout. The service's own retry
    meets 404 (gone: 204); or its retry fails too, and its look-up finds the instance
    gone (204); or the look-up fails as well (500), a client's retry is told the resource
    is busy, and the reconciler finishes the delete once the lease has run out. The
    naive design treats the SPRM 404 as a failure and can never remove the record."""
    sprm = standin_upstreams.sprm
    service = launcher.start(pg_db)
    client = service.client
    assert create(client, "going-1").status_code == 201

    sprm.after_acting("delete", HANG, times=1)
    if then == "retry-meets-404":
        assert delete_resource.sync_detailed("going-1", client=client).status_code == 204
    else:
        answer = in_background(lambda: delete_resource.sync_detailed("going-1", client=client))
        sprm.wait_held("delete", timeout=10)  # it acted and hangs
        sprm.fail("delete", 500)  # and the service's retry fails
        if then == "fails-reconciler-settles":
            sprm.fail("get", 500, times=2)  # and so does its look-up
        settled = answer.result(timeout=30)
        sprm.reset_faults()
        assert sprm.instances == {}
        if then == "fails-look-up-confirms":
            assert settled.status_code == 204, settled.content
        else:
            assert settled.status_code == 500, settled.content
            assert problem_type(settled) == "internal-error"
            retried = delete_resource.sync_detailed("going-1", client=client)
            assert retried.status_code == 409, retried.content
            wait_for(
                lambda: get_resource.sync_detailed("going-1", client=client).status_code == 404,
                timeout=SETTLE,
                what="the reconciler to finish the delete",
            )

    assert get_resource.sync_detailed("going-1", client=client).status_code == 404
    assert sprm.instances == {}
    assert delete_resource.sync_detailed("going-1", client=client).status_code == 404
