"""Settles operations their owner abandoned (a crash, a timeout, a lost database):
records whose lease expired in PROVISIONING, DELETING or REHYDRATING.

Each round claims a batch of stale records under its own lease (several replicas may
run rounds at once: a record is claimed by one of them), asks the SPRM what exists,
and brings the record in line with it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

from placement import context, metrics
from placement.model import Resource, State, utcnow
from placement.service import ResourceManager, retire_replaced
from placement.store import Lease, ResourceStore, StoreError
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        store: ResourceStore,
        sprm: ResourceManager,
        lease_seconds: float,
        batch: int = 100,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._sprm = sprm
        self._lease_time = timedelta(seconds=lease_seconds)
        self._batch = batch
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Counter[str]:
        """One round; the count of each action taken."""
        context.begin(None, prefix="reconcile")
        metrics.RECONCILER_RUNS.inc()
        now = self._clock()
        lease = Lease(uuid.uuid4().hex, now + self._lease_time)
        done: Counter[str] = Counter()
        # Replacements first: settling one may settle the record it replaces.
        stale = sorted(self._store.claim_stale(lease, now, self._batch), key=_order)
        for resource in stale:
            action = self._settle(resource, lease)
            done[action] += 1
            metrics.RECONCILER_ACTIONS.labels(action).inc()
            log.log(
                logging.INFO if action != "waiting" else logging.DEBUG,
                "reconciled %s (%s): %s",
                resource.id,
                resource.state.value,
                action,
            )
        return done

    def start(self, interval: float) -> None:
        """Run a round now, then every `interval` seconds, in a daemon thread."""
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="reconciler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except (StoreError, UpstreamError) as exc:
                log.warning("reconciler round failed: %s", exc)
            except Exception:
                log.exception("reconciler round failed")
            self._stop.wait(interval)

    def _settle(self, resource: Resource, lease: Lease) -> str:
        try:
            if resource.state is State.PROVISIONING:
                return self._settle_provisioning(resource, lease)
            if resource.state is State.DELETING:
                return self._settle_deleting(resource, lease)
            return self._settle_rehydrating(resource, lease)
        except UpstreamError as exc:
            log.warning("cannot settle %s yet: %s", resource.id, exc)
            self._store.release(resource.id, lease.owner, resource.state)
            return "deferred"

    def _settle_provisioning(self, resource: Resource, lease: Lease) -> str:
        if self._sprm.get_instance(resource.id) is None:
            self._store.delete(resource.id, lease.owner)
            if resource.replaces:
                self._store.restore(resource.replaces)
            return "provisioning_undone"
        if resource.replaces:
            retire_replaced(self._store, self._sprm, resource.replaces)
        self._store.release(resource.id, lease.owner, State.READY)
        return "provisioning_completed"

    def _settle_deleting(self, resource: Resource, lease: Lease) -> str:
        try:
            self._sprm.delete_instance(resource.id)
        except UpstreamError as exc:
            if exc.outcome_unknown:
                raise
            if exc.status != 404:
                log.warning("SPRM refused to delete %s (%s); it stays", resource.id, exc)
                self._store.release(resource.id, lease.owner, State.READY)
                return "delete_refused"
        self._store.delete(resource.id, lease.owner)
        return "delete_completed"

    def _settle_rehydrating(self, resource: Resource, lease: Lease) -> str:
        replacement = self._store.replacement_of(resource.id)
        if replacement is None:
            self._store.release(resource.id, lease.owner, State.READY)
            return "rehydrate_undone"
        if replacement.state is State.READY:
            retire_replaced(self._store, self._sprm, resource.id)
            return "rehydrate_completed"
        # The replacement is still being provisioned: it settles this record too.
        self._store.release(resource.id, lease.owner, State.REHYDRATING)
        return "waiting"


def _order(resource: Resource) -> int:
    return 0 if resource.replaces else 1
