"""What the subsystem tests share: the stand-ins and their rules, calls to the service
through the generated public client, and views on what the stand-ins were asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from placement_dev.standins import (
    BackgroundServer,
    PolicyStandIn,
    RecordedRequest,
    Rules,
    SprmStandIn,
    parse_rules,
)
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

INSTANCES_PATH = "/api/v1alpha1/service-type-instances"

SPEC: dict[str, Any] = {"cpu": 2, "memory": "4Gi"}
# The Policy Engine stand-in's rules in this suite (see dev/placement_dev/standins/rules.py).
RULES: dict[str, Any] = {
    "default_provider": "test-provider",
    "rules": [
        {"match": {"tier": "forbidden"}, "reject": "tier 'forbidden' is not allowed here"},
        {"match": {"tier": "contested"}, "conflict": "two policies disagree on this spec"},
        {
            "match": {"tier": "gold"},
            "set": {"cpu": 8, "memory": "16Gi"},
            "provider": "modified-provider",
        },
        {"match": {"tier": "orphan"}, "provider": ""},
    ],
}
GOLD: dict[str, Any] = {"tier": "gold", "cpu": 2, "memory": "4Gi"}
GOLD_EVALUATED: dict[str, Any] = {"tier": "gold", "cpu": 8, "memory": "16Gi"}


def suite_rules(*first: dict[str, Any]) -> Rules:
    """The suite's rules, after the rules `first`."""
    return parse_rules({**RULES, "rules": [*first, *RULES["rules"]]}, "subsystem rules")


def rules(provider: str = "test-provider", set_fields: dict[str, Any] | None = None) -> Rules:
    """Rules that approve every spec on `provider`, modifying it by `set_fields`."""
    rule: dict[str, Any] = {"provider": provider}
    if set_fields:
        rule["set"] = set_fields
    return parse_rules({"rules": [rule]}, "test rules")


@dataclass(frozen=True)
class Upstreams:
    """The two stand-ins, serving in this process, programmed through their Python API."""

    policy: PolicyStandIn
    sprm: SprmStandIn
    policy_server: BackgroundServer
    sprm_server: BackgroundServer

    def reset(self) -> None:
        """No faults, the suite's rules, no instances, nothing recorded."""
        for standin in (self.policy, self.sprm):
            standin.reset_faults()
        self.policy.rules = suite_rules()
        for instance_id in self.sprm.instances:
            self.remove_instance(instance_id)
        for standin in (self.policy, self.sprm):
            standin.clear()

    def remove_instance(self, instance_id: str) -> None:
        """Delete an instance behind the service's back, through the SPRM's own API."""
        url = f"{self.sprm_server.url}{INSTANCES_PATH}/{instance_id}"
        assert requests.delete(url, timeout=10).status_code == 204

    def evaluations(self) -> list[Any]:
        """The bodies the Policy Engine was sent, in order."""
        return [r.body for r in self.policy.requests if r.operation == "evaluate"]

    def sprm_calls(self, operation: str | None = None) -> list[RecordedRequest]:
        """The SPRM API requests ("create", "get", "delete"), in order."""
        return [r for r in self.sprm.requests if operation in (None, r.operation)]

    def instance_ids(self) -> set[str]:
        return set(self.sprm.instances)


# --- the service, through the generated client ---------------------------------------


def create(
    client: Client,
    resource_id: str | None = None,
    spec: dict[str, Any] | None = None,
    catalog_item_instance_id: str = "catalog-1",
) -> Response[Problem | Resource]:
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


def all_ids(client: Client) -> list[str]:
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


def problem(response: Response[Any], status: int, kind: str) -> Problem:
    """The problem details of an error answer, checked against RFC 9457 and our types."""
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"] == "application/problem+json"
    parsed = response.parsed
    assert isinstance(parsed, Problem), response.content
    assert parsed.type_ == kind
    assert parsed.status == status
    assert parsed.title
    assert parsed.detail
    return parsed


def spec_of(found: Resource) -> dict[str, Any]:
    return found.spec.to_dict()
