"""GET /resources/{id} and GET /resources: records as created, listed in creation order,
page by page with opaque tokens that never skip or repeat a resource."""

from __future__ import annotations

import pytest
from placement_manager_client import Client
from placement_manager_client.api.resource import list_resources
from placement_manager_client.types import UNSET, Unset

from tests.subsystem.support import (
    Upstreams,
    all_ids,
    create,
    delete,
    get,
    page,
    problem,
    resource,
    rules,
)


def test_get_returns_the_resource_as_created(client: Client, upstreams: Upstreams) -> None:
    created = resource(create(client, catalog_item_instance_id="catalog-g1"))
    upstreams.sprm.clear()

    found = resource(get(client, str(created.id)), 200)

    assert found == created
    assert found.catalog_item_instance_id == "catalog-g1"
    assert upstreams.sprm_calls() == []  # reading asks no upstream


def test_get_of_an_unknown_id_is_404(client: Client, upstreams: Upstreams) -> None:
    missing = problem(get(client, "non-existent-id"), 404, "not-found")

    assert "non-existent-id" in str(missing.detail)
    assert upstreams.evaluations() == []
    assert upstreams.sprm_calls() == []


def test_list_is_empty_at_first_then_shows_what_was_created(client: Client) -> None:
    empty = page(client)
    assert empty.resources == []
    assert isinstance(empty.next_page_token, Unset)

    for n in range(3):
        resource(create(client, f"r{n}"))

    listed = page(client)
    assert [r.id for r in listed.resources] == ["r0", "r1", "r2"]
    assert isinstance(listed.next_page_token, Unset)
    assert listed.resources[1] == resource(get(client, "r1"), 200)


def test_pages_follow_tokens_without_repeats_or_skips(client: Client) -> None:
    created = [str(resource(create(client, f"r{n}")).id) for n in range(7)]

    seen: list[str] = []
    sizes: list[int] = []
    token: str | Unset = UNSET
    while True:
        listed = page(client, size=3, token=token)
        sizes.append(len(listed.resources))
        seen += [str(r.id) for r in listed.resources]
        if isinstance(listed.next_page_token, Unset):
            break
        token = listed.next_page_token

    assert sizes == [3, 3, 1]
    assert seen == created


def test_changes_between_pages_never_skip_or_repeat_a_remaining_resource(
    client: Client,
) -> None:
    for n in range(6):
        resource(create(client, f"r{n}"))
    first = page(client, size=2)
    assert [r.id for r in first.resources] == ["r0", "r1"]

    assert delete(client, "r0").status_code == 204  # on the page already read
    assert delete(client, "r3").status_code == 204  # on a page not read yet
    resource(create(client, "r6"))  # created after the first page was read
    rest: list[str] = []
    token = first.next_page_token
    while not isinstance(token, Unset):
        listed = page(client, size=2, token=token)
        rest += [str(r.id) for r in listed.resources]
        token = listed.next_page_token

    assert rest == ["r2", "r4", "r5", "r6"]


def test_list_filters_by_provider_and_a_token_belongs_to_its_filter(
    client: Client, upstreams: Upstreams
) -> None:
    for n, provider in enumerate(["a", "b", "a", "a"]):
        upstreams.policy.rules = rules(provider)
        resource(create(client, f"r{n}"))

    first = page(client, size=2, provider="a")
    assert [r.id for r in first.resources] == ["r0", "r2"]
    assert isinstance(first.next_page_token, str)
    rest = page(client, size=2, provider="a", token=first.next_page_token)
    assert [r.id for r in rest.resources] == ["r3"]
    assert [r.id for r in page(client, provider="b").resources] == ["r1"]
    assert all_ids(client) == ["r0", "r1", "r2", "r3"]

    other = list_resources.sync_detailed(
        client=client, provider="b", page_token=first.next_page_token
    )
    problem(other, 400, "validation-error")


@pytest.mark.parametrize("token", ["garbage", "e30", "!!!"])
def test_a_malformed_page_token_is_400(client: Client, token: str) -> None:
    response = list_resources.sync_detailed(client=client, page_token=token)
    problem(response, 400, "validation-error")


@pytest.mark.parametrize("size", [0, 101])
def test_a_page_size_out_of_range_is_400(client: Client, size: int) -> None:
    response = list_resources.sync_detailed(client=client, max_page_size=size)
    assert "max_page_size" in str(problem(response, 400, "validation-error").detail)
