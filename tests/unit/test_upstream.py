"""The Policy Engine and SPRM clients: exact requests, the retry policy, timeouts."""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses

from placement.config import RetryPolicy, Upstream
from placement.errors import UpstreamError
from placement.model import Change, Evaluation, Instance
from placement.upstream import deadlines
from placement.upstream.deadlines import deadline
from placement.upstream.policy import PolicyClient
from placement.upstream.sprm import InstancePage, SprmClient
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

    assert sprm().delete_instance("web-1") == Change()
    assert sprm().delete_instance("web-1", deferred=True) == Change()

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
    assert sprm().get_instance("web-1") == Instance("web-1")


def test_delete_of_an_instance_the_sprm_does_not_have_is_already_gone(
    http: responses.RequestsMock,
) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/gone", status=404, json=upstream_problem(404))

    assert sprm().delete_instance("gone") == Change(found=False)
    assert len(http.calls) == 1


@pytest.mark.parametrize("status", [201, 202])
@pytest.mark.parametrize(
    "body", ["<html>from a proxy</html>", '{"provider_name": "p", "sp', "", '{"agent_name": "a"}']
)
def test_a_create_success_is_its_status_whatever_the_body(
    http: responses.RequestsMock, status: int, body: str
) -> None:
    """Only the status code of a create's answer matters (202: the SPRM queued the work);
    a newer SPRM's instance without provider_name, or a body that does not parse, is
    still a success, never an unknown outcome."""
    http.add(responses.POST, INSTANCES, status=status, body=body)

    assert sprm().create_instance("web-1", "kubevirt", {"vcpu": 4}) == Change()
    assert len(http.calls) == 1


def test_a_create_answer_gives_the_instance_status(http: responses.RequestsMock) -> None:
    http.add(responses.POST, INSTANCES, status=201, json={"id": "web-1", "status": "pending"})
    assert sprm().create_instance("web-1", "kubevirt", {}).status == "pending"


def test_a_garbled_look_up_cannot_say(http: responses.RequestsMock) -> None:
    http.add(responses.GET, f"{INSTANCES}/web-1", status=200, body="<html></html>")

    with pytest.raises(UpstreamError) as raised:
        sprm().get_instance("web-1")

    assert raised.value.status == 200


def test_get_instance_sees_deleted_ones(http: responses.RequestsMock) -> None:
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

    found = sprm().get_instance("web-1")

    assert found == Instance(
        "web-1", None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "FAILED", deleted=True
    )
    assert http.calls[0].request.url == f"{INSTANCES}/web-1?show_deleted=true"
    assert sprm().get_instance("web-2") is None


@pytest.mark.parametrize(
    ("fields", "live", "being_deleted", "deleted"),
    [
        ({"agent_name": "kubevirt-agent", "status": "running"}, True, False, False),
        ({"deletion_status": "PENDING_PROVIDER"}, False, True, False),
        ({"deletion_status": "scheduled"}, False, True, False),
        ({"deletion_status": "DELETED"}, False, False, True),
        (
            {"deletion_status": "SOMETHING_NEW", "status": 7, "create_time": "never"},
            True,
            False,
            False,
        ),
    ],
)
def test_a_newer_sprms_instance_is_read_for_what_the_flows_need(
    http: responses.RequestsMock,
    fields: dict[str, Any],
    live: bool,
    being_deleted: bool,
    deleted: bool,
) -> None:
    """DCM's newer SPRM answers with agent_name instead of provider_name, deletion_status
    values the spec does not list, lower-case statuses: none of that is garbled."""
    http.add(responses.GET, f"{INSTANCES}/web-1", json={"id": "web-1", "extra": [1], **fields})

    found = sprm().get_instance("web-1")

    assert found is not None
    assert (found.live, found.being_deleted, found.deleted) == (live, being_deleted, deleted)


