"""Durable resource records: one module per database, one interface."""

from pathlib import Path

from placement.config import Database
from placement.store.base import (
    Cursor,
    DuplicateId,
    Lease,
    PendingDeletion,
    ResourceReads,
    ResourceStore,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "Cursor",
    "DuplicateId",
    "Lease",
    "PendingDeletion",
    "ResourceReads",
    "ResourceStore",
    "StoreError",
    "StoreUnavailable",
    "make_store",
]


def make_store(db: Database) -> ResourceStore:
    """The store for DB_TYPE."""
    if db.type == "sqlite":
        from placement.store.sqlite import SqliteStore

        return SqliteStore(Path(db.name))
    from placement.store.postgres import PostgresStore

    return PostgresStore(db)
