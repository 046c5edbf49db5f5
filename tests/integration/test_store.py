"""The store contract: the same cases on a real PostgreSQL, a real SQLite file and the
in-memory fake the domain tests use. Leases are given in seconds of the database's clock:
a negative one has already run out (an owner that crashed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from placement.config import Database
from placement.model import Placement, Resource, ResourceView, State
from placement.store import Cursor, DuplicateId, Lease, ResourceStore, make_store
from tests.harness.fakes import FakeClock, MemoryStore

LIVE = Lease("owner-1", 3600)
CRASHED = Lease("crashed", -1)
SPEC = {"vm": {"cpu": 2, "name": "é-ü", "tags": ["a", None, 1.5]}}


@pytest.fixture(params=["memory", "pgsql", "sqlite"])
def store(request: pytest.FixtureRequest) -> Iterator[ResourceStore]:
    """Each contract test runs on the fake and on both databases."""
    if request.param == "memory":
        yield MemoryStore(FakeClock(tick=0.000001))
        return
    db: Database = request.getfixturevalue("pg_db" if request.param == "pgsql" else "sqlite_db")
    store = make_store(db)
    store.open()
    yield store
    store.close()


class Reader:
    """The reads the API serves: the store's own (`get`, `ping`, `setting`), or its
    asynchronous reads (`ResourceStore.reads()`, on an event loop of their own here).
    List pages come only from the latter."""

    def __init__(self, store: ResourceStore, path: str) -> None:
        self.path = path
        self._store = store
        self._runner = asyncio.Runner()
        self._reads = store.reads()
        self._runner.run(self._reads.open())

    def get(self, rid: str) -> Resource | ResourceView | None:
        if self.path == "store":
            return self._store.get(rid)
        return self._runner.run(self._reads.get(rid))

    def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        return self._runner.run(self._reads.list_page(provider, limit, after, max_bytes, status))

    def ping(self) -> None:
        if self.path == "store":
            self._store.ping()
        else:
            self._runner.run(self._reads.ping())

    def setting(self, name: str, default: Any) -> str:
        if self.path == "store":
            return self._store.setting(name, default)
        return self._runner.run(self._reads.setting(name, default))

    def close(self) -> None:
        self._runner.run(self._reads.close())
        self._runner.close()


@pytest.fixture(params=["store", "reads"])
def reader(request: pytest.FixtureRequest, store: ResourceStore) -> Iterator[Reader]:
    """Each read test runs through the store's reads and through the API's (async) ones."""
    reader = Reader(store, request.param)
    yield reader
    reader.close()


@pytest.fixture
def lister(store: ResourceStore) -> Iterator[Reader]:
    """The API's (async) reads, for the list pages."""
    reader = Reader(store, "reads")
    yield reader
    reader.close()


def spec_of(found: Resource | ResourceView) -> Any:
    """The spec as the reads give it: a dict, or the JSON text stored (decoded here)."""
    if isinstance(found, ResourceView):
        assert isinstance(found.spec_json, str)
        return json.loads(found.spec_json)
    return found.spec


def placement(
    rid: str,
    provider: str = "kubevirt",
    replaces: str | None = None,
    spec: dict[str, Any] = SPEC,
) -> Placement:
    return Placement(rid, f"cat-{rid}", spec, provider, "APPROVED", replaces)


def ready(
    store: ResourceStore, rid: str, provider: str = "kubevirt", spec: dict[str, Any] = SPEC
) -> Resource:
    """A READY record, made the way the service makes one."""
    lease = Lease(f"make-{rid}", 60)
    made = store.begin_create(replace(placement(rid, provider), spec=spec), lease)
    assert store.finish_create(rid, lease.owner)
    return made


def ids(resources: list[Resource] | list[ResourceView]) -> list[str]:
    return [r.id for r in resources]


def state_of(store: ResourceStore, rid: str) -> State | None:
    found = store.get(rid)
    return None if found is None else found.state


# --- creating ---------------------------------------------------------------------


def test_begin_create_records_provisioning_stamped_by_the_store(store: ResourceStore) -> None:
    made = store.begin_create(placement("web-1"), LIVE)
    assert (made.id, made.state, made.spec, made.replaces) == (
        "web-1",
        State.PROVISIONING,
        SPEC,
        None,
    )
    assert made.create_time == made.update_time
    assert made.create_time.tzinfo is not None
    assert store.get("web-1") == made


def test_an_id_in_use_is_refused(store: ResourceStore) -> None:
    ready(store, "web-1")
    with pytest.raises(DuplicateId):
        store.begin_create(placement("web-1", provider="other"), LIVE)
    assert store.get("web-1").provider_name == "kubevirt"  # type: ignore[union-attr]


