"""The drift audit (scan, repairs, the in-service auditor) on PostgreSQL and SQLite,
against the SPRM stand-in, with instances and records changed behind the service's back.
Pages are small here (4 instances) so that every case spans several."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from placement_dev.standins import SprmStandIn
from prometheus_client import REGISTRY

from placement.flows.drift import Findings, Repairs, scan
from placement.flows.drift_monitor import Auditor
from placement.model import Placement, State
from placement.store import Lease, ResourceStore
from placement.store.drift import DriftStore
from placement.upstream.sprm import SprmClient
from tests.harness.concurrency import wait_for
from tests.harness.records import put_record

OLD = datetime.now(UTC) - timedelta(hours=1)
GRACE = 60.0
PAGE = 4


@pytest.fixture
def drift(store: ResourceStore) -> DriftStore:
    return DriftStore(store)


def add_records(
    store: ResourceStore,
    *ids: str,
    state: State = State.READY,
    created: datetime = OLD,
    lease: Lease | None = None,
) -> None:
    for rid in ids:
        put_record(store, rid, created, state, lease)


def add_instances(
    sprm_standin: SprmStandIn, *ids: str, created: datetime | None = OLD, **extra: str
) -> None:
    when = None if created is None else created.isoformat()
    sprm_standin.put_instances([{"id": rid, "create_time": when, **extra} for rid in ids])


def in_step(store: ResourceStore, sprm_standin: SprmStandIn, *ids: str) -> None:
    """Records and their instances, as the service leaves them."""
    add_records(store, *ids)
    add_instances(sprm_standin, *ids)


def audit(drift: DriftStore, sprm_client: SprmClient, grace: float = GRACE) -> Findings:
    return scan(drift, sprm_client, grace, page_size=PAGE)


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:02d}" for n in range(count)]


def test_lists_exactly_the_orphans_and_the_missing_across_pages(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    in_step(store, sprm_standin, *ids("ok", 9))
    add_instances(sprm_standin, "orphan-b", "orphan-a", "orphan-c")  # no records
    add_records(store, "missing-b", "missing-a")  # no instances

    found = audit(drift, sprm_client)

    assert found.to_json() == {
        "orphaned_instances": ["orphan-a", "orphan-b", "orphan-c"],
        "missing_instances": ["missing-a", "missing-b"],
        "stuck_operations": [],
        "deleted_by_provider": [],
        "invalid_ids": [],
        "checked": {"instances": 12, "records": 11},
    }
    assert len([r for r in sprm_standin.requests if r.operation == "list"]) == 3


def test_nothing_to_report_when_they_agree(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    in_step(store, sprm_standin, *ids("ok", 8))  # exactly two full pages
    assert audit(drift, sprm_client).to_json() == {
        "orphaned_instances": [],
        "missing_instances": [],
        "stuck_operations": [],
        "deleted_by_provider": [],
        "invalid_ids": [],
        "checked": {"instances": 8, "records": 8},
    }
    empty = DriftStore(store)
    sprm_standin.forget_all()
    assert audit(empty, sprm_client).missing_instances == ids("ok", 8)


def test_young_instances_and_records_are_left_to_their_operations(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    now = datetime.now(UTC)
    add_instances(sprm_standin, "young-instance", created=now)
    add_instances(sprm_standin, "no-create-time", created=None)  # counts as old
    add_records(store, "young-record", created=now)
    add_records(store, "old-record")

    found = audit(drift, sprm_client)

    assert found.orphaned_instances == ["no-create-time"]
    assert found.missing_instances == ["old-record"]
    assert audit(drift, sprm_client, grace=0).orphaned_instances == [
        "no-create-time",
        "young-instance",
    ]


def test_scheduled_deletions_are_not_orphans_failed_ones_are(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    add_instances(sprm_standin, "being-deleted", deletion_status="SCHEDULED")
    add_instances(sprm_standin, "with-provider", deletion_status="PENDING_PROVIDER")
    add_instances(sprm_standin, "deletion-failed", deletion_status="FAILED")
    add_instances(sprm_standin, "deleted", deletion_status="DELETED")
    assert audit(drift, sprm_client).orphaned_instances == ["deletion-failed"]


def test_a_record_whose_instance_the_newer_sprm_deleted_is_missing(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    in_step(store, sprm_standin, "gone", "going")
    add_instances(sprm_standin, "gone", deletion_status="DELETED")
    add_instances(sprm_standin, "going", deletion_status="PENDING_PROVIDER")
    found = audit(drift, sprm_client)
    assert (found.missing_instances, found.orphaned_instances) == (["gone"], [])
    said: list[str] = []
    assert Repairs(drift, sprm_client, found, GRACE, said.append).forget_missing() == []
    assert store.get("gone") is None
    assert said == ["forgot record gone: its instance is gone"]


def test_a_pending_undo_is_a_record_then_a_stuck_operation(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    """The instance a failed create may have made is the undo's: never an orphan to
    delete; past the undo's lease, it is a stuck operation and the oldest in flight."""
    placement = Placement("undone", "cat", {"n": 1}, "p", "APPROVED")
    store.begin_create(placement, Lease("op", -120))
    assert store.abandon_create("undone", "op")
    add_instances(sprm_standin, "undone")

    found = audit(drift, sprm_client)

    assert (found.orphaned_instances, found.stuck_operations) == ([], ["undone"])
    said: list[str] = []
    Repairs(drift, sprm_client, found, GRACE, said.append).delete_orphans(max_deletes=100)
    assert set(sprm_standin.instances) == {"undone"}
    now, oldest = drift.oldest_operation(lease_seconds=60)
    assert oldest is not None
    assert (now - oldest).total_seconds() >= 180


