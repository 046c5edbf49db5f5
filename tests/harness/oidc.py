"""A local OIDC issuer for the auth tests: discovery and JWKS served over HTTP, RSA keys
generated here, and tokens signed with them (no network beyond loopback). It can be made
slow (`delay`), failing (`status`) or wrong (`discovery`), and counts what it is asked."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from placement_dev.standins import BackgroundServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

AUDIENCE = "placement-manager"


class Issuer:
    """`trailing_slash`: its `iss` (the URL configured) ends in "/"."""

    def __init__(self, trailing_slash: bool = False) -> None:
        self.url = ""
        self._slash = "/" if trailing_slash else ""
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate()
        self.delay = 0.0  # seconds before each answer
        self.status = 200  # anything else: every answer is this status, no document
        self.discovery: Any = None  # a discovery document to serve instead of the right one
        self.hits: list[str] = []  # the paths asked, in order

    @property
    def issuer(self) -> str:
        """Its identifier: tokens' `iss`, AUTH_ISSUER_URL."""
        return self.url + self._slash

    def rotate(self) -> str:
        """Publish a new signing key (the old ones stay published) and sign with it."""
        kid = uuid.uuid4().hex[:8]
        self._keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def token(self, expires_in: int = 300, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
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
        payload = {"iss": self.issuer, "aud": AUDIENCE, "exp": int(time.time()) + 300}
        return jwt.encode(payload, stranger, algorithm="RS256", headers={"kid": self.kid})

    async def _discovery(self, request: Request) -> Response:
        document = self.discovery or {"issuer": self.issuer, "jwks_uri": f"{self.url}/jwks"}
        return await self._answer(request, document)

    async def _jwks(self, request: Request) -> Response:
        keys = [
            json.loads(RSAAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "RS256"}
            for kid, key in self._keys.items()
        ]
        return await self._answer(request, {"keys": keys})

    async def _answer(self, request: Request, document: Any) -> Response:
        self.hits.append(request.url.path)
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return Response("issuer trouble", status_code=self.status)
        return JSONResponse(document)

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
