"""What both stand-ins share: the Starlette app, request recording, programmable faults,
and the admin endpoints under /_standin/ (outside the upstream API, never recorded).

Admin endpoints (for curl demos, and for tests whose service runs in another process):
    GET    /_standin/requests   {"requests": [recorded request, ...]}
    DELETE /_standin/requests   forget them
    GET    /_standin/faults     the programmed faults, and how many calls are held
    POST   /_standin/faults     {"action": "fail", "operation": ..., "status": 500, "times": 2,
                                 "skip": 0}
                                {"action": "delay", "operation": ..., "seconds": 0.5}
                                {"action": "hold" | "release", "operation": ...}
                                {"action": "wait_held", "operation": ..., "timeout": 5}
                                {"action": "after_acting", "operation": ...,
                                 "status": 500 | "hang" | "garble" | "trickle"}
    DELETE /_standin/faults     remove every fault, release every held call
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from placement_dev.standins.faults import (
    GARBLE,
    TRICKLE,
    TRICKLE_SECONDS,
    Failure,
    Faults,
    Outcome,
)
from placement_dev.standins.problems import (
    Problem,
    as_problem,
    bad_request,
    json_object,
    parse_json,
)
from placement_dev.standins.recording import RecordedRequest, Recorder
from placement_dev.standins.server import BackgroundServer

ADMIN = "/_standin"
Act = Callable[[Request, Any], Response]


class StandIn:
    """An ASGI app serving one upstream contract, with recording (the last `max_recorded`
    requests; None: all) and faults. Every method is safe to call from any thread while
    the app serves on its own event loop."""

    name: ClassVar[str]
    operations: ClassVar[tuple[str, ...]]
    error_media_type: ClassVar[str]  # what the upstream's spec declares for errors

    def __init__(self, *, max_recorded: int | None = 10_000) -> None:
        self._faults = Faults(self.operations)
        self._recorder = Recorder(max_recorded)
        self._app = Starlette(
            routes=[*self._api_routes(), *self._admin_routes()],
            exception_handlers={
                Problem: self._error,
                HTTPException: self._error,
                Exception: self._error,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> BackgroundServer:
        """A server for this stand-in in a background thread (a context manager); stopping
        it resets the faults, so that no held call delays the shutdown."""
        return BackgroundServer(self, port, host=host, on_stop=self.reset_faults)

    # Recording.

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request so far, oldest first."""
        return self._recorder.requests

    def clear(self) -> None:
        self._recorder.clear()

    # Faults (see faults.Faults for the semantics).

    def fail(
        self,
        operation: str,
        status: int,
        times: int | None = None,
        detail: str | None = None,
        skip: int = 0,
    ) -> None:
        self._faults.fail(operation, status, times, detail, skip)

    def delay(self, operation: str, seconds: float) -> None:
        self._faults.delay(operation, seconds)

    def hold(self, operation: str) -> None:
        self._faults.hold(operation)

    def release(self, operation: str) -> None:
        self._faults.release(operation)

    def wait_held(self, operation: str, timeout: float = 5.0, count: int = 1) -> None:
        """Block until `count` calls of `operation` are held (or hung); not on the server loop."""
        self._faults.wait_held(operation, timeout, count)

    def after_acting(self, operation: str, status: Outcome, times: int | None = None) -> None:
        self._faults.after_acting(operation, status, times)

    def reset_faults(self) -> None:
        self._faults.reset()

    # For the stand-ins.

    def _api_routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def _extra_admin_routes(self) -> list[BaseRoute]:
        return []

    def _failed(self, operation: str, request: Request, failure: Failure) -> Response:
        """The answer when a fault says `operation` fails instead of acting."""
        return self._injected(failure)

    async def _call(self, request: Request, operation: str, act: Act) -> Response:
        """Record the request, apply the faults around `act`, and answer."""
        body = parse_json(await request.body())
        self._recorder.add(operation, request, body)
        failure = await self._faults.enter(operation)
        if failure is not None:
            return self._failed(operation, request, failure)
        try:
            response = act(request, body)
        except Problem as problem:
            return problem.response(self.error_media_type)  # no act: no after-acting fault
        outcome = self._faults.after(operation)
        if isinstance(outcome, int):
            detail = f"fault injected after acting: {operation} answers {outcome}"
            return self._injected(Failure(outcome, detail))
        if outcome == GARBLE:
            page = b"<html><body>502 Bad Gateway (a proxy's page)</body></html>"
            return Response(page, status_code=response.status_code, media_type="text/html")
        if outcome == TRICKLE:
            return _trickled(response)
        if outcome is not None:
            await self._faults.hang(operation, _disconnected(request))
        return response

    def _injected(self, failure: Failure) -> Response:
        problem = Problem(failure.status, "INJECTED_FAULT", failure.detail)
        return problem.response(self.error_media_type)

    async def _error(self, request: Request, exc: Exception) -> Response:
        return as_problem(exc).response(self.error_media_type)

    # Admin endpoints.

    def _admin_routes(self) -> list[BaseRoute]:
        return [
            Route(f"{ADMIN}/requests", self._get_requests, methods=["GET"]),
            Route(f"{ADMIN}/requests", self._delete_requests, methods=["DELETE"]),
            Route(f"{ADMIN}/faults", self._get_faults, methods=["GET"]),
            Route(f"{ADMIN}/faults", self._post_faults, methods=["POST"]),
            Route(f"{ADMIN}/faults", self._delete_faults, methods=["DELETE"]),
            *self._extra_admin_routes(),
        ]

    async def _get_requests(self, request: Request) -> Response:
        return JSONResponse({"requests": [each.to_json() for each in self.requests]})

    async def _delete_requests(self, request: Request) -> Response:
        self.clear()
        return Response(status_code=204)

    async def _get_faults(self, request: Request) -> Response:
        return JSONResponse({"faults": self._faults.snapshot()})

    async def _delete_faults(self, request: Request) -> Response:
        self.reset_faults()
        return Response(status_code=204)

    async def _post_faults(self, request: Request) -> Response:
        """Program one fault: the body names the Python method and its arguments."""
        arguments = dict(json_object(parse_json(await request.body())))
        action = arguments.pop("action", None)
        actions: dict[str, Callable[..., Any]] = {
            "fail": self._faults.fail,
            "delay": self._faults.delay,
            "hold": self._faults.hold,
            "release": self._faults.release,
            "after_acting": self._faults.after_acting,
            "wait_held": self._faults.wait_held_async,
        }
        if not isinstance(action, str) or action not in actions:
            raise bad_request(f"action must be one of: {', '.join(actions)}")
        try:
            inspect.signature(actions[action]).bind(**arguments)
            result = actions[action](**arguments)
            if inspect.isawaitable(result):
                result = await result
        except (TypeError, ValueError) as exc:
            raise bad_request(f"{action}: {exc}") from None
        if result is False:
            detail = f"no held {arguments.get('operation')} call arrived in time"
            raise Problem(504, "TIMEOUT", detail, "Timed out")
        return Response(status_code=204)


def _trickled(response: Response) -> StreamingResponse:
    """`response`, its body sent one byte every TRICKLE_SECONDS (a slow proxy, a
    congested link): every read the client makes is quick, the whole answer is not."""
    body = bytes(response.body)

    async def drip() -> AsyncIterator[bytes]:
        for index in range(len(body)):
            await asyncio.sleep(TRICKLE_SECONDS)
            yield body[index : index + 1]

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return StreamingResponse(drip(), response.status_code, headers=headers)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read: nothing else can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
