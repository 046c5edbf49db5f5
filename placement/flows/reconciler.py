"""Settles operations their owner abandoned (a crash, an unknown outcome, a lost
database): records in PROVISIONING, DELETING or REHYDRATING, and pending deletions (of
replaced resources' instances, and the undos of creates whose client was told an error),
once their lease has run out.

A round claims one record at a time, each under a lease of its own taken on the
database's clock (several replicas may run rounds at once: each record is claimed by one
of them), asks the SPRM, and makes the lifecycle move that brings the record in line
(the moves of `tests/harness/lifecycle.py`). A record whose lease has run out can no
longer be acted on by the SPRM for its old owner, so what the SPRM says now is final.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable

from placement.errors import UpstreamError
from placement.flows.changes import ResourceManager, retire
from placement.flows.periodic import Periodic
from placement.model import Resource, State
from placement.store import Lease, ResourceStore
from placement.telemetry import context, metrics

log = logging.getLogger(__name__)

# What a round did to one record: an action (counted), or None when the store move found
# the record changed under it (another replica took it over after our lease ran out).
Action = str | None


class Reconciler:
    def __init__(
        self,
        store: ResourceStore,
        sprm: ResourceManager,
        lease_seconds: float,
        retry_seconds: float = 30.0,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._sprm = sprm
        self._lease_seconds = lease_seconds
        self._retry_seconds = retry_seconds
        self._batch = batch
        self._runs = Periodic("reconciler", self.run_once)

    def run_once(self) -> Counter[str]:
        """One round: up to `batch` records and `batch` pending deletions; the count of
        each action taken."""
        context.begin(None, prefix="reconcile")
        metrics.RECONCILER_RUNS.inc()
        done: Counter[str] = Counter()
        self._each(done, self._settle_next)
        self._each(done, self._retire_next)
        return done

    def start(self, interval: float) -> None:
        """Run a round now, then every `interval` seconds, in a daemon thread."""
        self._runs.start(interval)

    def stop(self) -> None:
        self._runs.stop()

    def _each(self, done: Counter[str], step: Callable[[Lease], tuple[str, Action] | None]) -> None:
        """Run `step` under a new lease each time, until it finds no work, the batch is
        done, or the reconciler is stopping."""
        for _ in range(self._batch):
            if self._runs.stopping:
                return
            outcome = step(Lease(uuid.uuid4().hex, self._lease_seconds))
            if outcome is None:
                return
            resource_id, action = outcome
            if action is None:
                log.warning("%s changed while it was being reconciled; left as it is", resource_id)
                continue
            done[action] += 1
            metrics.RECONCILER_ACTIONS.labels(action).inc()
            level = logging.INFO if action != "deferred" else logging.WARNING
            log.log(level, "reconciled %s: %s", resource_id, action)

    def _settle_next(self, lease: Lease) -> tuple[str, Action] | None:
        record = self._store.claim_stale(lease)
        if record is None:
            return None
        try:
            return record.id, self._settle(record, lease)
        except UpstreamError as exc:
            # Only look-ups get here: the SPRM could not say. Ask again next round.
            log.warning("cannot settle %s yet: %s", record.id, exc)
            released = self._store.release(lease.owner, self._retry_seconds)
            return record.id, "deferred" if released else None

    def _retire_next(self, lease: Lease) -> tuple[str, Action] | None:
        resource_id = self._store.claim_retired(lease)
        if resource_id is None:
            return None
        record = self._store.get(resource_id)
        if record is not None and record.state is not State.READY:
            return resource_id, "deferred"  # an operation on the id is under way
        if record is not None:
            # A retry of the failed create took it over and made it (the SPRM can no longer
            # act on the failed one): the instance is that record's.
            taken = self._store.finish_retire(resource_id, lease.owner)
            return resource_id, "undo_taken_over" if taken else None
        if retire(self._store, self._sprm, resource_id, lease.owner):
            return resource_id, "retire_completed"
        return resource_id, "deferred"

    def _settle(self, record: Resource, lease: Lease) -> Action:
        if record.state is State.PROVISIONING:
            return self._settle_provisioning(record, lease)
        if record.state is State.DELETING:
            return self._settle_deleting(record, lease.owner)
        # REHYDRATING without a recorded replacement (a crash in an earlier version).
        return "rehydrate_undone" if self._store.restore(record.id, lease.owner) else None

    def _settle_provisioning(self, record: Resource, lease: Lease) -> Action:
        """An operation that lost its owner without an answer (a crash): what the SPRM
        has decides (the lease ran out: it can no longer act on the call)."""
        found = self._sprm.get_instance(record.id)
        exists = found is not None and found.live
        owner = lease.owner
        replaced = self._store.get(record.replaces) if record.replaces else None
        if replaced is None or replaced.state is not State.REHYDRATING:
            if exists:
                return (
                    "provisioning_completed"
                    if self._store.finish_create(
                        record.id, owner, None if found is None else found.status
                    )
                    else None
                )
            return "provisioning_undone" if self._store.undo_create(record.id, owner) else None
        if not exists:
            undone = self._store.undo_rehydrate(record.id, replaced.id, owner)
            return "rehydrate_undone" if undone else None
        if not self._store.finish_rehydrate(
            record.id, replaced.id, lease, None if found is None else found.status
        ):
            return None
        retire(self._store, self._sprm, replaced.id, owner)  # else retried as a pending deletion
        return "rehydrate_completed"

    def _settle_deleting(self, record: Resource, owner: str) -> Action:
        try:
            self._sprm.delete_instance(record.id)
        except UpstreamError as exc:
            if exc.outcome_unknown:
                # The delete may still act: the lease stays, and it is tried again after.
                log.warning("delete of %s left unknown; tried again later: %s", record.id, exc)
                return "deferred"
            # Refused; but an earlier delete of this record may have acted: ask.
            found = self._sprm.get_instance(record.id)
            if found is not None and found.live:
                log.warning("SPRM refused to delete %s (%s); it stays", record.id, exc)
                return "delete_refused" if self._store.undo_delete(record.id, owner) else None
        return "delete_completed" if self._store.finish_delete(record.id, owner) else None
