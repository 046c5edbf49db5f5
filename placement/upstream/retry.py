"""The one retry policy for upstream calls: exponential backoff on transient errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import backoff

from placement import metrics
from placement.config import RetryPolicy
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Retrier:
    """Runs an attempt until it succeeds, fails permanently, or `tries` are used up;
    waits `initial` seconds after the first failure, doubling up to `maximum`."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._run = backoff.on_exception(
            backoff.expo,
            UpstreamError,
            max_tries=policy.tries,
            giveup=_permanent,
            on_backoff=_log_retry,
            jitter=None,
            base=2,
            factor=policy.initial,
            max_value=policy.maximum,
            logger=None,
        )(_attempt)

    def __call__(self, attempt: Callable[[], T]) -> T:
        result: T = self._run(attempt)
        return result


def _permanent(exc: Exception) -> bool:
    return not (isinstance(exc, UpstreamError) and exc.transient)


def _attempt(attempt: Callable[[], T]) -> T:
    return attempt()


def _log_retry(details: Any) -> None:
    exc = details["exception"]
    metrics.UPSTREAM_RETRIES.labels(exc.upstream, exc.operation).inc()
    log.warning(
        "retrying %s %s in %.2fs (try %d failed: %s)",
        exc.upstream,
        exc.operation,
        details["wait"],
        details["tries"],
        exc,
        extra={
            "upstream": exc.upstream,
            "upstream_operation": exc.operation,
            "upstream_status": exc.status,
            "try": details["tries"],
            "wait_s": details["wait"],
        },
    )
