"""The reconciler settles what a crashed or failed operation left behind, by asking the
SPRM (a real stand-in server, through the real client); on PostgreSQL and SQLite. (Its
decisions, case by case and on a fake clock, are in tests/unit/test_service.py.)"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from placement_dev.standins import SprmStandIn

from placement.config import Database
from placement.flows.reconciler import Reconciler
from placement.model import Placement, State
from placement.store import Lease, ResourceStore, make_store
from placement.upstream.sprm import SprmClient
from tests.harness.concurrency import wait_for

CRASHED = Lease("crashed-owner", -1)
LIVE = Lease("live-owner", 3600)


@pytest.fixture
def reconciler(store: ResourceStore, sprm_client: SprmClient) -> Reconciler:
    return Reconciler(store, sprm_client, lease_seconds=60)


def placement(rid: str, replaces: str | None = None) -> Placement:
    return Placement(rid, "cat", {"vcpu": 2}, "kubevirt", "APPROVED", replaces)


def provisioning(store: ResourceStore, rid: str, lease: Lease = CRASHED) -> None:
    store.begin_create(placement(rid), lease)


def ready(store: ResourceStore, rid: str) -> None:
    store.begin_create(placement(rid), LIVE)
    store.finish_create(rid, LIVE.owner)


def deleting(store: ResourceStore, rid: str) -> None:
    ready(store, rid)
    store.begin_delete(rid, CRASHED)


def rehydrating(store: ResourceStore, old: str, new: str) -> None:
    ready(store, old)
    store.begin_rehydrate(placement(new, replaces=old), CRASHED)


def state_of(store: ResourceStore, rid: str) -> State | None:
    found = store.get(rid)
    return found.state if found else None


def test_provisioning_whose_instance_exists_becomes_ready(
    store: ResourceStore, sprm_client: SprmClient, reconciler: Reconciler
) -> None:
    provisioning(store, "web-1")
    sprm_client.create_instance("web-1", "kubevirt", {"vcpu": 2})

    assert reconciler.run_once() == Counter(provisioning_completed=1)
    assert state_of(store, "web-1") is State.READY


def test_provisioning_without_instance_is_undone(
    store: ResourceStore, reconciler: Reconciler
) -> None:
    provisioning(store, "web-1")

    assert reconciler.run_once() == Counter(provisioning_undone=1)
    assert store.get("web-1") is None


def test_operations_still_in_flight_are_left_alone(
    store: ResourceStore, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    provisioning(store, "web-1", LIVE)
    ready(store, "web-2")

    assert reconciler.run_once() == Counter()
    assert sprm_standin.requests == []


def test_an_unreachable_sprm_defers_settling(
    store: ResourceStore, sprm_client: SprmClient, sprm_standin: SprmStandIn
) -> None:
    provisioning(store, "web-1")
    sprm_standin.fail("get", 503)

    reconciler = Reconciler(store, sprm_client, lease_seconds=60, retry_seconds=0.2)
    assert reconciler.run_once() == Counter(deferred=1)
    assert state_of(store, "web-1") is State.PROVISIONING

    sprm_standin.reset_faults()
    assert reconciler.run_once() == Counter()  # asked again after retry_seconds
    wait_for(lambda: reconciler.run_once() == Counter(provisioning_undone=1), what="retry")


def test_abandoned_delete_is_completed(
    store: ResourceStore, sprm_client: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    deleting(store, "web-1")
    deleting(store, "web-2")
    sprm_client.create_instance("web-1", "kubevirt", {})

    assert reconciler.run_once() == Counter(delete_completed=2)
    assert store.get("web-1") is None
    assert store.get("web-2") is None
    assert sprm_standin.instances == {}


def test_delete_the_sprm_refuses_puts_the_resource_back(
    store: ResourceStore, sprm_client: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    deleting(store, "web-1")
    sprm_client.create_instance("web-1", "kubevirt", {})
    sprm_standin.fail("delete", 422)

    assert reconciler.run_once() == Counter(delete_refused=1)
    assert state_of(store, "web-1") is State.READY


def test_rehydration_whose_replacement_exists_is_completed(
    store: ResourceStore, sprm_client: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    rehydrating(store, "old", "new")
    sprm_client.create_instance("old", "kubevirt", {})
    sprm_client.create_instance("new", "openshift", {})

    assert reconciler.run_once() == Counter(rehydrate_completed=1)
    assert store.get("old") is None
    new = store.get("new")
    assert new is not None
    assert (new.state, new.replaces) == (State.READY, None)
    assert set(sprm_standin.instances) == {"new"}
    [deferred] = [r for r in sprm_standin.requests if r.method == "DELETE"]
    assert (deferred.path.rsplit("/", 1)[-1], deferred.query) == ("old", {"deferred": "true"})


def test_rehydration_whose_replacement_failed_is_undone(
    store: ResourceStore, sprm_client: SprmClient, reconciler: Reconciler
) -> None:
    rehydrating(store, "old", "new")
    sprm_client.create_instance("old", "kubevirt", {})

    assert reconciler.run_once() == Counter(rehydrate_undone=1)
    assert state_of(store, "old") is State.READY
    assert store.get("new") is None


def test_rehydration_abandoned_before_its_replacement_was_recorded_is_undone(
    store: ResourceStore, reconciler: Reconciler
) -> None:
    rehydrating(store, "old", "new")
    store.undo_create("new", CRASHED.owner)  # (as an earlier version could leave it)

    assert reconciler.run_once() == Counter(rehydrate_undone=1)
    assert state_of(store, "old") is State.READY


def test_replicas_reconciling_at_once_settle_each_record_once(
    db: Database, store: ResourceStore, sprm_client: SprmClient, sprm_standin: SprmStandIn
) -> None:
    for n in range(30):
        deleting(store, f"r{n}")
    stores = [make_store(db) for _ in range(3)]
    for replica in stores:
        replica.open()
    totals: list[Counter[str]] = []
    threads = [
        threading.Thread(
            target=lambda s=replica: totals.append(
                Reconciler(s, sprm_client, 60, 1, batch=7).run_once()
            )
        )
        for replica in stores
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in stores:
        replica.close()

    settled = sum(totals, Counter())
    leftovers = Reconciler(store, sprm_client, 60).run_once()
    assert settled["delete_completed"] + leftovers["delete_completed"] == 30
    deletes = [r for r in sprm_standin.requests if r.method == "DELETE"]
    assert len(deletes) == 30


def test_background_loop_runs_at_start_and_stops(
    store: ResourceStore, sprm_client: SprmClient
) -> None:
    provisioning(store, "web-1")
    reconciler = Reconciler(store, sprm_client, 60)

    reconciler.start(interval=3600)
    try:
        wait_for(lambda: store.get("web-1") is None, what="first round")
    finally:
        reconciler.stop()


def test_a_pending_deletion_is_retried_until_the_sprm_takes_it(
    store: ResourceStore, sprm_client: SprmClient, sprm_standin: SprmStandIn
) -> None:
    ready(store, "old")
    store.begin_rehydrate(placement("new", replaces="old"), LIVE)
    store.finish_rehydrate("new", "old", Lease(LIVE.owner, -1))  # its delete never happened
    sprm_client.create_instance("old", "kubevirt", {})
    sprm_client.create_instance("new", "kubevirt", {})
    sprm_standin.fail("delete", 503, times=2)  # both tries of the first round fail
    reconciler = Reconciler(store, sprm_client, lease_seconds=0.3)

    assert reconciler.run_once() == Counter(deferred=1)
    assert set(sprm_standin.instances) == {"old", "new"}
    assert reconciler.run_once() == Counter()  # under that round's lease still
    wait_for(lambda: reconciler.run_once() == Counter(retire_completed=1), what="retry")
    assert set(sprm_standin.instances) == {"new"}
    [(old, _)] = [(r.path, r.query) for r in sprm_standin.requests if r.method == "DELETE"][-1:]
    assert old.endswith("/old")
