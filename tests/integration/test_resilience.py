"""What the Go service got wrong under faults, through the HTTP API: unknown SPRM
outcomes, retried creates meeting 409, abandoned deletes, busy resources, tampered
page tokens, hostile bodies. MockedUpstreams stood in for by `responses`."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import requests
import responses
from placement_manager_client import Client
from placement_manager_client.api.resource import delete_resource, get_resource, list_resources

from placement.config import Config
from tests.harness.calls import body, create, resource_ids
from tests.harness.mocked import INSTANCES, MockedUpstreams, given_resource, upstream_problem
from tests.harness.problems import assert_problem


@pytest.fixture
def config(base_config: Config, db: Any) -> Config:
    return replace(base_config, database=db, max_body_bytes=16384)


def test_create_whose_outcome_is_unknown_succeeds_if_the_instance_exists(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create(503)
    mocked_upstreams.sprm_get("web-1", 200)

    response = create(client, "web-1")

    assert response.status_code == 201, response.content
    assert len(mocked_upstreams.gets()) == 1
    mocked_upstreams.sprm_delete("web-1")
    assert delete_resource.sync_detailed("web-1", client=client).status_code == 204


def test_retried_create_meeting_409_is_a_success(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.mock.add(responses.POST, INSTANCES, body=requests.ConnectionError("reset"))
    mocked_upstreams.sprm_create(409)

    response = create(client, "web-1")

    assert response.status_code == 201, response.content
    assert len(mocked_upstreams.creates()) == 2
    assert resource_ids(client) == ["web-1"]


def test_first_try_meeting_409_is_a_conflict_and_rolls_back(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create(409)

    assert_problem(create(client, "web-1"), 409, "resource-conflict")
    assert resource_ids(client) == []


def test_a_create_with_an_unknowable_outcome_is_gone_and_its_retry_takes_it_over(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create(503)
    mocked_upstreams.sprm_get("web-1", 503)

    assert_problem(create(client, "web-1"), 500, "internal-error")
    assert resource_ids(client) == []

    mocked_upstreams.mock.replace(
        responses.POST, INSTANCES, status=409, json=upstream_problem(409, "exists")
    )  # an earlier try made it
    assert create(client, "web-1").status_code == 201
    assert resource_ids(client) == ["web-1"]
    other = create(client, "web-1", spec={"other": 1})
    assert_problem(other, 409, "resource-conflict")


def test_delete_with_unknown_outcome_keeps_the_record_under_its_lease(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1", 503)
    mocked_upstreams.sprm_get("web-1", 200)  # still there: it may yet be deleted

    assert_problem(delete_resource.sync_detailed("web-1", client=client), 500, "internal-error")
    assert resource_ids(client) == ["web-1"]

    mocked_upstreams.mock.replace(responses.DELETE, f"{INSTANCES}/web-1", status=204)
    busy = delete_resource.sync_detailed("web-1", client=client)
    assert_problem(busy, 409, "resource-conflict")
    assert mocked_upstreams.deletes()[-1].url.endswith("/web-1")
    assert len(mocked_upstreams.deletes()) == 4  # the retry did not call the SPRM


def test_delete_with_unknown_outcome_whose_instance_is_gone_succeeds(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1", 503)
    mocked_upstreams.sprm_get("web-1", 404)  # the delete acted before the 503

    assert delete_resource.sync_detailed("web-1", client=client).status_code == 204
    assert resource_ids(client) == []


def test_delete_refused_by_the_sprm_leaves_the_resource_usable(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1", 422)
    mocked_upstreams.sprm_get("web-1", 200)
    assert_problem(delete_resource.sync_detailed("web-1", client=client), 422, "provider-error")

    mocked_upstreams.mock.replace(responses.DELETE, f"{INSTANCES}/web-1", status=204)
    assert delete_resource.sync_detailed("web-1", client=client).status_code == 204


@pytest.fixture
def held_create(mocked_upstreams: MockedUpstreams) -> Iterator[threading.Event]:
    """The SPRM create blocks until the returned event is set."""
    arrived, release = threading.Event(), threading.Event()

    def answer(_request: Any) -> tuple[int, dict[str, str], str]:
        arrived.set()
        release.wait(20)
        return 201, {}, json.dumps({"provider_name": "p", "spec": {}})

    mocked_upstreams.policy()
    mocked_upstreams.mock.add_callback(responses.POST, INSTANCES, callback=answer)
    release.arrived = arrived  # type: ignore[attr-defined]
    yield release
    release.set()


def test_resource_being_provisioned_is_busy_for_delete_and_rehydrate(
    base_url: str, client: Client, mocked_upstreams: MockedUpstreams, held_create: threading.Event
) -> None:
    outcome: dict[str, int] = {}
    creating = threading.Thread(target=lambda: outcome.update(status=create(client).status_code))
    creating.start()
    assert held_create.arrived.wait(10)  # type: ignore[attr-defined]

    assert_problem(delete_resource.sync_detailed("web-1", client=client), 409, "resource-conflict")
    rehydrate = requests.post(
        f"{base_url}/api/v1alpha1/resources/web-1:rehydrate",
        json={"new_resource_id": "web-2"},
        timeout=10,
    )
    assert_problem(rehydrate, 409, "resource-conflict")

    held_create.set()
    creating.join(10)
    assert outcome == {"status": 201}
    assert mocked_upstreams.deletes() == []


# --- page tokens -------------------------------------------------------------------


def two_pages(client: Client, mocked_upstreams: MockedUpstreams) -> str:
    for rid in ("r1", "r2"):
        given_resource(client, mocked_upstreams, rid)
    token = body(list_resources.sync_detailed(client=client, max_page_size=1))["next_page_token"]
    assert isinstance(token, str)
    return token


def test_tampered_page_token_is_refused(client: Client, mocked_upstreams: MockedUpstreams) -> None:
    token = two_pages(client, mocked_upstreams)
    payload, mac = token.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["i"] = "r0"
    forged = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    response = list_resources.sync_detailed(client=client, page_token=f"{forged}.{mac}")

    assert_problem(response, 400, "validation-error")
    valid = body(list_resources.sync_detailed(client=client, page_token=token))
    assert [r["id"] for r in valid["resources"]] == ["r2"]


def test_page_token_survives_the_deletion_of_the_last_row_seen(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    token = two_pages(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("r1")
    assert delete_resource.sync_detailed("r1", client=client).status_code == 204

    page = body(list_resources.sync_detailed(client=client, page_token=token))

    assert [r["id"] for r in page["resources"]] == ["r2"]


# --- hostile input -----------------------------------------------------------------


def post_json(base_url: str, data: Any, query: str = "") -> requests.Response:
    """POST raw `data` (bytes or an iterator of them: chunked) as JSON to the collection."""
    return requests.post(
        f"{base_url}/api/v1alpha1/resources{query}",
        data=data,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )


def test_body_over_the_limit_is_413_by_its_declared_length(base_url: str) -> None:
    response = post_json(base_url, b"{" + b" " * 20000 + b"}")
    assert_problem(response, 413, "payload-too-large")


def test_body_over_the_limit_is_413_when_streamed(base_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"catalog_item_instance_id": "c", "spec": {"x": "'
        for _ in range(100):
            yield b"a" * 200
        yield b'"}}'

    response = post_json(base_url, chunks())
    assert_problem(response, 413, "payload-too-large")


def test_chunked_body_within_the_limit_is_accepted(
    client: Client, mocked_upstreams: MockedUpstreams, base_url: str
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    payload = json.dumps({"catalog_item_instance_id": "c", "spec": {"x": "a" * 1000}}).encode()

    response = post_json(base_url, iter([payload[:10], payload[10:]]), query="?id=chunked")

    assert response.status_code == 201, response.content
    assert resource_ids(client) == ["chunked"]


@pytest.mark.parametrize("depth", [65, 3000])
def test_deeply_nested_json_is_refused(
    base_url: str, mocked_upstreams: MockedUpstreams, depth: int
) -> None:
    spec = "[" * depth + "]" * depth
    data = f'{{"catalog_item_instance_id": "c", "spec": {{"x": {spec}}}}}'.encode()
    response = post_json(base_url, data)
    assert_problem(response, 400, "validation-error")
    assert "nested" in response.json()["detail"]
    assert mocked_upstreams.upstream_calls() == []


def test_nesting_within_the_limit_is_accepted(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    nested: Any = "leaf"
    for _ in range(60):
        nested = {"n": nested}

    response = create(client, "deep", spec={"x": nested})

    assert response.status_code == 201, response.content
    got = get_resource.sync_detailed("deep", client=client)
    assert body(got)["spec"] == {"x": nested}


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_a_number_beyond_a_float_is_refused_at_once(
    base_url: str, mocked_upstreams: MockedUpstreams, number: str
) -> None:
    data = f'{{"catalog_item_instance_id": "c", "spec": {{"cpu": {number}}}}}'.encode()
    response = post_json(base_url, data)
    assert_problem(response, 400, "validation-error")
    assert number in response.json()["detail"]
    assert mocked_upstreams.upstream_calls() == []


@pytest.mark.parametrize("path", ["/resources?id=web-2", "/resources/web-1:rehydrate"])
def test_a_body_without_content_type_is_415(
    client: Client, base_url: str, mocked_upstreams: MockedUpstreams, path: str
) -> None:
    given_resource(client, mocked_upstreams)
    data = json.dumps({"catalog_item_instance_id": "c", "spec": {"a": 1}, "new_resource_id": "x"})
    response = requests.post(f"{base_url}/api/v1alpha1{path}", data=data.encode(), timeout=10)
    assert "Content-Type" not in response.request.headers
    assert_problem(response, 415, "unsupported-media-type")
    assert "Content-Type" in response.json()["detail"]
    assert mocked_upstreams.upstream_calls() == []


def test_parameters_are_judged_before_the_content_type(
    base_url: str, mocked_upstreams: MockedUpstreams
) -> None:
    """An invalid id and no Content-Type: the id's 400 (in both modes of the Connexion
    adaptations, `tox -e stock-connexion`)."""
    data = json.dumps({"catalog_item_instance_id": "c", "spec": {"a": 1}}).encode()
    url = f"{base_url}/api/v1alpha1/resources?id=Not_An_Id"
    response = requests.post(url, data=data, timeout=10)
    assert_problem(response, 400, "validation-error")
    assert mocked_upstreams.upstream_calls() == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"catalog_item_instance_id": "c\u0000", "spec": {"a": 1}}, "catalog_item_instance_id"),
        ({"catalog_item_instance_id": "c", "spec": {"vm": {"name": "a\u0000b"}}}, "spec.vm.name"),
        ({"catalog_item_instance_id": "c", "spec": {"disks": ["x", "\u0000"]}}, "spec.disks[1]"),
        ({"catalog_item_instance_id": "c", "spec": {"k\u0000": 1}}, "a key of spec"),
    ],
    ids=["catalog-item", "spec-value", "spec-list", "spec-key"],
)
def test_nul_characters_are_refused_naming_the_field(
    client: Client, base_url: str, mocked_upstreams: MockedUpstreams, payload: Any, field: str
) -> None:
    response = requests.post(f"{base_url}/api/v1alpha1/resources", json=payload, timeout=10)
    assert_problem(response, 400, "validation-error")
    assert response.json()["detail"] == f"{field} must not contain NUL characters"
    assert mocked_upstreams.upstream_calls() == []
    assert resource_ids(client) == []


def test_a_nul_in_the_provider_filter_is_refused(base_url: str) -> None:
    response = requests.get(
        f"{base_url}/api/v1alpha1/resources", params={"provider": "p\u0000"}, timeout=10
    )
    assert_problem(response, 400, "validation-error")
    assert "provider" in response.json()["detail"]


def test_a_path_with_a_trailing_slash_is_not_redirected_to_the_callers_host(
    base_url: str,
) -> None:
    response = requests.get(
        f"{base_url}/api/v1alpha1/resources/",
        headers={"Host": "evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert_problem(response, 404, "not-found")
    assert "Location" not in response.headers


# --- whole-value patterns and storable text (issue 20) ------------------------------


@pytest.mark.parametrize(
    ("method", "path", "payload", "detail"),
    [
        (
            "POST",
            "/resources?id=nl-1%0A",
            {"catalog_item_instance_id": "c", "spec": {"a": 1}},
            "query parameter id: 'nl-1\\n' does not match",
        ),
        ("GET", "/resources/web-1%0A", None, "path parameter resource_id must not contain"),
        ("DELETE", "/resources/web-1%0A", None, "path parameter resource_id must not contain"),
        (
            "POST",
            "/resources/web-1%0A:rehydrate",
            {"new_resource_id": "nl-2"},
            "path parameter resource_id must not contain",
        ),
        (
            "POST",
            "/resources/web-1:rehydrate",
            {"new_resource_id": "nl-2\n"},
            "'nl-2\\n' does not match",
        ),
    ],
    ids=["create-id", "get", "delete", "rehydrate-id", "rehydrate-new-id"],
)
def test_ids_ending_in_a_newline_are_refused(
    client: Client,
    base_url: str,
    mocked_upstreams: MockedUpstreams,
    method: str,
    path: str,
    payload: Any,
    detail: str,
) -> None:
    """The spec's id pattern ends in `$`, which Python's `re.search` lets match before a
    final newline: the service matches the whole value (as JSON Schema means it); a path
    holding a newline is refused before routing, which would cut it there."""
    given_resource(client, mocked_upstreams)
    response = requests.request(method, f"{base_url}/api/v1alpha1{path}", json=payload, timeout=10)
    assert_problem(response, 400, "validation-error")
    assert detail in response.json()["detail"]
    assert mocked_upstreams.upstream_calls() == []
    assert resource_ids(client) == ["web-1"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"catalog_item_instance_id": "c\ud800", "spec": {"a": 1}}, "catalog_item_instance_id"),
        ({"catalog_item_instance_id": "c", "spec": {"vm": {"name": "a\udfffb"}}}, "spec.vm.name"),
        ({"catalog_item_instance_id": "c", "spec": {"k\udc00": 1}}, "a key of spec"),
    ],
    ids=["catalog-item", "spec-value", "spec-key"],
)
def test_lone_surrogates_are_refused_naming_the_field(
    client: Client, base_url: str, mocked_upstreams: MockedUpstreams, payload: Any, field: str
) -> None:
    response = requests.post(f"{base_url}/api/v1alpha1/resources", json=payload, timeout=10)
    assert_problem(response, 400, "validation-error")
    assert (
        response.json()["detail"] == f"{field} must not contain lone surrogates (\\ud800-\\udfff)"
    )
    assert mocked_upstreams.upstream_calls() == []
    assert resource_ids(client) == []


def test_a_surrogate_pair_is_text_and_accepted(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    assert create(client, "emoji", spec={"name": "\U0001f600"}).status_code == 201
    assert body(get_resource.sync_detailed("emoji", client=client))["spec"] == {"name": "😀"}


@pytest.mark.parametrize(
    ("query", "name"),
    [("?id=%ED%A0%80", "id"), ("?provider=p%ED%A0%80", "provider"), ("?provider=%FF", "provider")],
    ids=["id", "provider", "not-utf8"],
)
def test_query_parameters_that_are_not_utf8_text_are_refused(
    base_url: str, mocked_upstreams: MockedUpstreams, query: str, name: str
) -> None:
    method = "POST" if "id=" in query else "GET"
    payload = {"catalog_item_instance_id": "c", "spec": {"a": 1}} if method == "POST" else None
    response = requests.request(
        method, f"{base_url}/api/v1alpha1/resources{query}", json=payload, timeout=10
    )
    assert_problem(response, 400, "validation-error")
    assert response.json()["detail"].startswith(f"query parameter {name} ")
    assert mocked_upstreams.upstream_calls() == []
