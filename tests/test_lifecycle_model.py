"""A model-based test of the whole lifecycle (Hypothesis stateful testing).

Random sequences of creates, deletes and rehydrations run as flows of the real service
code against a simulated SPRM and a real store (in memory, SQLite and PostgreSQL, on a
fake clock), interleaved with reconciler rounds of several replicas. Each flow runs in a
thread of its own and stops at every store call and after every SPRM answer, where the
test may hold it (while the clock moves and other flows and rounds run), let it go on,
or cut it off (a crash: every later call of that flow fails without effect, no cleanup
runs, its lease stays behind). The SPRM may act at once, act late (after the caller gave
up and after any look-up, but before the exchange's time is up, so within the lease),
never act, act and lose its answer, act and answer a garbled body or a 5xx, or refuse.

The invariant, once the clock has passed every lease and the reconciler has run: every
instance the SPRM holds has exactly one READY record, every record is READY and has its
instance, and nothing is left in flight.

CI runs a fixed, bounded number of examples (derandomized). To run it long:
    LIFECYCLE_EXAMPLES=5000 tox -e py -- tests/test_lifecycle_model.py
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from placement.config import Database
from placement.model import Placement
from placement.reconciler import Reconciler
from placement.service import PlacementService
from placement.store import Lease, ResourceStore, make_store
from placement.store.sqlite import SqliteStore
from tests.harness.fakes import Act, FakeClock, FakePolicy, FakeSprm, MemoryStore

EXCHANGE = 10.0  # an SPRM exchange never lasts longer (its timeouts and retries)
LEASE = 2 * EXCHANGE + 5.0  # as Config.operation_lease: a call and a look-up, and a grace
IDS = ("a", "b", "c", "d", "e")
SPECS = ({"size": 1}, {"size": 2})
SEED = int(os.environ.get("LIFECYCLE_SEED", "20261201"))
EXAMPLES = int(os.environ.get("LIFECYCLE_EXAMPLES", "150"))
PARK_TIMEOUT = 20.0  # seconds a flow may take to reach its next stop (a hang otherwise)


class Crash(BaseException):
    """A flow cut off: raised at its next call, which then has no effect."""


class Flow:
    """One operation of the service (or one reconciler round) in a thread of its own,
    run step by step by the test."""

    def __init__(self, name: str, target: Callable[[], Any], local: threading.local) -> None:
        self.name = name
        self.at = "start"
        self.done = False
        self.crashed = False
        self.outcome: Any = None
        self.act: Act = Act.OK
        self._local = local
        self._go = threading.Semaphore(0)
        self._parked = threading.Semaphore(0)
        WORKERS.run(lambda: self._run(target))

    def _run(self, target: Callable[[], Any]) -> None:
        self._local.flow = self
        self._go.acquire()
        try:
            self.outcome = target()
        except Crash:
            self.outcome = "crashed"
        except Exception as exc:  # an answer to a client, not a failure of the test
            self.outcome = exc
        finally:
            self._local.flow = None
            self.done = True
            self._parked.release()

    def stop(self, at: str) -> None:
        """Called in the flow's own thread: park here until the test lets it go on."""
        if self.crashed:
            raise Crash
        self.at = at
        self._parked.release()
        self._go.acquire()
        if self.crashed:
            raise Crash

    def go(self) -> None:
        """Let the flow run to its next stop (or its end)."""
        self._go.release()
        if not self._parked.acquire(timeout=PARK_TIMEOUT):
            raise AssertionError(f"{self.name} did not reach a stop at {self.at}")

    def crash(self) -> None:
        self.crashed = True
        self.go()


class Workers:
    """Threads that run one flow after another (as the service's request threads do),
    so that the stores' per-thread connections stay as few as the flows under way."""

    def __init__(self) -> None:
        self._idle: list[tuple[threading.Semaphore, list[Callable[[], None]]]] = []
        self._lock = threading.Lock()

    def run(self, task: Callable[[], None]) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else self._new()
        wake, slot = worker
        slot[:] = [task]
        wake.release()

    def _new(self) -> tuple[threading.Semaphore, list[Callable[[], None]]]:
        worker: tuple[threading.Semaphore, list[Callable[[], None]]] = (threading.Semaphore(0), [])

        def loop() -> None:
            wake, slot = worker
            while True:
                wake.acquire()
                slot.pop()()
                with self._lock:
                    self._idle.append(worker)

        threading.Thread(target=loop, daemon=True).start()
        return worker