def test_finish_and_undo_create_need_the_owner(store: ResourceStore) -> None:
    store.begin_create(placement("a"), LIVE)
    store.begin_create(placement("b"), LIVE)
    assert store.finish_create("a", "someone-else") is False
    assert store.undo_create("b", "someone-else") is False
    assert store.finish_create("a", LIVE.owner) is True
    assert store.undo_create("b", LIVE.owner) is True
    assert state_of(store, "a") is State.READY
    assert store.get("b") is None
    assert store.finish_create("a", LIVE.owner) is False  # READY now: nothing to finish
    assert store.undo_create("a", LIVE.owner) is False


def test_a_ready_record_has_no_lease(store: ResourceStore) -> None:
    ready(store, "web-1")
    assert store.begin_delete("web-1", LIVE) is not None


# --- deleting ---------------------------------------------------------------------


def test_begin_delete_takes_a_ready_record_once(store: ResourceStore) -> None:
    ready(store, "web-1")
    taken = store.begin_delete("web-1", LIVE)
    assert taken is not None
    assert taken.state is State.DELETING
    assert store.begin_delete("web-1", Lease("other", 60)) is None
    assert store.begin_delete("absent", LIVE) is None


def test_resume_delete_takes_over_a_delete_whose_lease_ran_out(store: ResourceStore) -> None:
    ready(store, "web-1")
    assert store.resume_delete("web-1", LIVE) is None  # READY: nothing to take over
    assert store.begin_delete("web-1", CRASHED) is not None
    assert store.begin_delete("web-1", LIVE) is None  # a fresh delete takes READY only
    assert store.resume_delete("web-1", LIVE) is not None
    assert store.resume_delete("web-1", Lease("third", 60)) is None  # LIVE holds it
    assert store.finish_delete("web-1", CRASHED.owner) is False
    assert store.finish_delete("web-1", LIVE.owner) is True
    assert store.get("web-1") is None


def test_begin_delete_leaves_other_operations_alone(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), CRASHED)
    assert store.begin_delete("web-1", LIVE) is None  # PROVISIONING: the reconciler's
    assert state_of(store, "web-1") is State.PROVISIONING


def test_undo_delete_puts_the_record_back(store: ResourceStore) -> None:
    ready(store, "web-1")
    store.begin_delete("web-1", LIVE)
    assert store.undo_delete("web-1", "someone-else") is False
    assert store.undo_delete("web-1", LIVE.owner) is True
    assert state_of(store, "web-1") is State.READY
    assert store.begin_delete("web-1", Lease("next", 60)) is not None


# --- rehydrating ------------------------------------------------------------------


def test_begin_rehydrate_takes_the_old_record_and_records_the_new(store: ResourceStore) -> None:
    ready(store, "old")
    new = store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    assert new is not None
    assert (new.state, new.replaces) == (State.PROVISIONING, "old")
    assert state_of(store, "old") is State.REHYDRATING
    assert store.get("new") == new


def test_begin_rehydrate_of_a_busy_or_absent_record_changes_nothing(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_delete("old", LIVE)
    assert store.begin_rehydrate(placement("new", replaces="old"), LIVE) is None
    assert store.begin_rehydrate(placement("new", replaces="absent"), LIVE) is None
    assert store.get("new") is None
    assert state_of(store, "old") is State.DELETING


def test_begin_rehydrate_to_an_id_in_use_changes_nothing(store: ResourceStore) -> None:
    ready(store, "old")
    ready(store, "taken")
    with pytest.raises(DuplicateId):
        store.begin_rehydrate(placement("taken", replaces="old"), LIVE)
    assert state_of(store, "old") is State.READY
    assert store.begin_delete("old", Lease("next", 60)) is not None  # no lease was left


def test_finish_rehydrate_retires_the_old_record(store: ResourceStore, reader: Reader) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    assert store.finish_rehydrate("new", "old", LIVE) is True
    new = store.get("new")
    assert new is not None
    assert (new.state, new.replaces) == (State.READY, None)
    assert store.get("old") is None
    assert "old" not in ids(reader.list_page(None, 10, None)[0])
    assert reader.get("old") is None
    with pytest.raises(DuplicateId):  # its instance is still to be deleted
        store.begin_create(placement("old"), LIVE)
    assert store.claim_retired(Lease("reconciler", 60)) is None  # under the lease still
    assert store.finish_retire("old", "someone-else") is False
    assert store.finish_retire("old", LIVE.owner) is True
    assert store.begin_create(placement("old"), LIVE).id == "old"


def test_finish_rehydrate_is_all_or_nothing(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), CRASHED)
    reconciler = Lease("reconciler", 60)
    assert store.claim_stale(reconciler) is not None  # takes "new", and "old" with it
    assert store.finish_rehydrate("new", "old", CRASHED) is False
    assert (state_of(store, "new"), state_of(store, "old")) == (
        State.PROVISIONING,
        State.REHYDRATING,
    )
    assert store.finish_rehydrate("new", "old", reconciler) is True


