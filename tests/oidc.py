"""A local OIDC issuer for the auth tests: discovery and JWKS served over HTTP, RSA keys
generated here, and tokens signed with them (no network beyond loopback)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from placement.standins import BackgroundServer

AUDIENCE = "placement-manager"


class Issuer:
    def __init__(self) -> None:
        self.url = ""
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate()

    def rotate(self) -> str:
        """Publish a new signing key (the old ones stay published) and sign with it."""
        kid = uuid.uuid4().hex[:8]
        self._keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def token(self, expires_in: int = 300, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + expires_in,
        } | claims
        kid = kid or self.kid
        return jwt.encode(payload, self._keys[kid], algorithm="RS256", headers={"kid": kid})

    def foreign_token(self) -> str:
        """Right claims, signed by a key this issuer never published."""
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        payload = {"iss": self.url, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        return jwt.encode(payload, stranger, algorithm="RS256", headers={"kid": self.kid})

    def _discovery(self, _request: Request) -> JSONResponse:
        return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

    def _jwks(self, _request: Request) -> JSONResponse:
        keys = [
            json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "RS256"}
            for kid, key in self._keys.items()
        ]
        return JSONResponse({"keys": keys})

    @contextmanager
    def serve(self) -> Iterator[Issuer]:
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
            ]
        )
        with BackgroundServer(app) as server:
            self.url = server.url
            yield self
