"""The threads the handlers of the flows that change records run in. They block (the
database, `requests` to the upstreams), so each such request holds one of SVC_THREADS
threads while it is served; reads and health run on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from placement.errors import Kind, PlacementError

T = TypeVar("T")


class RequestThreads:
    """`size` threads. A request waits at most `queue_wait` seconds for a free one, then
    gets 503 with Retry-After instead of queueing without bound."""

    def __init__(self, size: int, queue_wait: float, name: str = "request") -> None:
        self.executor = ThreadPoolExecutor(size, thread_name_prefix=name)
        self._size = size
        self._queue_wait = queue_wait
        self._free = asyncio.Semaphore(size)  # bound to the serving loop on first use

    async def run(self, call: Callable[[], T]) -> T:
        if self._free.locked():
            await self._wait_for_a_thread()
        else:
            await self._free.acquire()  # at once: no timer needed
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        finally:
            self._free.release()

    async def _wait_for_a_thread(self) -> None:
        try:
            async with asyncio.timeout(self._queue_wait):
                await self._free.acquire()
        except TimeoutError:
            detail = (
                f"all {self._size} request threads stayed busy for {self._queue_wait:g}s;"
                " retry later"
            )
            raise PlacementError(Kind.UNAVAILABLE, detail) from None

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)
