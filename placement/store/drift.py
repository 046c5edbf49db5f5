"""The drift audit's SQL (`placement/flows/drift.py`), on the store's own database, apart from
the lifecycle's statements.

The SPRM's instance ids are streamed page by page into a temporary table on one
connection, and the database anti-joins both ways: each page against the records as it
arrives (orphaned instances), all listed ids against the READY records at the end
(missing instances). Memory in this process stays one page, whatever the numbers.

Every comparison with "now" uses the database's clock (`now()` and
`placement_lease_end(seconds)`, as in `statements.py`). Every state but READY counts as an
operation in flight; a pending deletion of a replaced instance (`placement_retired`) is
work in progress, not an orphan. The moves the audit makes on records are transitions of
`tests/harness/lifecycle.py` (by the audit). Statements have "?" placeholders (rewritten
for psycopg by the store's `SqlEngine`); `SQLITE` holds SQLite's spelling of those that
differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from placement.model import RESOURCE_ID_PATTERN
from placement.store.base import ResourceStore
from placement.store.engine import Row
from placement.store.sql import SqlStore
from placement.store.sqlite import roll_back

LEASE_NAME = "drift"

SQL = {
    "drop_table": "DROP TABLE IF EXISTS placement_audit_instances",
    "create_table": "CREATE TEMPORARY TABLE placement_audit_instances"
    " (id text PRIMARY KEY, page integer NOT NULL, candidate boolean NOT NULL)",
    "create_index": "CREATE INDEX placement_audit_instances_page_idx"
    " ON placement_audit_instances (page)",
    "add": "INSERT INTO placement_audit_instances (id, page, candidate) VALUES (?, ?, ?)"
    " ON CONFLICT (id) DO NOTHING",
    "unknown_on_page": "SELECT a.id FROM placement_audit_instances a"
    " WHERE a.page = ? AND a.candidate"
    " AND NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = a.id)"
    " AND NOT EXISTS (SELECT 1 FROM placement_retired t WHERE t.id = a.id) ORDER BY a.id",
    "missing": "SELECT r.id FROM resources r WHERE r.state = 'READY'"
    " AND (r.create_time IS NULL OR r.create_time < ?)"
    " AND NOT EXISTS (SELECT 1 FROM placement_audit_instances a WHERE a.id = r.id)"
    " ORDER BY r.id",
    "listed": "SELECT count(*) FROM placement_audit_instances",
    "analyze": "ANALYZE placement_audit_instances",
    "records": "SELECT count(*) FROM resources",
    # READY records whose instance its provider reports deleted (a status event).
    "deleted_by_provider": "SELECT id FROM resources WHERE upper(status) = 'DELETED'"
    " AND state = 'READY' ORDER BY id",
    "invalid_ids": "SELECT id FROM resources WHERE id !~ ? ORDER BY id",
    "has_record": "SELECT 1 FROM resources WHERE id = ?"
    " UNION ALL SELECT 1 FROM placement_retired WHERE id = ?",
    "clock": "SELECT now()",
    "stuck": "SELECT id FROM resources WHERE state <> 'READY'"
    " AND (lease_until IS NULL OR lease_until < now())"
    " UNION SELECT id FROM placement_retired"
    " WHERE lease_until IS NULL OR lease_until < now() ORDER BY id",
    "oldest": "SELECT now(), min(lease_until), min(unleased) FROM"
    " (SELECT lease_until, CASE WHEN lease_until IS NULL THEN create_time END AS unleased"
    " FROM resources WHERE state <> 'READY'"
    " UNION ALL SELECT lease_until, CASE WHEN lease_until IS NULL THEN retire_time END"
    " FROM placement_retired) AS in_flight",
    # A lease on a READY record keeps every operation off it (their claims wait for an
    # expired lease); its state is left alone.
    "audit_claim": "UPDATE resources SET lease_owner = ?, lease_until = placement_lease_end(?)"
    " WHERE id = ? AND state = 'READY' AND (lease_until IS NULL OR lease_until < now())"
    " AND (create_time IS NULL OR create_time < ?)",
    "audit_forget": "DELETE FROM resources WHERE id = ? AND state = 'READY' AND lease_owner = ?",
    "audit_release": "UPDATE resources SET lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'READY' AND lease_owner = ?",
    "take_lease": "INSERT INTO placement_audit (name, owner, lease_until)"
    " VALUES (?, ?, placement_lease_end(?))"
    " ON CONFLICT (name) DO UPDATE"
    " SET owner = excluded.owner, lease_until = excluded.lease_until"
    " WHERE placement_audit.owner = excluded.owner OR placement_audit.lease_until < now()"
    " RETURNING owner",
    "save_result": "UPDATE placement_audit SET finish_time = now(),"
    " orphaned_instances = ?, missing_instances = ?, stuck_operations = ?,"
    " deleted_by_provider = ? WHERE name = ?",
    "last_result": "SELECT finish_time, orphaned_instances, missing_instances,"
    " stuck_operations, deleted_by_provider FROM placement_audit"
    " WHERE name = ? AND finish_time IS NOT NULL",
}
# SQLite: temporary tables go to a file, not memory, and live in the `temp` schema.
SQLITE = {
    "drop_table": "DROP TABLE IF EXISTS temp.placement_audit_instances",
    "temp_store": "PRAGMA temp_store = FILE",
    "analyze": "ANALYZE temp.placement_audit_instances",
    "invalid_ids": "SELECT id FROM resources WHERE id = '' OR length(id) > 63"
    " OR id GLOB ? OR id GLOB ? OR id GLOB ? ORDER BY id",
}
# Ids the API's pattern refuses, as each database can find them: PostgreSQL matches the
# pattern itself (its `$` is the end of the text); SQLite's GLOBs (with the statement's
# length check) find characters but a-z, 0-9 and "-", a "-" first or last, longer than
# 63, empty.
_ID_GLOBS = ("*[^a-z0-9-]*", "-*", "*-")


@dataclass(frozen=True, slots=True)
class AuditResult:
    """The counts of the last audit any replica finished, and when."""

    finish_time: datetime
    orphaned_instances: int
    missing_instances: int
    stuck_operations: int
    deleted_by_provider: int  # 0 when an older version saved the result


class InstanceTable:
    """The SPRM's instance ids of one scan, in a temporary table on one connection."""

    def __init__(self, drift: DriftStore, conn: Any) -> None:
        self._drift = drift
        self._conn = conn

    def add(self, page: int, rows: Sequence[tuple[str, bool]]) -> list[str]:
        """Add one page of (instance id, may be an orphan); the ids that may be orphans
        and have no record, in id order. An id listed on an earlier page is skipped."""
        sql = self._drift.sql
        with self._drift.transaction(self._conn):
            self._conn.cursor().executemany(sql["add"], [(rid, page, f) for rid, f in rows])
        return [row[0] for row in self._conn.execute(sql["unknown_on_page"], (page,)).fetchall()]

    def missing(self, cutoff: datetime) -> list[str]:
        """READY records created before `cutoff` whose id was not listed, in id order."""
        sql = self._drift.sql
        self._conn.execute(sql["analyze"])
        cursor = self._conn.execute(sql["missing"], (self._drift.time_value(cutoff),))
        return [row[0] for row in cursor.fetchall()]

    def listed(self) -> int:
        """How many distinct instance ids were added."""
        return int(self._conn.execute(self._drift.sql["listed"]).fetchone()[0])


