"""GET /resources/{id} and GET /resources: records as created, listed in creation order,
page by page with opaque tokens that never skip or repeat a resource."""

from __future__ import annotations

import pytest
from placement_manager_client import Client
from placement_manager_client.api.resource import list_resources
from placement_manager_client.types import UNSET, Unset

from tests.harness.calls import create, delete, get, page, resource, resource_ids
from tests.harness.problems import parsed_problem
from tests.harness.standins import StandInUpstreams, rules


def test_get_returns_the_resource_as_created(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    created = resource(create(service_client, None, catalog_item_instance_id="catalog-g1"))
    suite_standins.sprm.clear()

    found = resource(get(service_client, str(created.id)), 200)

    assert found == created
    assert found.catalog_item_instance_id == "catalog-g1"
    assert suite_standins.sprm_calls() == []  # reading asks no upstream


def test_get_of_an_unknown_id_is_404(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    missing = parsed_problem(get(service_client, "non-existent-id"), 404, "not-found")

    assert "non-existent-id" in str(missing.detail)
    assert suite_standins.evaluations() == []
    assert suite_standins.sprm_calls() == []


def test_list_is_empty_at_first_then_shows_what_was_created(service_client: Client) -> None:
    empty = page(service_client)
    assert empty.resources == []
    assert isinstance(empty.next_page_token, Unset)

    for n in range(3):
        resource(create(service_client, f"r{n}"))

    listed = page(service_client)
    assert [r.id for r in listed.resources] == ["r0", "r1", "r2"]
    assert isinstance(listed.next_page_token, Unset)
    assert listed.resources[1] == resource(get(service_client, "r1"), 200)


def test_pages_follow_tokens_without_repeats_or_skips(service_client: Client) -> None:
    created = [str(resource(create(service_client, f"r{n}")).id) for n in range(7)]

    seen: list[str] = []
    sizes: list[int] = []
    token: str | Unset = UNSET
    while True:
        listed = page(service_client, size=3, token=token)
        sizes.append(len(listed.resources))
        seen += [str(r.id) for r in listed.resources]
        if isinstance(listed.next_page_token, Unset):
            break
        token = listed.next_page_token

    assert sizes == [3, 3, 1]
    assert seen == created


def test_changes_between_pages_never_skip_or_repeat_a_remaining_resource(
    service_client: Client,
) -> None:
    for n in range(6):
        resource(create(service_client, f"r{n}"))
    first = page(service_client, size=2)
    assert [r.id for r in first.resources] == ["r0", "r1"]

    assert delete(service_client, "r0").status_code == 204  # on the page already read
    assert delete(service_client, "r3").status_code == 204  # on a page not read yet
    resource(create(service_client, "r6"))  # created after the first page was read
    rest: list[str] = []
    token = first.next_page_token
    while not isinstance(token, Unset):
        listed = page(service_client, size=2, token=token)
        rest += [str(r.id) for r in listed.resources]
        token = listed.next_page_token

    assert rest == ["r2", "r4", "r5", "r6"]


def test_list_filters_by_provider_and_a_token_belongs_to_its_filter(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    for n, provider in enumerate(["a", "b", "a", "a"]):
        suite_standins.policy.rules = rules(provider)
        resource(create(service_client, f"r{n}"))

    first = page(service_client, size=2, provider="a")
    assert [r.id for r in first.resources] == ["r0", "r2"]
    assert isinstance(first.next_page_token, str)
    rest = page(service_client, size=2, provider="a", token=first.next_page_token)
    assert [r.id for r in rest.resources] == ["r3"]
    assert [r.id for r in page(service_client, provider="b").resources] == ["r1"]
    assert resource_ids(service_client) == ["r0", "r1", "r2", "r3"]

    other = list_resources.sync_detailed(
        client=service_client, provider="b", page_token=first.next_page_token
    )
    parsed_problem(other, 400, "validation-error")


@pytest.mark.parametrize("token", ["garbage", "e30", "!!!"])
def test_a_malformed_page_token_is_400(service_client: Client, token: str) -> None:
    response = list_resources.sync_detailed(client=service_client, page_token=token)
    parsed_problem(response, 400, "validation-error")


@pytest.mark.parametrize("size", [0, 101])
def test_a_page_size_out_of_range_is_400(service_client: Client, size: int) -> None:
    response = list_resources.sync_detailed(client=service_client, max_page_size=size)
    assert "max_page_size" in str(parsed_problem(response, 400, "validation-error").detail)
