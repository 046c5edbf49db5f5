"""The one retry policy for upstream calls: exponential backoff on transient errors, every
try within a total deadline, and the whole call within the exchange the leases are sized
on (`RetryPolicy.exchange`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import backoff

from placement.config import RetryPolicy
from placement.errors import UpstreamError
from placement.telemetry import metrics
from placement.upstream.deadlines import deadline

log = logging.getLogger(__name__)

T = TypeVar("T")

_sleep = time.sleep  # tests replace them
_now = time.monotonic


@dataclass(slots=True)
class Tries:
    """One call's tries so far: whether any may have acted (no answer, a 5xx, an
    unreadable success), which an attempt may need to read a later answer (a 409 to a
    retried create), and when the call must be over (on `_now`'s clock)."""

    end: float
    may_have_acted: bool = False


class Retrier:
    """Runs an attempt until it succeeds, fails permanently, the tries are used up, or the
    call's time is: each try within `timeout` seconds in all (connect, send, every read),
    waits of `initial` seconds doubling up to `maximum` between them (longer when the
    upstream asks so with Retry-After and the call's time allows)."""

    def __init__(self, policy: RetryPolicy, timeout: float) -> None:
        self._policy = policy
        self._timeout = timeout
        self._budget = policy.exchange(timeout)

    def __call__(self, attempt: Callable[[Tries], T]) -> T:
        tries = Tries(end=_now() + self._budget)
        waits = backoff.expo(base=2, factor=self._policy.initial, max_value=self._policy.maximum)
        next(waits)  # backoff's generators start with a send(None)
        number = 0
        while True:
            number += 1
            try:
                with deadline(min(self._timeout, tries.end - _now())):
                    return attempt(tries)
            except UpstreamError as exc:
                exc.earlier_try_may_have_acted = tries.may_have_acted
                tries.may_have_acted = exc.outcome_unknown
                wait = max(float(next(waits)), exc.upstream_wait or 0.0)
                if not self._again(exc, number, wait, tries):
                    raise
                _log_retry(exc, number, wait)
                _sleep(wait)

    def _again(self, exc: UpstreamError, number: int, wait: float, tries: Tries) -> bool:
        """Whether another try is worth making: a transient failure, tries left, and time
        for the wait and a try after it."""
        return exc.transient and number < self._policy.tries and _now() + wait < tries.end


def _log_retry(exc: UpstreamError, number: int, wait: float) -> None:
    metrics.UPSTREAM_RETRIES.labels(exc.upstream, exc.operation).inc()
    log.warning(
        "retrying %s %s in %.2fs (try %d failed: %s)",
        exc.upstream,
        exc.operation,
        wait,
        number,
        exc,
        extra={
            "upstream": exc.upstream,
            "upstream_operation": exc.operation,
            "upstream_status": exc.status,
            "try": number,
            "wait_s": wait,
        },
    )
