"""What every store provides, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from placement.model import Resource


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


class ResourceStore(Protocol):
    """Records of placed resources, in the Go service's `resources` table."""

    def open(self) -> None:
        """Wait (bounded) for the database, create the schema if missing."""

    def close(self) -> None: ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers now."""

    def insert(self, resource: Resource) -> None:
        """Raise DuplicateId if the id is taken."""

    def get(self, resource_id: str) -> Resource | None: ...

    def delete(self, resource_id: str) -> bool:
        """Return whether a record was removed."""

    def list(
        self, provider: str | None, limit: int, after: Cursor | None
    ) -> tuple[list[Resource], Cursor | None]:
        """Up to `limit` records after `after` in (create_time, id) order, and the
        cursor of the last one when more may follow."""
