"""The store methods both databases share, built on their `SqlEngine` (connections,
statements, value encodings). The database modules add opening, closing and the reads."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from placement.model import JSONObject, Placement, Resource
from placement.store.base import DuplicateId, Lease, PendingDeletion, ResourceReads
from placement.store.engine import SqlEngine


class SqlStore(abc.ABC):
    """A ResourceStore over an SqlEngine."""

    def __init__(self, engine: SqlEngine) -> None:
        self.engine = engine
        self._sql = engine.sql

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def reads(self) -> ResourceReads: ...

    def pool_stats(self) -> dict[str, int]:
        return {}

    def ping(self) -> None:
        self.engine.rows("SELECT 1")

    def setting(self, name: str, default: Callable[[], str]) -> str:
        self.engine.count(self._sql["setting_insert"], (name, default()))
        [(value,)] = self.engine.rows(self._sql["setting_get"], (name,))
        return str(value)

    # Reads.

    def get(self, resource_id: str) -> Resource | None:
        rows = self.engine.rows(self._sql["get"], (resource_id,))
        return self.engine.resource(rows[0]) if rows else None

    def pending_deletion(self, resource_id: str) -> PendingDeletion | None:
        rows = self.engine.rows(self._sql["pending_deletion"], (resource_id,))
        if not rows:
            return None
        undo, until, now = rows[0]
        if until is None:
            return PendingDeletion(bool(undo), 0.0)
        left = self.engine.decode_time(until) - self.engine.decode_time(now)
        return PendingDeletion(bool(undo), max(0.0, left.total_seconds()))

    # Lifecycle transitions (tests.harness.lifecycle).

    def begin_create(self, placement: Placement, lease: Lease) -> Resource:
        rows = self.engine.rows(self._sql["begin_create"], self._insert_params(placement, lease))
        if not rows:
            raise DuplicateId(f"{placement.id} is a pending deletion")
        return self.engine.resource(rows[0])

    def finish_create(self, resource_id: str, owner: str, status: str | None = None) -> bool:
        params = (status, status, resource_id, owner)
        return self.engine.count(self._sql["finish_create"], params) == 1

    def apply_status(
        self, resource_id: str, status: str, message: str | None, moment: datetime, sequence: int
    ) -> str:
        when = self.engine.time_value(moment)
        params = (status, message, when, sequence, resource_id, when, when, when, sequence)
        if self.engine.count(self._sql["apply_status"], params) == 1:
            return "applied"
        # Only to count it: stale for the record, or no record (the answer is the same).
        return "stale" if self.engine.rows(self._sql["has_record"], (resource_id,)) else "unknown"

    def undo_create(self, resource_id: str, owner: str) -> bool:
        return self.engine.count(self._sql["undo_create"], (resource_id, owner)) == 1

    def begin_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        params = (lease.owner, lease.seconds, resource_id)
        rows = self.engine.rows(self._sql["begin_delete"], params)
        return self.engine.resource(rows[0]) if rows else None

    def resume_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        params = (lease.owner, lease.seconds, resource_id)
        rows = self.engine.rows(self._sql["resume_delete"], params)
        return self.engine.resource(rows[0]) if rows else None

    def finish_delete(self, resource_id: str, owner: str) -> bool:
        return self.engine.count(self._sql["finish_delete"], (resource_id, owner)) == 1

    def undo_delete(self, resource_id: str, owner: str) -> bool:
        return self.engine.count(self._sql["undo_delete"], (resource_id, owner)) == 1

    def begin_rehydrate(self, placement: Placement, lease: Lease) -> Resource | None:
        replaced = placement.replaces
        with self.engine.transaction() as conn:
            taken = conn.execute(
                self._sql["begin_rehydrate:replaced"], (lease.owner, lease.seconds, replaced)
            ).rowcount
            if taken != 1:
                return None  # nothing changed: the transaction ends without a write
            params = self._insert_params(placement, lease)
            rows = conn.execute(self._sql["begin_rehydrate:record"], params).fetchall()
            if not rows:
                raise DuplicateId(f"{placement.id} is a pending deletion")
            return self.engine.resource(rows[0])

    def finish_rehydrate(
        self, resource_id: str, replaced_id: str, lease: Lease, status: str | None = None
    ) -> bool:
        owner = lease.owner
        return self._all_or_nothing(
            ("finish_rehydrate:record", (status, status, resource_id, replaced_id, owner)),
            ("finish_rehydrate:replaced", (replaced_id, owner)),
            ("finish_rehydrate:retired", (replaced_id, owner, lease.seconds, replaced_id)),
        )

    def undo_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("undo_rehydrate:record", (resource_id, replaced_id, owner)),
            ("undo_rehydrate:replaced", (replaced_id, owner)),
        )

    def restore(self, resource_id: str, owner: str) -> bool:
        return self.engine.count(self._sql["restore"], (resource_id, owner, resource_id)) == 1

    def finish_retire(self, resource_id: str, owner: str) -> bool:
        return self.engine.count(self._sql["finish_retire"], (resource_id, owner)) == 1

    def abandon_create(self, resource_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("abandon_create:retired", (resource_id, owner)),
            ("abandon_create:record", (resource_id, owner)),
        )

    def abandon_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("abandon_rehydrate:retired", (resource_id, replaced_id, owner)),
            ("abandon_rehydrate:record", (resource_id, replaced_id, owner)),
            ("abandon_rehydrate:replaced", (replaced_id, owner)),
        )

    def resume_create(self, placement: Placement, lease: Lease) -> Resource | None:
        undone = self.engine.rows(self._sql["undo_of"], (placement.id,))
        if not undone or not _same_placement(undone[0], placement, self.engine.decode_spec):
            return None
        try:
            rows = self.engine.rows(
                self._sql["resume_create"], self._insert_params(placement, lease)
            )
        except DuplicateId:
            return None  # another retry was first
        return self.engine.resource(rows[0]) if rows else None

    def retire_instance(self, resource_id: str, lease: Lease) -> bool:
        params = (resource_id, lease.owner, lease.seconds, resource_id, resource_id)
        return self.engine.count(self._sql["retire_instance"], params) == 1

    def claim_stale(self, lease: Lease) -> Resource | None:
        with self.engine.transaction() as conn:
            rows = conn.execute(
                self._sql["claim_stale:record"], (lease.owner, lease.seconds)
            ).fetchall()
            if not rows:
                return None
            claimed = self.engine.resource(rows[0])
            if claimed.replaces is not None:
                # The record it replaces, when it can be had: the pair moves need both.
                params = (lease.owner, lease.seconds, claimed.replaces)
                conn.execute(self._sql["claim_stale:replaced"], params)
            return claimed

    def claim_retired(self, lease: Lease) -> str | None:
        rows = self.engine.rows(self._sql["claim_retired"], (lease.owner, lease.seconds))
        return str(rows[0][0]) if rows else None

    def release(self, owner: str, seconds: float) -> bool:
        return self.engine.count(self._sql["release"], (seconds, owner)) >= 1

    # Helpers.

    def _all_or_nothing(self, *steps: tuple[str, Sequence[Any]]) -> bool:
        """Run the statements in one transaction; commit only if each changed one row."""
        try:
            with self.engine.transaction() as conn:
                for name, params in steps:
                    if conn.execute(self._sql[name], params).rowcount != 1:
                        raise _Busy
        except _Busy:
            return False
        return True

    def _insert_params(self, placement: Placement, lease: Lease) -> tuple[Any, ...]:
        return (
            placement.id,
            placement.catalog_item_instance_id,
            self.engine.spec_value(placement.spec),
            placement.provider_name,
            placement.approval_status,
            f"resources/{placement.id}",
            placement.replaces,
            lease.owner,
            lease.seconds,
            placement.id,
        )


class _Busy(Exception):
    """Rolls back a transaction whose rows were not all where the transition needs them."""


def _same_placement(
    row: Sequence[Any], placement: Placement, decode_spec: Callable[[Any], JSONObject]
) -> bool:
    """Whether a pending undo's (catalog item instance id, spec, provider) are the
    placement's: only the same create may take it over."""
    catalog_id, spec, provider = row
    return (catalog_id, decode_spec(spec), provider) == (
        placement.catalog_item_instance_id,
        placement.spec,
        placement.provider_name,
    )
