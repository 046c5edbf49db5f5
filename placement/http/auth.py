"""Optional bearer-token authentication (AUTH_DISABLED=false): JWTs signed by the OIDC
issuer AUTH_ISSUER_URL, for the audience AUTH_JWT_AUDIENCE.

The spec declares the bearer scheme, so Connexion asks `TokenVerifier` for every request
to a secured operation; health and /metrics stay open. Connexion calls it on the event
loop, so it never blocks there: the issuer's keys (`IssuerKeys`) are fetched in a thread
of their own, and only the requests that need a fetch wait for it. A request with more
than one Authorization header is refused (`OneAuthorization`), so the token checked is
the token forwarded upstream (UPSTREAM_FORWARD_AUTH)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import requests
from connexion.security import BearerSecurityHandler
from starlette.types import ASGIApp, Receive, Scope, Send

from placement.config import Auth
from placement.errors import Kind, PlacementError
from placement.telemetry import context
from placement.upstream import deadlines
from placement.upstream.transport import pooled_session

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]

REFRESH_AFTER = 300.0  # keys older than this are fetched again, in the background
MIN_INTERVAL = 10.0  # an unknown key id fetches the keys at most this often
FIRST_BACKOFF = 1.0  # after a failed fetch; doubles with each failure in a row
MAX_BACKOFF = 30.0
ISSUER_TIMEOUT = 10.0  # per HTTP call to the issuer


class IssuerError(Exception):
    """The issuer's discovery document or JWKS could not be fetched or used."""


class UnknownKey(Exception):
    """The token names a key the issuer does not publish."""


def fetch_keys(issuer: str, timeout: float = ISSUER_TIMEOUT) -> dict[str, jwt.PyJWK]:
    """The issuer's signing keys by key id: OIDC discovery, then its JWKS (blocking)."""
    discovery = _get_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout)
    if not isinstance(discovery, dict) or not isinstance(discovery.get("jwks_uri"), str):
        raise IssuerError("the discovery document has no jwks_uri")
    if discovery.get("issuer") != issuer:
        raise IssuerError(f"the discovery document names issuer {discovery.get('issuer')!r}")
    jwks = _get_json(discovery["jwks_uri"], timeout)
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise IssuerError("the JWKS has no list of keys")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # a key of a type or algorithm we do not use
    if not keys:
        raise IssuerError("the JWKS has no usable signing key")
    return keys


def _get_json(url: str, timeout: float) -> Any:
    """GET a JSON document from the issuer, the whole exchange within `timeout` (the
    upstream transport's total deadline: an issuer that trickles its answer is cut)."""
    try:
        with deadlines.deadline(timeout), pooled_session(url, pool_size=1) as session:
            answer = session.get(url, timeout=timeout)
            deadlines.check(answer.status_code)
        answer.raise_for_status()
        return answer.json()
    except requests.RequestException as exc:  # JSON errors included
        raise IssuerError(f"GET {url}: {exc}") from None


