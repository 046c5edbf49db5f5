"""The reconciler settles what a crashed or failed operation left behind, by asking the
SPRM (a real stand-in server); on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from placement.config import Database, RetryPolicy, Upstream
from placement.model import Resource, State
from placement.reconciler import Reconciler
from placement.standins import SprmStandIn
from placement.store import Lease, ResourceStore, make_store
from placement.upstream.sprm import SprmClient
from tests.support import wait_for

NOW = datetime.now(UTC)
CRASHED = Lease("crashed-owner", NOW - timedelta(seconds=1))
LIVE = Lease("live-owner", NOW + timedelta(hours=1))


@pytest.fixture
def sprm_standin() -> Iterator[SprmStandIn]:
    standin = SprmStandIn()
    with standin.serve() as server:
        standin.url = server.url  # type: ignore[attr-defined]
        yield standin


@pytest.fixture
def sprm(sprm_standin: SprmStandIn) -> Iterator[SprmClient]:
    client = SprmClient(
        Upstream(sprm_standin.url, 5.0),  # type: ignore[attr-defined]
        RetryPolicy(tries=2, initial=0, maximum=0),
        pool_size=4,
    )
    yield client
    client.close()


@pytest.fixture
def reconciler(store: ResourceStore, sprm: SprmClient) -> Reconciler:
    return Reconciler(store, sprm, lease_seconds=60)


def record(rid: str, state: State, replaces: str | None = None) -> Resource:
    return Resource(
        id=rid,
        catalog_item_instance_id="cat",
        spec={"vcpu": 2},
        provider_name="kubevirt",
        approval_status="APPROVED",
        create_time=NOW,
        update_time=NOW,
        state=state,
        replaces=replaces,
    )


def state_of(store: ResourceStore, rid: str) -> State | None:
    found = store.get(rid)
    return found.state if found else None


def test_provisioning_whose_instance_exists_becomes_ready(
    store: ResourceStore, sprm: SprmClient, reconciler: Reconciler
) -> None:
    store.insert(record("web-1", State.PROVISIONING), CRASHED)
    sprm.create_instance("web-1", "kubevirt", {"vcpu": 2})

    assert reconciler.run_once() == Counter(provisioning_completed=1)
    assert state_of(store, "web-1") is State.READY


def test_provisioning_without_instance_is_undone(
    store: ResourceStore, reconciler: Reconciler
) -> None:
    store.insert(record("web-1", State.PROVISIONING), CRASHED)

    assert reconciler.run_once() == Counter(provisioning_undone=1)
    assert store.get("web-1") is None


def test_operations_still_in_flight_are_left_alone(
    store: ResourceStore, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    store.insert(record("web-1", State.PROVISIONING), LIVE)
    store.insert(record("web-2", State.READY))

    assert reconciler.run_once() == Counter()
    assert sprm_standin.requests == []


def test_an_unreachable_sprm_defers_settling(
    store: ResourceStore, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    store.insert(record("web-1", State.PROVISIONING), CRASHED)
    sprm_standin.fail("get", 503)

    assert reconciler.run_once() == Counter(deferred=1)
    assert state_of(store, "web-1") is State.PROVISIONING

    sprm_standin.reset_faults()
    assert reconciler.run_once() == Counter(provisioning_undone=1)


def test_abandoned_delete_is_completed(
    store: ResourceStore, sprm: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    store.insert(record("web-1", State.DELETING), CRASHED)
    store.insert(record("web-2", State.DELETING), CRASHED)
    sprm.create_instance("web-1", "kubevirt", {})

    assert reconciler.run_once() == Counter(delete_completed=2)
    assert store.get("web-1") is None
    assert store.get("web-2") is None
    assert sprm_standin.instances == {}


def test_delete_the_sprm_refuses_puts_the_resource_back(
    store: ResourceStore, sprm: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    store.insert(record("web-1", State.DELETING), CRASHED)
    sprm.create_instance("web-1", "kubevirt", {})
    sprm_standin.fail("delete", 422)

    assert reconciler.run_once() == Counter(delete_refused=1)
    assert state_of(store, "web-1") is State.READY


def test_rehydration_whose_replacement_exists_is_completed(
    store: ResourceStore, sprm: SprmClient, reconciler: Reconciler, sprm_standin: SprmStandIn
) -> None:
    store.insert(record("old", State.REHYDRATING), CRASHED)
    store.insert(record("new", State.PROVISIONING, replaces="old"), CRASHED)
    sprm.create_instance("old", "kubevirt", {})
    sprm.create_instance("new", "openshift", {})

    done = reconciler.run_once()

    assert done["provisioning_completed"] == 1
    assert store.get("old") is None
    new = store.get("new")
    assert new is not None
    assert (new.state, new.replaces) == (State.READY, None)
    assert set(sprm_standin.instances) == {"new"}
    [deferred] = [r for r in sprm_standin.requests if r.method == "DELETE"]
    assert (deferred.path.rsplit("/", 1)[-1], deferred.query) == ("old", {"deferred": "true"})


def test_rehydration_whose_replacement_failed_is_undone(
    store: ResourceStore, sprm: SprmClient, reconciler: Reconciler
) -> None:
    store.insert(record("old", State.REHYDRATING), CRASHED)
    store.insert(record("new", State.PROVISIONING, replaces="old"), CRASHED)
    sprm.create_instance("old", "kubevirt", {})

    reconciler.run_once()

    assert state_of(store, "old") is State.READY
    assert store.get("new") is None


def test_rehydration_abandoned_before_its_replacement_was_recorded_is_undone(
    store: ResourceStore, reconciler: Reconciler
) -> None:
    store.insert(record("old", State.REHYDRATING), CRASHED)

    assert reconciler.run_once() == Counter(rehydrate_undone=1)
    assert state_of(store, "old") is State.READY


def test_replicas_reconciling_at_once_settle_each_record_once(
    db: Database, store: ResourceStore, sprm: SprmClient, sprm_standin: SprmStandIn
) -> None:
    for n in range(30):
        store.insert(record(f"r{n}", State.DELETING), CRASHED)
    stores = [make_store(db) for _ in range(3)]
    for replica in stores:
        replica.open()
    totals: list[Counter[str]] = []
    threads = [
        threading.Thread(
            target=lambda s=replica: totals.append(Reconciler(s, sprm, 60, batch=7).run_once())
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
    leftovers = Reconciler(store, sprm, 60).run_once()
    assert settled["delete_completed"] + leftovers["delete_completed"] == 30
    deletes = [r for r in sprm_standin.requests if r.method == "DELETE"]
    assert len(deletes) == 30


def test_background_loop_runs_at_start_and_stops(store: ResourceStore, sprm: SprmClient) -> None:
    store.insert(record("web-1", State.PROVISIONING), CRASHED)
    reconciler = Reconciler(store, sprm, 60)

    reconciler.start(interval=3600)
    try:
        wait_for(lambda: store.get("web-1") is None, what="first round")
    finally:
        reconciler.stop()
