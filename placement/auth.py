"""Optional bearer-token authentication (AUTH_DISABLED=false): JWTs signed by the OIDC
issuer AUTH_ISSUER_URL, for the audience AUTH_JWT_AUDIENCE. The issuer's keys come
from its JWKS (found through OIDC discovery), cached and refetched on an unknown key id.
The spec declares the bearer scheme, so Connexion asks `TokenVerifier` for every
request to a secured operation; health and /metrics stay open."""

from __future__ import annotations

import logging
import threading
from typing import Any

import jwt
import requests
from connexion.security import BearerSecurityHandler

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class TokenVerifier:
    """Connexion's `x-bearerInfoFunc`: the token's claims if it is valid, else None."""

    def __init__(self, issuer: str, audience: str, refresh_cooldown: float = 10.0) -> None:
        self._issuer = issuer
        self._audience = audience
        self._cooldown = refresh_cooldown
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def __call__(self, token: str) -> dict[str, Any] | None:
        try:
            key = self._key_client().get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as exc:
            log.info("bearer token refused: %s", exc)
            return None
        return {**claims, "sub": claims.get("sub", "")}

    def _key_client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    self._jwks_uri(), cooldown_duration=self._cooldown, timeout=10
                )
            return self._keys

    def _jwks_uri(self) -> str:
        discovery = f"{self._issuer.rstrip('/')}/.well-known/openid-configuration"
        answer = requests.get(discovery, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["jwks_uri"])


def bearer_handler(verifier: TokenVerifier) -> type[BearerSecurityHandler]:
    """Connexion's bearer handler, checking tokens with `verifier`."""

    class Handler(BearerSecurityHandler):  # type: ignore[misc]
        def _resolve_func(self, _security_scheme: dict[str, Any]) -> TokenVerifier:
            return verifier

    return Handler
