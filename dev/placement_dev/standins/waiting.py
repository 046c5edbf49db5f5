"""Waiting for shared state that two worlds change: Python calls from test threads and
request handlers on the server's event loop (in another thread)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType


class Condition:
    """A lock plus a condition that threads (blocking) and coroutines on any event loop
    (without blocking it) can wait on. Change the guarded state with the lock held, then
    call `notify_all()`; a coroutine is woken through its own loop's call_soon_threadsafe."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __enter__(self) -> None:
        self._condition.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._condition.release()

    def notify_all(self) -> None:
        """Wake every waiter; call it with the lock held."""
        self._condition.notify_all()
        futures, self._futures = self._futures, []
        for loop, future in futures:
            # A closed loop has no one left waiting on it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block this thread until `predicate()` holds; False if `timeout` passed first."""
        with self._condition:
            return self._condition.wait_for(predicate, timeout)

    async def wait_for_async(
        self, predicate: Callable[[], bool], timeout: float | None = None
    ) -> bool:
        """Await (never blocking the loop) until `predicate()` holds; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._condition:
                if predicate():
                    return True
                future: asyncio.Future[None] = loop.create_future()
                self._futures.append((loop, future))
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                with self._condition:
                    return predicate()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
