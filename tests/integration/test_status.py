"""The providers' status as the API shows it, on PostgreSQL and SQLite: the status the
SPRM's create answer gave, then the status events the store applies (newest wins, one
statement), on GET and in the list, and the list's `status` filter with its page tokens.
The NATS side is tested in test_events_consumer.py and tests/subsystem/status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from placement_manager_client import Client
from placement_manager_client.api.resource import get_resource, list_resources
from placement_manager_client.types import UNSET

from placement.store import ResourceStore
from tests.harness.calls import body, create
from tests.harness.mocked import MockedUpstreams
from tests.harness.problems import assert_problem

GO_FIELDS = {
    "id",
    "path",
    "provider_name",
    "catalog_item_instance_id",
    "spec",
    "approval_status",
    "create_time",
    "update_time",
}


def made(client: Client, mocked: MockedUpstreams, rid: str, status: str | None = None) -> Any:
    """Create `rid`; the SPRM's answer carries `status` when given."""
    mocked.policy()
    answer: dict[str, Any] = {"id": rid, "provider_name": "kubevirt", "spec": {}}
    if status is not None:
        answer["status"] = status
    mocked.sprm_create(body=answer)
    response = create(client, rid)
    assert response.status_code == 201, response.content
    return body(response)


def shown(client: Client, rid: str) -> dict[str, Any]:
    response = get_resource.sync_detailed(rid, client=client)
    assert response.status_code == 200, response.content
    found: dict[str, Any] = body(response)
    return found


def listed(client: Client, status: str, size: int = 100, token: str = "") -> Any:
    return list_resources.sync_detailed(
        client=client, status=status, max_page_size=size, page_token=token or UNSET
    )


def test_a_resource_without_a_provider_status_has_the_go_fields_only(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    created = made(client, mocked_upstreams, "plain-1")
    assert set(created) == GO_FIELDS
    assert set(shown(client, "plain-1")) == GO_FIELDS


def test_the_create_answers_status_is_shown_as_of_the_creation(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    created = made(client, mocked_upstreams, "vm-1", status="PROVISIONING")
    assert created["status"] == "PROVISIONING"
    assert created["status_time"] == created["create_time"]
    assert "status_message" not in created
    assert {k: v for k, v in shown(client, "vm-1").items() if k.startswith("status")} == {
        "status": "PROVISIONING",
        "status_time": created["create_time"],
    }


def test_the_newest_event_wins_whatever_the_order(
    client: Client, mocked_upstreams: MockedUpstreams, store: ResourceStore
) -> None:
    made(client, mocked_upstreams, "vm-2", status="PROVISIONING")
    later = datetime.now(UTC) + timedelta(seconds=5)
    apply = store.apply_status

    assert apply("vm-2", "RUNNING", "booted", later, 7) == "applied"
    assert apply("vm-2", "STOPPED", None, later - timedelta(seconds=1), 9) == "stale"  # older
    assert apply("vm-2", "PAUSED", None, later, 6) == "stale"  # same time, earlier sequence
    assert apply("vm-2", "RUNNING", "booted", later, 7) == "stale"  # a redelivery
    assert apply("vm-2", "FAILED", None, later - timedelta(days=1), 99) == "stale"  # pre-dates it
    assert apply("nobody", "RUNNING", None, later, 1) == "unknown"

    found = shown(client, "vm-2")
    assert (found["status"], found["status_message"]) == ("RUNNING", "booted")
    # (the wire's time has the precision the Go service's times have)
    assert abs(datetime.fromisoformat(found["status_time"]) - later) < timedelta(seconds=1)
    assert apply("vm-2", "Stopped", None, later, 8) == "applied"  # same time, later sequence
    assert shown(client, "vm-2")["status"] == "Stopped"  # stored as sent
    assert "status_message" not in shown(client, "vm-2")


def test_the_list_filters_on_the_status_without_case_across_pages(
    client: Client, mocked_upstreams: MockedUpstreams, store: ResourceStore
) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=5)
    for n, status in enumerate(["FAILED", "RUNNING", "failed", "Failed", "RUNNING"]):
        made(client, mocked_upstreams, f"r-{n}")
        assert store.apply_status(f"r-{n}", status, None, moment, n) == "applied"

    ids: list[str] = []
    token = ""
    for _ in range(10):
        page = body(listed(client, "FaIlEd", size=1, token=token))
        ids += [r["id"] for r in page["resources"]]
        token = page.get("next_page_token", "")
        if not token:
            break
    assert ids == ["r-0", "r-2", "r-3"]
    assert [r["id"] for r in body(listed(client, "running"))["resources"]] == ["r-1", "r-4"]
    assert body(listed(client, "DELETED"))["resources"] == []

    first = body(listed(client, "failed", size=1))
    other = listed(client, "RUNNING", size=1, token=first["next_page_token"])
    problem = assert_problem(other, 400, "validation-error")
    assert problem["detail"] == "page_token was issued for a different status filter"
    unfiltered = body(list_resources.sync_detailed(client=client, max_page_size=1))[
        "next_page_token"
    ]
    assert_problem(listed(client, "FAILED", size=1, token=unfiltered), 400, "validation-error")