def test_a_pending_deletion_of_a_replaced_instance_is_not_an_orphan(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    """A rehydration's old instance, whose deferred delete the reconciler has still to
    send again, has no record; it is work in progress (a stuck operation once its lease
    has run out), never an orphan to delete."""
    put_record(store, "old", OLD)
    placement = Placement("new", "cat", {"n": 1}, "p", "APPROVED", replaces="old")
    store.begin_rehydrate(placement, Lease("op", 3600))
    store.finish_rehydrate("new", "old", Lease("op", -1))
    add_instances(sprm_standin, "old", "new")

    found = audit(drift, sprm_client)

    assert found.orphaned_instances == []
    assert found.stuck_operations == ["old"]
    said: list[str] = []
    Repairs(drift, sprm_client, found, GRACE, said.append).delete_orphans(max_deletes=100)
    assert set(sprm_standin.instances) == {"old", "new"}


def test_an_instance_deleted_behind_our_back_is_missing(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    in_step(store, sprm_standin, *ids("r", 6))
    sprm_client.delete_instance("r-03")  # soft-deleted in the SPRM: only show_deleted sees it
    assert sprm_client.get_instance("r-03") is not None
    assert audit(drift, sprm_client).missing_instances == ["r-03"]


def test_stuck_operations_are_those_past_their_lease(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    expired = Lease("gone", -5)
    live = Lease("busy", 3600)
    add_records(store, "stuck-provisioning", state=State.PROVISIONING, lease=expired)
    add_records(store, "stuck-deleting", state=State.DELETING, lease=None)
    add_records(store, "in-flight", state=State.REHYDRATING, lease=live)
    add_records(store, "ready-old-lease", lease=expired)
    add_instances(sprm_standin, "ready-old-lease")

    found = audit(drift, sprm_client)

    assert found.stuck_operations == ["stuck-deleting", "stuck-provisioning"]
    assert found.missing_instances == []  # records in flight are not missing instances
    now, oldest = drift.oldest_operation(lease_seconds=60)
    assert oldest is not None
    assert (now - oldest).total_seconds() >= 60  # stuck-provisioning's lease began >65 s ago


def test_no_operation_in_flight_has_no_oldest(store: ResourceStore, drift: DriftStore) -> None:
    add_records(store, "ready")
    assert drift.oldest_operation(lease_seconds=60)[1] is None


def test_records_deleted_with_their_instance_during_the_scan_are_not_orphans(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    """Each page is checked against the records as it arrives: a delete that completes
    while later pages are read is not drift."""
    in_step(store, sprm_standin, *ids("r", 10))
    pages = 0

    def delete_listed() -> None:
        nonlocal pages
        if pages == 0:
            sprm_client.delete_instance("r-00")
            assert store.begin_delete("r-00", Lease("op", 3600)) is not None
            assert store.finish_delete("r-00", "op")
        pages += 1

    found = scan(drift, sprm_client, GRACE, page_size=PAGE, on_page=delete_listed)

    assert (found.orphaned_instances, found.missing_instances) == ([], [])


def test_repairs_delete_orphans_and_forget_records_then_nothing_is_left(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    in_step(store, sprm_standin, *ids("ok", 5))
    add_instances(sprm_standin, *ids("orphan", 5))
    add_records(store, *ids("missing", 5))
    said: list[str] = []
    repairs = Repairs(drift, sprm_client, audit(drift, sprm_client), GRACE, said.append)

    assert repairs.delete_orphans(max_deletes=100) == []
    assert repairs.forget_missing() == []

    assert said == [f"deleted orphaned instance {rid}" for rid in ids("orphan", 5)] + [
        f"forgot record {rid}: its instance is gone" for rid in ids("missing", 5)
    ]
    assert set(sprm_standin.instances) == set(ids("ok", 5))
    assert all(store.get(rid) is None for rid in ids("missing", 5))
    assert audit(drift, sprm_client).counts() == dict.fromkeys(
        ("orphaned_instances", "missing_instances", "stuck_operations", "deleted_by_provider"), 0
    )


def test_instances_their_provider_deleted_are_reported_and_never_forgotten(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    """A READY record whose provider reported its instance DELETED (any case) while the
    SPRM still lists it: reported under its own key, counted, left alone by the repairs.
    One the SPRM no longer has either is missing only."""
    in_step(store, sprm_standin, "ok-1", "gone-1", "gone-2")
    add_records(store, "gone-3")  # no instance at the SPRM either
    moment = datetime.now(UTC)
    for rid, status in (("gone-1", "DELETED"), ("gone-2", "deleted"), ("gone-3", "DELETED")):
        assert store.apply_status(rid, status, None, moment, 1) == "applied"
    assert store.apply_status("ok-1", "RUNNING", None, moment, 1) == "applied"

    found = audit(drift, sprm_client)
    assert found.deleted_by_provider == ["gone-1", "gone-2"]
    assert found.missing_instances == ["gone-3"]
    assert found.counts()["deleted_by_provider"] == 2

    repairs = Repairs(drift, sprm_client, found, GRACE, lambda line: None)
    assert repairs.forget_missing() == []
    assert store.get("gone-1") is not None
    assert store.get("gone-2") is not None
    assert store.get("gone-3") is None


def test_repairs_leave_items_that_changed_since_the_scan(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    add_instances(sprm_standin, "now-recorded", "now-gone", "now-scheduled", "recreated", "orphan")
    add_records(store, "came-back", "now-busy", "still-missing")
    found = audit(drift, sprm_client)
    assert len(found.orphaned_instances) == 5
    assert len(found.missing_instances) == 3
    # Meanwhile, the service and the SPRM go on working.
    add_records(store, "now-recorded")
    sprm_standin.forget("now-gone")
    add_instances(sprm_standin, "now-scheduled", deletion_status="SCHEDULED")
    add_instances(sprm_standin, "recreated", created=datetime.now(UTC))
    add_instances(sprm_standin, "came-back")
    live = Lease("a-delete", 3600)
    assert store.begin_delete("now-busy", live)
    said: list[str] = []
    repairs = Repairs(drift, sprm_client, found, GRACE, said.append)

    assert repairs.delete_orphans(max_deletes=100) == []
    assert repairs.forget_missing() == []

    assert sorted(said) == [
        "deleted orphaned instance orphan",
        "forgot record still-missing: its instance is gone",
        "kept orphaned instance now-gone: already gone",
        "kept orphaned instance now-recorded: it has a record (or a pending deletion) now",
        "kept orphaned instance now-scheduled: the SPRM is deleting it",
        "kept orphaned instance recreated: created again since the scan began",
        "kept record came-back: its instance exists",
        "kept record now-busy: it changed (gone, busy or no longer READY)",
    ]
    assert set(sprm_standin.instances) == {
        "now-recorded",
        "now-scheduled",
        "recreated",
        "came-back",
    }
    came_back = store.get("came-back")
    assert came_back is not None
    assert came_back.state is State.READY
    assert store.begin_delete("came-back", live)
    busy = store.get("now-busy")
    assert busy is not None
    assert busy.state is State.DELETING


def test_deletes_are_capped_and_only_resource_ids_are_deleted(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    add_instances(sprm_standin, "a-1", "a-2", "a-3", "Not_A_Resource_Id", "nl-1\n")
    said: list[str] = []
    repairs = Repairs(drift, sprm_client, audit(drift, sprm_client), GRACE, said.append)

    assert repairs.delete_orphans(max_deletes=2) == ["Not_A_Resource_Id", "a-3", "nl-1\n"]

    assert said == [
        "kept orphaned instance 'Not_A_Resource_Id': not a resource id",
        "deleted orphaned instance a-1",
        "deleted orphaned instance a-2",
        "kept orphaned instance a-3: --max-deletes 2",
        "kept orphaned instance 'nl-1\\n': not a resource id",  # the whole id is matched
    ]
    assert set(sprm_standin.instances) == {"a-3", "Not_A_Resource_Id", "nl-1\n"}


def test_a_refused_delete_is_reported_and_still_drift(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient, drift: DriftStore
) -> None:
    add_instances(sprm_standin, "refused")
    sprm_standin.fail("delete", 422, detail="the provider says no")
    said: list[str] = []
    repairs = Repairs(drift, sprm_client, audit(drift, sprm_client), GRACE, said.append)

    assert repairs.delete_orphans(max_deletes=100) == ["refused"]
    [line] = said
    assert line.startswith("failed to delete orphaned instance refused: ")
    assert "the provider says no" in line


def test_the_audit_lease_has_one_holder_at_a_time(drift: DriftStore) -> None:
    assert drift.take_lease("one", 30)
    assert not drift.take_lease("two", 30)
    assert drift.take_lease("one", 0.2)  # the holder renews (here: shortens) it
    wait_for(lambda: drift.take_lease("two", 30), timeout=20, what="the lease to expire")
    assert not drift.take_lease("one", 30)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_one_auditor_audits_and_every_one_publishes(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient
) -> None:
    in_step(store, sprm_standin, *ids("ok", 5))
    add_instances(sprm_standin, "orphan-1", "orphan-2")
    add_records(store, "missing-1")
    expired = Lease("gone", -1)
    add_records(store, "stuck-1", state=State.DELETING, lease=expired)
    first = Auditor(store, sprm_client, interval=60, lease_seconds=GRACE)
    second = Auditor(store, sprm_client, interval=60, lease_seconds=GRACE)

    assert first.run_once()
    lists = len([r for r in sprm_standin.requests if r.operation == "list"])
    assert not second.run_once()  # publishes the first one's counts
    assert len([r for r in sprm_standin.requests if r.operation == "list"]) == lists

    assert sample("placement_drift", kind="orphaned_instances") == 2
    assert sample("placement_drift", kind="missing_instances") == 1
    assert sample("placement_drift", kind="stuck_operations") == 1
    age = sample("placement_oldest_operation_age_seconds")
    assert age is not None
    assert age >= GRACE
    finished = sample("placement_drift_audit_finish_time_seconds")
    assert finished is not None
    assert abs(finished - time.time()) < 600
    assert first.run_once()  # the holder keeps its lease from one round to the next


def test_an_auditor_stops_in_the_middle_of_a_scan(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_client: SprmClient
) -> None:
    add_instances(sprm_standin, *ids("i", 40))
    sprm_standin.delay("list", 0.05)
    auditor = Auditor(store, sprm_client, interval=3600, lease_seconds=GRACE, page_size=PAGE)
    auditor.start()
    wait_for(lambda: any(r.operation == "list" for r in sprm_standin.requests), what="a list call")
    auditor.stop()  # returns: the scan stopped after its page, not after all 40 pages
    assert len([r for r in sprm_standin.requests if r.operation == "list"]) < 40 // PAGE
