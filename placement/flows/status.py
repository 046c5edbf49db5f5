"""The providers' status events, applied to the records: the events adapter hands each
one over once it is read, and acks it once this returns (a StoreError leaves it to be
delivered again). An event only sets a record's status columns: it never makes a record
READY, removes one, or settles an operation; an event for an id without a record (being
undone, retired, or never ours) counts as an unknown instance."""

from __future__ import annotations

from placement.events.parse import StatusEvent
from placement.store import ResourceStore


class StatusUpdates:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    def apply(self, event: StatusEvent) -> str:
        """ "applied", "stale" (not newer than the recorded status) or "unknown"."""
        return self._store.apply_status(
            event.instance_id, event.status, event.message, event.time, event.sequence
        )
