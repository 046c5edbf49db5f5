"""Total deadlines for outbound HTTP calls: the one mechanism that ends a call on time.

`requests` applies its timeout to the connect and to each read, not to the whole call, so
a server that sends a byte every 0.9 s is never timed out and a call may outlive the lease
sized on it. Here a call runs inside `deadline(seconds)`: the connect and every read
wait at most what is left, and a watchdog thread shuts down the sockets the call uses
when its time is up (the blocked read or write then fails at once). `pooled_session`
(transport.py) mounts `DeadlineAdapter`, so every outbound call is bounded.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Deadline:
    """One call's time: when it ends, and whether the watchdog ended it."""

    __slots__ = ("_connections", "end", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._connections: list[HTTPConnection] = []

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


class _Watchdog:
    """Shuts down the sockets of calls past their deadline. It sleeps until the earliest
    deadline of the calls under way, so it wakes about once per deadline, not per call."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._active: set[Deadline] = set()
        self._wake_at: float | None = None  # when the thread wakes next (None: never)
        self._thread: threading.Thread | None = None

    def begin(self, seconds: float) -> Deadline:
        deadline = Deadline(seconds)
        with self._state:
            self._active.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="upstream-deadlines", daemon=True
                )
                self._thread.start()
            if self._wake_at is None or deadline.end < self._wake_at:
                self._state.notify()
        return deadline

    def end(self, deadline: Deadline) -> None:
        with self._state:
            self._active.discard(deadline)
            deadline._connections.clear()

    def watch(self, connection: HTTPConnection, deadline: Deadline | None) -> None:
        """`connection` now serves `deadline`'s call (and no earlier call's). A call whose
        time ran out before it reached its socket (a stalled thread) stops here: the
        watchdog, done with it, would never cut this connection."""
        with self._state:
            if deadline is not None and deadline.expired:
                raise TimeoutError(f"the call's deadline of {deadline.seconds:g} s has passed")
            connection._placement_deadline = deadline  # type: ignore[attr-defined]
            if deadline is not None:
                deadline._connections.append(connection)

    def _run(self) -> None:
        with self._state:
            while True:
                now = time.monotonic()
                for deadline in [each for each in self._active if each.end <= now]:
                    self._expire(deadline)
                self._wake_at = min((each.end for each in self._active), default=None)
                self._state.wait(None if self._wake_at is None else self._wake_at - now)

    def _expire(self, deadline: Deadline) -> None:
        """Shut down the sockets still serving the call (the lock held)."""
        self._active.discard(deadline)
        deadline.expired = True
        for connection in deadline._connections:
            sock = connection.sock
            if sock is not None and getattr(connection, "_placement_deadline", None) is deadline:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)
        deadline._connections.clear()


_WATCHDOG = _Watchdog()
_current = threading.local()


def _after_fork() -> None:
    """A forked worker starts with no watchdog thread (threads do not survive a fork)."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_after_fork)


@contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Run the outbound HTTP calls of this block within `seconds` in all."""
    made = _WATCHDOG.begin(seconds)
    outer = getattr(_current, "deadline", None)
    _current.deadline = made
    try:
        yield made
    finally:
        _current.deadline = outer
        _WATCHDOG.end(made)


def current() -> Deadline | None:
    """The deadline of the call this thread is making, if any."""
    found: Deadline | None = getattr(_current, "deadline", None)
    return found


def check(answer_status: int) -> None:
    """Raise requests.Timeout if the current call's deadline cut it: an answer cut while
    its headers arrive may look complete (the shut socket ended them), and is no answer."""
    made = current()
    if made is not None and made.expired:
        raise requests.Timeout(f"cut at its deadline after HTTP {answer_status}")


class _Watched:
    """A urllib3 connection that the current call's deadline can cut."""

    def connect(self) -> None:
        _WATCHDOG.watch(self, current())  # type: ignore[arg-type]
        super().connect()  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        _WATCHDOG.watch(self, current())  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter on connections the current deadline can cut; the connect and
    read timeouts are at most the time left."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        now = current()
        if now is not None:
            kwargs["timeout"] = _within(kwargs.get("timeout"), now.left())
        return super().send(request, *args, **kwargs)


def _within(timeout: Any, left: float) -> Any:
    """requests' `timeout` (seconds, a (connect, read) pair, or None) capped at `left`."""
    left = max(left, 0.001)  # 0 would mean "do not block" to the socket
    if isinstance(timeout, tuple):
        return tuple(left if part is None else min(part, left) for part in timeout)
    return left if timeout is None else min(timeout, left)
