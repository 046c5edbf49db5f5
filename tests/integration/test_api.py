"""The HTTP API, end to end through the Connexion app on a real socket, driven by the
generated public client; the Policy Engine and SPRM are stood in for by `responses`.
Every test runs on PostgreSQL and on SQLite."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import psycopg
import pytest
import requests
import responses
from placement_manager_client import Client
from placement_manager_client.api.health import get_health
from placement_manager_client.api.resource import (
    delete_resource,
    get_resource,
    list_resources,
    rehydrate_resource,
)
from placement_manager_client.models import RehydrateRequest
from placement_manager_client.types import UNSET, Response

from placement.config import Config
from tests.harness.calls import SPEC, body, create, resource_ids
from tests.harness.mocked import EVALUATE, INSTANCES, MockedUpstreams, given_resource
from tests.harness.problems import SPRM_CREATE_REFUSALS, assert_problem

# --- health --------------------------------------------------------------------------


def test_health_is_healthy(client: Client) -> None:
    response = get_health.sync_detailed(client=client)
    assert response.status_code == 200
    assert body(response) == {"status": "healthy", "path": "health"}


# --- create --------------------------------------------------------------------------


def test_create_stores_original_spec_and_provisions_evaluated_spec(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy(provider="kubevirt-1", status="MODIFIED", spec={**SPEC, "vcpu": 4})
    mocked_upstreams.sprm_create()

    response = create(client, "web-1")

    assert response.status_code == 201
    created = body(response)
    assert created["id"] == "web-1"
    assert created["path"] == "resources/web-1"
    assert created["provider_name"] == "kubevirt-1"
    assert created["approval_status"] == "MODIFIED"
    assert created["catalog_item_instance_id"] == "cat-1"
    assert created["spec"] == SPEC
    assert created["create_time"] == created["update_time"]
    assert created["create_time"].endswith("Z")
    assert mocked_upstreams.evaluations() == [{"service_instance": {"spec": SPEC}}]
    [provision] = mocked_upstreams.creates()
    assert provision.url == f"{INSTANCES}?id=web-1"
    assert json.loads(provision.body) == {
        "provider_name": "kubevirt-1",
        "spec": {**SPEC, "vcpu": 4},
    }
    assert body(get_resource.sync_detailed("web-1", client=client)) == created


def test_create_without_id_generates_a_uuid(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()

    response = create(client, None)

    assert response.status_code == 201
    rid = body(response)["id"]
    assert str(uuid.UUID(rid)) == rid
    assert mocked_upstreams.creates()[0].url == f"{INSTANCES}?id={rid}"


@pytest.mark.parametrize(
    ("policy_status", "status", "kind"),
    [
        (400, 400, "validation-error"),
        (406, 406, "policy-rejected"),
        (409, 409, "policy-conflict"),
        (401, 500, "internal-error"),
        (500, 500, "internal-error"),
    ],
)
def test_policy_errors_map_and_store_nothing(
    client: Client, mocked_upstreams: MockedUpstreams, policy_status: int, status: int, kind: str
) -> None:
    mocked_upstreams.policy_fails(policy_status)

    response = create(client)

    assert_problem(response, status, kind)
    assert mocked_upstreams.creates() == []
    assert resource_ids(client) == []


def test_policy_rejection_detail_reaches_the_client(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy_fails(406, "vcpu over quota")
    assert "vcpu over quota" in body(create(client))["detail"]


def test_policy_5xx_is_retried_and_its_body_not_shown(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy_fails(503, "stack trace: secret")

    response = create(client)

    assert_problem(response, 500, "internal-error")
    assert "secret" not in body(response)["detail"]
    assert len(mocked_upstreams.evaluations()) == 4


def test_policy_unreachable_is_internal_error(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.mock.add(responses.POST, EVALUATE, body=requests.ConnectionError("refused"))

    assert_problem(create(client), 500, "internal-error")
    assert len(mocked_upstreams.evaluations()) == 4


def test_no_provider_selected_is_424_and_nothing_happens(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy(provider="")

    assert_problem(create(client), 424, "policy-dependency")
    assert mocked_upstreams.creates() == []
    assert resource_ids(client) == []


def test_duplicate_id_is_409_without_asking_the_policy_engine(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams, "web-1")
    mocked_upstreams.policy()

    assert_problem(create(client, "web-1"), 409, "resource-conflict")
    assert mocked_upstreams.upstream_calls() == []


@pytest.mark.parametrize(("sprm_status", "status", "kind"), SPRM_CREATE_REFUSALS)
def test_failed_provisioning_maps_and_rolls_back(
    client: Client, mocked_upstreams: MockedUpstreams, sprm_status: int, status: int, kind: str
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create(sprm_status)

    assert_problem(create(client, "web-1"), status, kind)
    assert_problem(get_resource.sync_detailed("web-1", client=client), 404, "not-found")
    assert len(mocked_upstreams.creates()) == 1
    assert len(mocked_upstreams.gets()) == 0


def test_a_create_answered_500_does_not_exist_right_after(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    """As the Go service: GET answers 404 and the list leaves it out right after the 500.
    A 5xx may follow an act: what the SPRM made is deleted once it can no longer act."""
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create(500)
    mocked_upstreams.sprm_get("web-1", 404)

    response = create(client, "web-1")
    assert_problem(response, 500, "internal-error")
    assert body(response)["detail"] == (
        "the SPRM did not confirm creating web-1 (HTTP 500); resource web-1 was not created,"
        " and anything the SPRM made of it is deleted"
    )
    assert get_resource.sync_detailed("web-1", client=client).status_code == 404
    assert resource_ids(client) == []
    assert len(mocked_upstreams.creates()) == 4
    assert len(mocked_upstreams.gets()) == 1


# --- get and list --------------------------------------------------------------------


def test_list_empty_collection(client: Client) -> None:
    response = list_resources.sync_detailed(client=client)
    assert response.status_code == 200
    assert body(response) == {"resources": []}


def test_list_pages_follow_tokens(client: Client, mocked_upstreams: MockedUpstreams) -> None:
    for n in range(5):
        given_resource(client, mocked_upstreams, f"r{n}")
    seen: list[str] = []
    token: Any = UNSET
    pages = 0
    while True:
        page = body(list_resources.sync_detailed(client=client, max_page_size=2, page_token=token))
        pages += 1
        seen += [r["id"] for r in page["resources"]]
        if "next_page_token" not in page:
            break
        token = page["next_page_token"]
    assert seen == [f"r{n}" for n in range(5)]
    assert pages == 3


def test_list_filters_by_provider_and_token_is_tied_to_filter(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    for n, provider in enumerate(["a", "b", "a", "a"]):
        mocked_upstreams.policy(provider=provider)
        mocked_upstreams.sprm_create()
        assert create(client, f"r{n}").status_code == 201
        mocked_upstreams.mock.reset()
        mocked_upstreams.mock.add_passthru("http://127.0.0.1")

    page = body(list_resources.sync_detailed(client=client, provider="a", max_page_size=2))
    assert [r["id"] for r in page["resources"]] == ["r0", "r2"]
    rest = body(
        list_resources.sync_detailed(
            client=client, provider="a", page_token=page["next_page_token"]
        )
    )
    assert [r["id"] for r in rest["resources"]] == ["r3"]

    other = list_resources.sync_detailed(
        client=client, provider="b", page_token=page["next_page_token"]
    )
    assert_problem(other, 400, "validation-error")


@pytest.mark.parametrize("token", ["garbage", "eyJ2IjoxfQ", "!!!", "e30"])
def test_list_rejects_malformed_tokens(client: Client, token: str) -> None:
    assert_problem(
        list_resources.sync_detailed(client=client, page_token=token), 400, "validation-error"
    )


@pytest.mark.parametrize("size", [0, 101, -1])
def test_list_rejects_page_sizes_out_of_range(client: Client, size: int) -> None:
    response = list_resources.sync_detailed(client=client, max_page_size=size)
    assert_problem(response, 400, "validation-error")
    assert "max_page_size" in body(response)["detail"]


# --- delete --------------------------------------------------------------------------


def test_delete_asks_the_sprm_first_then_removes_the_record(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1")

    response = delete_resource.sync_detailed("web-1", client=client)

    assert response.status_code == 204
    assert response.content == b""
    [call] = mocked_upstreams.deletes()
    assert call.url == f"{INSTANCES}/web-1"
    assert_problem(get_resource.sync_detailed("web-1", client=client), 404, "not-found")


def test_delete_unknown_is_404_and_never_calls_the_sprm(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    assert_problem(delete_resource.sync_detailed("nope", client=client), 404, "not-found")
    assert mocked_upstreams.upstream_calls() == []


@pytest.mark.parametrize(
    ("sprm_status", "status", "kind"),
    [
        (400, 400, "validation-error"),
        (409, 409, "resource-conflict"),
        (422, 422, "provider-error"),
        (500, 500, "internal-error"),
    ],
)
def test_failed_sprm_delete_keeps_the_record(
    client: Client, mocked_upstreams: MockedUpstreams, sprm_status: int, status: int, kind: str
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1", sprm_status)

    assert_problem(delete_resource.sync_detailed("web-1", client=client), status, kind)
    assert get_resource.sync_detailed("web-1", client=client).status_code == 200


def test_delete_of_an_instance_the_sprm_no_longer_has_removes_the_record(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams)
    mocked_upstreams.sprm_delete("web-1", 404)

    assert delete_resource.sync_detailed("web-1", client=client).status_code == 204
    assert resource_ids(client) == []


# --- rehydrate -----------------------------------------------------------------------


def rehydrate(client: Client, rid: str, new_id: str) -> Response[Any]:
    return rehydrate_resource.sync_detailed(
        rid, client=client, body=RehydrateRequest(new_resource_id=new_id)
    )


def test_rehydrate_places_again_and_removes_the_old_resource(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams, "web-1")
    mocked_upstreams.policy(provider="openshift-2", status="MODIFIED", spec={"vcpu": 8})
    mocked_upstreams.sprm_create()
    mocked_upstreams.sprm_delete("web-1")

    response = rehydrate(client, "web-1", "web-2")

    assert response.status_code == 200
    new = body(response)
    assert new["id"] == "web-2"
    assert new["provider_name"] == "openshift-2"
    assert new["approval_status"] == "MODIFIED"
    assert new["spec"] == SPEC
    assert new["catalog_item_instance_id"] == "cat-1"
    assert mocked_upstreams.evaluations() == [{"service_instance": {"spec": SPEC}}]
    [provision] = mocked_upstreams.creates()
    assert provision.url == f"{INSTANCES}?id=web-2"
    assert json.loads(provision.body) == {"provider_name": "openshift-2", "spec": {"vcpu": 8}}
    [old_delete] = mocked_upstreams.deletes()
    assert old_delete.url == f"{INSTANCES}/web-1?deferred=true"
    assert resource_ids(client) == ["web-2"]


def test_rehydrate_unknown_is_404_without_upstream_calls(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    assert_problem(rehydrate(client, "nope", "web-2"), 404, "not-found")
    assert mocked_upstreams.upstream_calls() == []


@pytest.mark.parametrize(
    ("arrange", "status", "kind"),
    [
        (lambda u: u.policy_fails(406), 406, "policy-rejected"),
        (lambda u: u.policy(provider=""), 424, "policy-dependency"),
        (lambda u: (u.policy(), u.sprm_create(422)), 422, "provider-error"),
    ],
)
def test_failed_rehydrate_keeps_the_old_resource(
    client: Client, mocked_upstreams: MockedUpstreams, arrange: Any, status: int, kind: str
) -> None:
    given_resource(client, mocked_upstreams, "web-1")
    arrange(mocked_upstreams)

    assert_problem(rehydrate(client, "web-1", "web-2"), status, kind)
    assert resource_ids(client) == ["web-1"]
    assert mocked_upstreams.deletes() == []


def test_rehydrate_to_an_id_in_use_is_409(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams, "web-1")
    given_resource(client, mocked_upstreams, "web-2")

    assert_problem(rehydrate(client, "web-1", "web-2"), 409, "resource-conflict")
    assert_problem(rehydrate(client, "web-1", "web-1"), 409, "resource-conflict")
    assert mocked_upstreams.upstream_calls() == []


def test_rehydrate_succeeds_when_the_deferred_delete_fails(
    client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams, "web-1")
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    mocked_upstreams.sprm_delete("web-1", 422)

    assert rehydrate(client, "web-1", "web-2").status_code == 200
    assert resource_ids(client) == ["web-2"]


# --- routing and request validation --------------------------------------------------


def test_custom_method_path_only_takes_post(
    base_url: str, client: Client, mocked_upstreams: MockedUpstreams
) -> None:
    given_resource(client, mocked_upstreams, "web-1")

    for method in ("GET", "DELETE", "PUT"):
        response = requests.request(
            method, f"{base_url}/api/v1alpha1/resources/web-1:rehydrate", timeout=10
        )
        assert_problem(response, 405, "method-not-allowed")
        assert response.headers["Allow"] == "POST"
    assert mocked_upstreams.upstream_calls() == []
    assert get_resource.sync_detailed("web-1", client=client).status_code == 200


def test_ids_are_validated_on_every_resource_path(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/v1alpha1/resources/Not_An_Id", timeout=10)
    assert_problem(response, 400, "validation-error")
    assert "resource_id" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/resources", {"spec": SPEC}, "catalog_item_instance_id"),
        ("/resources", {"catalog_item_instance_id": "c"}, "spec"),
        ("/resources", {"catalog_item_instance_id": "c", "spec": {}}, "spec"),
        ("/resources", {"catalog_item_instance_id": "", "spec": SPEC}, "catalog_item_instance_id"),
        ("/resources", {"catalog_item_instance_id": "c", "spec": "vm"}, "spec"),
        ("/resources?id=Not_A_Label", {"catalog_item_instance_id": "c", "spec": SPEC}, "id"),
        ("/resources?id=" + "a" * 64, {"catalog_item_instance_id": "c", "spec": SPEC}, "id"),
        ("/resources/web-1:rehydrate", {}, "new_resource_id"),
        ("/resources/web-1:rehydrate", {"new_resource_id": "UPPER"}, "new_resource_id"),
    ],
)
def test_invalid_requests_are_validation_problems(
    base_url: str, mocked_upstreams: MockedUpstreams, path: str, payload: Any, field: str
) -> None:
    response = requests.post(f"{base_url}/api/v1alpha1{path}", json=payload, timeout=10)

    assert_problem(response, 400, "validation-error")
    detail = response.json()["detail"]
    assert field in detail
    assert "\n" not in detail
    assert "Failed validating" not in detail
    assert mocked_upstreams.upstream_calls() == []


def test_problems_name_the_request_path(base_url: str) -> None:
    response = requests.get(f"{base_url}/api/v1alpha1/resources/nope", timeout=10)
    assert response.json()["instance"] == "/api/v1alpha1/resources/nope"


def test_database_errors_are_internal_errors_without_sql(config: Config, client: Client) -> None:
    drop_resources_table(config)

    response = get_resource.sync_detailed("web-1", client=client)

    assert_problem(response, 500, "internal-error")
    assert "resources" not in body(response)["detail"]


def drop_resources_table(config: Config) -> None:
    db = config.database
    if db.type == "sqlite":
        with sqlite3.connect(db.name) as conn:
            conn.execute("DROP TABLE resources")
        return
    conninfo = f"host={db.host} port={db.port} dbname={db.name} user={db.user}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE resources")
