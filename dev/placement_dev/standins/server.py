"""Serving an ASGI app under uvicorn: in a background thread (tests, the dev stack) or in
the foreground until SIGINT or SIGTERM (`python -m placement_dev.standins`)."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

import uvicorn
from starlette.types import ASGIApp

_POLL = 0.005  # seconds between checks while waiting for the server thread


class ServerError(RuntimeError):
    """The server could not start; the message is one line."""


def exposure_warning(host: str) -> str | None:
    """A warning when the stand-ins listen on `host` beyond this machine (None on
    loopback): they have no authentication and show what they were sent."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"the stand-ins listen on {host}, beyond this machine: they have no authentication,"
        " and anyone who reaches them can program their faults and read what they were"
        " sent at /_standin/requests"
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: a free port), or a clear ServerError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _server(
    app: ASGIApp, grace: int, http: type[asyncio.Protocol] | str = "auto"
) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        http=http,
        log_config=None,  # leave logging to the process that hosts us
        access_log=False,  # a benchmark must not pay for access logs
        lifespan="auto",  # the placement app opens its store in its lifespan
        server_header=False,
        timeout_graceful_shutdown=grace,
    )
    return uvicorn.Server(config)


class BackgroundServer:
    """Runs an ASGI app under uvicorn in a daemon thread, on `host` and `port` (0: a free
    port). `start()` returns once the server accepts connections; `stop()` once it is
    down, after calling `on_stop` and waiting at most `grace` seconds for open requests.
    `http` is uvicorn's setting of that name (the service's own protocol, with its limits:
    `placement.http.connections.protocol`)."""

    def __init__(
        self,
        app: ASGIApp,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        on_stop: Callable[[], None] | None = None,
        grace: int = 2,
        http: type[asyncio.Protocol] | str = "auto",
    ) -> None:
        self._app, self._host, self._port = app, host, port
        self._on_stop, self._grace, self._http = on_stop, grace, http
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:40123 (no trailing slash)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        if self._server is not None:
            raise RuntimeError("the server is already started")
        sock = listen(self._host, self._port)
        self._port = sock.getsockname()[1]
        server = _server(self._app, self._grace, self._http)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{self._port}", daemon=True
        )
        thread.start()
        while not server.started and thread.is_alive():
            thread.join(_POLL)
        if not server.started:
            sock.close()
            raise ServerError(f"the server on {self._host}:{self._port} failed to start")
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        if self._on_stop is not None:
            self._on_stop()
        self._server.should_exit = True
        self._thread.join()  # uvicorn closes the listening socket on its way out
        self._server, self._thread = None, None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(app: ASGIApp, sock: socket.socket) -> None:
    """Serve on `sock` in this (main) thread until SIGINT or SIGTERM, then shut down
    cleanly and return."""
    server = _server(app, grace=5)

    def stop(signum: int, frame: FrameType | None) -> None:
        # uvicorn handles the signal itself while serving, then re-raises it to the
        # handler it found: this one, so the process ends normally, with status 0.
        server.should_exit = True

    previous = {each: signal.signal(each, stop) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
