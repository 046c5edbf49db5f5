"""Limits on connections, below the ASGI app: uvicorn's httptools protocol (which has
none of its own) with a cap on the size of a request's head (431), on the time a client
takes to send it (408, or the connection closed if nothing came), and on the number of
open connections (503 with Retry-After for a request over the cap; health and /metrics
are always served). Body limits are the app's (`middleware.BodyLimit`), after authentication.

`protocol(limits)` is what uvicorn's `http` setting takes (picklable, for workers)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, cast

import httptools
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from placement.config import Limits
from placement.errors import Kind
from placement.http import problems
from placement.http.problems import PROBLEM_JSON, HttpKind

# Answered however many connections are open: probes and scrapes must not be refused.
EXEMPT_PATHS = (b"/api/v1alpha1/health", b"/metrics")
_WARN_EVERY = 10.0  # seconds between two warnings that the connection cap was reached

log = logging.getLogger("placement.connections")


def protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's `http` setting: its httptools protocol under `limits` (a factory, which
    uvicorn calls as it would call a protocol class)."""
    return cast(type[asyncio.Protocol], functools.partial(LimitedHttpProtocol, limits=limits))


class LimitedHttpProtocol(HttpToolsProtocol):
    """One connection. `_in_head`: waiting for, or reading, a request's head."""

    _last_warning = 0.0

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._in_head = True
        self._head_started = False
        self._head_parsed = 0  # bytes of the request line and headers parsed
        self._head_received = 0  # bytes received while the head stayed incomplete
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # The head: its size and its time.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head = self._in_head
        super().data_received(data)
        if in_head and self._in_head and not self._refused:
            # httptools holds an unfinished header inside, unseen: count what arrives.
            self._head_received += len(data)
            self._check_head(self._head_received)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        self._head_parsed = self._head_received = 0

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)
            self._head_parsed += len(url)
            self._check_head(self._head_parsed)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            super().on_header(name, value)
            self._head_parsed += len(name) + len(value) + 4
            self._check_head(self._head_parsed)

    def on_headers_complete(self) -> None:
        self._in_head = self._head_started = False
        self._stop_head_timer()
        if self._refused:
            return
        if len(self.connections) <= self._limits.max_connections or self._exempt():
            super().on_headers_complete()
            return
        self._warn_over_capacity()
        app, self.app = self.app, self._over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # the next request's head may follow at once
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            self._await_head()  # idle: the next head must come in time

    def _check_head(self, size: int) -> None:
        limit = self._limits.max_header_bytes
        if size > limit:
            detail = f"the request line and headers are larger than {limit} bytes"
            self._refuse(HttpKind.HEADERS_TOO_LARGE, detail)

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:
            self.transport.close()  # nothing came: nothing to answer
            return
        detail = f"the request headers did not arrive within {self._limits.header_timeout:g}s"
        self._refuse(HttpKind.REQUEST_TIMEOUT, detail)

    def _refuse(self, kind: HttpKind, detail: str) -> None:
        """Answer problem details and close, whatever else arrives."""
        self._refused = True
        self._stop_head_timer()
        status = problems.status_of(kind)
        body = problems.document(kind, detail)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    # The connection cap.

    def _exempt(self) -> bool:
        return bytes(httptools.parse_url(self.url).path) in EXEMPT_PATHS

    def _warn_over_capacity(self) -> None:
        now = time.monotonic()
        if now - LimitedHttpProtocol._last_warning >= _WARN_EVERY:
            LimitedHttpProtocol._last_warning = now
            log.warning(
                "%d connections open, over SVC_MAX_CONNECTIONS=%d: refusing requests with 503",
                len(self.connections),
                self._limits.max_connections,
            )

    async def _over_capacity(self, scope: Any, receive: Any, send: Any) -> None:
        detail = (
            f"the service has more than {self._limits.max_connections} connections open;"
            " retry later"
        )
        body = problems.document(Kind.UNAVAILABLE, detail, scope["path"])
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(problems.RETRY_AFTER).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
