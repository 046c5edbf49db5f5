"""Which methods the spec defines for a request path: the `Allow` header of a 405, and
a 405 (not a 400 from id validation) for `GET /resources/x:rehydrate` and the like.
A path the spec does not have is a 404 here, before Starlette's router would redirect
`/resources/` to `/resources` on whatever host the request's Host header names."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


class SpecRoutes:
    def __init__(self, spec_file: Path) -> None:
        spec = yaml.safe_load(spec_file.read_text())
        prefix = spec["servers"][0]["url"]
        self._routes: list[tuple[re.Pattern[str], set[str]]] = []
        for template, item in spec["paths"].items():
            # Ids never hold ":" (DNS labels): "x:rehydrate" matches only the custom method.
            pattern = re.sub(r"\\\{[^}]*\\\}", "[^/:]+", re.escape(prefix + template))
            methods = {m for m in _METHODS if m.lower() in item}
            self._routes.append((re.compile(pattern + "$"), methods))

    def allowed(self, path: str) -> list[str] | None:
        """The spec's methods for `path` in a stable order, None for an unknown path."""
        found = [methods for pattern, methods in self._routes if pattern.match(path)]
        if not found:
            return None
        union = set().union(*found)
        return [m for m in _METHODS if m in union]

    def allow_header(self, path: str) -> str:
        return ", ".join(self.allowed(path) or [])


class MethodCheck:
    """ASGI middleware: an unknown path is 404; a known path with a method the spec does
    not define is 405."""

    def __init__(self, app: ASGIApp, routes: SpecRoutes) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self._routes.allowed(scope["path"])
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            if allowed is None:
                raise HTTPException(404)
            if method not in allowed:
                raise HTTPException(405)
        await self._app(scope, receive, send)
