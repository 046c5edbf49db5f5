"""The upstreams mocked with `responses`: the Policy Engine's and the SPRM's answers
programmed per test, and what the service sent them read back. The service runs in this
process (`tests.harness.app`), its upstreams at the URLs below, which only the mock
answers."""

from __future__ import annotations

import json
from typing import Any

import responses
from placement_manager_client import Client

from tests.harness.calls import create

POLICY_URL = "http://policy.test:8081"
SPRM_URL = "http://sprm.test:8082"
EVALUATE = f"{POLICY_URL}/api/v1alpha1/policies:evaluateRequest"
INSTANCES = f"{SPRM_URL}/api/v1alpha1/service-type-instances"


def upstream_problem(status: int, detail: str = "upstream says no") -> dict[str, Any]:
    """The problem details an upstream answers an error with."""
    return {"type": "about:blank", "title": "Upstream problem", "status": status, "detail": detail}


class MockedUpstreams:
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
        self.mock.add(
            responses.POST, EVALUATE, status=status, json=upstream_problem(status, detail)
        )

    def sprm_create(self, status: int = 201, body: Any = None) -> None:
        answer = body if body is not None else {"provider_name": "x", "spec": {}}
        if status >= 400:
            answer = upstream_problem(status, "sprm says no")
        self.mock.add(responses.POST, INSTANCES, status=status, json=answer)

    def sprm_get(self, instance_id: str, status: int = 200) -> None:
        body = (
            upstream_problem(status)
            if status >= 400
            else {"id": instance_id, "provider_name": "p", "spec": {}}
        )
        self.mock.add(responses.GET, f"{INSTANCES}/{instance_id}", status=status, json=body)

    def sprm_delete(self, instance_id: str, status: int = 204) -> None:
        body = upstream_problem(status, "sprm says no") if status >= 400 else None
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


def given_resource(client: Client, upstreams: MockedUpstreams, rid: str = "web-1") -> None:
    """Create `rid` through the API, then forget the upstream calls it made."""
    upstreams.policy()
    upstreams.sprm_create()
    assert create(client, rid).status_code == 201
    upstreams.mock.reset()
    upstreams.mock.add_passthru("http://127.0.0.1")