def test_undo_rehydrate_puts_the_old_record_back(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    assert store.undo_rehydrate("new", "old", "someone-else") is False
    assert store.undo_rehydrate("new", "old", LIVE.owner) is True
    assert store.get("new") is None
    assert state_of(store, "old") is State.READY
    assert store.begin_delete("old", Lease("next", 60)) is not None


# --- failed operations: pending undos -----------------------------------------------


def test_abandon_create_hides_the_record_at_once_and_keeps_its_id(
    store: ResourceStore, reader: Reader
) -> None:
    store.begin_create(placement("web-1"), LIVE)
    assert store.abandon_create("web-1", "someone-else") is False
    assert store.abandon_create("web-1", LIVE.owner) is True
    assert store.get("web-1") is None
    assert reader.get("web-1") is None
    assert "web-1" not in ids(reader.list_page(None, 10, None)[0])
    pending = store.pending_deletion("web-1")
    assert pending is not None
    assert pending.undo
    assert 3000 < pending.seconds_left <= 3600  # the create's lease: the SPRM may still act
    with pytest.raises(DuplicateId):
        store.begin_create(placement("web-1", spec={"other": 1}), Lease("next", 60))
    assert store.claim_retired(Lease("reconciler", 60)) is None  # not before the lease ends


def test_the_undo_of_a_crashed_lease_is_claimed_at_once(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), LIVE)
    store.abandon_create("web-1", LIVE.owner)
    assert store.claim_retired(Lease("reconciler", 60)) is None
    store.begin_create(placement("web-2"), CRASHED)
    store.abandon_create("web-2", CRASHED.owner)
    assert store.claim_retired(Lease("reconciler", 60)) == "web-2"
    assert store.finish_retire("web-2", "reconciler") is True
    assert store.pending_deletion("web-2") is None


def test_resume_create_records_the_same_create_beside_its_undo(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), LIVE)
    store.abandon_create("web-1", LIVE.owner)
    again = Lease("retry", 60)
    assert store.resume_create(placement("web-1", spec={"other": 1}), again) is None
    assert store.resume_create(placement("web-1", provider="elsewhere"), again) is None
    resumed = store.resume_create(placement("web-1"), again)
    assert resumed is not None
    assert (resumed.state, resumed.spec) == (State.PROVISIONING, placement("web-1").spec)
    assert store.resume_create(placement("web-1"), Lease("twice", 60)) is None
    assert store.finish_create("web-1", again.owner) is True
    pending = store.pending_deletion("web-1")  # until the failed create can no longer act
    assert pending is not None
    assert pending.undo


def test_a_retry_that_fails_again_extends_the_undo(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), Lease("first", 60))
    store.abandon_create("web-1", "first")
    store.resume_create(placement("web-1"), LIVE)
    assert store.abandon_create("web-1", LIVE.owner) is True
    assert store.get("web-1") is None
    pending = store.pending_deletion("web-1")
    assert pending is not None
    assert pending.seconds_left > 3000  # the retry's lease, the later one


def test_resume_create_leaves_an_undo_the_reconciler_claimed(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), CRASHED)
    store.abandon_create("web-1", CRASHED.owner)
    assert store.claim_retired(Lease("reconciler", -1)) == "web-1"  # (its claim ran out)
    assert store.resume_create(placement("web-1"), LIVE) is None
    assert store.resume_create(placement("never-undone"), LIVE) is None
    replaced = store.pending_deletion("web-1")
    assert replaced is not None
    assert replaced.seconds_left == 0


