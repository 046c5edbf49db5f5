"""Limits on connections, below the ASGI app: uvicorn's httptools protocol (which has
none of its own) with a cap on the size of a request's head (431), on the time a client
takes to send it (408, or the connection closed if nothing came), and on the number of
open connections (503 with Retry-After for a request over the cap; health and /metrics
are always served). Body limits are the app's (`middleware.BodyLimit`), after authentication.

What it decides does not depend on how the bytes arrive: the stream is fed to the parser
in pieces cut at each head's and body's end (`framing.py`), so a head is counted alone
whether its body and the next request came in the same read or not. A refusal (431, 408,
503 over the cap, 400 for what is not HTTP/1.1) waits for the answers still owed to
earlier pipelined requests, and the refused request never runs. A connection is closed
after an answer sent while its request's body was not read whole, and after any 408 or
413: the answer is written, the write side shut, and what still arrives discarded for at
most `LINGER` seconds before the close, so the client reads the status, not a reset.

`protocol(limits)` is what uvicorn's `http` setting takes (picklable, for workers)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from typing import Any, cast

import httptools
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from placement.config import Limits
from placement.errors import Kind
from placement.http import problems
from placement.http.framing import Framing, Piece
from placement.http.problems import PROBLEM_JSON, HttpKind, ProblemKind

# Answered however many connections are open: probes and scrapes must not be refused.
EXEMPT_PATHS = (b"/api/v1alpha1/health", b"/metrics")
_WARN_EVERY = 10.0  # seconds between two warnings that the connection cap was reached
LINGER = 1.0  # seconds a closing connection discards what arrives, after its last answer
_CLOSING_STATUSES = (408, 413)  # answers after which the client's stream is not trusted

log = logging.getLogger("placement.connections")


def protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's `http` setting: its httptools protocol under `limits` (a factory, which
    uvicorn calls as it would call a protocol class)."""
    return cast(type[asyncio.Protocol], functools.partial(LimitedHttpProtocol, limits=limits))


