"""Programmable faults, shared by both stand-ins: per operation, answer an error, add a
delay, wait at a hold until released, or act and then answer an error or hang.

Programming happens from any thread (a test) or from the admin endpoints; applying
happens on the server's event loop, so all state sits behind one `Condition`."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from placement_dev.standins.waiting import Condition

HANG: Literal["hang"] = "hang"
# Act, then answer the success status with a body that is not the API's (a proxy's page).
GARBLE: Literal["garble"] = "garble"
# Act, then send the answer slowly: its body one byte every TRICKLE_SECONDS, for as long as
# the client reads (each read is quick; the answer takes minutes).
TRICKLE: Literal["trickle"] = "trickle"
TRICKLE_SECONDS = 0.5
Outcome = int | Literal["hang", "garble", "trickle"]
T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """An injected error answer."""

    status: int
    detail: str


@dataclass(frozen=True)
class _Countdown(Generic[T]):
    value: T
    left: int | None  # None: until cleared
    skip: int = 0  # calls that pass by before it applies

    def spend(self) -> _Countdown[T] | None:
        """What remains after one use (None when used up)."""
        if self.left is None:
            return self
        return None if self.left <= 1 else _Countdown(self.value, self.left - 1)

    def passed(self) -> _Countdown[T]:
        """What remains after a call it skipped."""
        return _Countdown(self.value, self.left, self.skip - 1)


@dataclass
class _Plan:
    """The faults programmed for one operation, and who is waiting in it."""

    fail: _Countdown[Failure] | None = None
    delay: float = 0.0
    holding: bool = False
    after: _Countdown[Outcome] | None = None
    held: int = 0  # requests waiting for a release right now (held or hung)
    releases: int = 0  # bumped by release and reset: frees everyone waiting


class Faults:
    """The faults of one stand-in, keyed by operation name."""

    def __init__(self, operations: Iterable[str]) -> None:
        self._state = Condition()
        self._plans = {operation: _Plan() for operation in operations}

    # Programming: any thread.

    def fail(
        self,
        operation: str,
        status: int,
        times: int | None = None,
        detail: str | None = None,
        skip: int = 0,
    ) -> None:
        """Answer `status` with a problem body for the next `times` calls (None: until
        reset), once `skip` calls have passed (e.g. after an `after_acting` fault)."""
        detail = detail or f"fault injected: {operation} answers {status}"
        failure = Failure(_status(status), detail)
        with self._state:
            self._plan(operation).fail = _Countdown(failure, _times(times), _skip(skip))

    def delay(self, operation: str, seconds: float) -> None:
        """Wait `seconds` before handling every call (0 removes the delay)."""
        with self._state:
            self._plan(operation).delay = _seconds(seconds)

    def hold(self, operation: str) -> None:
        """Make calls wait, before acting, until `release(operation)`."""
        with self._state:
            self._plan(operation).holding = True

    def release(self, operation: str) -> None:
        """Let held (and hung) calls go on, and stop holding new ones."""
        with self._state:
            plan = self._plan(operation)
            plan.holding = False
            plan.releases += 1
            self._state.notify_all()

    def wait_held(self, operation: str, timeout: float = 5.0, count: int = 1) -> None:
        """Block until `count` calls wait for a release (held before acting, or hung after
        it); TimeoutError after `timeout` seconds."""
        plan = self._plan(operation)
        if not self._state.wait_for(lambda: plan.held >= count, _seconds(timeout)):
            raise TimeoutError(f"fewer than {count} {operation} call(s) held after {timeout} s")

    async def wait_held_async(self, operation: str, timeout: float = 5.0, count: int = 1) -> bool:
        """`wait_held` for coroutines: False on timeout."""
        plan = self._plan(operation)
        return await self._state.wait_for_async(lambda: plan.held >= count, _seconds(timeout))

    def after_acting(self, operation: str, status: Outcome, times: int | None = None) -> None:
        """Act, then answer `status` (or "hang" until release or the client leaves,
        "garble": the success status with an HTML body, or "trickle": the answer one byte
        at a time) for the next `times` calls that act (None: until reset)."""
        outcome: Outcome = status if status in (HANG, GARBLE, TRICKLE) else _status(status)
        with self._state:
            self._plan(operation).after = _Countdown(outcome, _times(times))

    def reset(self) -> None:
        """Remove every fault and release every waiting call."""
        with self._state:
            for plan in self._plans.values():
                plan.fail, plan.delay, plan.holding, plan.after = None, 0.0, False, None
                plan.releases += 1
            self._state.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """The programmed faults as JSON, for the admin endpoint."""
        with self._state:
            return {name: _describe(plan) for name, plan in self._plans.items()}

    # Applying: the server's event loop.

    async def enter(self, operation: str) -> Failure | None:
        """Apply delay and hold; the failure to answer instead of acting, if any."""
        plan = self._plan(operation)
        with self._state:
            delay = plan.delay
        if delay:
            await asyncio.sleep(delay)
        with self._state:
            ticket = self._arrive(plan) if plan.holding else None
        if ticket is not None:
            await self._wait_release(plan, ticket, None)
        with self._state:
            fail = plan.fail
            if fail is None:
                return None
            if fail.skip > 0:
                plan.fail = fail.passed()
                return None
            plan.fail = fail.spend()
            return fail.value

    def after(self, operation: str) -> Outcome | None:
        """What to answer after acting, if a fault says so."""
        plan = self._plan(operation)
        with self._state:
            after = plan.after
            if after is None:
                return None
            plan.after = after.spend()
            return after.value

    async def hang(self, operation: str, disconnected: Awaitable[object]) -> None:
        """Wait until released or until `disconnected` completes (the client left)."""
        plan = self._plan(operation)
        with self._state:
            ticket = self._arrive(plan)
        await self._wait_release(plan, ticket, disconnected)

    def _arrive(self, plan: _Plan) -> int:
        """Count a call as waiting for a release (lock held); its ticket."""
        plan.held += 1
        self._state.notify_all()
        return plan.releases

    async def _wait_release(
        self, plan: _Plan, ticket: int, disconnected: Awaitable[object] | None
    ) -> None:
        try:
            released = self._state.wait_for_async(lambda: plan.releases > ticket)
            await (released if disconnected is None else _first(released, disconnected))
        finally:
            with self._state:
                plan.held -= 1
                self._state.notify_all()

    def _plan(self, operation: str) -> _Plan:
        try:
            return self._plans[operation]
        except KeyError:
            names = ", ".join(self._plans)
            raise ValueError(f"unknown operation {operation!r}; one of: {names}") from None


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait for whichever finishes first; cancel the others."""
    tasks = [asyncio.ensure_future(each) for each in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _describe(plan: _Plan) -> dict[str, Any]:
    fail, after = plan.fail, plan.after
    return {
        "fail": None
        if fail is None
        else {
            "status": fail.value.status,
            "times": fail.left,
            "skip": fail.skip,
            "detail": fail.value.detail,
        },
        "delay": plan.delay,
        "hold": plan.holding,
        "held": plan.held,
        "after_acting": None if after is None else {"status": after.value, "times": after.left},
    }


def _status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError(f"status must be an error status 400..599, not {value!r}")
    return value


def _times(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"times must be a positive integer or null, not {value!r}")
    return value


def _skip(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"skip must be a whole number, not {value!r}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"seconds must be a number, not {value!r}")
    if value < 0:
        raise ValueError(f"seconds must not be negative, not {value!r}")
    return float(value)