def test_abandon_rehydrate_puts_the_old_record_back_at_once(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    assert store.abandon_rehydrate("new", "old", "someone-else") is False
    assert store.abandon_rehydrate("new", "old", LIVE.owner) is True
    assert store.get("new") is None
    assert state_of(store, "old") is State.READY
    assert store.begin_delete("old", Lease("next", 60)) is not None
    pending = store.pending_deletion("new")
    assert pending is not None
    assert pending.undo


def test_retire_instance_needs_a_free_id(store: ResourceStore) -> None:
    ready(store, "web-1")
    assert store.retire_instance("web-1", LIVE) is False
    assert store.retire_instance("web-2", LIVE) is True
    assert store.retire_instance("web-2", LIVE) is False
    pending = store.pending_deletion("web-2")
    assert pending is not None
    assert not pending.undo
    assert store.finish_retire("web-2", LIVE.owner) is True


# --- the reconciler's claims ------------------------------------------------------


def test_claim_stale_takes_only_operations_whose_lease_ran_out(store: ResourceStore) -> None:
    store.begin_create(placement("live"), LIVE)
    store.begin_create(placement("crashed"), CRASHED)
    ready(store, "ready")
    reconciler = Lease("reconciler", 60)
    claimed = store.claim_stale(reconciler)
    assert claimed is not None
    assert claimed.id == "crashed"
    assert store.claim_stale(Lease("again", 60)) is None
    assert store.finish_create("crashed", reconciler.owner) is True


def test_claim_stale_takes_one_record_at_a_time(store: ResourceStore) -> None:
    for n in range(3):
        store.begin_create(placement(f"r{n}"), CRASHED)
    claims = [store.claim_stale(Lease(f"c{n}", 60)) for n in range(4)]
    assert sorted(c.id for c in claims if c) == ["r0", "r1", "r2"]
    assert claims[3] is None


def test_claim_stale_leaves_a_record_being_replaced_to_its_replacement(
    store: ResourceStore,
) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), CRASHED)
    claimed = store.claim_stale(Lease("reconciler", 60))
    assert claimed is not None
    assert claimed.id == "new"
    assert store.claim_stale(Lease("again", 60)) is None  # "old" came with "new"


def test_release_hands_a_claim_back_after_a_wait(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), CRASHED)
    reconciler = Lease("reconciler", 60)
    store.claim_stale(reconciler)
    assert store.release("someone-else", 60) is False
    assert store.release(reconciler.owner, 60) is True
    assert store.claim_stale(Lease("same-round", 60)) is None
    assert store.finish_create("web-1", reconciler.owner) is False


def test_released_records_come_back_once_the_wait_ran_out(store: ResourceStore) -> None:
    store.begin_create(placement("web-1"), CRASHED)
    store.claim_stale(Lease("reconciler", 60))
    store.release("reconciler", -1)
    claimed = store.claim_stale(Lease("next", 60))
    assert claimed is not None
    assert claimed.id == "web-1"


