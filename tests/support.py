"""Test helpers: serve an ASGI app on a real socket, and stand in for the upstreams."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import responses
from placement_dev.standins import BackgroundServer
from placement_manager_client import Client
from placement_manager_client.api.resource import create_resource, list_resources
from placement_manager_client.models import Resource, ResourceSpec
from placement_manager_client.types import UNSET, Response

from placement.config import Config
from placement.http.app import create_app

SPEC = {"service_type": "vm", "vcpu": 2, "memory": "2GB"}
POLICY_URL = "http://policy.test:8081"
SPRM_URL = "http://sprm.test:8082"
EVALUATE = f"{POLICY_URL}/api/v1alpha1/policies:evaluateRequest"
INSTANCES = f"{SPRM_URL}/api/v1alpha1/service-type-instances"


def wait_for(condition: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `condition()` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# Set to 1 (`tox -e stock-connexion`), the API tests run on Connexion's own per-request
# machinery instead of the adaptations of `placement/http/connexion.py`: they must pass
# alike (the adaptations change nothing but speed). Read by the tests only.
STOCK_CONNEXION = "PLACEMENT_TEST_STOCK_CONNEXION"


def service_app(config: Config) -> Any:
    """The service's app as the tests serve it (see STOCK_CONNEXION)."""
    stock = os.environ.get(STOCK_CONNEXION) == "1"
    return create_app(config, connexion_adaptations=not stock)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a free loopback port; yield its base URL."""
    with BackgroundServer(app) as server:
        yield server.url


def problem(status: int, detail: str = "upstream says no") -> dict[str, Any]:
    return {"type": "about:blank", "title": "Upstream problem", "status": status, "detail": detail}


class Upstreams:
    """Programs the Policy Engine and SPRM answers (on a `responses` mock) and reads
    back what the service sent them."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock

    def policy(
        self,
        provider: str = "kubevirt",
        status: str = "APPROVED",
        spec: dict[str, Any] | None = None,
    ) -> None:
        """Answer every evaluation: evaluated spec `spec`, or the request's own spec."""

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            sent = json.loads(request.body)["service_instance"]["spec"]
            body = {
                "status": status,
                "selected_provider": provider,
                "evaluated_service_instance": {"spec": sent if spec is None else spec},
            }
            return 200, {}, json.dumps(body)

        self.mock.add_callback(responses.POST, EVALUATE, callback=answer)

    def policy_fails(self, status: int, detail: str = "policy says no") -> None:
        self.mock.add(responses.POST, EVALUATE, status=status, json=problem(status, detail))

    def sprm_create(self, status: int = 201, body: Any = None) -> None:
        answer = body if body is not None else {"provider_name": "x", "spec": {}}
        if status >= 400:
            answer = problem(status, "sprm says no")
        self.mock.add(responses.POST, INSTANCES, status=status, json=answer)

    def sprm_get(self, instance_id: str, status: int = 200) -> None:
        body = (
            problem(status)
            if status >= 400
            else {"id": instance_id, "provider_name": "p", "spec": {}}
        )
        self.mock.add(responses.GET, f"{INSTANCES}/{instance_id}", status=status, json=body)

    def sprm_delete(self, instance_id: str, status: int = 204) -> None:
        body = problem(status, "sprm says no") if status >= 400 else None
        self.mock.add(responses.DELETE, f"{INSTANCES}/{instance_id}", status=status, json=body)

    def calls(self, method: str, url_prefix: str) -> list[Any]:
        return [
            call.request
            for call in self.mock.calls
            if call.request.method == method and str(call.request.url).startswith(url_prefix)
        ]

    def evaluations(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.calls("POST", EVALUATE)]

    def creates(self) -> list[Any]:
        return self.calls("POST", INSTANCES)

    def gets(self) -> list[Any]:
        return self.calls("GET", INSTANCES)

    def deletes(self) -> list[Any]:
        return self.calls("DELETE", INSTANCES)

    def upstream_calls(self) -> list[Any]:
        return [
            c.request
            for c in self.mock.calls
            if str(c.request.url).startswith((POLICY_URL, SPRM_URL))
        ]


def create(
    client: Client, rid: str | None = "web-1", spec: dict[str, Any] | None = None
) -> Response[Any]:
    body = Resource(catalog_item_instance_id="cat-1", spec=ResourceSpec.from_dict(spec or SPEC))
    return create_resource.sync_detailed(client=client, body=body, id=rid if rid else UNSET)


def given_resource(client: Client, upstreams: Upstreams, rid: str = "web-1") -> None:
    """Create `rid` through the API, then forget the upstream calls it made."""
    upstreams.policy()
    upstreams.sprm_create()
    assert create(client, rid).status_code == 201
    upstreams.mock.reset()
    upstreams.mock.add_passthru("http://127.0.0.1")


def body(response: Response[Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(response.content)
    return result


def assert_problem(response: Response[Any] | requests.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"] == kind
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]


def resource_ids(client: Client) -> list[str]:
    page = list_resources.sync_detailed(client=client)
    return [r["id"] for r in body(page)["resources"]]
