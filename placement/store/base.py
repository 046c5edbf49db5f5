"""What every store provides, and the errors it raises.

The store is the one seam through which time reaches the lifecycle: leases are taken
and compared with the database's clock (so replicas never compare clocks with each
other), and new records are stamped with it. Each lifecycle method is one transition
of `tests.harness.lifecycle`, checked in the same statement (or transaction) that makes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from placement.errors import Kind, PlacementError
from placement.model import Placement, Resource, ResourceView


class StoreError(PlacementError):
    """The database failed in a way the client cannot fix. The message (logged) says
    how; the client is told only that the database failed (no SQL, no table names)."""

    KIND: ClassVar[Kind] = Kind.INTERNAL
    DETAIL: ClassVar[str] = "the database failed"

    def __init__(self, message: str) -> None:
        super().__init__(self.KIND, self.DETAIL, message=message)


class StoreUnavailable(StoreError):
    """The database does not answer (down, unreachable, or no connection free in time)."""

    KIND = Kind.UNAVAILABLE
    DETAIL = "the database is not answering; retry later"


class DuplicateId(StoreError):
    """A record (or a pending deletion) with this id already exists."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last row's sort key as the store itself compares it
    (None: a row without create_time, which sorts first), and its id."""

    create_key: str | None
    id: str


@dataclass(frozen=True, slots=True)
class PendingDeletion:
    """An id held by an instance that no record stands for, still to be deleted: a
    replaced resource's, or one a failed create may have made (`undo`). The id is free
    again once the SPRM has deleted it: after `seconds_left` of the current lease and a
    reconciler round."""

    undo: bool
    seconds_left: float


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a record by one operation (`owner`) for `seconds` of the database's
    clock from the moment the store takes it: other operations and the reconciler leave
    the record alone until it runs out."""

    owner: str
    seconds: float


class ResourceStore(Protocol):
    """Records of placed resources, in the Go service's `resources` table (plus the
    lifecycle columns our migrations add), and pending deletions of replaced ones."""

    def open(self) -> None:
        """Wait (bounded) for the database; create or migrate the schema."""

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""

    def pool_stats(self) -> dict[str, int]:
        """Connections in use, idle, and requests waiting (empty without a pool)."""

    def setting(self, name: str, default: Callable[[], str]) -> str:
        """A service-wide value, created from `default()` by whoever asks first."""

    def reads(self) -> ResourceReads:
        """The same records for the API's reads, served on the event loop (one object
        per store: its pool, or executor, is opened and closed with the app)."""

    # Reads.

    def get(self, resource_id: str) -> Resource | None: ...

    def pending_deletion(self, resource_id: str) -> PendingDeletion | None:
        """The pending deletion (or undo) holding this id, if any."""

    # Lifecycle transitions (tests.harness.lifecycle): True, or the record, when made.

    def begin_create(self, placement: Placement, lease: Lease) -> Resource:
        """Insert PROVISIONING under `lease`; DuplicateId if the id is in use."""

    def finish_create(self, resource_id: str, owner: str, status: str | None = None) -> bool:
        """PROVISIONING -> READY under `owner`'s lease; `status`: the provider's status
        the SPRM's answer gave, recorded unless a status event came first."""

    def undo_create(self, resource_id: str, owner: str) -> bool:
        """Remove the record: the SPRM refused every try, so nothing was made."""

    def abandon_create(self, resource_id: str, owner: str) -> bool:
        """Move the record into the pending undos (keeping its lease's end, no owner): the
        SPRM may have made the instance, and the client is told it was not created."""

    def resume_create(self, placement: Placement, lease: Lease) -> Resource | None:
        """Take over the pending undo of the same create (same catalog item instance id,
        spec and provider), if no reconciler has claimed it: it becomes a PROVISIONING
        record under `lease` again, in one transaction. None if there is none to take."""

    def begin_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        """READY -> DELETING under `lease`; None if absent or busy."""

    def resume_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        """Take over a DELETING record whose lease ran out (its delete's owner gave up: an
        earlier try may have acted); None if there is none."""

    def finish_delete(self, resource_id: str, owner: str) -> bool: ...

    def undo_delete(self, resource_id: str, owner: str) -> bool: ...

    def begin_rehydrate(self, placement: Placement, lease: Lease) -> Resource | None:
        """Take `placement.replaces` (READY -> REHYDRATING) and insert its replacement,
        both under `lease`, in one transaction. None (nothing changed) if the old record
        is absent or busy; DuplicateId if the new id is in use."""

    def finish_rehydrate(
        self, resource_id: str, replaced_id: str, lease: Lease, status: str | None = None
    ) -> bool:
        """The replacement READY, the old record a pending deletion under a fresh
        `lease` (same owner); one transaction, only if `lease.owner` holds both."""

    def undo_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        """Remove the replacement and put the old record back to READY; one transaction."""

    def abandon_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        """Move the replacement into the pending undos (as `abandon_create`) and put the
        old record back to READY; one transaction."""

    def restore(self, resource_id: str, owner: str) -> bool:
        """REHYDRATING -> READY for a record whose replacement was never recorded."""

    def finish_retire(self, resource_id: str, owner: str) -> bool:
        """Forget a pending deletion: the SPRM no longer has the instance."""

    def apply_status(
        self, resource_id: str, status: str, message: str | None, moment: datetime, sequence: int
    ) -> str:
        """Record a provider's status event if it is newer than the recorded one (its time,
        then its stream sequence) and not older than the record: "applied", "stale" (not
        newer), or "unknown" (no record has the id). The check and the write are one
        statement."""

    def retire_instance(self, resource_id: str, lease: Lease) -> bool:
        """Record a pending deletion of an instance no record stands for (under `lease`),
        if the id is free."""

    def claim_stale(self, lease: Lease) -> Resource | None:
        """Take one record whose operation's lease ran out (no lease first, then the
        oldest); a replacement comes with the record it replaces (same lease). Safe
        against several replicas claiming at once."""

    def claim_retired(self, lease: Lease) -> str | None:
        """Take one pending deletion whose lease ran out; its id."""

    def release(self, owner: str, seconds: float) -> bool:
        """Give up the lease `owner` holds (on a record, or on a replacement and the record
        it replaces), states unchanged: the record waits `seconds`, then any reconciler
        round may claim it (the round that gave it up does not take it again)."""


class ResourceReads(Protocol):
    """The reads the API serves (GET, list, health) without leaving the event loop, on
    the same statements as the store's. Specs come as the JSON text the database holds."""

    async def open(self) -> None:
        """Call once the store is open (its schema migrated), on the serving loop."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        """As `ResourceStore.setting`."""

    async def get(self, resource_id: str) -> ResourceView | None: ...

    async def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        """Up to `limit` records after `after` in (create_time, id) order, rows without a
        create_time first; and the cursor of the last one when more may follow. With
        `max_bytes`, the page ends early once its specs' JSON passes that many bytes (it
        always has one record). `provider` and `status` filter (the status without
        case)."""
