"""What every store provides, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from placement.model import Resource, State


class StoreError(Exception):
    """The database failed in a way the client cannot fix."""


class StoreUnavailable(StoreError):
    """The database does not answer (down, unreachable, or no connection free in time)."""


class DuplicateId(StoreError):
    """A record with this id already exists."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the last row's sort key, as the store itself compares it."""

    create_key: str
    id: str


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a record by one operation (`owner`), valid until `until`: other
    operations and the reconciler leave the record alone while it is valid."""

    owner: str
    until: datetime


class ResourceStore(Protocol):
    """Records of placed resources, in the Go service's `resources` table (plus the
    lifecycle columns our migrations add)."""

    def open(self) -> None:
        """Wait (bounded) for the database; create or migrate the schema."""

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""

    def pool_stats(self) -> dict[str, int]:
        """Connections in use, idle, and requests waiting (empty without a pool)."""

    def setting(self, name: str, default: Callable[[], str]) -> str:
        """A service-wide value, created from `default()` by whoever asks first."""

    def insert(self, resource: Resource, lease: Lease | None = None) -> None:
        """Raise DuplicateId if the id is taken."""

    def get(self, resource_id: str) -> Resource | None: ...

    def list_page(
        self, provider: str | None, limit: int, after: Cursor | None, max_bytes: int | None = None
    ) -> tuple[list[Resource], Cursor | None]:
        """Up to `limit` records after `after` in (create_time, id) order, and the
        cursor of the last one when more may follow. With `max_bytes`, the page ends
        early once its specs' JSON passes that many bytes (it always has one record)."""

    def replacement_of(self, resource_id: str) -> Resource | None:
        """The record whose `replaces` is `resource_id` (a rehydration in flight)."""

    def claim(
        self, resource_id: str, expected: State, state: State, lease: Lease, now: datetime
    ) -> Resource | None:
        """Move a record from `expected` to `state` under `lease`, unless another
        operation holds a valid lease on it; None if not moved (absent or busy)."""

    def claim_stale(self, lease: Lease, now: datetime, limit: int) -> list[Resource]:
        """Take over up to `limit` records whose operation's lease expired; safe
        against several replicas claiming at once."""

    def release(self, resource_id: str, owner: str, state: State) -> bool:
        """End `owner`'s lease and set `state` (READY also clears `replaces`); a state
        other than READY is left for the reconciler. False if not the owner."""

    def delete(self, resource_id: str, owner: str) -> bool:
        """Remove the record if `owner` holds its lease."""

    def retire(self, resource_id: str) -> bool:
        """Remove a record being rehydrated once its replacement is provisioned."""

    def restore(self, resource_id: str) -> bool:
        """Put a record being rehydrated back to READY: its replacement failed."""
