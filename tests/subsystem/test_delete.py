"""DELETE /resources/{id}: the SPRM instance first, then the record; the record stays
when the SPRM fails, and goes when the SPRM no longer has the instance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from placement_manager_client import Client

from tests.subsystem.support import (
    INSTANCES_PATH,
    Upstreams,
    all_ids,
    create,
    delete,
    get,
    problem,
    resource,
)


@pytest.fixture
def web_1(client: Client, upstreams: Upstreams) -> str:
    """A resource "web-1", created through the API; the stand-ins' recordings cleared."""
    resource(create(client, "web-1"))
    upstreams.policy.clear()
    upstreams.sprm.clear()
    return "web-1"


def test_delete_removes_the_instance_then_the_record(
    client: Client, upstreams: Upstreams, web_1: str
) -> None:
    upstreams.sprm.hold("delete")
    with ThreadPoolExecutor(1) as pool:
        try:
            deleting = pool.submit(delete, client, web_1)
            upstreams.sprm.wait_held("delete")
            # The SPRM is being asked: the record is still there.
            assert resource(get(client, web_1), 200).id == web_1
        finally:
            upstreams.sprm.release("delete")
        response = deleting.result(timeout=30)

    assert response.status_code == 204
    assert response.content == b""
    [call] = upstreams.sprm_calls()
    assert (call.operation, call.path) == ("delete", f"{INSTANCES_PATH}/{web_1}")
    assert call.query.get("deferred", "false") == "false"
    assert upstreams.instance_ids() == set()
    assert upstreams.evaluations() == []
    problem(get(client, web_1), 404, "not-found")
    assert all_ids(client) == []


def test_delete_of_an_unknown_id_is_404_and_never_calls_the_sprm(
    client: Client, upstreams: Upstreams, web_1: str
) -> None:
    problem(delete(client, "non-existent-id"), 404, "not-found")

    assert upstreams.sprm_calls() == []
    assert all_ids(client) == [web_1]


def test_a_failing_sprm_keeps_the_record_until_the_outcome_is_known(
    client: Client, upstreams: Upstreams, web_1: str
) -> None:
    """A 5xx may follow an act: the delete stays under its lease, and the reconciler
    finishes it once the lease has run out (test_unknown_outcomes.py waits for that)."""
    upstreams.sprm.fail("delete", 500)

    failed = problem(delete(client, web_1), 500, "internal-error")
    assert f"did not confirm deleting {web_1}" in str(failed.detail)

    assert len(upstreams.sprm_calls("delete")) >= 1
    assert resource(get(client, web_1), 200).id == web_1
    assert upstreams.instance_ids() == {web_1}

    upstreams.sprm.reset_faults()
    busy = problem(delete(client, web_1), 409, "resource-conflict")
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
    client: Client, upstreams: Upstreams, web_1: str, sprm_status: int, status: int, kind: str
) -> None:
    upstreams.sprm.fail("delete", sprm_status, detail="instance is busy")

    refused = problem(delete(client, web_1), status, kind)

    assert "instance is busy" in str(refused.detail)
    assert len(upstreams.sprm_calls("delete")) == 1
    assert resource(get(client, web_1), 200).id == web_1
    assert upstreams.instance_ids() == {web_1}


def test_an_instance_the_sprm_no_longer_has_is_already_gone(
    client: Client, upstreams: Upstreams, web_1: str
) -> None:
    upstreams.remove_instance(web_1)  # behind the service's back
    upstreams.sprm.clear()

    response = delete(client, web_1)

    assert response.status_code == 204
    assert [c.operation for c in upstreams.sprm_calls()] == ["delete"]
    problem(get(client, web_1), 404, "not-found")
    assert all_ids(client) == []
