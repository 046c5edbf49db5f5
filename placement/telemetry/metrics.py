"""Prometheus metrics (prometheus-client). With several server processes, set
PROMETHEUS_MULTIPROC_DIR (the CLI does, for SVC_WORKERS > 1) and every worker's
samples are merged at scrape time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "placement_http_requests_total",
    "HTTP requests answered, by operation and status.",
    ["operation", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "placement_http_request_duration_seconds",
    "Time to answer an HTTP request, by operation.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_CALLS = Counter(
    "placement_upstream_requests_total",
    "Calls to the Policy Engine and the SPRM (each try), by outcome: an HTTP status"
    " class (2xx, 4xx, 5xx), timeout, connection_error or malformed.",
    ["upstream", "operation", "outcome"],
)
UPSTREAM_SECONDS = Histogram(
    "placement_upstream_request_duration_seconds",
    "Time of one try of an upstream call.",
    ["upstream", "operation"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_RETRIES = Counter(
    "placement_upstream_retries_total",
    "Upstream calls tried again after a transient failure.",
    ["upstream", "operation"],
)
DB_CONNECTIONS = Gauge(
    "placement_db_pool_connections",
    "Database pool connections: in_use, idle, and requests waiting for one.",
    ["state"],
    multiprocess_mode="livesum",
)
RECONCILER_RUNS = Counter("placement_reconciler_runs_total", "Reconciler rounds run.")
RECONCILER_ACTIONS = Counter(
    "placement_reconciler_actions_total",
    "What the reconciler did with abandoned operations.",
    ["action"],
)

# The in-service drift audit (flows/drift_monitor.py; AUDIT_INTERVAL). Every process publishes the
# latest figures, so with several workers the most recent value is the right one.
DRIFT = Gauge(
    "placement_drift",
    "Drift the last audit found (whichever replica ran it), by kind: orphaned_instances,"
    " missing_instances, stuck_operations, deleted_by_provider.",
    ["kind"],
    multiprocess_mode="mostrecent",
)
AUDIT_FINISHED = Gauge(
    "placement_drift_audit_finish_time_seconds",
    "When the last drift audit finished (Unix time).",
    multiprocess_mode="mostrecent",
)
OLDEST_OPERATION = Gauge(
    "placement_oldest_operation_age_seconds",
    "Age of the oldest operation in flight (since its record was last claimed); 0 when none.",
    multiprocess_mode="mostrecent",
)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type, merged across processes when needed."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class PoolGauge:
    """Copies database pool statistics into DB_CONNECTIONS, at most once a second."""

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats
        self._next = 0.0

    def update(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + 1.0
        for state, value in self._stats().items():
            DB_CONNECTIONS.labels(state).set(value)
