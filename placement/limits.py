"""A limit on what a request may cost: its body size (413 before it is read whole)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from placement.errors import Kind, PlacementError


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is refused (413) by its declared
    Content-Length, or, when sent chunked, as soon as more than `limit` bytes arrived.
    A chunked body within the limit is passed on with its Content-Length, which is
    what Connexion's validation reads to find a body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self._app = app
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
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