def test_list_instances_pages_and_reads_the_token(http: responses.RequestsMock) -> None:
    first = {"instances": [{"id": "a", "provider_name": "p", "spec": {}}], "next_page_token": "t"}
    http.add(responses.GET, INSTANCES, json=first)
    http.add(responses.GET, INSTANCES, json={"instances": [], "next_page_token": ""})
    client = sprm()

    assert client.list_instances(50, None) == InstancePage([Instance("a")], "t")
    assert client.list_instances(50, "t") == InstancePage([], None)
    urls = [call.request.url for call in http.calls]
    assert urls == [f"{INSTANCES}?max_page_size=50", f"{INSTANCES}?max_page_size=50&page_token=t"]


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"provider_name": "p", "spec": {}}]},  # no id
        {"instances": ["a"]},  # not an instance
        {"instances": [], "next_page_token": 7},
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
    monkeypatch.setattr("placement.upstream.retry._sleep", waits.append)
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


# --- a call is its tries together -------------------------------------------------


@pytest.mark.parametrize("refusal", [429, 422, 400, 408])
def test_a_refusal_after_a_try_that_may_have_acted_does_not_settle_the_call(
    http: responses.RequestsMock, refusal: int
) -> None:
    """The SPRM made the instance and answered 503; the retries are refused: the outcome
    is unknown (the caller looks it up and undoes it), never "nothing happened"."""
    http.add(responses.POST, INSTANCES, status=503, json=upstream_problem(503))
    http.add(responses.POST, INSTANCES, status=refusal, json=upstream_problem(refusal))

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "p", {"a": 1})

    assert raised.value.status == refusal
    assert raised.value.outcome_unknown
    assert raised.value.summary == f"HTTP {refusal} after a try that may have acted"


def test_a_delete_refused_after_a_try_that_may_have_acted_is_unknown(
    http: responses.RequestsMock,
) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/web-1", body=requests.ConnectionError("reset"))
    http.add(responses.DELETE, f"{INSTANCES}/web-1", status=422, json=upstream_problem(422))

    with pytest.raises(UpstreamError) as raised:
        sprm().delete_instance("web-1")

    assert raised.value.outcome_unknown


def test_a_call_whose_every_try_was_refused_did_nothing(http: responses.RequestsMock) -> None:
    http.add(responses.POST, INSTANCES, status=429, json=upstream_problem(429))

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "p", {"a": 1})

    assert len(http.calls) == 4
    assert not raised.value.outcome_unknown


def test_a_409_to_a_retried_create_means_an_earlier_try_made_it(
    http: responses.RequestsMock,
) -> None:
    http.add(responses.POST, INSTANCES, status=503, json=upstream_problem(503))
    http.add(responses.POST, INSTANCES, status=409, json=upstream_problem(409))

    assert sprm().create_instance("web-1", "p", {"a": 1}) == Change()


def test_a_409_to_a_create_that_may_exist_means_it_does(http: responses.RequestsMock) -> None:
    http.add(responses.POST, INSTANCES, status=409, json=upstream_problem(409))

    sprm().create_instance("web-1", "p", {"a": 1}, may_exist=True)
    with pytest.raises(UpstreamError):
        sprm().create_instance("web-1", "p", {"a": 1})


def test_a_delete_the_sprm_queued_is_a_success(http: responses.RequestsMock) -> None:
    http.add(responses.DELETE, f"{INSTANCES}/web-1", status=202)
    assert sprm().delete_instance("web-1") == Change()


