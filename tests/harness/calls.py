"""Calls to the service through the generated public client (`placement_manager_client`),
and what their answers carry."""

from __future__ import annotations

import json
from typing import Any

from placement_manager_client import Client
from placement_manager_client.api.resource import (
    create_resource,
    delete_resource,
    get_resource,
    list_resources,
    rehydrate_resource,
)
from placement_manager_client.models import (
    Problem,
    RehydrateRequest,
    Resource,
    ResourceList,
    ResourceSpec,
)
from placement_manager_client.types import UNSET, Response, Unset

# The spec a resource is created with unless a test gives its own.
SPEC: dict[str, Any] = {"service_type": "vm", "vcpu": 2, "memory": "2GB"}


def create(
    client: Client,
    resource_id: str | None = "web-1",
    spec: dict[str, Any] | None = None,
    catalog_item_instance_id: str = "cat-1",
) -> Response[Problem | Resource]:
    """Create a resource; `resource_id` None: let the service choose the id."""
    body = Resource(
        catalog_item_instance_id=catalog_item_instance_id,
        spec=ResourceSpec.from_dict(SPEC if spec is None else spec),
    )
    rid: str | Unset = UNSET if resource_id is None else resource_id
    return create_resource.sync_detailed(client=client, body=body, id=rid)


def get(client: Client, resource_id: str) -> Response[Problem | Resource]:
    return get_resource.sync_detailed(resource_id, client=client)


def delete(client: Client, resource_id: str) -> Response[Any | Problem]:
    return delete_resource.sync_detailed(resource_id, client=client)


def rehydrate(client: Client, resource_id: str, new_id: str) -> Response[Problem | Resource]:
    body = RehydrateRequest(new_resource_id=new_id)
    return rehydrate_resource.sync_detailed(resource_id, client=client, body=body)


def page(
    client: Client,
    size: int = 100,
    token: str | Unset = UNSET,
    provider: str | Unset = UNSET,
) -> ResourceList:
    response = list_resources.sync_detailed(
        client=client, max_page_size=size, page_token=token, provider=provider
    )
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed, ResourceList)
    return response.parsed


def resource_ids(client: Client) -> list[str]:
    """Every resource id, in list order, following the page tokens."""
    ids: list[str] = []
    token: str | Unset = UNSET
    while True:
        listed = page(client, token=token)
        ids += [str(r.id) for r in listed.resources]
        if not listed.next_page_token:
            return ids
        token = listed.next_page_token


def resource(response: Response[Problem | Resource], status: int = 201) -> Resource:
    """The resource a successful answer carries."""
    assert response.status_code == status, response.content
    assert isinstance(response.parsed, Resource)
    return response.parsed


def spec_of(found: Resource) -> dict[str, Any]:
    return found.spec.to_dict()


def body(response: Response[Any]) -> dict[str, Any]:
    """An answer's JSON body, as sent."""
    result: dict[str, Any] = json.loads(response.content)
    return result
