"""SQLite store: the stdlib sqlite3, one connection per worker thread, WAL journal.

Times are stored as text the way the Go service's driver wrote them
(`2026-03-30 09:15:01.123456+00:00`, UTC, no trailing zeros in the fraction), which
sorts as text in time order; the spec is stored as JSON text.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from placement.model import Resource
from placement.store.base import Cursor, DuplicateId, StoreError, StoreUnavailable

_SCHEMA = (
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
    "CREATE INDEX IF NOT EXISTS resources_create_time_id_idx ON resources (create_time, id)",
)

_SELECT = (
    "SELECT id, catalog_item_instance_id, original_spec, provider_name, approval_status,"
    " create_time, update_time FROM resources"
)
_GET = _SELECT + " WHERE id = ?"
_INSERT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_ORDER = " ORDER BY create_time, id LIMIT ?"
_LIST = {
    (False, False): _SELECT + _ORDER,
    (True, False): _SELECT + " WHERE provider_name = ?" + _ORDER,
    (False, True): _SELECT + " WHERE (create_time, id) > (?, ?)" + _ORDER,
    (True, True): _SELECT + " WHERE provider_name = ? AND (create_time, id) > (?, ?)" + _ORDER,
}


# OperationalErrors that mean "cannot use the database now", not "this statement failed".
_UNAVAILABLE = ("locked", "unable to open", "disk I/O", "busy", "readonly database")


class SqliteStore:
    """Records in one SQLite file (DB_NAME)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
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
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    def insert(self, resource: Resource) -> None:
        row = (
            resource.id,
            resource.catalog_item_instance_id,
            json.dumps(resource.spec, separators=(",", ":")),
            resource.provider_name,
            resource.approval_status,
            resource.path,
            _time_text(resource.create_time),
            _time_text(resource.update_time),
        )
        with self._connection() as conn:
            try:
                conn.execute(_INSERT, row)
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" not in str(exc):
                    raise
                raise DuplicateId(resource.id) from None

    def get(self, resource_id: str) -> Resource | None:
        with self._connection() as conn:
            row = conn.execute(_GET, (resource_id,)).fetchone()
        return None if row is None else _resource(row)

    def delete(self, resource_id: str) -> bool:
        with self._connection() as conn:
            return conn.execute("DELETE FROM resources WHERE id = ?", (resource_id,)).rowcount > 0

    def list(
        self, provider: str | None, limit: int, after: Cursor | None
    ) -> tuple[list[Resource], Cursor | None]:
        params: list[Any] = []
        if provider is not None:
            params.append(provider)
        if after is not None:
            params += [after.create_key, after.id]
        params.append(limit + 1)
        query = _LIST[provider is not None, after is not None]
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        resources = [_resource(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return resources, None
        return resources, Cursor(rows[limit - 1][5], rows[limit - 1][0])

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._thread_connection()
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


def _parse_time(text: str | None) -> datetime:
    if text is None:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromisoformat(text).astimezone(UTC)


def _resource(row: tuple[Any, ...]) -> Resource:
    rid, catalog_id, spec, provider, approval, created, updated = row
    return Resource(
        id=rid,
        catalog_item_instance_id=catalog_id,
        spec=json.loads(spec),
        provider_name=provider or "",
        approval_status=approval or "",
        create_time=_parse_time(created),
        update_time=_parse_time(updated),
    )