WORKERS = Workers()


class Stops:
    """Wraps the store and the SPRM so that every call from a flow's thread stops there."""

    def __init__(self, local: threading.local, decide: Callable[[Flow, str], Act]) -> None:
        self.local = local
        self.decide = decide

    def flow(self) -> Flow | None:
        return getattr(self.local, "flow", None)


class StoppingStore:
    def __init__(self, store: ResourceStore, stops: Stops) -> None:
        self._store = store
        self._stops = stops

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        stops = self._stops

        def call(*args: Any, **kwargs: Any) -> Any:
            flow = stops.flow()
            if flow is not None:
                flow.stop(f"store.{name}")
            return method(*args, **kwargs)

        return call


class StoppingSprm:
    """Each call is sent at once with the act the test decides, and the flow stops with
    the answer in hand, before it looks at it."""

    def __init__(self, sprm: FakeSprm, stops: Stops) -> None:
        self._sprm = sprm
        self._stops = stops

    def create_instance(self, instance_id: str, provider: str, spec: dict[str, Any]) -> None:
        self._call("create", lambda: self._sprm.create_instance(instance_id, provider, spec))

    def get_instance(self, instance_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call(
            "get", lambda: self._sprm.get_instance(instance_id)
        )
        return result

    def delete_instance(self, instance_id: str, deferred: bool = False) -> bool:
        return bool(self._call("delete", lambda: self._sprm.delete_instance(instance_id, deferred)))

    def _call(self, operation: str, send: Callable[[], Any]) -> Any:
        flow = self._stops.flow()
        act = Act.OK if flow is None else self._stops.decide(flow, operation)
        if flow is not None and flow.crashed:
            raise Crash
        if operation == "get":
            self._sprm.get_fails = act is not Act.OK
        else:
            self._sprm.script(operation, act)
        try:
            answer = send()
        except Exception as exc:
            if flow is not None:
                flow.stop(f"sprm.{operation} answered {exc}")
            raise
        finally:
            self._sprm.get_fails = False
        if flow is not None:
            flow.stop(f"sprm.{operation} answered")
        return answer


# Acts the simulated SPRM chooses from, per operation.
CHANGE_ACTS = st.sampled_from(list(Act))
GET_ACTS = st.sampled_from([Act.OK, Act.OK, Act.NEVER])


class Lifecycle(RuleBasedStateMachine):
    """The state machine; `store_factory` and `clock` are set by the test function."""

    store_factory: Callable[[FakeClock], ResourceStore]
    clock_factory: Callable[[], FakeClock] = FakeClock

    def __init__(self) -> None:
        super().__init__()
        self.clock = type(self).clock_factory()
        self.store = type(self).store_factory(self.clock)
        self.sprm = FakeSprm(self.clock, EXCHANGE)
        self.local = threading.local()
        stops = Stops(self.local, self._decide)
        store = StoppingStore(self.store, stops)
        sprm = StoppingSprm(self.sprm, stops)
        self.service = PlacementService(
            store,
            FakePolicy(),
            sprm,
            LEASE,
            new_id=lambda: uuid.uuid4().hex,
        )
        self.sprm_for_rounds = sprm
        self.store_for_rounds = store
        self.flows: list[Flow] = []
        for rid in IDS[:2]:  # two resources to start with, made without a fault
            self.service.create_resource("cat", SPECS[0], rid)

    # --- deciding what the SPRM does with a call ----------------------------------

    def _decide(self, flow: Flow, operation: str) -> Act:
        """Called in the flow's thread: stop so that the test (whose thread Hypothesis
        draws in) picks the act; `_go` answers at once, before anything else runs."""
        flow.stop(f"decide {operation}")
        return flow.act

    def _go(self, flow: Flow, data: Any) -> None:
        """Let `flow` run to its next stop, deciding the SPRM's acts on its way."""
        flow.go()
        while not flow.done and flow.at.startswith("decide "):
            operation = flow.at.removeprefix("decide ")
            strategy = GET_ACTS if operation == "get" else CHANGE_ACTS
            flow.act = Act.OK if data is None else data.draw(strategy)
            flow.go()

    def _start(self, name: str, target: Callable[[], Any], data: Any) -> None:
        flow = Flow(name, target, self.local)
        self.flows.append(flow)
        self._go(flow, data)

    def live(self) -> list[Flow]:
        return [f for f in self.flows if not f.done]

    # --- rules --------------------------------------------------------------------

    @rule(spec=st.sampled_from(SPECS), data=st.data())
    def create(self, spec: dict[str, Any], data: Any) -> None:
        rid = self._free(data)
        self._start(f"create {rid}", lambda: self.service.create_resource("cat", spec, rid), data)

    @rule(data=st.data())
    def delete(self, data: Any) -> None:
        rid = self._known(data)
        self._start(f"delete {rid}", lambda: self.service.delete_resource(rid), data)

    @rule(new=st.sampled_from(IDS), data=st.data())
    def rehydrate(self, new: str, data: Any) -> None:
        rid = self._known(data)
        self._start(
            f"rehydrate {rid} to {new}",
            lambda: self.service.rehydrate_resource(rid, new),
            data,
        )

    def _free(self, data: Any) -> str:
        """Mostly an id without a record (or any: retries and collisions)."""
        recorded = {r.id for r in every_record(self.store)}
        free = [rid for rid in IDS if rid not in recorded]
        choice: str = data.draw(st.sampled_from(free or list(IDS)) | st.sampled_from(IDS))
        return choice

    def _known(self, data: Any) -> str:
        """Mostly an id with a record (an operation on nothing teaches little)."""
        recorded = sorted(r.id for r in every_record(self.store))
        choice: str = data.draw(st.sampled_from(recorded or list(IDS)) | st.sampled_from(IDS))
        return choice

    @rule(data=st.data())
    def reconcile(self, data: Any) -> None:
        """A round of one replica's reconciler (several may be under way at once)."""
        round_ = Reconciler(self.store_for_rounds, self.sprm_for_rounds, LEASE, 5.0, batch=3)
        self._start("reconcile", round_.run_once, data)

    @precondition(lambda self: bool(self.live()))
    @rule(index=st.integers(0, 100), data=st.data())
    def step(self, index: int, data: Any) -> None:
        live = self.live()
        self._go(live[index % len(live)], data)

    @precondition(lambda self: bool(self.live()))
    @rule(index=st.integers(0, 100))
    def crash(self, index: int) -> None:
        live = self.live()
        live[index % len(live)].crash()

    @rule(seconds=st.sampled_from([0.5, 3.0, EXCHANGE, LEASE, 10 * LEASE]))
    def advance(self, seconds: float) -> None:
        """The clock moves (by small steps, or in a jump): the SPRM carries out first
        what it queued for before then."""
        until = self.clock() + timedelta(seconds=seconds)
        self.sprm.apply_late(until)
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.sprm.pending))
    @rule(index=st.integers(0, 100))
    def sprm_acts_late(self, index: int) -> None:
        pending = sorted(self.sprm.pending, key=lambda p: p.deadline)
        self.sprm.apply_late(pending[index % len(pending)].deadline)

    # --- the end --------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._drain()
            self._check()
        finally:
            for flow in self.live():
                flow.crash()
            self.store.close()

    def _drain(self) -> None:
        """Every flow goes on to its end with the SPRM behaving; the SPRM carries out what
        it queued; the clock passes every lease; the reconciler runs until it rests."""
        for _ in range(100):
            live = self.live()
            if not live:
                break
            for flow in live:
                self._go(flow, None)
        assert not self.live(), [f.name for f in self.live()]
        self.sprm.apply_late()
        self.clock.advance(LEASE + 1)
        rounds = Reconciler(self.store, self.sprm, LEASE, 1.0)
        for _ in range(10):
            if not rounds.run_once():
                break
            self.clock.advance(LEASE + 1)

    def _check(self) -> None:
        records = {r.id: r for r in every_record(self.store)}
        held = {i for i, inst in self.sprm.instances.items() if inst.deletion_status is None}
        assert {rid: r.state.value for rid, r in records.items() if r.state.value != "READY"} == {}
        assert set(records) == held, (sorted(records), sorted(held), self._history())
        assert pending_deletions(self.store) == set()
        assert self.sprm.pending == []

    def _history(self) -> list[str]:
        return [f"{f.name}: {f.outcome!r}" for f in self.flows]


