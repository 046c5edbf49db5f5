"""Limits on what a request body may cost: its size (413 before it is read whole) and
the time it takes to arrive (408). Placed after authentication: no body is read for a
request that is refused anyway."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from placement.errors import Kind, PlacementError


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is refused (413) by its declared
    Content-Length, or, when sent chunked, as soon as more than `limit` bytes arrived.
    A chunked body within the limit is passed on with its Content-Length, which is
    what Connexion's validation reads to find a body. The whole body must arrive within
    `timeout` seconds of the first read."""

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
        length = (b"content-length", str(len(body)).encode())
        kept = [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]
        await self._app({**scope, "headers": [*kept, length]}, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                raise self._too_large()
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> PlacementError:
        return PlacementError(
            Kind.PAYLOAD_TOO_LARGE, f"the request body is larger than {self._limit} bytes"
        )


def _within(receive: Receive, seconds: float) -> Receive:
    """A receive channel on which the body must have arrived whole `seconds` after the
    first read, else PlacementError (408); later reads (a disconnect) are not timed."""
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
            raise PlacementError(Kind.REQUEST_TIMEOUT, detail) from None
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