def test_retry_after_is_honoured_within_the_calls_time(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("placement.upstream.retry._sleep", waits.append)
    busy = upstream_problem(503)
    http.add(responses.POST, INSTANCES, status=503, json=busy, headers={"Retry-After": "3"})
    http.add(responses.POST, INSTANCES, status=201, json={})

    sprm().create_instance("web-1", "p", {})

    assert waits == [3.0]


def test_retry_after_beyond_the_calls_time_ends_the_call(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call's time (every try's deadline and the waits: what the lease is sized on)
    is never exceeded: a Retry-After past it ends the call with its answer."""
    waits: list[float] = []
    monkeypatch.setattr("placement.upstream.retry._sleep", waits.append)
    busy = upstream_problem(503)
    http.add(responses.POST, INSTANCES, status=503, json=busy, headers={"Retry-After": "3600"})

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "p", {})

    assert (raised.value.status, waits, len(http.calls)) == (503, [], 1)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_said_in_the_detail_and_the_metric(
    http: responses.RequestsMock, status: int
) -> None:
    from placement.telemetry import metrics

    counter = metrics.UPSTREAM_CALLS.labels("sprm", "create", "credentials_refused")
    before = counter._value.get()
    http.add(responses.POST, INSTANCES, status=status, json=upstream_problem(status, "bad token"))

    with pytest.raises(UpstreamError) as raised:
        sprm().create_instance("web-1", "p", {})

    assert raised.value.detail == (
        f"the SPRM refused the service's credentials or the forwarded token (HTTP {status}):"
        " bad token"
    )
    assert counter._value.get() == before + 1


# --- every call ends by its total deadline -------------------------------------------


@pytest.fixture
def trickling_upstream() -> Iterator[str]:
    """Answers a request with a status line, then one header line every 0.2 s for 20 s:
    every read is quick, the answer never ends. `GET /fast` is answered at once."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while (request := conn.recv(65536)).startswith(b"GET /fast "):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if not request:
                return
            conn.sendall(b"HTTP/1.1 201 Created\r\n")
            for n in range(100):
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(f"X-Slow-{n}: 1\r\n".encode())
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()


def test_an_answer_that_trickles_is_cut_at_the_calls_deadline(trickling_upstream: str) -> None:
    client = SprmClient(
        Upstream(trickling_upstream, 0.6), RetryPolicy(tries=2, initial=0.1, maximum=0.1), 4
    )
    started = time.monotonic()

    with pytest.raises(UpstreamError) as raised:
        client.create_instance("web-1", "p", {})

    took = time.monotonic() - started
    assert raised.value.status is None
    assert raised.value.outcome_unknown
    assert re.search(r"timed out \(the try's deadline: 0\.[56]\d* s in all\)", raised.value.reason)
    assert took < 5.0, took  # two tries of 0.6 s and a wait; the server trickles for 20 s


def test_a_call_that_reaches_its_socket_after_its_deadline_stops_there(
    trickling_upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread stalled (a loaded machine) between reading the time left and using its
    socket, while the watchdog expired its deadline: the watchdog will never cut that
    socket, so the call stops there rather than reading a trickle for as long as it lasts."""
    session = pooled_session(trickling_upstream, pool_size=1)
    monkeypatch.setattr(deadlines, "_within", lambda timeout, left: timeout)  # read before
    started = time.monotonic()
    with deadline(0.2) as made:
        while not made.expired and time.monotonic() - started < 10:
            time.sleep(0.01)
        with pytest.raises(requests.RequestException):
            session.get(trickling_upstream + "/slow", timeout=5)
    assert time.monotonic() - started < 5.0  # the server trickles for 20 s


def test_the_pool_keeps_working_around_cut_calls(trickling_upstream: str) -> None:
    """A connection cut by a deadline is never handed to the next call, and calls that
    end in time leave theirs alone for the next."""
    session = pooled_session(trickling_upstream, pool_size=1)
    for _ in range(3):
        with deadline(5.0):
            assert session.get(trickling_upstream + "/fast", timeout=5).text == "ok"
        # (an error, or an answer whose headers the shut socket ended)
        with deadline(0.3) as slow, contextlib.suppress(requests.RequestException):
            session.get(trickling_upstream + "/slow", timeout=5)
        assert slow.expired
    time.sleep(0.5)  # past every deadline so far: the watchdog cuts nothing of this call
    with deadline(0.4):
        assert session.get(trickling_upstream + "/fast", timeout=5).text == "ok"
