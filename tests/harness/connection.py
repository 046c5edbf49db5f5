"""The service's protocol (`placement.http.connections`) on an in-memory transport, with
a recording ASGI app: a connection driven read by read, in this process, without a
socket or a clock of its own."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from uvicorn.config import Config as UvicornConfig
from uvicorn.server import ServerState

from placement.config import Limits
from placement.http.connections import LimitedHttpProtocol
from placement.http.middleware import BodyLimit
from placement.http.problems import HttpProblem, status_of

SETTLE_ROUNDS = 30  # loop iterations that let the app act on what was read


@dataclass
class Recorder:
    """The app behind the limits: records each request it is handed, reads its body whole
    (through the service's `BodyLimit`), and answers 200 with what it read."""

    body_limit: int = 64
    requests: list[tuple[str, str, bytes | None]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entry: list[Any] = [scope["method"], scope["path"], None]
        self.requests.append(entry)  # type: ignore[arg-type]
        limited = BodyLimit(self._read_and_answer(entry), self.body_limit, timeout=3600)
        try:
            await limited(scope, receive, send)
        except HttpProblem as problem:
            await _answer(send, status_of(problem.kind), problem.detail.encode())

    def _read_and_answer(self, entry: list[Any]) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            body = b""
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            entry[2] = body
            await _answer(send, 200, f"{scope['method']} {scope['path']} {len(body)}".encode())

        return app

    def handed(self) -> list[tuple[str, str, bytes | None]]:
        return [tuple(entry) for entry in self.requests]  # type: ignore[misc]


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MemoryTransport(asyncio.Transport):
    """A client's socket, in memory: reads are delivered only while reading is not
    paused (as a real transport does); what the server writes is kept."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: asyncio.Protocol | None = None
        self.written = bytearray()
        self.eof = False  # the server shut its write side
        self.closed = False
        self._paused = False
        self._pending: deque[bytes] = deque()

    def send(self, data: bytes) -> None:
        self._pending.append(data)
        self._deliver()

    def _deliver(self) -> None:
        while self._pending and not self._paused and not self.closed:
            assert self.protocol is not None
            self.protocol.data_received(self._pending.popleft())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "written after the write side was shut"
        assert not self.closed, "written after the close"
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self.loop.call_soon(self._deliver)

    def is_reading(self) -> bool:
        return not self._paused

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )


@dataclass(frozen=True)
class Outcome:
    """What a connection did: the answers (status and body, in order), the requests the
    app was handed (method, path, and the body it read), and how it ended."""

    answers: list[tuple[int, bytes]]
    handed: list[tuple[str, str, bytes | None]]
    fate: str  # "open", "closed" (answered, then the write side shut)


def uvicorn_config(app: Any) -> UvicornConfig:
    config = UvicornConfig(app, log_config=None, access_log=False, ws="none", lifespan="off")
    config.load()
    return config


async def drive(
    reads: list[bytes],
    limits: Limits,
    recorder: Recorder,
    crowded: bool = False,
    rounds: int = SETTLE_ROUNDS,
) -> Outcome:
    """Serve one connection that sends `reads` one after the other, letting the app act
    for `rounds` loop iterations between them; what it did once everything settled."""
    loop = asyncio.get_running_loop()
    state = ServerState()
    if crowded:
        state.connections.add(object())  # type: ignore[arg-type]
    protocol = LimitedHttpProtocol(uvicorn_config(recorder), state, {}, loop, limits=limits)
    transport = MemoryTransport(loop)
    transport.protocol = protocol
    protocol.connection_made(transport)
    for data in reads:
        transport.send(data)
        await settle(rounds)
    await settle()
    fate = "closed" if transport.eof or transport.closed else "open"
    if not transport.closed:
        protocol.connection_lost(None)
    for task in list(state.tasks):
        task.cancel()
    return Outcome(answers(bytes(transport.written)), recorder.handed(), fate)


async def settle(rounds: int = SETTLE_ROUNDS) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def answers(written: bytes) -> list[tuple[int, bytes]]:
    """The responses in what the server wrote: (status, body) each (Content-Length bodies)."""
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(written):
        end = written.index(b"\r\n\r\n", pos)
        lines = written[pos:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        found.append((status, written[end + 4 : end + 4 + length]))
        pos = end + 4 + length
    return found
