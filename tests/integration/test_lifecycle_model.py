"""A model-based test of the whole lifecycle (Hypothesis stateful testing).

Random sequences of creates, deletes and rehydrations run as flows of the real service
code, and the real SPRM client with its retries, against a simulated SPRM met one try at a
time over HTTP (a requests adapter) and a real store (in memory, SQLite and PostgreSQL, on
a fake clock), interleaved with reconciler rounds of several replicas. Each flow runs in a
thread of its own and stops at every store call and after every answer of an SPRM try,
where the test may hold it (while the clock moves and other flows and rounds run: a call
may outlast its timeout by any amount), let it go on, or cut it off (a crash: every later
call of that flow fails without effect, no cleanup runs, its lease stays behind).

A call is a sequence of tries. Each try may act at once, act late (after the caller gave
up, but within the call's exchange, so within the lease, and before the SPRM acts on a
later change of the same instance) or never, and then answer:
having acted, success, a success whose body is not the API's, 202, a 5xx or nothing;
not having acted, a 5xx, a refusal (4xx) or nothing (and 409 or 404 where the instance
already is, or is not, there).

The invariant, once the clock has passed every lease and the reconciler has run: every
instance the SPRM holds has exactly one READY record, every record is READY and has its
instance, nothing is left in flight; and, per id, the last answer of an operation that took
it decides: a create answered 201 left a READY resource with its instance, one answered
with an error neither; a rehydrate answered 200 left the new resource READY with its
instance and the old one neither, one answered with an error the old one READY with its
instance and the new id neither; a delete answered 204 left neither. (A 503 promises
nothing but "retry later"; a crash, nothing.)

CI runs a fixed, bounded number of examples (derandomized). To run it long:
    LIFECYCLE_EXAMPLES=5000 LIFECYCLE_SEED=$RANDOM \\
        tox -e py -- tests/integration/test_lifecycle_model.py
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from requests.adapters import BaseAdapter

from placement.config import Database, RetryPolicy, Upstream
from placement.errors import Kind, PlacementError
from placement.flows.changes import PlacementService
from placement.flows.reconciler import Reconciler
from placement.model import Placement, Resource
from placement.store import Lease, ResourceStore, make_store
from placement.store.sqlite import SqliteStore
from placement.store.statements import SELECTED
from placement.upstream import deadlines, retry
from placement.upstream.sprm import SprmClient
from tests.harness.fakes import T0, FakeClock, FakePolicy, FakeSprm, Instance, MemoryStore, Pending

EXCHANGE = 9.0  # an SPRM call never lasts longer: TRIES tries of EXCHANGE / TRIES, no waits
TRIES = 3
LEASE = 2 * EXCHANGE + 5.0  # as Config.operation_lease: a call and a look-up, and a grace
IDS = ("a", "b", "c", "d", "e")
SPECS = ({"size": 1}, {"size": 2})
SEED = int(os.environ.get("LIFECYCLE_SEED", "20261201"))
EXAMPLES = int(os.environ.get("LIFECYCLE_EXAMPLES", "150"))
PARK_TIMEOUT = 20.0  # seconds a flow may take to reach its next stop (a hang otherwise)
SPRM_URL = "http://sprm.model"
ANSWERS = itertools.count()  # the order in which flows end
MOVES = itertools.count()  # the order in which the store's rows change


def rows_changed(method: str, args: tuple[Any, ...]) -> tuple[str, ...]:
    """The ids whose rows a store method changes when it succeeds."""
    if method in ("begin_create", "resume_create", "begin_rehydrate"):
        placement: Placement = args[0]
        return (placement.id,) if placement.replaces is None else (placement.id, placement.replaces)
    if method.startswith(("finish_", "undo_", "abandon_", "begin_", "retire_")):
        return tuple(arg for arg in args[:2] if isinstance(arg, str))
    return ()


@dataclass(frozen=True)
class Try:
    """What the simulated SPRM does with one try: act ("now", "late", "never", or
    "trickle": once it has sent its answer, one byte at a time, while the flow is held), then
    answer a status, "garbled" (the success status with a body that is not the API's),
    or None (nothing: the connection drops)."""

    act: str
    answer: int | str | None


OK_TRY = Try("now", "ok")  # act, and answer the operation's success

# The tries the simulated SPRM chooses from, per operation. Hypothesis shrinks towards the
# first branch: the SPRM acting and answering success.
CHANGE_TRIES = {
    "create": st.one_of(
        st.builds(Try, st.just("now"), st.sampled_from(["ok", 202, "garbled", 503, None])),
        st.builds(Try, st.just("late"), st.sampled_from([503, None])),
        st.builds(Try, st.just("trickle"), st.just("ok")),
        st.builds(Try, st.just("never"), st.sampled_from([503, None, 429, 408, 422, 400, 401])),
    ),
    "delete": st.one_of(
        st.builds(Try, st.just("now"), st.sampled_from(["ok", 202, 503, None])),
        st.builds(Try, st.just("late"), st.sampled_from([503, None])),
        st.builds(Try, st.just("trickle"), st.just("ok")),
        st.builds(Try, st.just("never"), st.sampled_from([503, None, 429, 408, 422, 400])),
    ),
    "get": st.builds(Try, st.just("now"), st.sampled_from(["ok", "ok", 503, None, "garbled"])),
}


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
        self.attempt: Try = OK_TRY
        self.writes: dict[str, int] = {}  # id -> when this flow last changed its rows
        self.answered = -1  # when it ended (a crash too)
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
            self.answered = next(ANSWERS)
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

    def __init__(self, local: threading.local, decide: Callable[[Flow, str], Try]) -> None:
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
            result = method(*args, **kwargs)
            if flow is not None and result not in (None, False):
                for rid in rows_changed(name, args):
                    flow.writes[rid] = next(MOVES)
            return result

        return call


class SprmOverHttp(BaseAdapter):
    """The simulated SPRM as the real client meets it: one HTTP exchange per try. The
    flow decides what the try does (`Stops.decide`), and stops with the answer in hand."""

    def __init__(self, sprm: FakeSprm, stops: Stops) -> None:
        super().__init__()
        self._sprm = sprm
        self._stops = stops
        self._trickled_from = threading.local()  # when this thread's trickling try began

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        url = urlsplit(str(request.url))
        operation = {"POST": "create", "GET": "get", "DELETE": "delete"}[str(request.method)]
        query = parse_qs(url.query)
        rid = query["id"][0] if operation == "create" else url.path.rsplit("/", 1)[1]
        flow = self._stops.flow()
        attempt = OK_TRY if flow is None else self._stops.decide(flow, operation)
        if flow is not None and flow.crashed:
            raise Crash
        status, body = self._exchange(operation, rid, attempt, request)
        if flow is not None:
            flow.stop(f"sprm.{operation} try answered {status}")
        if attempt.act == "trickle":
            status = self._trickled(operation, rid, request)
        if status is None:
            raise requests.ConnectionError("the connection dropped")
        answer = requests.Response()
        answer.status_code, answer._content, answer.url = status, body, str(request.url)
        answer.headers["Content-Type"] = "application/json"
        answer.request = request
        return answer

    def close(self) -> None:
        pass

    def _exchange(
        self, operation: str, rid: str, attempt: Try, request: requests.PreparedRequest
    ) -> tuple[int | None, bytes]:
        sprm = self._sprm
        sprm.calls.append((operation, rid, "deferred=true" in str(request.url)))
        if operation == "get":
            return self._look_up(rid, attempt)
        sprm.apply_late(instance_id=rid)  # one instance's changes act in the order they came
        exists = rid in sprm.instances
        if attempt.act == "now" and operation == "create" and exists:
            return 409, _problem(409)  # it cannot act again
        if attempt.act == "now" and operation == "delete" and not exists:
            return 404, _problem(404)
        if attempt.act == "now":
            self._act(operation, rid, request)
        elif attempt.act == "late":
            self._act_by(sprm.clock() + sprm.exchange, operation, rid, request)
        elif attempt.act == "trickle":
            made = deadlines.current()
            self._trickled_from.start = sprm.clock()
            if made is not None:  # cut at the deadline, when the SPRM has acted
                ends = self._trickled_from.start + timedelta(seconds=made.seconds)
                self._act_by(ends, operation, rid, request)
            return 0, b""  # the answer is still on its way
        if attempt.answer == "ok":
            return (201, b'{"id": "%s"}' % rid.encode()) if operation == "create" else (204, b"")
        if attempt.answer == "garbled":
            return (201 if operation == "create" else 204), b"<html>a proxy</html>"
        if attempt.answer is None:
            return None, b""
        status = int(attempt.answer)
        return status, b"" if status == 202 else _problem(status)

    def _act_by(
        self, deadline: datetime, operation: str, rid: str, request: requests.PreparedRequest
    ) -> None:
        """The SPRM acts later, at the latest by `deadline`."""
        sent = json.loads(request.body or b"{}") if operation == "create" else {}
        provider, spec = sent.get("provider_name", ""), sent.get("spec", {})
        self._sprm.pending.append(Pending(operation, rid, deadline, provider, spec))

    def _trickled(self, operation: str, rid: str, request: requests.PreparedRequest) -> int | None:
        """The end of an answer sent a byte at a time, which the SPRM acts on once it has
        sent it: the call's deadline cut it if its time is over (the SPRM acted by then);
        with no deadline, the SPRM acts now, however late, and the answer arrives."""
        made = deadlines.current()
        if made is None:
            self._act(operation, rid, request)
        elif self._sprm.clock() > self._trickled_from.start + timedelta(seconds=made.seconds):
            raise requests.Timeout("cut at its deadline")
        else:
            self._sprm.apply_late(instance_id=rid)
        return 201 if operation == "create" else 204

    def _act(self, operation: str, rid: str, request: requests.PreparedRequest) -> None:
        if operation == "create":
            sent = json.loads(request.body or b"{}")
            self._sprm.instances[rid] = Instance(sent["provider_name"], sent["spec"])
        else:
            self._sprm.instances.pop(rid, None)

    def _look_up(self, rid: str, attempt: Try) -> tuple[int | None, bytes]:
        if attempt.answer == "garbled":
            return 200, b"<html>a proxy</html>"
        if attempt.answer != "ok":
            return (None, b"") if attempt.answer is None else (503, _problem(503))
        if rid not in self._sprm.instances:
            return 404, _problem(404)
        return 200, json.dumps({"id": rid, "status": "RUNNING"}).encode()


def _problem(status: int) -> bytes:
    return json.dumps({"title": "simulated", "status": status, "detail": "no"}).encode()


@contextmanager
def on_the_model_clock(clock: Callable[[], datetime]) -> Iterator[None]:
    """The retries' clock is the model's (a call's time, and whether another try fits in
    it, in the model's seconds); their waits and the transport's deadlines are nothing
    here (no sockets, no real time)."""
    replaced: dict[str, Any] = {
        "_now": lambda: (clock() - T0).total_seconds(),
        "_sleep": lambda seconds: None,
        "deadline": _no_deadline,
    }
    saved = {name: getattr(retry, name) for name in replaced}
    for name, value in replaced.items():
        setattr(retry, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(retry, name, value)


@contextmanager
def _no_deadline(seconds: float) -> Iterator[None]:
    yield


def sprm_client(sprm: FakeSprm, stops: Stops) -> SprmClient:
    client = SprmClient(
        Upstream(SPRM_URL, EXCHANGE / TRIES), RetryPolicy(TRIES, 0.0, 0.0), pool_size=1
    )
    client._client.session.mount(SPRM_URL, SprmOverHttp(sprm, stops))
    return client


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
        self.sprm_client = sprm_client(self.sprm, stops)
        self.stopping_store = StoppingStore(self.store, stops)
        self.service = PlacementService(
            self.stopping_store,
            FakePolicy(),
            self.sprm_client,
            LEASE,
            5.0,
            new_id=lambda: uuid.uuid4().hex,
        )
        self.flows: list[Flow] = []
        self.touched: dict[str, list[Flow]] = {}
        for rid in IDS[:2]:  # two resources to start with, made without a fault
            self.service.create_resource("cat", SPECS[0], rid)

    # --- deciding what the SPRM does with a try -------------------------------------

    def _decide(self, flow: Flow, operation: str) -> Try:
        """Called in the flow's thread: stop so that the test (whose thread Hypothesis
        draws in) picks the try; `_go` answers at once, before anything else runs."""
        flow.stop(f"decide {operation}")
        return flow.attempt

    def _go(self, flow: Flow, data: Any) -> None:
        """Let `flow` run to its next stop, deciding the SPRM's tries on its way."""
        flow.go()
        while not flow.done and flow.at.startswith("decide "):
            operation = flow.at.removeprefix("decide ")
            flow.attempt = OK_TRY if data is None else data.draw(CHANGE_TRIES[operation])
            flow.go()

    def _start(self, name: str, ids: tuple[str, ...], target: Callable[[], Any], data: Any) -> None:
        """Start a flow and let it go on past a few of its stops."""
        flow = Flow(name, target, self.local)
        self.flows.append(flow)
        for rid in ids:
            self.touched.setdefault(rid, []).append(flow)
        for _ in range(data.draw(st.integers(1, 8), label="stops")):
            if not flow.done:
                self._go(flow, data)

    def live(self) -> list[Flow]:
        return [f for f in self.flows if not f.done]

    # --- rules --------------------------------------------------------------------

    @rule(spec=st.sampled_from(SPECS), data=st.data())
    def create(self, spec: dict[str, Any], data: Any) -> None:
        rid = self._free(data)
        self._start(
            f"create {rid}", (rid,), lambda: self.service.create_resource("cat", spec, rid), data
        )

    @rule(data=st.data())
    def delete(self, data: Any) -> None:
        rid = self._known(data)
        self._start(f"delete {rid}", (rid,), lambda: self.service.delete_resource(rid), data)

    @rule(data=st.data())
    def rehydrate(self, data: Any) -> None:
        rid = self._known(data)
        new = self._free(data)
        self._start(
            f"rehydrate {rid} to {new}",
            (rid, new),
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
        round_ = Reconciler(self.stopping_store, self.sprm_client, LEASE, 5.0, batch=3)
        self._start("reconcile", (), round_.run_once, data)

    @precondition(lambda self: bool(self.live()))
    @rule(index=st.integers(0, 100), stops=st.integers(1, 4), data=st.data())
    def step(self, index: int, stops: int, data: Any) -> None:
        """One flow goes on past a few of its stops."""
        flow = self.live()[index % len(self.live())]
        for _ in range(stops):
            if not flow.done:
                self._go(flow, data)

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

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def stall(self, data: Any) -> None:
        """The flows under way stall (a slow answer, a paused process) while the clock
        passes their leases and a reconciler round runs to its end."""
        self.advance(LEASE + 1)
        round_ = Reconciler(self.stopping_store, self.sprm_client, LEASE, 5.0, batch=3)
        flow = Flow("reconcile", round_.run_once, self.local)
        self.flows.append(flow)
        for _ in range(100):
            if flow.done:
                break
            self._go(flow, data)

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
        rounds = Reconciler(self.store, self.sprm_client, LEASE, 1.0)
        for _ in range(10):
            if not rounds.run_once():
                break
            self.clock.advance(LEASE + 1)

    def _check(self) -> None:
        records = {r.id: r for r in every_record(self.store)}
        held = {i for i, inst in self.sprm.instances.items() if inst.deletion_status is None}
        history = self._history()
        assert {rid: r.state.value for rid, r in records.items() if r.state.value != "READY"} == {}
        if set(records) != held:
            raise AssertionError(f"records {sorted(records)}, instances {sorted(held)}:\n{history}")
        assert pending_deletions(self.store) == set()
        assert self.sprm.pending == []
        for rid, flows in self.touched.items():
            expected = self._told(rid, flows)
            if expected is not None and (rid in records) is not expected:
                raise AssertionError(f"{rid} should exist: {expected}; flows:\n{history}")

    def _told(self, rid: str, flows: list[Flow]) -> bool | None:
        """Whether the answer of the operation that changed `rid` last says it exists
        (None: that answer promises nothing: a crash, a 503, a failed delete). Operations
        that changed nothing (a 409, a 404) do not count."""
        changed = [flow for flow in flows if rid in flow.writes]
        if not changed:
            return None
        last = max(changed, key=lambda flow: flow.writes[rid])
        outcome = last.outcome
        if last.crashed or outcome == "crashed":
            return None
        if isinstance(outcome, PlacementError) and outcome.kind is Kind.UNAVAILABLE:
            return None
        operation, *_ = last.name.split()
        if operation == "delete":
            return False if outcome is None else None
        if operation == "create":
            return isinstance(outcome, Resource)
        new = last.name.split()[3]
        done = isinstance(outcome, Resource)
        return done if rid == new else not done

    def _history(self) -> str:
        """The flows in the order they ended, for a failure's message."""
        lines = [
            f"{f.name}: {type(f.outcome).__name__} {str(f.outcome)[:90]} (changed {f.writes})"
            for f in sorted(self.flows, key=lambda f: f.answered)
        ]
        return "\n".join(lines)


def every_record(store: Any) -> list[Any]:
    if isinstance(store, MemoryStore):
        records, _ = store.list_page(None, 100, None)
        return records
    engine = store.engine
    return [engine.resource(row) for row in engine.rows(f"SELECT {SELECTED} FROM resources")]


def pending_deletions(store: Any) -> set[str]:
    if isinstance(store, MemoryStore):
        return set(store.retired())
    return {row[0] for row in store.engine.rows("SELECT id FROM placement_retired")}


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
    with on_the_model_clock_of(machine):
        test().runTest()


@contextmanager
def on_the_model_clock_of(machine: type[Lifecycle]) -> Iterator[None]:
    """Each example's machine makes its own clock: the retries read the current one."""
    clocks: list[FakeClock] = []
    factory = machine.clock_factory

    def made() -> FakeClock:
        clocks.append(factory())
        return clocks[-1]

    machine.clock_factory = staticmethod(made)
    current = FakeClock()

    def now() -> datetime:
        return (clocks[-1] if clocks else current)()

    with on_the_model_clock(now):
        yield


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
        shared.engine.count("DELETE FROM resources")
        shared.engine.count("DELETE FROM placement_retired")

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
