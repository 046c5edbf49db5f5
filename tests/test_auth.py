"""Optional bearer-token authentication: real RS256 tokens signed by keys made here,
checked against a local OIDC issuer's JWKS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from placement.app import create_app
from placement.config import Auth, Config, ConfigError, Upstream
from tests.oidc import AUDIENCE, Issuer
from tests.support import POLICY_URL, SPRM_URL, Upstreams, assert_problem, serve, wait_for


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with Issuer().serve() as issuer:
        yield issuer


@pytest.fixture
def secured_url(config: Config, issuer: Issuer, upstreams: Upstreams) -> Iterator[str]:
    config = replace(
        config,
        policy=Upstream(POLICY_URL, 5.0),
        sprm=Upstream(SPRM_URL, 5.0),
        auth=Auth(enabled=True, issuer_url=issuer.url, audience=AUDIENCE),
    )
    with serve(create_app(config)) as url:
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
    secured_url: str, upstreams: Upstreams
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
    assert upstreams.upstream_calls() == []


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