class LingeringTransport(asyncio.Transport):
    """A connection's transport whose `close()` lets the client read the last answer:
    shut the write side, discard what arrives (the protocol reads on and drops it), and
    close for good after `linger` seconds, or as soon as the client closes its side."""

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, linger: float
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._linger = linger
        self._closing = False

    def close(self) -> None:
        if self.is_closing():
            return
        self._closing = True
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self._transport.write_eof()
        self._transport.resume_reading()
        self._loop.call_later(self._linger, self._transport.close)

    def close_now(self) -> None:
        """Close without lingering (nothing in flight: an idle connection)."""
        self._closing = True
        self._transport.close()

    def is_closing(self) -> bool:
        return self._closing or self._transport.is_closing()

    def abort(self) -> None:
        self._closing = True
        self._transport.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:  # nothing follows the last answer
            self._transport.write(data)

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        if not self._closing:  # a closing connection reads on, to discard
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class LimitedHttpProtocol(HttpToolsProtocol):
    """One connection. `_owed`: requests handed to the app whose answer is not out;
    `_receiving`: the last one's body is still arriving."""

    _last_warning = 0.0
    transport: LingeringTransport

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
        self._framing = Framing(limits.max_header_bytes)
        self._head_timer: asyncio.TimerHandle | None = None
        self._owed = 0
        self._receiving = False
        self._broken = False  # the body being received was broken off by a refusal
        self._refusal: bytes | None = None  # written once no answer is owed, then closed
        self._heads = self._messages = 0  # the parser's count, checked against the framing

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(LingeringTransport(transport, self.loop, LINGER))
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._owed == 0 and not self._framing.in_head:
            self.transport.close_now()  # idle: nothing to let the client read
        else:
            super().shutdown()

    # Reading: the stream, piece by piece.

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._refusal is not None and not self.transport.is_closing():
            self.flow.pause_reading()  # until the answers owed before the refusal are out
            return
        view = memoryview(data)
        pos = 0
        while pos < len(data) and self._reading():
            end, ends = self._framing.piece(data, pos)
            if ends is Piece.DISCARD or not self._parse(view[pos:end], ends):
                return
            pos = end
            if ends is Piece.OVER:
                limit = self._limits.max_header_bytes
                detail = f"the request line and headers are larger than {limit} bytes"
                self._refuse(HttpKind.HEADERS_TOO_LARGE, detail)

    def _reading(self) -> bool:
        return self._refusal is None and not self.transport.is_closing()

    def _parse(self, piece: memoryview, ends: Piece) -> bool:
        """Feed one piece to the parser; False once nothing more is to be read."""
        heads, messages = self._heads, self._messages
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserUpgrade:
            self._upgrade()
            return False
        except httptools.HttpParserError as exc:
            self._refuse(Kind.VALIDATION, f"the request is not valid HTTP/1.1: {exc}")
            return False
        if self._refusal is not None:  # refused as its head ended
            return False
        if not self._agrees(ends, self._heads - heads, self._messages - messages):
            self._refuse(Kind.VALIDATION, "the request is not valid HTTP/1.1: its framing")
            return False
        if self._messages > messages and not self.cycle.keep_alive:
            self._framing.close()  # the last request this connection serves
        return True

    def _agrees(self, ends: Piece, heads: int, messages: int) -> bool:
        """Whether the parser ended what the framing says the piece ends (and no more);
        after a head, the framing learns what body follows."""
        if ends is Piece.HEAD:
            if heads != 1:
                return False
            if messages:
                self._framing.body(None)
                return messages == 1
            return self._expect_body()
        if ends is Piece.MESSAGE:
            return (heads, messages) == (0, 1)
        return (heads, messages) == (0, 0)

    def _expect_body(self) -> bool:
        """Tell the framing the body the parser expects (it has checked the headers)."""
        headers = dict(self.headers)
        if b"transfer-encoding" in headers:
            self._framing.body(None, chunked=True)
            return True
        length = headers.get(b"content-length", b"").strip()
        if not length.isdigit():
            return False
        self._framing.body(int(length))
        return True

    def _upgrade(self) -> None:
        """An upgrade request (uvicorn's WebSocket, when enabled) ends the HTTP stream."""
        self._framing.close()
        if self._should_upgrade():
            self.handle_websocket_upgrade()
            return
        self._unsupported_upgrade_warning()
        if self.cycle is not None:
            self.cycle.keep_alive = False

    # The parser's events.

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._stop_head_timer()
        if len(self.connections) > self._limits.max_connections and not self._exempt():
            self._refuse_over_capacity()
            return
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # handed on (not upgraded)
            self._owed += 1
            self._receiving = True
            self._watch(self.cycle)

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:  # a refused request's body is nobody's
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._messages += 1
        self._receiving = False
        if self._refusal is None:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._answered()
        if self._owed == 0 and self._refusal is None and not self.transport.is_closing():
            self._await_head()  # idle: the next head must come in time

    # Refusals.

    def _refuse(self, kind: ProblemKind, detail: str, instance: str | None = None) -> None:
        """Read no more; answer problem details once no earlier answer is owed, then close.
        A request whose body was arriving gets no more of it: unless it answered already,
        this answer replaces its own once it has read what came."""
        if self._refusal is not None:
            return
        if kind is Kind.VALIDATION:
            log.info("refusing a request: %s", detail)
        self._framing.close()
        self._stop_head_timer()
        if self._receiving:
            self._broken = True  # the request being received gets no more of its body
            self.cycle.message_event.set()
        self._refusal = _problem(kind, detail, instance, self.server_state.default_headers)
        if self._owed == 0:
            self._send_refusal()
        else:
            self.flow.pause_reading()

    def _watch(self, cycle: RequestResponseCycle) -> None:
        """Wrap the app's channels for `cycle`: an answer that starts before the request's
        body was read whole (or a 408 or 413) closes the connection, since what the client
        still sends is no request to wait for (and a trickle must not hold it open); a body
        broken off (a refusal while it arrived) reads as a disconnect once what came of it
        is read, and then the refusal answers instead of the app."""
        # The channels, set on the cycle, name it only weakly: a cycle that names its own
        # channels, which name it, would outlive its request as garbage for the cyclic
        # collector (measured: a GET cost a fifth more CPU). The cycle lives while the app
        # runs (`run_asgi` is its method).
        watched = weakref.ref(cycle)

        async def receive_until_broken() -> Any:
            cycle = watched()
            if cycle is None:
                return {"type": "http.disconnect"}
            if self._broken and cycle is self.cycle and not cycle.body:
                if not cycle.response_started and not cycle.disconnected:
                    cycle.disconnected = True  # its answer, if any, is the refusal
                    self._answered()
                return {"type": "http.disconnect"}
            return await RequestResponseCycle.receive(cycle)

        async def send_closing(message: Any) -> None:
            cycle = watched()
            if cycle is None:
                return
            if message["type"] == "http.response.start" and (
                cycle.more_body or cycle.body or message["status"] in _CLOSING_STATUSES
            ):
                cycle.keep_alive = False
            await RequestResponseCycle.send(cycle, message)

        cycle.receive = receive_until_broken  # type: ignore[method-assign]
        cycle.send = send_closing  # type: ignore[method-assign]

    def _answered(self) -> None:
        """One owed answer is out (or will never be): the refusal may follow."""
        self._owed -= 1
        if self._owed == 0 and self._refusal is not None and not self.transport.is_closing():
            self._send_refusal()

    def _send_refusal(self) -> None:
        if self._refusal is not None:
            self.transport.write(self._refusal)
        self.transport.close()

    # The head's time.

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
        if not self._framing.in_head:
            self.transport.close()  # nothing came: nothing to answer
            return
        detail = f"the request headers did not arrive within {self._limits.header_timeout:g}s"
        self._refuse(HttpKind.REQUEST_TIMEOUT, detail)

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

    def _refuse_over_capacity(self) -> None:
        self._warn_over_capacity()
        detail = (
            f"the service has more than {self._limits.max_connections} connections open;"
            " retry later"
        )
        path = bytes(httptools.parse_url(self.url).path).decode("latin-1")
        self._refuse(Kind.UNAVAILABLE, detail, path)


def _problem(
    kind: ProblemKind,
    detail: str,
    instance: str | None,
    default_headers: list[tuple[bytes, bytes]],
) -> bytes:
    """A whole answer of problem details, written outside the app; it closes."""
    status = problems.status_of(kind)
    body = problems.document(kind, detail, instance)
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    for header, text in problems.refusal_headers(kind).items():
        if header.lower() != "connection":
            head += [header.lower().encode(), b": ", text.encode(), b"\r\n"]
    head += [
        b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
    ]
    return b"".join(head) + body
