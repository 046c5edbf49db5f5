"""DELETE /resources/{id}: the SPRM instance first, then the record; the record stays
when the SPRM fails, and goes when the SPRM no longer has the instance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from placement_manager_client import Client

from tests.harness.calls import delete, get, resource, resource_ids
from tests.harness.problems import parsed_problem
from tests.harness.standins import INSTANCES_PATH, StandInUpstreams


def test_delete_removes_the_instance_then_the_record(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    suite_standins.sprm.hold("delete")
    with ThreadPoolExecutor(1) as pool:
        try:
            deleting = pool.submit(delete, service_client, web_1)
            suite_standins.sprm.wait_held("delete")
            # The SPRM is being asked: the record is still there.
            assert resource(get(service_client, web_1), 200).id == web_1
        finally:
            suite_standins.sprm.release("delete")
        response = deleting.result(timeout=30)

    assert response.status_code == 204
    assert response.content == b""
    [call] = suite_standins.sprm_calls()
    assert (call.operation, call.path) == ("delete", f"{INSTANCES_PATH}/{web_1}")
    assert call.query.get("deferred", "false") == "false"
    assert suite_standins.instance_ids() == set()
    assert suite_standins.evaluations() == []
    parsed_problem(get(service_client, web_1), 404, "not-found")
    assert resource_ids(service_client) == []


def test_delete_of_an_unknown_id_is_404_and_never_calls_the_sprm(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    parsed_problem(delete(service_client, "non-existent-id"), 404, "not-found")

    assert suite_standins.sprm_calls() == []
    assert resource_ids(service_client) == [web_1]


def test_a_failing_sprm_keeps_the_record_until_the_outcome_is_known(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    """A 5xx may follow an act: the delete stays under its lease, and the reconciler
    finishes it once the lease has run out (test_unknown_outcomes.py waits for that)."""
    suite_standins.sprm.fail("delete", 500)

    failed = parsed_problem(delete(service_client, web_1), 500, "internal-error")
    assert f"did not confirm deleting {web_1}" in str(failed.detail)

    assert len(suite_standins.sprm_calls("delete")) >= 1
    assert resource(get(service_client, web_1), 200).id == web_1
    assert suite_standins.instance_ids() == {web_1}

    suite_standins.sprm.reset_faults()
    busy = parsed_problem(delete(service_client, web_1), 409, "resource-conflict")
    assert busy.detail == f"resource {web_1} is busy (being deleted); retry later"


@pytest.mark.parametrize(
    ("sprm_status", "status", "kind"),
    [
        (400, 400, "validation-error"),
        (409, 409, "resource-conflict"),
        (422, 422, "provider-error"),
    ],
)
def test_an_sprm_refusal_is_passed_on_once_and_keeps_the_record(
    service_client: Client,
    suite_standins: StandInUpstreams,
    web_1: str,
    sprm_status: int,
    status: int,
    kind: str,
) -> None:
    suite_standins.sprm.fail("delete", sprm_status, detail="instance is busy")

    refused = parsed_problem(delete(service_client, web_1), status, kind)

    assert "instance is busy" in str(refused.detail)
    assert len(suite_standins.sprm_calls("delete")) == 1
    assert resource(get(service_client, web_1), 200).id == web_1
    assert suite_standins.instance_ids() == {web_1}


def test_an_instance_the_sprm_no_longer_has_is_already_gone(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    suite_standins.remove_instance(web_1)  # behind the service's back
    suite_standins.sprm.clear()

    response = delete(service_client, web_1)

    assert response.status_code == 204
    assert [c.operation for c in suite_standins.sprm_calls()] == ["delete"]
    parsed_problem(get(service_client, web_1), 404, "not-found")
    assert resource_ids(service_client) == []