class IssuerKeys:
    """The issuer's keys, cached. Known keys are used at once; after REFRESH_AFTER they
    are fetched again in the background. A key id not known waits for a fetch, unless
    one succeeded less than MIN_INTERVAL ago. One fetch at a time, the others wait for
    it; after a failure none before a backoff (FIRST_BACKOFF doubling to MAX_BACKOFF),
    and the known keys stay in use until `max_age` after the last successful fetch."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, jwt.PyJWK]],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._next_fetch = 0.0  # no fetch before this time
        self._failures = 0
        self._inflight: asyncio.Future[bool] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="issuer")

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key `kid`; UnknownKey if the issuer does not publish it, PlacementError
        (503) if the issuer cannot be asked now and the key is not known."""
        now = self._clock()
        self._forget_expired(now)
        if kid in self._keys:
            if self._fetched_at is not None and now - self._fetched_at > REFRESH_AFTER:
                self._start_fetch(now)
            return self._keys[kid]
        if self._keys and not self._failures and now < self._next_fetch:
            raise UnknownKey(kid)  # just fetched: the issuer does not publish it
        fetch = self._start_fetch(now)
        if fetch is None:
            raise self._unavailable(now)
        if not await asyncio.shield(fetch):
            raise self._unavailable(self._clock())
        if kid not in self._keys:
            raise UnknownKey(kid)
        return self._keys[kid]

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _start_fetch(self, now: float) -> asyncio.Future[bool] | None:
        """The fetch in flight, or a new one if allowed now; None in a backoff."""
        if self._inflight is None and now >= self._next_fetch:
            self._inflight = asyncio.ensure_future(self._refresh())
        return self._inflight

    async def _refresh(self) -> bool:
        try:
            keys = await asyncio.get_running_loop().run_in_executor(self._thread, self._fetch)
        except IssuerError as exc:
            self._failures += 1
            backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self._failures - 1))
            self._next_fetch = self._clock() + backoff
            log.warning("fetching the issuer's keys failed (next try in %gs): %s", backoff, exc)
            return False
        finally:
            self._inflight = None
        now = self._clock()
        self._keys, self._fetched_at, self._failures = keys, now, 0
        self._next_fetch = now + MIN_INTERVAL
        return True

    def _forget_expired(self, now: float) -> None:
        if self._keys and self._fetched_at is not None and now - self._fetched_at > self._max_age:
            log.warning(
                "the token issuer's keys are older than %gs and could not be fetched again:"
                " tokens are refused until they are",
                self._max_age,
            )
            self._keys = {}

    def _unavailable(self, now: float) -> PlacementError:
        return PlacementError(
            Kind.UNAVAILABLE,
            "the token issuer cannot be reached to check the token; retry later",
            retry_after=max(1, math.ceil(self._next_fetch - now)),
        )


class TokenVerifier:
    """Connexion's `x-bearerInfoFunc`: the token's claims if it is valid, else None.
    A valid token is kept in the request's context: it is the one forwarded upstream."""

    def __init__(self, auth: Auth, keys: IssuerKeys | None = None) -> None:
        self._issuer = auth.issuer_url
        self._audience = auth.audience
        self.keys = keys or IssuerKeys(lambda: fetch_keys(auth.issuer_url), auth.keys_max_age)

    async def __call__(self, token: str) -> dict[str, Any] | None:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if not isinstance(kid, str):
                raise jwt.InvalidTokenError("the token names no key (kid)")
            key = await self.keys.key(kid)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, UnknownKey) as exc:
            log.info("bearer token refused: %s: %s", type(exc).__name__, exc)
            return None
        request = context.current()
        if request is not None:
            request.bearer_token = token
        return {**claims, "sub": claims.get("sub", "")}


def bearer_handler(verifier: TokenVerifier) -> type[BearerSecurityHandler]:
    """Connexion's bearer handler, checking tokens with `verifier`."""

    class Handler(BearerSecurityHandler):  # type: ignore[misc]
        def _resolve_func(self, _security_scheme: dict[str, Any]) -> TokenVerifier:
            return verifier

    return Handler


class OneAuthorization:
    """ASGI middleware: a request with more than one Authorization header is a 400 (one
    could be checked and another forwarded). Without authentication (`keep_token`), the
    bearer token of the one header is kept as sent, to be forwarded upstream; with it,
    the verifier keeps the token it checked."""

    def __init__(self, app: ASGIApp, keep_token: bool = False) -> None:
        self._app = app
        self._keep_token = keep_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = [value for name, value in scope["headers"] if name == b"authorization"]
            if len(found) > 1:
                raise PlacementError(Kind.VALIDATION, "more than one Authorization header")
            request = context.current()
            if self._keep_token and found and request is not None:
                request.bearer_token = _bearer(found[0])
        await self._app(scope, receive, send)


def _bearer(header: bytes) -> str:
    scheme, _, token = header.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
