"""The status events' metrics (prometheus-client), named in the style of
placement/telemetry/metrics.py. With several server processes (PROMETHEUS_MULTIPROC_DIR)
each gauge says how its samples merge."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS = Counter(
    "placement_status_events_total",
    "Provider status events from NATS, by outcome: received, applied, stale (older than the"
    " status stored), unknown_instance, invalid (acked and dropped), retried (nak'ed after a"
    " failure, to be redelivered).",
    ["outcome"],
)
LAG = Gauge(
    "placement_status_consumer_lag",
    "Messages in the stream that the shared durable consumer has not delivered yet"
    " (num_pending), refreshed every few seconds.",
    multiprocess_mode="mostrecent",
)
LAST_APPLIED = Gauge(
    "placement_status_last_applied_time_seconds",
    "When (Unix time) a status event was last applied to the database; its age is"
    " time() minus this.",
    multiprocess_mode="max",
)
CONNECTED = Gauge(
    "placement_nats_connected",
    "1 while the status consumer is connected to NATS and bound to its stream, else 0"
    " (with several processes: 1 if any is).",
    multiprocess_mode="livemax",
)

OUTCOMES = ("received", "applied", "stale", "unknown_instance", "invalid", "retried")
for _outcome in OUTCOMES:
    EVENTS.labels(_outcome)  # every outcome exported from the start, at zero