def every_record(store: ResourceStore) -> list[Any]:
    records, _ = store.list_page(None, 100, None)
    return records


def pending_deletions(store: Any) -> set[str]:
    if isinstance(store, MemoryStore):
        return set(store.retired())
    return {row[0] for row in store._rows("SELECT id FROM placement_retired", ())}


def run(machine: type[Lifecycle]) -> None:
    test = machine.TestCase
    test.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    seed(SEED)(machine)
    test().runTest()


def test_lifecycle_in_memory() -> None:
    class InMemory(Lifecycle):
        store_factory = staticmethod(lambda clock: MemoryStore(clock))

    run(InMemory)


class Emptied:
    """One store for every example, emptied at the start of each (opening a database
    per example would take most of the time)."""

    def __init__(self, store: ResourceStore, empty: Callable[[], None]) -> None:
        self._store = store
        empty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        pass


def test_lifecycle_on_sqlite(tmp_path: Path) -> None:
    clocks: list[FakeClock] = [FakeClock()]
    shared = SqliteStore(tmp_path / "model.db", clock=lambda: clocks[-1]())
    shared.open()

    def empty() -> None:
        shared._count("DELETE FROM resources", ())
        shared._count("DELETE FROM placement_retired", ())

    def sqlite_store(clock: FakeClock) -> ResourceStore:
        clocks.append(clock)
        return Emptied(shared, empty)

    class OnSqlite(Lifecycle):
        store_factory = staticmethod(sqlite_store)

    try:
        run(OnSqlite)
    finally:
        shared.close()


