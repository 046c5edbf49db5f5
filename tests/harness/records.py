"""Records read and written straight in the database, behind the service's back: written
as the Go service, an earlier version or an operation under way left them (any
create_time, any state, any lease; the store itself stamps new records with the
database's clock), read to know what the reconciler has settled, emptied between tests.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import psycopg

from placement.config import Database
from placement.model import State
from placement.store import Lease, ResourceStore

_PUT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time, state, lease_owner, lease_until)"
    " VALUES (?, 'cat', ?, 'p', 'APPROVED', ?, ?, ?, ?, ?,"
    " CASE WHEN ? THEN placement_lease_end(?) END)"
)


def put_record(
    store: ResourceStore,
    rid: str,
    created: datetime,
    state: State = State.READY,
    lease: Lease | None = None,
) -> None:
    """A record `rid` created at `created`, in `state`, under `lease` (its seconds from
    now on the database's clock; negative: already run out) or none."""
    sql: Any = store
    engine = sql.engine
    statement = engine.marks(_PUT)
    params = (
        rid,
        engine.spec_value({"n": 1}),
        f"resources/{rid}",
        engine.time_value(created),
        engine.time_value(created),
        state.value,
        lease.owner if lease else None,
        lease is not None,
        lease.seconds if lease else 0.0,
    )
    engine.count(statement, params)


def execute(db: Database, *statements: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """Run the statements in one transaction (each with `params`); the first row of the
    last one (None without one)."""
    row = None
    if db.type == "sqlite":
        lite = sqlite3.connect(db.name, timeout=10)
        try:
            with lite:  # commits
                for statement in statements:
                    row = lite.execute(statement, params).fetchone()
        finally:
            lite.close()
        return row
    with psycopg.connect(
        host=db.host, port=db.port, dbname=db.name, user=db.user, password=db.password or None
    ) as conn:  # commits
        for statement in statements:
            cursor = conn.execute(statement, params)
            row = cursor.fetchone() if cursor.description else None
    return row


def empty(db: Database) -> None:
    """Delete every resource record and pending deletion."""
    execute(db, "DELETE FROM resources", "DELETE FROM placement_retired")


def in_flight(db: Database) -> int:
    """Records an operation or the reconciler has yet to settle, and pending deletions of
    replaced resources."""
    row = execute(
        db,
        "SELECT (SELECT count(*) FROM resources WHERE state <> 'READY')"
        " + (SELECT count(*) FROM placement_retired)",
    )
    return int(row[0]) if row else 0


def record_state(db: Database, rid: str) -> str | None:
    """The lifecycle state of a record as stored (None: no record)."""
    placeholder = "?" if db.type == "sqlite" else "%s"
    row = execute(db, f"SELECT state FROM resources WHERE id = {placeholder}", params=(rid,))
    return None if row is None else str(row[0])
