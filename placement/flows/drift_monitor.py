"""The drift audit inside the service (AUDIT_INTERVAL; off by default): it reports, it
never repairs.

Every worker process of every replica wakes up each interval. The one holding the
audit's lease in the database runs the audit (`audit.scan`) and stores its counts
there; then every process publishes the last stored counts and the age of the oldest
operation in flight as gauges. So any replica's /metrics shows the deployment's latest
figures, and with several workers the most recent value wins (multiprocess mode
"mostrecent"); an alert can fire on any of them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from placement.errors import UpstreamError
from placement.flows.drift import PAGE_SIZE, AuditError, Instances, scan
from placement.flows.periodic import Periodic
from placement.store import ResourceStore, StoreError
from placement.store.drift import DriftStore
from placement.telemetry import context, metrics

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The service is stopping: leave the scan."""


class Auditor:
    def __init__(
        self,
        store: ResourceStore,
        sprm: Instances,
        interval: float,
        lease_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._drift = DriftStore(store)
        self._sprm = sprm
        self._interval = interval
        # An operation's lease: the grace of the scan, and what the age of an operation
        # in flight is reckoned from.
        self._operation_lease = lease_seconds
        # Held from one round to the next; another replica takes over within this
        # long after the holder stops.
        self._lease_seconds = 2 * interval + lease_seconds
        self._owner = f"auditor-{uuid.uuid4().hex}"
        self._clock = clock
        self._page_size = page_size
        self._renewed = 0.0
        self._runs = Periodic("drift audit", self.run_once, (StoreError, UpstreamError, AuditError))

    def run_once(self) -> bool:
        """One round: audit if this process holds the lease, then publish the latest
        figures. Whether this process audited."""
        context.begin(None, prefix="audit")
        audited = self._drift.take_lease(self._owner, self._lease_seconds)
        if audited:
            self._renewed = self._clock()
            findings = scan(
                self._drift, self._sprm, self._operation_lease, self._page_size, self._page
            )
            counts = findings.counts()
            self._drift.save_result(counts)
            log.info("drift audit: %s", counts, extra={"drift": counts})
        self._publish()
        return audited

    def start(self) -> None:
        """Run a round now, then every interval, in a daemon thread."""
        self._runs.start(self._interval)

    def stop(self) -> None:
        self._runs.stop()

    def _page(self) -> None:
        """After each page of the scan: stop if asked; renew the lease now and then."""
        if self._runs.stopping:
            raise _Stopped
        if self._clock() - self._renewed > self._lease_seconds / 3:
            self._drift.take_lease(self._owner, self._lease_seconds)
            self._renewed = self._clock()

    def _publish(self) -> None:
        result = self._drift.last_result()
        if result is not None:
            metrics.DRIFT.labels("orphaned_instances").set(result.orphaned_instances)
            metrics.DRIFT.labels("missing_instances").set(result.missing_instances)
            metrics.DRIFT.labels("stuck_operations").set(result.stuck_operations)
            metrics.DRIFT.labels("deleted_by_provider").set(result.deleted_by_provider)
            metrics.AUDIT_FINISHED.set(result.finish_time.timestamp())
        now, oldest = self._drift.oldest_operation(self._operation_lease)
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.OLDEST_OPERATION.set(age)