def test_restore_needs_a_rehydration_without_replacement(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    assert store.restore("old", LIVE.owner) is False  # its replacement is recorded
    assert store.undo_rehydrate("new", "old", LIVE.owner) is True
    assert store.restore("old", LIVE.owner) is False  # READY: nothing to restore


def test_claim_retired_takes_pending_deletions_whose_lease_ran_out(store: ResourceStore) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    store.finish_rehydrate("new", "old", Lease(LIVE.owner, -1))
    reconciler = Lease("reconciler", 60)
    assert store.claim_retired(reconciler) == "old"
    assert store.claim_retired(Lease("again", 60)) is None
    assert store.finish_retire("old", reconciler.owner) is True
    assert store.claim_retired(Lease("again", 60)) is None


# --- reading ----------------------------------------------------------------------


def test_get_unknown_id_is_none(reader: Reader) -> None:
    assert reader.get("nope") is None


def test_get_gives_the_record_as_stored(store: ResourceStore, reader: Reader) -> None:
    made = ready(store, "web-1")
    found = reader.get("web-1")
    assert found is not None
    assert spec_of(found) == SPEC
    assert (found.id, found.catalog_item_instance_id, found.provider_name) == (
        "web-1",
        "cat-web-1",
        "kubevirt",
    )
    assert (found.approval_status, found.create_time) == ("APPROVED", made.create_time)
    wire = found.to_json(json.loads) if isinstance(found, ResourceView) else found.to_json()
    assert wire == made.to_json()


def test_list_orders_by_create_time(store: ResourceStore, lister: Reader) -> None:
    for rid in ("c", "a", "b"):
        ready(store, rid)
    page, cursor = lister.list_page(None, 10, None)
    assert ids(page) == ["c", "a", "b"]
    assert cursor is None


def test_list_pages_follow_cursors_without_skips_or_repeats(
    store: ResourceStore, lister: Reader
) -> None:
    for n in range(7):
        ready(store, f"r{n}")
    seen: list[str] = []
    page, cursor = lister.list_page(None, 3, None)
    seen += ids(page)
    while cursor is not None:
        page, cursor = lister.list_page(None, 3, cursor)
        seen += ids(page)
    assert seen == [f"r{n}" for n in range(7)]


def test_list_exact_page_has_no_cursor(store: ResourceStore, lister: Reader) -> None:
    for n in range(3):
        ready(store, f"r{n}")
    page, cursor = lister.list_page(None, 3, None)
    assert ids(page) == ["r0", "r1", "r2"]
    assert cursor is None


def test_list_filters_by_provider(store: ResourceStore, lister: Reader) -> None:
    for n in range(5):
        ready(store, f"r{n}", provider="p" + str(n % 2))
    page, cursor = lister.list_page("p1", 1, None)
    assert ids(page) == ["r1"]
    assert cursor is not None
    page, cursor = lister.list_page("p1", 5, cursor)
    assert ids(page) == ["r3"]
    assert cursor is None


def test_a_page_ends_early_once_its_specs_pass_the_budget(
    store: ResourceStore, lister: Reader
) -> None:
    big = {"blob": "x" * 300_000}  # about 300 kB of JSON each
    for n in range(5):
        ready(store, f"r{n}", spec=big)
    ready(store, "small")
    pages = []
    page, cursor = lister.list_page(None, 100, None, max_bytes=500_000)
    pages.append(ids(page))
    while cursor is not None:
        page, cursor = lister.list_page(None, 100, cursor, max_bytes=500_000)
        pages.append(ids(page))
    # A spec is taken while those before it stay under the budget: two a page here.
    assert pages == [["r0", "r1"], ["r2", "r3"], ["r4", "small"]]
    assert spec_of(page[0]) == big
    one, cursor = lister.list_page("kubevirt", 100, None, max_bytes=1)
    assert ids(one) == ["r0"]  # a page always holds one record
    assert cursor is not None
    everything, cursor = lister.list_page(None, 100, None)
    assert len(everything) == 6
    assert cursor is None


def test_changes_between_pages_do_not_skip_remaining_records(
    store: ResourceStore, lister: Reader
) -> None:
    for n in range(6):
        ready(store, f"r{n}")
    page, cursor = lister.list_page(None, 2, None)
    assert ids(page) == ["r0", "r1"]
    for gone in ("r0", "r1"):
        store.begin_delete(gone, LIVE)
        store.finish_delete(gone, LIVE.owner)
    ready(store, "new")
    page, cursor = lister.list_page(None, 2, cursor)
    assert ids(page) == ["r2", "r3"]
    page, cursor = lister.list_page(None, 10, cursor)
    assert ids(page) == ["r4", "r5", "new"]


def test_the_status_filter_matches_the_exact_status_and_ascii_letters_without_case(
    store: ResourceStore, lister: Reader
) -> None:
    """`upper` differs between Python and the databases beyond ASCII (é, ß): the exact
    status always matches, and so do its ASCII letters in any case."""
    statuses = {"fr": "échoué", "de": "Straße", "up": "ÜBER", "ascii": "Running"}
    moment = datetime.now(UTC) + timedelta(seconds=1)
    for n, (rid, status) in enumerate(statuses.items()):
        ready(store, rid)
        assert store.apply_status(rid, status, None, moment, n + 1) == "applied"

    def listed(status: str) -> list[str]:
        return ids(lister.list_page(None, 10, None, status=status)[0])

    for rid, status in statuses.items():
        assert listed(status) == [rid], status
    assert listed("RUNNING") == listed("running") == ["ascii"]
    assert listed("ÜBEr") == ["up"]


def test_settings_are_created_once(store: ResourceStore, reader: Reader) -> None:
    assert reader.setting("key", lambda: "one") == "one"
    assert reader.setting("key", lambda: "two") == "one"
    assert store.setting("key", lambda: "three") == "one"


def test_ping_answers(reader: Reader) -> None:
    reader.ping()


def test_a_lease_lasts_its_seconds_on_the_database_clock(store: ResourceStore) -> None:
    """(The fake's clock is moved by the test; the databases' clocks move by themselves.)"""
    store.begin_create(placement("web-1"), Lease("owner", 0.3))
    assert store.claim_stale(Lease("early", 60)) is None
    if isinstance(store, MemoryStore):
        store.clock.advance(1)  # type: ignore[attr-defined]
    else:
        time.sleep(0.5)
    assert store.claim_stale(Lease("late", 60)) is not None


def test_db_pool_size_is_split_between_the_reads_and_the_threads() -> None:
    from placement.store.postgres import pool_sizes

    assert pool_sizes(12) == (4, 8)  # the default
    assert pool_sizes(10) == (3, 7)
    assert pool_sizes(16) == (5, 11)
    assert pool_sizes(3) == (1, 2)
    assert pool_sizes(2) == (1, 1)
    assert pool_sizes(1) == (1, 1)  # at least one each
