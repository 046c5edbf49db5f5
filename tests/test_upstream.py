"""The Policy Engine and SPRM clients: exact requests, the retry policy, timeouts."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses

from placement.config import RetryPolicy, Upstream
from placement.model import Evaluation
from placement.upstream.errors import UpstreamError
from placement.upstream.policy import PolicyClient
from placement.upstream.sprm import InstancePage, InstanceState, SprmClient
from placement.upstream.transport import pooled_session
from tests.harness.mocked import EVALUATE, INSTANCES, POLICY_URL, SPRM_URL, upstream_problem

NO_WAIT = RetryPolicy(tries=4, initial=0, maximum=0)


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def policy(retry: RetryPolicy = NO_WAIT, timeout: float = 5.0) -> PolicyClient:
    return PolicyClient(Upstream(POLICY_URL, timeout), retry, pool_size=4)


def sprm(retry: RetryPolicy = NO_WAIT) -> SprmClient:
    return SprmClient(Upstream(SPRM_URL, 5.0), retry, pool_size=4)


VERDICT = {
    "status": "MODIFIED",
    "selected_provider": "kubevirt",
    "evaluated_service_instance": {"spec": {"vcpu": 4}},
}


def test_evaluate_sends_the_contract_body(http: responses.RequestsMock) -> None:
    http.add(responses.POST, EVALUATE, json=VERDICT)

    assert policy().evaluate({"vcpu": 2, "nested": {"a": [1]}}) == Evaluation(
        "MODIFIED", "kubevirt", {"vcpu": 4}
    )
    [call] = http.calls
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body or b"") == {
        "service_instance": {"spec": {"vcpu": 2, "nested": {"a": [1]}}}
    }


def test_create_instance_sends_provider_evaluated_spec_and_id(http: responses.RequestsMock) -> None:
    http.add(responses.POST, INSTANCES, status=201, json={"provider_name": "p", "spec": {}})

    sprm().create_instance("web-1", "kubevirt", {"vcpu": 4})

    [call] = http.calls
    assert call.request.url == f"{INSTANCES}?id=web-1"
    assert json.loads(call.request.body or b"") == {
        "provider_name": "kubevirt",
        "spec": {"vcpu": 4},
    }


def test_delete_instance_plain_and_deferred(http: responses.RequestsMock) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/web-1", status=204)

    assert sprm().delete_instance("web-1") is True
    assert sprm().delete_instance("web-1", deferred=True) is True

    assert [c.request.url for c in http.calls] == [
        f"{INSTANCES}/web-1",
        f"{INSTANCES}/web-1?deferred=true",
    ]


def test_get_instance_answers_none_when_unknown(http: responses.RequestsMock) -> None:
    http.add(responses.GET, f"{INSTANCES}/gone", status=404, json=upstream_problem(404))
    http.add(
        responses.GET,
        f"{INSTANCES}/web-1",
        json={"id": "web-1", "provider_name": "p", "spec": {"a": 1}},
    )

    assert sprm().get_instance("gone") is None
    assert sprm().get_instance("web-1") == {"id": "web-1", "provider_name": "p", "spec": {"a": 1}}


def test_delete_of_an_instance_the_sprm_does_not_have_is_already_gone(
    http: responses.RequestsMock,
) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/gone", status=404, json=upstream_problem(404))

    assert sprm().delete_instance("gone") is False
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    "body", ["<html>502 from a proxy</html>", '{"provider_name": "p", "sp', ""]
)
def test_a_garbled_success_keeps_its_status_as_an_unknown_outcome(
    http: responses.RequestsMock, body: str
) -> None:
    """Case 2: the SPRM answered 201 but the body does not parse (a proxy's page, a
    truncated answer): it may have acted, so the outcome is unknown, never "no answer"."""
    http.add(responses.POST, INSTANCES, status=201, body=body)

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "kubevirt", {"vcpu": 4})

    failure = raised.value
    assert (failure.status, failure.garbled, failure.outcome_unknown) == (201, True, True)
    assert failure.transient is False
    assert failure.summary == "HTTP 201 with a body that does not match its API"
    assert "no answer" not in str(failure)
    assert len(http.calls) == 1


def test_a_garbled_look_up_cannot_say(http: responses.RequestsMock) -> None:
    http.add(responses.GET, f"{INSTANCES}/web-1", status=200, body="<html></html>")

    with pytest.raises(UpstreamError) as raised:
        sprm().get_instance("web-1")

    assert raised.value.status == 200


def test_get_instance_asks_for_live_instances_only(http: responses.RequestsMock) -> None:
    http.add(responses.GET, f"{INSTANCES}/web-1", json={"provider_name": "p", "spec": {}})
    sprm().get_instance("web-1")
    assert http.calls[0].request.url == f"{INSTANCES}/web-1"  # no show_deleted


def test_find_instance_sees_deleted_ones(http: responses.RequestsMock) -> None:
    body = {
        "id": "web-1",
        "provider_name": "p",
        "spec": {},
        "create_time": "2026-01-02T03:04:05",  # no offset: UTC
        "delete_time": "2026-01-03T00:00:00Z",
        "deletion_status": "FAILED",
    }
    http.add(responses.GET, f"{INSTANCES}/web-1", json=body)
    http.add(responses.GET, f"{INSTANCES}/web-2", status=404, json=upstream_problem(404))

    found = sprm().find_instance("web-1")

    assert found == InstanceState(
        "web-1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "FAILED", deleted=True
    )
    assert http.calls[0].request.url == f"{INSTANCES}/web-1?show_deleted=true"
    assert sprm().find_instance("web-2") is None


def test_list_instances_pages_and_reads_the_token(http: responses.RequestsMock) -> None:
    first = {"instances": [{"id": "a", "provider_name": "p", "spec": {}}], "next_page_token": "t"}
    http.add(responses.GET, INSTANCES, json=first)
    http.add(responses.GET, INSTANCES, json={"instances": [], "next_page_token": ""})
    client = sprm()

    assert client.list_instances(50, None) == InstancePage([InstanceState("a", None, None)], "t")
    assert client.list_instances(50, "t") == InstancePage([], None)
    urls = [call.request.url for call in http.calls]
    assert urls == [f"{INSTANCES}?max_page_size=50", f"{INSTANCES}?max_page_size=50&page_token=t"]


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"provider_name": "p", "spec": {}}]},  # no id
        {"instances": [{"id": "a", "spec": {}}]},  # no provider_name
        {"next_page_token": "t"},  # no instances
    ],
)
def test_malformed_list_pages_are_permanent_errors(
    http: responses.RequestsMock, body: dict[str, Any]
) -> None:
    http.add(responses.GET, INSTANCES, json=body)
    with pytest.raises(UpstreamError) as raised:
        sprm().list_instances(100, None)
    assert not raised.value.transient
    assert len(http.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_transient_statuses_are_retried_until_success(
    http: responses.RequestsMock, status: int
) -> None:
    for _ in range(3):
        http.add(responses.POST, EVALUATE, status=status, json=upstream_problem(status))
    http.add(responses.POST, EVALUATE, json=VERDICT)

    assert policy().evaluate({"a": 1}).provider == "kubevirt"
    assert len(http.calls) == 4


def test_transient_errors_give_up_after_the_last_try(http: responses.RequestsMock) -> None:
    http.add(responses.POST, INSTANCES, status=503, json=upstream_problem(503))

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "p", {"a": 1})

    assert raised.value.status == 503
    assert len(http.calls) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 406, 409, 422])
def test_other_4xx_are_permanent(http: responses.RequestsMock, status: int) -> None:
    http.add(responses.POST, EVALUATE, status=status, json=upstream_problem(status, "because"))

    with pytest.raises(UpstreamError) as raised:
        policy().evaluate({"a": 1})

    assert (raised.value.status, raised.value.reason) == (status, "because")
    assert len(http.calls) == 1


def test_connection_errors_are_retried(http: responses.RequestsMock) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/web-1", body=requests.ConnectionError("reset"))
    http.add(responses.DELETE, f"{INSTANCES}/web-1", status=204)

    sprm().delete_instance("web-1")

    assert len(http.calls) == 2


def test_error_bodies_that_are_not_json_keep_their_status(http: responses.RequestsMock) -> None:
    http.add(responses.POST, EVALUATE, status=502, body="<html>bad gateway</html>")

    with pytest.raises(UpstreamError) as raised:
        policy(RetryPolicy(tries=1, initial=0, maximum=0)).evaluate({"a": 1})

    assert raised.value.status == 502
    assert "bad gateway" in raised.value.reason


@pytest.mark.parametrize(
    "answer",
    ["not json", {"status": "APPROVED"}, {**VERDICT, "status": "MAYBE"}],
)
def test_malformed_success_answers_are_permanent_errors(
    http: responses.RequestsMock, answer: Any
) -> None:
    body = answer if isinstance(answer, str) else json.dumps(answer)
    http.add(responses.POST, EVALUATE, status=200, body=body)

    with pytest.raises(UpstreamError) as raised:
        policy().evaluate({"a": 1})

    assert raised.value.transient is False
    assert len(http.calls) == 1


def test_backoff_waits_double_from_the_initial_wait_up_to_the_maximum(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("backoff._sync.time.sleep", waits.append)
    http.add(responses.POST, EVALUATE, status=500, json=upstream_problem(500))

    with pytest.raises(UpstreamError):
        policy(RetryPolicy(tries=5, initial=1.0, maximum=4.0)).evaluate({"a": 1})

    assert waits == [1.0, 2.0, 4.0, 4.0]
    assert len(http.calls) == 5


class _Hang(BaseHTTPRequestHandler):
    """Accepts the request and answers nothing until the test is over."""

    release: threading.Event
    hits: list[str]

    def do_POST(self) -> None:
        self.hits.append(self.path)
        self.release.wait(30)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hanging_upstream() -> Iterator[tuple[str, list[str]]]:
    release, hits = threading.Event(), list[str]()
    handler = type("Hang", (_Hang,), {"release": release, "hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    release.set()
    server.shutdown()
    server.server_close()


def test_timeout_is_honoured_and_retried(hanging_upstream: tuple[str, list[str]]) -> None:
    url, hits = hanging_upstream
    client = PolicyClient(Upstream(url, 0.2), RetryPolicy(tries=2, initial=0, maximum=0), 4)

    with pytest.raises(UpstreamError) as raised:
        client.evaluate({"a": 1})

    assert raised.value.status is None
    assert "timed out" in raised.value.reason
    assert hits == ["/api/v1alpha1/policies:evaluateRequest"] * 2


def test_the_environments_proxy_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "sprm.internal")

    proxied = pooled_session("http://policy.internal:8081", pool_size=2)
    direct = pooled_session("http://sprm.internal:8082", pool_size=2)

    assert proxied.proxies.get("http") == "http://proxy.example:3128"
    assert "http" not in direct.proxies
    assert proxied.trust_env is False  # not looked up again on every call


def test_a_request_that_cannot_be_made_is_not_retried_as_an_upstream_failure(
    http: responses.RequestsMock,
) -> None:
    http.add(responses.POST, EVALUATE, json=VERDICT)
    slow_retries = RetryPolicy(tries=4, initial=5, maximum=5)

    with pytest.raises(requests.exceptions.InvalidJSONError):  # raised at once, not retried
        policy(slow_retries).evaluate({"cpu": math.inf})

    assert len(http.calls) == 0
