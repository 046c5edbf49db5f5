"""Unknown outcomes over HTTP: the SPRM acts late, never, without saying so, trickles its
answer past the lease, or answers as a newer SPRM; a replaced instance's deferred delete
fails. Whatever it did, the records and the SPRM's instances agree within 30 s, on
PostgreSQL and SQLite, and as each client was told: a create answered with an error left
neither record nor instance.

The service runs with the settings the README gives for this (one try per upstream call,
1 s SPRM timeout, 2 s Policy Engine timeout, 1 s reconcile interval and grace), so an
operation's lease is 3 s."""

from __future__ import annotations

import pytest
from placement_manager_client import Client

from tests.harness.calls import create, delete, get, rehydrate, resource, resource_ids
from tests.harness.concurrency import wait_for
from tests.harness.problems import parsed_problem
from tests.harness.processes import Service
from tests.harness.records import in_flight
from tests.harness.standins import StandInUpstreams

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


def instances(suite_standins: StandInUpstreams) -> set[str]:
    """The instances the SPRM holds and is not deleting."""
    return {
        rid
        for rid, inst in suite_standins.sprm.instances.items()
        if not inst.get("deletion_status")
    }


def agree(service_client: Client, suite_standins: StandInUpstreams, service: Service) -> set[str]:
    """Wait until nothing is in flight and every record has its instance and every
    instance its record; the ids they agree on."""

    def agreed() -> bool:
        return in_flight(service.database) == 0 and set(resource_ids(service_client)) == instances(
            suite_standins
        )

    wait_for(agreed, timeout=AGREEMENT, what="the records and the SPRM to agree")
    return instances(suite_standins)


def test_an_instance_the_sprm_makes_after_the_service_gave_up_is_deleted(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    suite_standins.sprm.hold("create")
    failed = parsed_problem(create(service_client, "late-1"), 500, "internal-error")
    assert "the SPRM did not confirm creating late-1 (no answer)" in str(failed.detail)
    parsed_problem(get(service_client, "late-1"), 404, "not-found")  # as the Go service
    assert resource_ids(service_client) == []
    suite_standins.sprm.release("create")  # the SPRM gets to it now
    assert agree(service_client, suite_standins, service) == set()


def test_a_create_the_sprm_never_makes_is_forgotten(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    suite_standins.sprm.fail("create", 503, times=1)
    parsed_problem(create(service_client, "never-1"), 500, "internal-error")
    parsed_problem(get(service_client, "never-1"), 404, "not-found")
    assert agree(service_client, suite_standins, service) == set()


@pytest.mark.parametrize("fault", ["garble", 503, "hang", "trickle"])
def test_a_create_that_acted_without_saying_so_succeeds(
    service_client: Client, suite_standins: StandInUpstreams, service: Service, fault: str | int
) -> None:
    """A success whose body is not the API's, a 5xx after acting, an answer that never
    comes or that trickles past the call's deadline: the look-up finds the instance."""
    suite_standins.sprm.after_acting("create", fault, times=1)  # type: ignore[arg-type]
    resource(create(service_client, "acted-1"), 201)
    assert agree(service_client, suite_standins, service) == {"acted-1"}


@pytest.mark.parametrize("fault", [500, "trickle"])
def test_a_create_that_acted_and_cannot_be_confirmed_is_undone(
    service_client: Client, suite_standins: StandInUpstreams, service: Service, fault: str | int
) -> None:
    suite_standins.sprm.after_acting("create", fault, times=1)  # type: ignore[arg-type]
    suite_standins.sprm.fail("get", 503, times=1)
    parsed_problem(create(service_client, "acted-2"), 500, "internal-error")
    parsed_problem(get(service_client, "acted-2"), 404, "not-found")
    assert agree(service_client, suite_standins, service) == set()


def test_a_retried_create_takes_over_what_its_failed_try_made(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    """The SPRM acts and answers 500 to every try, and cannot be asked: the client is told
    500; its retry of the same create meets 409 at the SPRM (the instance is there), which
    is a success, and the instance is kept."""
    suite_standins.sprm.after_acting("create", 500)
    suite_standins.sprm.fail("get", 503)
    parsed_problem(create(service_client, "retry-1"), 500, "internal-error")
    suite_standins.sprm.reset_faults()
    assert resource(create(service_client, "retry-1"), 201).id == "retry-1"
    assert agree(service_client, suite_standins, service) == {"retry-1"}
    done = parsed_problem(create(service_client, "retry-1"), 409, "resource-conflict")
    assert done.detail == "resource retry-1 already exists with this spec and is READY"
    other = parsed_problem(
        create(service_client, "retry-1", spec={"cpu": 9}), 409, "resource-conflict"
    )
    assert other.detail == "resource id retry-1 is already in use"


def test_another_create_of_an_id_being_undone_is_told_when_to_retry(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    suite_standins.sprm.hold("create")
    parsed_problem(create(service_client, "undo-1"), 500, "internal-error")
    other = create(service_client, "undo-1", spec={"cpu": 9})
    parsed_problem(other, 409, "resource-conflict")
    assert int(other.headers["Retry-After"]) >= 1
    suite_standins.sprm.release("create")
    assert agree(service_client, suite_standins, service) == set()
    resource(create(service_client, "undo-1", spec={"cpu": 9}), 201)


def test_a_newer_sprm_is_understood(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    """DCM's newer SPRM: instances with agent_name (no provider_name), lower-case
    statuses, 202 to create and delete, deletion_status PENDING_PROVIDER."""
    suite_standins.sprm.speak_newer()
    resource(create(service_client, "new-1"), 201)
    resource(create(service_client, "new-2"), 201)
    assert delete(service_client, "new-1").status_code == 204
    assert resource(rehydrate(service_client, "new-2", "new-3"), 200).id == "new-3"
    assert agree(service_client, suite_standins, service) == {"new-3"}
    assert suite_standins.sprm.instances["new-1"]["deletion_status"] == "PENDING_PROVIDER"


def test_a_delete_the_sprm_makes_late_is_finished(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    resource(create(service_client, "del-1"), 201)
    suite_standins.sprm.hold("delete")
    failed = parsed_problem(delete(service_client, "del-1"), 500, "internal-error")
    assert "did not confirm deleting del-1" in str(failed.detail)
    parsed_problem(delete(service_client, "del-1"), 409, "resource-conflict")  # busy: being deleted
    suite_standins.sprm.release("delete")
    assert agree(service_client, suite_standins, service) == set()


def test_a_delete_whose_answer_was_lost_is_confirmed_at_once(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    resource(create(service_client, "del-2"), 201)
    suite_standins.sprm.after_acting("delete", "hang", times=1)
    assert delete(service_client, "del-2").status_code == 204
    assert agree(service_client, suite_standins, service) == set()


def test_a_replaced_instance_the_sprm_did_not_delete_is_deleted_later(
    service_client: Client, suite_standins: StandInUpstreams, service: Service
) -> None:
    resource(create(service_client, "old-1"), 201)
    suite_standins.sprm.fail("delete", 503, times=1)  # the deferred delete never reaches the queue
    assert resource(rehydrate(service_client, "old-1", "new-1"), 200).id == "new-1"
    parsed_problem(get(service_client, "old-1"), 404, "not-found")  # gone at once for clients
    assert resource_ids(service_client) == ["new-1"]
    assert agree(service_client, suite_standins, service) == {"new-1"}
