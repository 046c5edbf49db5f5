"""Limits on what a request may cost: body size (413 before the body is read whole)
and JSON nesting depth (400, before anything walks the document)."""

from __future__ import annotations

from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from placement.errors import Kind, PlacementError

MAX_JSON_DEPTH = 64


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


class BoundedJSONBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body validation, refusing documents nested deeper than
    MAX_JSON_DEPTH (a deep document costs recursion everywhere it goes)."""

    async def _parse(self, stream: Any, scope: Scope) -> Any:
        try:
            body = await super()._parse(stream, scope)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="request body is not valid UTF-8") from None
        except RecursionError:
            body = None
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(body)
        if depth > MAX_JSON_DEPTH:
            raise BadRequestProblem(
                detail=f"request body is nested deeper than {MAX_JSON_DEPTH} levels"
            )
        return body


BODY_VALIDATORS = MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": BoundedJSONBodyValidator})


def json_depth(document: Any) -> int:
    """Nesting depth of a parsed JSON document, without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return deepest