class PgClock(FakeClock):
    """A fake clock PostgreSQL reads: `now()` in the test database is replaced (through
    its search_path) by a function that reads the time this clock last set."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__()
        self._conn = conn
        self._set()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._set()

    def _set(self) -> None:
        self._conn.execute("UPDATE fakeclock.clock SET t = %s", (self(),))


@pytest.fixture
def pg_with_fake_clock(pg_db: Database) -> tuple[Database, str]:
    conninfo = f"host={pg_db.host} port={pg_db.port} dbname={pg_db.name} user={pg_db.user}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA fakeclock")
        conn.execute("CREATE TABLE fakeclock.clock (t timestamptz NOT NULL)")
        conn.execute("INSERT INTO fakeclock.clock VALUES (now())")
        conn.execute(
            "CREATE FUNCTION fakeclock.now() RETURNS timestamptz LANGUAGE sql STABLE"
            " AS 'SELECT t FROM fakeclock.clock'"
        )
        conn.execute(
            f'ALTER DATABASE "{pg_db.name}" SET search_path = fakeclock, pg_catalog, public'
        )
    return pg_db, conninfo


def test_lifecycle_on_postgresql(pg_with_fake_clock: tuple[Database, str]) -> None:
    db, conninfo = pg_with_fake_clock
    shared = make_store(db)
    shared.open()
    with psycopg.connect(conninfo, autocommit=True) as conn:

        def empty() -> None:
            conn.execute("TRUNCATE resources, placement_retired")

        class OnPostgres(Lifecycle):
            store_factory = staticmethod(lambda clock: Emptied(shared, empty))
            clock_factory = staticmethod(lambda: PgClock(conn))

        try:
            run(OnPostgres)
        finally:
            shared.close()


def test_the_clock_the_postgresql_store_reads_is_the_fake(
    pg_with_fake_clock: tuple[Database, str],
) -> None:
    db, conninfo = pg_with_fake_clock
    store = make_store(db)
    store.open()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        clock = PgClock(conn)
        try:
            made = store.begin_create(
                Placement("x", "c", {"a": 1}, "p", "APPROVED"), Lease("o", 60)
            )
            assert made.create_time == clock()
            clock.advance(61)
            assert store.claim_stale(Lease("reconciler", 60)) is not None
        finally:
            store.close()
