"""Unknown outcomes over HTTP: the SPRM acts late, never, without saying so, or with a
garbled answer; a replaced instance's deferred delete fails. Whatever it did, the records
and the SPRM's instances agree within 30 s, on PostgreSQL and SQLite.

The service runs with the settings the README gives for this (one try per upstream call,
1 s SPRM timeout, 2 s Policy Engine timeout, 1 s reconcile interval and grace), so an
operation's lease is 3 s."""

from __future__ import annotations

import pytest
from placement_manager_client import Client

from tests.subsystem.conftest import Service
from tests.subsystem.support import (
    Upstreams,
    all_ids,
    create,
    delete,
    get,
    problem,
    rehydrate,
    resource,
)
from tests.support import wait_for

SERVICE_ENV = {
    "UPSTREAM_RETRY_MAX_TRIES": "1",
    "RECONCILE_INTERVAL": "1s",
    "RECONCILE_GRACE": "1s",
    "SP_RESOURCE_MANAGER_TIMEOUT": "1s",
    "POLICY_MANAGER_EVALUATION_TIMEOUT": "2s",
    "SVC_LOG_LEVEL": "info",
    "LOG_FORMAT": "text",
}
AGREEMENT = 30.0  # seconds within which the records and the SPRM must agree


def instances(upstreams: Upstreams) -> set[str]:
    """The instances the SPRM holds and is not deleting."""
    return {
        rid for rid, inst in upstreams.sprm.instances.items() if not inst.get("deletion_status")
    }


def agree(client: Client, upstreams: Upstreams, service: Service) -> set[str]:
    """Wait until nothing is in flight and every record has its instance and every
    instance its record; the ids they agree on."""

    def agreed() -> bool:
        return service.backend.in_flight() == 0 and set(all_ids(client)) == instances(upstreams)

    wait_for(agreed, timeout=AGREEMENT, what="the records and the SPRM to agree")
    return instances(upstreams)


def test_an_instance_the_sprm_makes_after_the_service_gave_up_is_tracked(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    upstreams.sprm.hold("create")
    failed = problem(create(client, "late-1"), 500, "internal-error")
    assert "the SPRM did not confirm creating late-1 (no answer)" in str(failed.detail)
    assert get(client, "late-1").status_code == 200  # PROVISIONING, under its lease
    upstreams.sprm.release("create")  # the SPRM gets to it now
    assert agree(client, upstreams, service) == {"late-1"}


def test_a_create_the_sprm_never_makes_is_forgotten(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    upstreams.sprm.fail("create", 503, times=1)
    problem(create(client, "never-1"), 500, "internal-error")
    assert agree(client, upstreams, service) == set()
    problem(get(client, "never-1"), 404, "not-found")


@pytest.mark.parametrize("fault", ["garble", 503, "hang"])
def test_a_create_that_acted_without_saying_so_succeeds(
    client: Client, upstreams: Upstreams, service: Service, fault: str | int
) -> None:
    upstreams.sprm.after_acting("create", fault, times=1)  # type: ignore[arg-type]
    resource(create(client, "acted-1"), 201)
    assert agree(client, upstreams, service) == {"acted-1"}


def test_a_garbled_success_nobody_can_confirm_yet_is_settled_later(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    upstreams.sprm.after_acting("create", "garble", times=1)
    upstreams.sprm.fail("get", 503, times=1)
    failed = problem(create(client, "garbled-1"), 500, "internal-error")
    assert "(HTTP 201 with a body that does not match its API)" in str(failed.detail)
    assert agree(client, upstreams, service) == {"garbled-1"}


def test_a_retried_create_is_told_how_its_resource_stands(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    upstreams.sprm.hold("create")
    problem(create(client, "retry-1"), 500, "internal-error")
    pending = problem(create(client, "retry-1"), 409, "resource-conflict")
    assert "still being provisioned" in str(pending.detail)
    upstreams.sprm.release("create")
    assert agree(client, upstreams, service) == {"retry-1"}
    done = problem(create(client, "retry-1"), 409, "resource-conflict")
    assert done.detail == "resource retry-1 already exists with this spec and is READY"
    other = problem(create(client, "retry-1", spec={"cpu": 9}), 409, "resource-conflict")
    assert other.detail == "resource id retry-1 is already in use"


def test_a_delete_the_sprm_makes_late_is_finished(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    resource(create(client, "del-1"), 201)
    upstreams.sprm.hold("delete")
    failed = problem(delete(client, "del-1"), 500, "internal-error")
    assert "did not confirm deleting del-1" in str(failed.detail)
    problem(delete(client, "del-1"), 409, "resource-conflict")  # busy: being deleted
    upstreams.sprm.release("delete")
    assert agree(client, upstreams, service) == set()


def test_a_delete_whose_answer_was_lost_is_confirmed_at_once(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    resource(create(client, "del-2"), 201)
    upstreams.sprm.after_acting("delete", "hang", times=1)
    assert delete(client, "del-2").status_code == 204
    assert agree(client, upstreams, service) == set()


def test_a_replaced_instance_the_sprm_did_not_delete_is_deleted_later(
    client: Client, upstreams: Upstreams, service: Service
) -> None:
    resource(create(client, "old-1"), 201)
    upstreams.sprm.fail("delete", 503, times=1)  # the deferred delete never reaches the queue
    assert resource(rehydrate(client, "old-1", "new-1"), 200).id == "new-1"
    problem(get(client, "old-1"), 404, "not-found")  # gone at once for clients
    assert all_ids(client) == ["new-1"]
    assert agree(client, upstreams, service) == {"new-1"}
