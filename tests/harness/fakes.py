"""In-memory fakes of what the service and the reconciler depend on: a clock, the store,
the Policy Engine and the SPRM. Domain tests run against them in milliseconds; the store
fake passes the same contract tests as PostgreSQL and SQLite (tests/integration/test_store.py).

The SPRM fake simulates what a real SPRM may do with a request: act at once, act late
(after the caller gave up, before a deadline), never act, act and lose its answer, act
and answer with a garbled body or a 5xx, or refuse.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from placement.errors import UpstreamError
from placement.model import (
    Change,
    Evaluation,
    JSONObject,
    Placement,
    ProviderStatus,
    Resource,
    ResourceView,
    State,
)
from placement.model import Instance as FoundInstance
from placement.store import Cursor, DuplicateId, Lease, PendingDeletion, StoreUnavailable
from tests.harness.lifecycle import TRANSIENT

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """The database's clock, under the test's control; with `tick`, it also moves on by
    that much each time it is read (records made one after another differ in time)."""

    def __init__(self, start: datetime = T0, tick: float = 0.0) -> None:
        self._now = start
        self._tick = timedelta(seconds=tick)

    def __call__(self) -> datetime:
        now = self._now
        self._now += self._tick
        return now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@dataclass
class _Row:
    resource: Resource
    owner: str | None = None
    until: datetime | None = None
    undo: bool = False  # a pending undo of a failed create (in the retired rows)


class MemoryStore:
    """A ResourceStore in memory, making the same moves as the SQL stores (the contract
    tests hold it to that), on a FakeClock."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or FakeClock()
        self.available = True
        self._rows: dict[str, _Row] = {}
        self._retired: dict[str, _Row] = {}
        self._sequences: dict[str, int] = {}  # the stream sequence of each recorded status
        self._settings: dict[str, str] = {}
        self._lock = threading.RLock()

    # Plumbing.

    def open(self) -> None:
        self._check()

    def close(self) -> None:
        pass

    def ping(self) -> None:
        self._check()

    def pool_stats(self) -> dict[str, int]:
        return {}

    def setting(self, name: str, default: Callable[[], str]) -> str:
        with self._lock:
            self._check()
            return self._settings.setdefault(name, default())

    def reads(self) -> MemoryReads:
        return MemoryReads(self)

    # What tests look at.

    def retired(self) -> dict[str, tuple[str | None, datetime | None]]:
        """Pending deletions: id -> (lease owner, lease end)."""
        with self._lock:
            return {rid: (row.owner, row.until) for rid, row in self._retired.items()}

    def leases(self) -> dict[str, tuple[str | None, datetime | None]]:
        with self._lock:
            return {rid: (row.owner, row.until) for rid, row in self._rows.items()}

    def all(self) -> list[Resource]:
        with self._lock:
            return [row.resource for row in self._rows.values()]

    # Reads.

    def get(self, resource_id: str) -> Resource | None:
        with self._lock:
            self._check()
            row = self._rows.get(resource_id)
            return row.resource if row else None

    def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[Resource], Cursor | None]:
        with self._lock:
            self._check()
            rows = sorted(
                (r.resource for r in self._rows.values()),
                key=lambda r: (r.create_time, r.id),
            )
            if provider is not None:
                rows = [r for r in rows if r.provider_name == provider]
            if status is not None:
                wanted = status.upper()
                rows = [r for r in rows if r.status and r.status.status.upper() == wanted]
            if after is not None and after.create_key is not None:
                mark = (datetime.fromisoformat(after.create_key), after.id)
                rows = [r for r in rows if (r.create_time, r.id) > mark]
            page: list[Resource] = []
            held = 0
            for row in rows[:limit]:
                if max_bytes is not None and page and held >= max_bytes:
                    break  # a spec is taken while those before it stay under the budget
                page.append(row)
                held += len(json.dumps(row.spec, separators=(",", ":")))
            if len(page) == len(rows):
                return page, None
            return page, Cursor(page[-1].create_time.isoformat(), page[-1].id)

    def pending_deletion(self, resource_id: str) -> PendingDeletion | None:
        with self._lock:
            self._check()
            row = self._retired.get(resource_id)
            if row is None:
                return None
            left = 0.0 if row.until is None else (row.until - self.clock()).total_seconds()
            return PendingDeletion(row.undo, max(0.0, left))

    # Lifecycle transitions.

    def begin_create(self, placement: Placement, lease: Lease) -> Resource:
        with self._lock:
            self._check()
            return self._insert(placement, lease)

    def finish_create(self, resource_id: str, owner: str, status: str | None = None) -> bool:
        with self._lock:
            self._check()
            row = self._owned(resource_id, owner, State.PROVISIONING)
            if row is None:
                return False
            self._set(row, State.READY, None, None, replaces=None, status=_first(row, status))
            return True

    def apply_status(
        self, resource_id: str, status: str, message: str | None, moment: datetime, sequence: int
    ) -> str:
        with self._lock:
            self._check()
            row = self._rows.get(resource_id)
            if row is None:
                return "unknown"
            held = self._sequences.get(resource_id)
            recorded = row.resource.status
            newer = (
                recorded is None
                or recorded.time is None
                or (moment, sequence) > (recorded.time, -1 if held is None else held)
            )
            if moment < row.resource.create_time or not newer:
                return "stale"
            row.resource = replace(row.resource, status=ProviderStatus(status, message, moment))
            self._sequences[resource_id] = sequence
            return "applied"

    def undo_create(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            if self._owned(resource_id, owner, State.PROVISIONING) is None:
                return False
            del self._rows[resource_id]
            return True

    def abandon_create(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            row = self._owned(resource_id, owner, State.PROVISIONING)
            if row is None:
                return False
            self._abandon(row)
            return True

    def resume_create(self, placement: Placement, lease: Lease) -> Resource | None:
        with self._lock:
            self._check()
            undone = self._retired.get(placement.id)
            if undone is None or not undone.undo or undone.owner is not None:
                return None
            was = undone.resource
            if placement.id in self._rows or (
                was.catalog_item_instance_id,
                was.spec,
                was.provider_name,
            ) != (placement.catalog_item_instance_id, placement.spec, placement.provider_name):
                return None
            return self._insert(placement, lease, beside_undo=True)

    def retire_instance(self, resource_id: str, lease: Lease) -> bool:
        with self._lock:
            self._check()
            if resource_id in self._rows or resource_id in self._retired:
                return False
            now = self.clock()
            gone = Resource(resource_id, "", {}, "", "", now, now, State.RETIRED)
            self._retired[resource_id] = _Row(gone, lease.owner, self._end(lease))
            return True

    def begin_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        return self._take_for_delete(resource_id, lease, State.READY)

    def resume_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        return self._take_for_delete(resource_id, lease, State.DELETING)

    def _take_for_delete(self, resource_id: str, lease: Lease, state: State) -> Resource | None:
        with self._lock:
            self._check()
            row = self._rows.get(resource_id)
            if row is None or row.resource.state is not state or not self._ended(row):
                return None
            self._set(row, State.DELETING, lease.owner, self._end(lease))
            return row.resource

    def finish_delete(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            if self._owned(resource_id, owner, State.DELETING) is None:
                return False
            del self._rows[resource_id]
            return True

    def undo_delete(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            row = self._owned(resource_id, owner, State.DELETING)
            if row is None:
                return False
            self._set(row, State.READY, None, None)
            return True

    def begin_rehydrate(self, placement: Placement, lease: Lease) -> Resource | None:
        with self._lock:
            self._check()
            old = self._rows.get(placement.replaces or "")
            if old is None or old.resource.state is not State.READY or not self._ended(old):
                return None
            new = self._insert(placement, lease)
            self._set(old, State.REHYDRATING, lease.owner, self._end(lease))
            return new

    def finish_rehydrate(
        self, resource_id: str, replaced_id: str, lease: Lease, status: str | None = None
    ) -> bool:
        with self._lock:
            self._check()
            new = self._owned(resource_id, lease.owner, State.PROVISIONING)
            old = self._owned(replaced_id, lease.owner, State.REHYDRATING)
            if new is None or old is None or new.resource.replaces != replaced_id:
                return False
            self._set(new, State.READY, None, None, replaces=None, status=_first(new, status))
            del self._rows[replaced_id]
            self._retired[replaced_id] = _Row(old.resource, lease.owner, self._end(lease))
            return True

    def undo_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            new = self._owned(resource_id, owner, State.PROVISIONING)
            old = self._owned(replaced_id, owner, State.REHYDRATING)
            if new is None or old is None or new.resource.replaces != replaced_id:
                return False
            del self._rows[resource_id]
            self._set(old, State.READY, None, None)
            return True

    def abandon_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            new = self._owned(resource_id, owner, State.PROVISIONING)
            old = self._owned(replaced_id, owner, State.REHYDRATING)
            if new is None or old is None or new.resource.replaces != replaced_id:
                return False
            self._abandon(new)
            self._set(old, State.READY, None, None)
            return True

    def restore(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            row = self._owned(resource_id, owner, State.REHYDRATING)
            replaced = {r.resource.replaces for r in self._rows.values()}
            if row is None or resource_id in replaced:
                return False
            self._set(row, State.READY, None, None)
            return True

    def finish_retire(self, resource_id: str, owner: str) -> bool:
        with self._lock:
            self._check()
            row = self._retired.get(resource_id)
            if row is None or row.owner != owner:
                return False
            del self._retired[resource_id]
            return True

    def claim_stale(self, lease: Lease) -> Resource | None:
        with self._lock:
            self._check()
            replaced = {r.resource.replaces for r in self._rows.values()}
            candidates = [
                row
                for row in self._rows.values()
                if row.resource.state in TRANSIENT
                and self._ended(row)
                and not (row.resource.state is State.REHYDRATING and row.resource.id in replaced)
            ]
            if not candidates:
                return None
            row = min(candidates, key=_claim_order)
            self._take(row, lease)
            partner = self._rows.get(row.resource.replaces or "")
            if partner and partner.resource.state is State.REHYDRATING and self._ended(partner):
                self._take(partner, lease)
            return row.resource

    def claim_retired(self, lease: Lease) -> str | None:
        with self._lock:
            self._check()
            candidates = [row for row in self._retired.values() if self._ended(row)]
            if not candidates:
                return None
            row = min(candidates, key=_claim_order)
            self._take(row, lease)
            return row.resource.id

    def release(self, owner: str, seconds: float) -> bool:
        with self._lock:
            self._check()
            held = [
                r for r in self._rows.values() if r.owner == owner and r.resource.state in TRANSIENT
            ]
            for row in held:
                row.owner, row.until = None, self.clock() + timedelta(seconds=seconds)
            return bool(held)

    # Helpers (the lock held).

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("the in-memory database is away")

    def _insert(self, placement: Placement, lease: Lease, beside_undo: bool = False) -> Resource:
        if placement.id in self._rows or (placement.id in self._retired and not beside_undo):
            raise DuplicateId(placement.id)
        now = self.clock()
        resource = Resource(
            id=placement.id,
            catalog_item_instance_id=placement.catalog_item_instance_id,
            spec=copy.deepcopy(placement.spec),
            provider_name=placement.provider_name,
            approval_status=placement.approval_status,
            create_time=now,
            update_time=now,
            state=State.PROVISIONING,
            replaces=placement.replaces,
        )
        self._rows[placement.id] = _Row(resource, lease.owner, self._end(lease))
        return resource

    def _abandon(self, row: _Row) -> None:
        """The record becomes a pending undo under its lease's end, with no owner (an undo
        already there is extended to it)."""
        del self._rows[row.resource.id]
        until = row.until
        earlier = self._retired.get(row.resource.id)
        if earlier is not None and earlier.until is not None and until is not None:
            until = max(until, earlier.until)
        self._retired[row.resource.id] = _Row(row.resource, None, until, undo=True)

    def _owned(self, resource_id: str, owner: str, state: State) -> _Row | None:
        row = self._rows.get(resource_id)
        if row is None or row.owner != owner or row.resource.state is not state:
            return None
        return row

    def _ended(self, row: _Row) -> bool:
        return row.until is None or row.until < self.clock()

    def _end(self, lease: Lease) -> datetime:
        return self.clock() + timedelta(seconds=lease.seconds)

    def _take(self, row: _Row, lease: Lease) -> None:
        row.owner, row.until = lease.owner, self._end(lease)

    @staticmethod
    def _set(
        row: _Row,
        state: State,
        owner: str | None,
        until: datetime | None,
        **changes: Any,
    ) -> None:
        row.resource = replace(row.resource, state=state, **changes)
        row.owner, row.until = owner, until


def _first(row: _Row, status: str | None) -> ProviderStatus | None:
    """The status the SPRM's create answer gave, unless an event came first."""
    if row.resource.status is not None or status is None:
        return row.resource.status
    return ProviderStatus(status, None, row.resource.create_time)


def _claim_order(row: _Row) -> tuple[bool, datetime, str]:
    return (row.until is not None, row.until or T0, row.resource.id)


class FakePolicy:
    """Approves every spec on `provider`; `fail_next` programs errors."""

    def __init__(self, provider: str = "kubevirt") -> None:
        self.provider = provider
        self.calls: list[JSONObject] = []
        self._failures: deque[UpstreamError] = deque()

    def fail_next(self, status: int | None, transient: bool | None = None) -> None:
        self._failures.append(UpstreamError("policy", "evaluate", status, "no", transient))

    def evaluate(self, spec: JSONObject) -> Evaluation:
        self.calls.append(spec)
        if self._failures:
            raise self._failures.popleft()
        return Evaluation("APPROVED", self.provider, {**spec, "evaluated": True})


class Act(Enum):
    """What the simulated SPRM does with one request."""

    OK = "act, answer success"
    LATE = "act later, before its deadline; the caller times out"
    NEVER = "never act; the caller times out"
    LOSE = "act; the answer is lost (the caller times out)"
    GARBLE = "act; answer success with a body that does not match the API (read as success)"
    ACT_5XX = "act, then answer 503"
    REFUSE = "do nothing; answer 422"
    FAIL_5XX = "do nothing; answer 503"


@dataclass
class Instance:
    provider: str
    spec: JSONObject
    deletion_status: str | None = None


@dataclass
class Pending:
    """An action the SPRM has queued and will carry out by `deadline`."""

    operation: str
    instance_id: str
    deadline: datetime
    provider: str = ""
    spec: JSONObject = field(default_factory=dict)


class FakeSprm:
    """A simulated SPRM. Each call takes the next programmed `Act` for its operation
    (`script`), else `default`; late actions wait in `pending` until `apply_late`."""

    def __init__(self, clock: Callable[[], datetime], exchange_seconds: float = 10.0) -> None:
        self.clock = clock
        self.exchange = timedelta(seconds=exchange_seconds)
        self.instances: dict[str, Instance] = {}
        self.pending: list[Pending] = []
        self.calls: list[tuple[str, str, bool]] = []  # (operation, id, deferred)
        self.default = Act.OK
        self.get_fails = False
        self._script: dict[str, deque[Act]] = {"create": deque(), "delete": deque()}

    def script(self, operation: str, *acts: Act) -> None:
        self._script[operation].extend(acts)

    def create_instance(
        self, instance_id: str, provider: str, spec: JSONObject, may_exist: bool = False
    ) -> Change:
        self.calls.append(("create", instance_id, False))
        act = self._next("create")
        if act in (Act.REFUSE, Act.FAIL_5XX):
            raise self._error("create", act)
        if instance_id in self.instances:
            if may_exist:
                return Change()
            raise UpstreamError("sprm", "create", 409, f"instance {instance_id} exists")
        if act is Act.LATE:
            self.pending.append(
                Pending("create", instance_id, self.clock() + self.exchange, provider, spec)
            )
        elif act is not Act.NEVER:
            self.instances[instance_id] = Instance(provider, copy.deepcopy(spec))
        if act not in (Act.OK, Act.GARBLE):  # the client reads only a success's status
            raise self._error("create", act)
        return Change(status="PROVISIONED")

    def get_instance(self, instance_id: str) -> FoundInstance | None:
        self.calls.append(("get", instance_id, False))
        if self.get_fails:
            raise UpstreamError("sprm", "get", None, "timed out")
        instance = self.instances.get(instance_id)
        if instance is None:
            return None
        return FoundInstance(instance_id, "PROVISIONED", None, instance.deletion_status)

    def delete_instance(self, instance_id: str, deferred: bool = False) -> Change:
        self.calls.append(("delete", instance_id, deferred))
        act = self._next("delete")
        if act in (Act.REFUSE, Act.FAIL_5XX):
            raise self._error("delete", act)
        existed = instance_id in self.instances
        if act is Act.LATE:
            self.pending.append(Pending("delete", instance_id, self.clock() + self.exchange))
        elif act is not Act.NEVER:
            self.instances.pop(instance_id, None)
        if act not in (Act.OK, Act.GARBLE):
            raise self._error("delete", act)
        return Change(found=existed)

    def apply_late(self, until: datetime | None = None, instance_id: str | None = None) -> None:
        """Carry out the queued actions (those due by `until`, or all; of `instance_id`,
        or of every instance)."""
        due = [
            p
            for p in self.pending
            if (until is None or p.deadline <= until)
            and (instance_id is None or p.instance_id == instance_id)
        ]
        for action in due:
            self.pending.remove(action)
            if action.operation == "create":
                self.instances.setdefault(
                    action.instance_id, Instance(action.provider, action.spec)
                )
            else:
                self.instances.pop(action.instance_id, None)

    def creates(self) -> list[str]:
        return [rid for op, rid, _ in self.calls if op == "create"]

    def deletes(self) -> list[tuple[str, bool]]:
        return [(rid, deferred) for op, rid, deferred in self.calls if op == "delete"]

    def _next(self, operation: str) -> Act:
        script = self._script[operation]
        return script.popleft() if script else self.default

    @staticmethod
    def _error(operation: str, act: Act) -> UpstreamError:
        if act is Act.REFUSE:
            return UpstreamError("sprm", operation, 422, "the provider refuses")
        if act in (Act.FAIL_5XX, Act.ACT_5XX):
            return UpstreamError("sprm", operation, 503, "unavailable")
        return UpstreamError("sprm", operation, None, "timed out")


class MemoryReads:
    """The API's reads of a MemoryStore (`store.ResourceReads`), specs as JSON text."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        self._store.ping()

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        return self._store.setting(name, default)

    async def get(self, resource_id: str) -> ResourceView | None:
        found = self._store.get(resource_id)
        return None if found is None else _view(found)

    async def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        page, cursor = self._store.list_page(provider, limit, after, max_bytes, status)
        return [_view(each) for each in page], cursor


def _view(resource: Resource) -> ResourceView:
    return ResourceView(
        id=resource.id,
        catalog_item_instance_id=resource.catalog_item_instance_id,
        spec_json=json.dumps(resource.spec),
        provider_name=resource.provider_name,
        approval_status=resource.approval_status,
        create_time=resource.create_time,
        update_time=resource.update_time,
        status=resource.status,
    )