class DriftStore:
    """The audit's statements on `store`'s database (PostgreSQL or SQLite)."""

    def __init__(self, store: ResourceStore) -> None:
        if not isinstance(store, SqlStore):
            raise TypeError(f"the drift audit needs an SQL store, not {type(store).__name__}")
        self.engine = store.engine
        self._sqlite = self.engine.name == "sqlite"
        statements = SQL | SQLITE if self._sqlite else SQL
        self.sql = {name: self.engine.marks(text) for name, text in statements.items()}

    def time_value(self, moment: datetime) -> Any:
        return self.engine.time_value(moment)

    def _time(self, value: Any) -> datetime:
        return self.engine.decode_time(value).astimezone(UTC)

    def _maybe_time(self, value: Any) -> datetime | None:
        return None if value is None else self._time(value)

    def _rows(self, name: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.engine.rows(self.sql[name], params)

    def _count(self, name: str, params: Sequence[Any] = ()) -> int:
        return self.engine.count(self.sql[name], params)

    # The scan.

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        """One transaction on `conn` (a page of inserts commits once)."""
        if not self._sqlite:
            with conn.transaction():
                yield
            return
        conn.execute("BEGIN")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            roll_back(conn)  # a failed COMMIT leaves the transaction open
            raise

    @contextmanager
    def instance_table(self) -> Iterator[InstanceTable]:
        """A fresh temporary table for one scan, dropped afterwards."""
        with self.engine.connection() as conn:
            if self._sqlite:
                conn.execute(self.sql["temp_store"])
            conn.execute(self.sql["drop_table"])
            conn.execute(self.sql["create_table"])
            conn.execute(self.sql["create_index"])
            try:
                yield InstanceTable(self, conn)
            finally:
                conn.execute(self.sql["drop_table"])

    def clock(self) -> datetime:
        """The database's time now."""
        [(now,)] = self._rows("clock")
        return self._time(now)

    def stuck_operations(self) -> list[str]:
        """Records in flight (any state but READY) whose lease has run out, or that have
        none, in id order."""
        return [row[0] for row in self._rows("stuck")]

    def record_count(self) -> int:
        [(count,)] = self._rows("records")
        return int(count)

    def invalid_ids(self, is_valid: Callable[[str], bool]) -> list[str]:
        """Record ids the API's pattern refuses, in id order (each checked by `is_valid`
        too: the database's view of the pattern only finds them)."""
        rows = self._rows("invalid_ids", _ID_GLOBS if self._sqlite else (RESOURCE_ID_PATTERN,))
        return [row[0] for row in rows if not is_valid(row[0])]

    def has_record(self, resource_id: str) -> bool:
        return bool(self._rows("has_record", (resource_id, resource_id)))

    def oldest_operation(self, lease_seconds: float) -> tuple[datetime, datetime | None]:
        """The database's time now, and when the oldest operation in flight began: its
        lease's end less one lease (`lease_seconds`), or the creation of a record in flight
        without a lease; None when nothing is in flight."""
        [(now, lease_until, unleased)] = self._rows("oldest")
        starts = [self._maybe_time(unleased)]
        until = self._maybe_time(lease_until)
        if until is not None:
            starts.append(until - timedelta(seconds=lease_seconds))
        known = [each for each in starts if each is not None]
        return self._time(now), min(known) if known else None

    # Repairs: one record at a time, under a lease.

    def claim_ready(self, resource_id: str, owner: str, seconds: float, cutoff: datetime) -> bool:
        """Take a lease on the record if it is READY, created before `cutoff`, and no
        operation holds it."""
        params = (owner, seconds, resource_id, self.time_value(cutoff))
        return self._count("audit_claim", params) > 0

    def forget(self, resource_id: str, owner: str) -> bool:
        """Delete the record if `owner` still holds its lease."""
        return self._count("audit_forget", (resource_id, owner)) > 0

    def unclaim(self, resource_id: str, owner: str) -> bool:
        return self._count("audit_release", (resource_id, owner)) > 0

    # The in-service audit: one replica at a time, results shared.

    def take_lease(self, owner: str, seconds: float) -> bool:
        """Take or renew the audit's lease; False while another owner holds it."""
        return bool(self._rows("take_lease", (LEASE_NAME, owner, seconds)))

    def save_result(self, counts: dict[str, int]) -> None:
        """Store one audit's counts (by kind, as `Findings.counts` gives them)."""
        kinds = ("orphaned_instances", "missing_instances", "stuck_operations")
        values = (*(counts[kind] for kind in kinds), counts["deleted_by_provider"])
        self._count("save_result", (*values, LEASE_NAME))

    def last_result(self) -> AuditResult | None:
        rows = self._rows("last_result", (LEASE_NAME,))
        if not rows:
            return None
        finished, orphaned, missing, stuck, deleted = rows[0]
        return AuditResult(
            self._time(finished), int(orphaned), int(missing), int(stuck), int(deleted or 0)
        )

    def deleted_by_provider(self) -> list[str]:
        """READY records whose provider reported their instance DELETED."""
        return [row[0] for row in self._rows("deleted_by_provider", ())]
