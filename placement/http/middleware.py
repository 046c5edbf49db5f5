"""The ASGI layers around the API, one job each, outermost first (see `app.py`):

- `MetricsPage`: GET /metrics, outside the API (never needs a token, never counted);
- `RequestContext`: the request's context and id (X-Request-ID in and out);
- `AccessLog`: one log line and the HTTP metrics when a request ends;
- `MethodCheck`: a path holding a control character is 400 (routing would misread it), a
  path the spec does not have 404 (never a redirect), a method it does not define for a
  known path 405;
- `BodyLimit`: a body's size (413 before it is read whole) and the time it may take to
  arrive (408); placed after authentication, so no body is read for a refused request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import yaml
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from placement.http.problems import HttpKind, HttpProblem
from placement.telemetry import context, metrics

log = logging.getLogger("placement.access")

_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MetricsPage:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/metrics":
            await self._app(scope, receive, send)
            return
        body, content_type = metrics.exposition()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Starts the request's context (`placement.telemetry.context`) with the client's X-Request-ID
    if sane, else a new id, and puts the id on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        client_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = context.begin(client_id).request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        await self._app(scope, receive, send_with_id)


class AccessLog:
    """One `placement.access` log line and the HTTP metrics per request, written before
    the client can see the end of the answer; and the pool gauge, kept current."""

    def __init__(self, app: ASGIApp, pool_gauge: metrics.PoolGauge) -> None:
        self._app = app
        self._pool_gauge = pool_gauge
        # The metrics' children by their labels (few: operations x methods x statuses),
        # instead of looking them up through prometheus-client on every request.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        scope.setdefault("extensions", {})  # shared with Connexion's routing (the operation)
        started, status, recorded = time.perf_counter(), 500, False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(scope, status, time.perf_counter() - started)

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()
            await send(message)

        try:
            await self._app(scope, receive, send_observed)
        finally:
            record()

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        operation = (routing.get("operation_id") or "unmatched").lstrip(":")
        key = (operation, scope["method"], status)
        counted = self._counted.get(key)
        if counted is None:
            counted = self._counted[key] = metrics.REQUESTS.labels(*key[:2], str(status))
        counted.inc()
        timed = self._timed.get(operation)
        if timed is None:
            timed = self._timed[operation] = metrics.REQUEST_SECONDS.labels(operation)
        timed.observe(seconds)
        fields: dict[str, Any] = {
            "operation": operation,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        request = context.current()
        noted = request.resource_id if request is not None else ""
        resource_id = noted or scope.get("path_params", {}).get("resource_id")
        if resource_id:
            fields["resource_id"] = resource_id
        log.info("%s %s %d", scope["method"], scope["path"], status, extra=fields)
        self._pool_gauge.update()


class SpecRoutes:
    """Which methods the spec defines for a request path: the `Allow` header of a 405,
    and a 405 (not a 400 from id validation) for `GET /resources/x:rehydrate`."""

    def __init__(self, spec_file: Path) -> None:
        spec = yaml.safe_load(spec_file.read_text())
        prefix = spec["servers"][0]["url"]
        self._routes: list[tuple[re.Pattern[str], set[str]]] = []
        for template, item in spec["paths"].items():
            # Ids never hold ":" (DNS labels): "x:rehydrate" matches only the custom method.
            pattern = re.sub(r"\\\{([^}]*)\\\}", r"(?P<\1>[^/:]+)", re.escape(prefix + template))
            methods = {m for m in _METHODS if m.lower() in item}
            self._routes.append((re.compile(pattern), methods))

    def allowed(self, path: str) -> list[str] | None:
        """The spec's methods for `path` in a stable order, None for an unknown path."""
        found = [methods for pattern, methods in self._routes if pattern.fullmatch(path)]
        if not found:
            return None
        union = found[0] if len(found) == 1 else set().union(*found)
        return [m for m in _METHODS if m in union]

    def allow_header(self, path: str) -> str:
        return ", ".join(self.allowed(path) or [])

    def control_characters(self, path: str) -> str | None:
        """Why `path` is refused if it holds a control character (a newline ends a
        Starlette mount's match early), naming the path parameter that holds it."""
        if not _CONTROL.search(path):
            return None
        for pattern, _methods in self._routes:
            found = pattern.fullmatch(path)
            for name, value in (found.groupdict() if found else {}).items():
                if _CONTROL.search(value):
                    return f"path parameter {name} must not contain control characters"
        return "the request path must not contain control characters"


class MethodCheck:
    def __init__(self, app: ASGIApp, routes: SpecRoutes) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self._routes.control_characters(scope["path"])
            if refused is not None:
                raise HTTPException(400, detail=refused)
            allowed = self._routes.allowed(scope["path"])
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            if allowed is None:
                # Before Starlette's router could redirect `/resources/` to `/resources`
                # on whatever host the request's Host header names.
                raise HTTPException(404)
            if method not in allowed:
                raise HTTPException(405)
        await self._app(scope, receive, send)


class BodyLimit:
    """A body over `limit` bytes is refused (413) by its declared Content-Length, or,
    when sent chunked, as soon as more than `limit` bytes arrived. A chunked body within
    the limit is passed on with its Content-Length, which is what Connexion's validation
    reads to find a body. The whole body must arrive within `timeout` seconds of the
    first read."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float) -> None:
        self._app = app
        self._limit = limit
        self._timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        receive = _within(receive, self._timeout)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self._limit:
                raise self._too_large()
            await self._app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            await self._app(scope, receive, send)
            return
        body = await self._read(receive)
        if body is None:
            return  # the client left, or a refusal broke the body off: nothing to run
        length = (b"content-length", str(len(body)).encode())
        kept = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
        await self._app({**scope, "headers": [*kept, length]}, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body; None if the client left before its end."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise self._too_large()
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> HttpProblem:
        return HttpProblem(
            HttpKind.PAYLOAD_TOO_LARGE, f"the request body is larger than {self._limit} bytes"
        )


def _within(receive: Receive, seconds: float) -> Receive:
    """A receive channel on which the body must have arrived whole `seconds` after the
    first read, else HttpProblem (408); later reads (a disconnect) are not timed."""
    deadline: float | None = None
    done = False

    async def timed() -> Message:
        nonlocal deadline, done
        if done:
            return await receive()
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + seconds
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            detail = f"the request body did not arrive within {seconds:g}s"
            raise HttpProblem(HttpKind.REQUEST_TIMEOUT, detail) from None
        done = message["type"] != "http.request" or not message.get("more_body", False)
        return message

    return timed


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel giving `body` once, then the original channel (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
