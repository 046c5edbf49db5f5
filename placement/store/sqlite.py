"""SQLite store: the stdlib sqlite3, one connection per worker thread, WAL journal.

Times are stored as text the way the Go service's driver wrote them
(`2026-03-30 09:15:01.123456+00:00`, UTC, no trailing zeros in the fraction), which
sorts as text in time order; the spec is stored as JSON text.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from placement.model import JSONObject
from placement.store.base import DuplicateId, StoreError, StoreUnavailable
from placement.store.sql import SqlStore

log = logging.getLogger(__name__)

# Schema versions, applied in order once each (see postgres.MIGRATIONS).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE IF NOT EXISTS resources (
            id varchar(63) PRIMARY KEY,
            catalog_item_instance_id text NOT NULL,
            original_spec text NOT NULL,
            provider_name text NOT NULL,
            approval_status text NOT NULL,
            path text NOT NULL,
            create_time datetime,
            update_time datetime
        )
        """,
    ),
    (
        "ALTER TABLE resources ADD COLUMN state text NOT NULL DEFAULT 'READY'",
        "ALTER TABLE resources ADD COLUMN lease_owner text",
        "ALTER TABLE resources ADD COLUMN lease_until datetime",
        "ALTER TABLE resources ADD COLUMN replaces varchar(63)",
        "CREATE INDEX IF NOT EXISTS resources_create_time_id_idx ON resources (create_time, id)",
        "CREATE INDEX IF NOT EXISTS resources_provider_create_time_id_idx"
        " ON resources (provider_name, create_time, id)",
        "CREATE INDEX IF NOT EXISTS resources_in_flight_idx ON resources (lease_until)"
        " WHERE state <> 'READY'",
        "CREATE INDEX IF NOT EXISTS resources_replaces_idx ON resources (replaces)"
        " WHERE replaces IS NOT NULL",
        "CREATE TABLE IF NOT EXISTS placement_settings"
        " (name text PRIMARY KEY, value text NOT NULL)",
    ),
)

# OperationalErrors that mean "cannot use the database now", not "this statement failed".
_UNAVAILABLE = ("locked", "unable to open", "disk I/O", "busy", "readonly database")


class SqliteStore(SqlStore):
    """Records in one SQLite file (DB_NAME)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self._path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def open(self) -> None:
        if self._path.parent != Path() and not self._path.parent.is_dir():
            raise StoreUnavailable(f"directory {self._path.parent} does not exist")
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._migrate(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def ping(self) -> None:
        self._rows("SELECT 1", ())

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS placement_schema"
            " (version integer PRIMARY KEY, applied_time datetime NOT NULL)"
        )
        (current,) = conn.execute(
            "SELECT coalesce(max(version), 0) FROM placement_schema"
        ).fetchone()
        for version in range(current, len(MIGRATIONS)):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO placement_schema (version, applied_time) VALUES (?, ?)",
                (version + 1, _time_text(datetime.now(UTC))),
            )
            log.info("database schema migrated to version %d", version + 1)

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(statement, params).fetchall()

    def _count(self, statement: str, params: Sequence[Any]) -> int:
        with self._connection() as conn:
            return conn.execute(statement, params).rowcount

    def _page_rows(
        self, statement: str, params: Sequence[Any], max_bytes: int | None
    ) -> list[tuple[Any, ...]]:
        """SQLite makes rows as they are read: read no further than the budget (a spec's
        size: the length of its JSON text, ASCII as this service writes it)."""
        rows: list[tuple[Any, ...]] = []
        held = 0
        with self._connection() as conn:
            cursor = conn.execute(statement, params)
            for row in cursor:
                if max_bytes is not None and held >= max_bytes:
                    rows.append((*row[:2], None, *row[3:]))  # there is more; not held
                    break
                held += len(row[2])
                rows.append(row)
            cursor.close()
        return rows

    def _spec_value(self, spec: JSONObject) -> Any:
        return json.dumps(spec, separators=(",", ":"))

    def _time_value(self, moment: datetime) -> Any:
        return _time_text(moment)

    def _decode_spec(self, value: Any) -> JSONObject:
        spec: JSONObject = json.loads(value)
        return spec

    def _decode_time(self, value: Any) -> datetime:
        if value is None:
            return datetime.fromtimestamp(0, UTC)
        return datetime.fromisoformat(value).astimezone(UTC)

    def _sort_key(self, value: Any) -> str:
        return str(value)

    def _after_value(self, key: str) -> Any:
        return key

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._thread_connection()
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise StoreError(f"sqlite database {self._path}: {exc}") from exc
            raise DuplicateId(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if any(sign in str(exc) for sign in _UNAVAILABLE):
                raise StoreUnavailable(f"sqlite database {self._path}: {exc}") from exc
            raise StoreError(f"sqlite database {self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite database {self._path}: {exc}") from exc

    def _thread_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn


def _time_text(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "+00:00"
