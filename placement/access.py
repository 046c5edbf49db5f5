"""The outermost layer of every request: its id (X-Request-ID in and out), one log
line and the HTTP metrics when it ends, and the /metrics page (outside the API)."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from placement import context, metrics

log = logging.getLogger("placement.access")


class RequestObserver:
    """`take_bearer`: keep the caller's bearer token, to forward it upstream, as sent
    (without authentication; with it, the verifier keeps the token it checked)."""

    def __init__(self, app: ASGIApp, pool_gauge: metrics.PoolGauge, take_bearer: bool) -> None:
        self._app = app
        self._pool_gauge = pool_gauge
        self._take_bearer = take_bearer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if scope["path"] == "/metrics":
            await _metrics_page(send)
            return
        headers = dict(scope["headers"])
        request = context.begin(headers.get(b"x-request-id", b"").decode("latin-1"))
        if self._take_bearer:
            request.bearer_token = _bearer(headers.get(b"authorization", b""))
        request_id = request.request_id.encode()
        scope.setdefault(
            "extensions", {}
        )  # shared with Connexion's routing, which names the operation
        started, status, recorded = time.perf_counter(), 500, False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(scope, request, status, time.perf_counter() - started)

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                record()  # before the client can see the end of the answer
            await send(message)

        try:
            await self._app(scope, receive, send_observed)
        finally:
            record()

    def _record(
        self, scope: Scope, request: context.RequestContext, status: int, seconds: float
    ) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing", {})
        operation = (routing.get("operation_id") or "unmatched").lstrip(":")
        metrics.REQUESTS.labels(operation, scope["method"], str(status)).inc()
        metrics.REQUEST_SECONDS.labels(operation).observe(seconds)
        fields: dict[str, Any] = {
            "operation": operation,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        resource_id = request.resource_id or scope.get("path_params", {}).get("resource_id")
        if resource_id:
            fields["resource_id"] = resource_id
        log.info("%s %s %d", scope["method"], scope["path"], status, extra=fields)
        self._pool_gauge.update()


def _bearer(header: bytes) -> str:
    scheme, _, token = header.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _metrics_page(send: Send) -> None:
    body, content_type = metrics.exposition()
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
