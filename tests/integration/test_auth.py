"""Optional bearer-token authentication: real RS256 tokens signed by keys made here,
checked against a local OIDC issuer's JWKS."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import jwt
import pytest
import requests

from placement.config import Auth, Config, ConfigError
from placement.errors import Kind, PlacementError
from placement.http.auth import (
    MIN_INTERVAL,
    REFRESH_AFTER,
    IssuerError,
    IssuerKeys,
    UnknownKey,
    fetch_keys,
)
from tests.harness.app import serve_config
from tests.harness.concurrency import wait_for
from tests.harness.mocked import MockedUpstreams
from tests.harness.oidc import AUDIENCE, Issuer
from tests.harness.problems import assert_problem


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with Issuer().serve() as issuer:
        yield issuer


@pytest.fixture
def secured_url(config: Config, issuer: Issuer, mocked_upstreams: MockedUpstreams) -> Iterator[str]:
    auth = Auth(enabled=True, issuer_url=issuer.url, audience=AUDIENCE)
    with serve_config(config, auth=auth) as url:
        yield url


def get(url: str, token: str | None = None, scheme: str = "Bearer") -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return requests.get(url, headers=headers, timeout=10)


def assert_unauthorized(response: requests.Response) -> None:
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_token_is_accepted(secured_url: str, issuer: Issuer) -> None:
    response = get(f"{secured_url}/api/v1alpha1/resources", issuer.token())
    assert response.status_code == 200
    assert response.json() == {"resources": []}


@pytest.mark.parametrize(
    "make_token",
    [
        lambda issuer: None,
        lambda issuer: "not-a-jwt",
        lambda issuer: issuer.token(expires_in=-60),
        lambda issuer: issuer.token(aud="someone-else"),
        lambda issuer: issuer.token(iss="http://127.0.0.1:1/other-issuer"),
        lambda issuer: issuer.foreign_token(),
    ],
    ids=["missing", "malformed", "expired", "wrong-audience", "wrong-issuer", "bad-signature"],
)
def test_bad_tokens_are_401_problems(secured_url: str, issuer: Issuer, make_token: object) -> None:
    token = make_token(issuer)  # type: ignore[operator]
    assert_unauthorized(get(f"{secured_url}/api/v1alpha1/resources", token))


def test_another_scheme_is_refused(secured_url: str, issuer: Issuer) -> None:
    assert_unauthorized(get(f"{secured_url}/api/v1alpha1/resources", issuer.token(), "Basic"))


def test_every_api_operation_but_health_needs_a_token(
    secured_url: str, mocked_upstreams: MockedUpstreams
) -> None:
    api = f"{secured_url}/api/v1alpha1"
    for method, path in [
        ("GET", "/resources"),
        ("POST", "/resources"),
        ("GET", "/resources/web-1"),
        ("DELETE", "/resources/web-1"),
        ("POST", "/resources/web-1:rehydrate"),
    ]:
        assert_unauthorized(requests.request(method, f"{api}{path}", json={}, timeout=10))
    assert requests.get(f"{api}/health", timeout=10).status_code == 200
    assert requests.get(f"{secured_url}/metrics", timeout=10).status_code == 200
    assert mocked_upstreams.upstream_calls() == []


def test_a_rotated_key_is_fetched_when_first_seen(secured_url: str, issuer: Issuer) -> None:
    url = f"{secured_url}/api/v1alpha1/resources"
    assert get(url, issuer.token()).status_code == 200
    issuer.rotate()
    fresh = issuer.token()

    wait_for(lambda: get(url, fresh).status_code == 200, timeout=20, what="key refresh")


def test_enabling_auth_needs_an_issuer_and_an_audience() -> None:
    with pytest.raises(ConfigError, match="AUTH_ISSUER_URL"):
        Config.from_env({"AUTH_DISABLED": "false", "AUTH_JWT_AUDIENCE": "x"})
    with pytest.raises(ConfigError, match="AUTH_JWT_AUDIENCE"):
        Config.from_env({"AUTH_DISABLED": "false", "AUTH_ISSUER_URL": "http://idp"})
    assert Config.from_env({}).auth == Auth()


# --- a slow, failing or wrong issuer; more than one token ----------------------------


@contextmanager
def secured(config: Config, issuer: Issuer, **auth_env: str) -> Iterator[str]:
    """The app with authentication configured from the environment, as `serve` does."""
    env = {
        "AUTH_DISABLED": "false",
        "AUTH_ISSUER_URL": issuer.issuer,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
        **auth_env,
    }
    auth = Config.from_env(env).auth
    forward_auth = auth_env.get("UPSTREAM_FORWARD_AUTH") == "true"
    with serve_config(config, auth=auth, forward_auth=forward_auth) as url:
        yield url


def timed_get(url: str, token: str | None = None) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = get(url, token)
    return time.monotonic() - started, response


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_slow_issuer_delays_only_the_requests_that_need_its_keys(
    config: Config, issuer: Issuer
) -> None:
    issuer.delay = 1.0  # discovery, then JWKS: 2 s to learn the keys
    with secured(config, issuer) as url, ThreadPoolExecutor(4) as pool:
        tokens = [issuer.token(sub=f"user-{n}") for n in range(4)]
        waiting = [pool.submit(get, f"{url}/api/v1alpha1/resources", t) for t in tokens]
        wait_for(lambda: issuer.hits, timeout=10, what="the first key fetch")

        health = [timed_get(f"{url}/api/v1alpha1/health") for _ in range(3)]

        assert [r.status_code for _, r in health] == [200, 200, 200]
        assert max(seconds for seconds, _ in health) < 1.0, health
        assert [w.result().status_code for w in waiting] == [200] * 4
        assert issuer.hits == ["/.well-known/openid-configuration", "/jwks"]  # one fetch

        seconds, known = timed_get(f"{url}/api/v1alpha1/resources", issuer.token())
        assert known.status_code == 200
        assert seconds < 1.0
        assert len(issuer.hits) == 2


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_while_the_issuer_is_down_it_is_asked_seldom_and_tokens_get_503(
    config: Config, issuer: Issuer
) -> None:
    issuer.status = 503
    with secured(config, issuer) as url:
        answers = []
        started = time.monotonic()
        for _ in range(50):  # over 5 s
            answers.append(get(f"{url}/api/v1alpha1/resources", issuer.token()))
            time.sleep(max(0.0, started + 0.1 * len(answers) - time.monotonic()))

        assert len(issuer.hits) <= 5, issuer.hits  # 1 s, then 2 s, 4 s... between tries
        for answer in answers:
            assert_problem(answer, 503, "service-unavailable")
            assert int(answer.headers["Retry-After"]) >= 1
        assert requests.get(f"{url}/api/v1alpha1/health", timeout=10).status_code == 200

        issuer.status = 200
        wait_for(
            lambda: get(f"{url}/api/v1alpha1/resources", issuer.token()).status_code == 200,
            timeout=30,
            what="the issuer's keys once it is back",
        )


@pytest.mark.parametrize(
    "discovery",
    [
        ["not", "a", "discovery", "document"],
        {"issuer": "http://127.0.0.1:1/someone-else", "jwks_uri": "http://127.0.0.1:1/jwks"},
        {"issuer": "placeholder"},
    ],
    ids=["array", "another-issuer", "no-jwks-uri"],
)
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_wrong_discovery_document_makes_the_issuer_unusable_not_a_500(
    config: Config, issuer: Issuer, discovery: object
) -> None:
    with secured(config, issuer) as url:
        if isinstance(discovery, dict) and discovery.get("issuer") == "placeholder":
            discovery = {"issuer": issuer.issuer}
        issuer.discovery = discovery
        response = get(f"{url}/api/v1alpha1/resources", issuer.token())
        assert_problem(response, 503, "service-unavailable")
        assert "/jwks" not in issuer.hits


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_an_issuer_whose_identifier_ends_in_a_slash_is_matched_as_written(
    config: Config,
) -> None:
    with Issuer(trailing_slash=True).serve() as issuer, secured(config, issuer) as url:
        assert issuer.issuer.endswith("/")
        assert get(f"{url}/api/v1alpha1/resources", issuer.token()).status_code == 200
        wrong = issuer.token(iss=issuer.issuer.rstrip("/"))
        assert_unauthorized(get(f"{url}/api/v1alpha1/resources", wrong))


def send_raw(url: str, request: bytes, timeout: float = 10) -> bytes:
    """Send `request` as it is (headers a client library would not send), read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_two_authorization_headers_are_refused_and_the_token_checked_is_forwarded(
    config: Config, issuer: Issuer, mocked_upstreams: MockedUpstreams
) -> None:
    mocked_upstreams.policy()
    mocked_upstreams.sprm_create()
    forged = jwt.encode({"sub": "mallory"}, "", algorithm="none")
    valid = issuer.token()
    body = json.dumps({"catalog_item_instance_id": "c", "spec": {"a": 1}}).encode()
    with secured(config, issuer, UPSTREAM_FORWARD_AUTH="true") as url:
        answer = send_raw(
            url,
            b"POST /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {valid}\r\nAuthorization: Bearer {forged}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body,
        )
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"more than one Authorization header" in answer
        assert mocked_upstreams.upstream_calls() == []

        created = requests.post(
            f"{url}/api/v1alpha1/resources",
            data=body,
            headers={"Authorization": f"Bearer {valid}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert created.status_code == 201, created.content
        sent = [c.headers["Authorization"] for c in mocked_upstreams.upstream_calls()]
        assert sent == [f"Bearer {valid}", f"Bearer {valid}"]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_no_body_is_read_before_the_token_is_checked(config: Config, issuer: Issuer) -> None:
    with secured(config, issuer) as url:
        # A chunked body that never ends, without a token: refused at once all the same.
        answer = send_raw(
            url,
            b"POST /api/v1alpha1/resources HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5\r\n{"a":\r\n',
            timeout=5,
        )
        assert answer.startswith(b"HTTP/1.1 401 "), answer


# --- the key cache, on a clock of its own ---------------------------------------------


class FakeIssuer:
    """Fetches for IssuerKeys: the keys it publishes, or IssuerError while `down`."""

    def __init__(self) -> None:
        self.keys = {"k1": jwt.PyJWK({"kty": "oct", "k": "c2VjcmV0", "kid": "k1"})}
        self.down = False
        self.fetches = 0

    def __call__(self) -> dict[str, jwt.PyJWK]:
        self.fetches += 1
        time.sleep(0.05)
        if self.down:
            raise IssuerError("down")
        return dict(self.keys)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_fetch_serves_every_request_waiting_for_keys() -> None:
    fake, clock = FakeIssuer(), Clock()
    keys = IssuerKeys(fake, max_age=3600, clock=clock)

    async def scenario() -> None:
        found = await asyncio.gather(*(keys.key("k1") for _ in range(10)))
        assert {k.key_id for k in found} == {"k1"}

    asyncio.run(scenario())
    assert fake.fetches == 1


def test_an_unknown_key_id_fetches_at_most_once_per_min_interval() -> None:
    fake, clock = FakeIssuer(), Clock()
    keys = IssuerKeys(fake, max_age=3600, clock=clock)

    async def scenario() -> None:
        await keys.key("k1")
        with pytest.raises(UnknownKey):
            await keys.key("k2")
        assert fake.fetches == 1  # just fetched: k2 is not the issuer's
        clock.now += MIN_INTERVAL + 1
        fake.keys["k2"] = jwt.PyJWK({"kty": "oct", "k": "c2VjcmV0Mg", "kid": "k2"})
        assert (await keys.key("k2")).key_id == "k2"
        assert fake.fetches == 2

    asyncio.run(scenario())


def test_known_keys_serve_while_refreshing_fails_until_their_max_age() -> None:
    fake, clock = FakeIssuer(), Clock()
    keys = IssuerKeys(fake, max_age=REFRESH_AFTER * 3, clock=clock)

    async def scenario() -> None:
        await keys.key("k1")
        fake.down = True
        clock.now += REFRESH_AFTER + 1
        assert (await keys.key("k1")).key_id == "k1"  # stale: served, refreshed behind
        await asyncio.sleep(0.3)
        assert fake.fetches == 2
        clock.now += REFRESH_AFTER
        assert (await keys.key("k1")).key_id == "k1"  # refresh failed: still served
        clock.now += REFRESH_AFTER  # past the max age
        with pytest.raises(PlacementError) as refused:
            await keys.key("k1")
        assert refused.value.kind is Kind.UNAVAILABLE
        assert refused.value.retry_after is not None

    asyncio.run(scenario())


def test_failed_fetches_back_off() -> None:
    fake, clock = FakeIssuer(), Clock()
    fake.down = True
    keys = IssuerKeys(fake, max_age=3600, clock=clock)

    async def ask() -> None:
        with pytest.raises(PlacementError):
            await keys.key("k1")

    async def scenario() -> None:
        tries = []
        for _ in range(40):  # one request each 0.25 s, for 10 s
            await ask()
            tries.append(fake.fetches)
            clock.now += 0.25
        # Fetched at 0 s, then after 1, 2 and 4 s more: at 0, 1, 3 and 7 s.
        assert fake.fetches == 4
        assert [tries.index(n) for n in range(1, 5)] == [0, 4, 12, 28]

    asyncio.run(scenario())


def test_an_issuer_that_trickles_its_answer_is_cut_at_the_fetchs_deadline() -> None:
    """`requests` times each read: an issuer sending a byte every 0.2 s would hold the
    fetch (and every request waiting for keys) for ever without the total deadline."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    threading.Thread(target=serve, daemon=True).start()
    started = time.monotonic()
    try:
        with pytest.raises(IssuerError, match=r"timed out|cut|Read"):
            fetch_keys(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.5)
    finally:
        stop.set()
        server.close()
    assert time.monotonic() - started < 5.0  # the server would trickle for ever
