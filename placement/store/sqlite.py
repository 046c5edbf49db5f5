"""SQLite store: the stdlib sqlite3, one connection per worker thread, WAL journal.

Times are stored as text the way the Go service's driver wrote them
(`2026-03-30 09:15:01.123456+00:00`, UTC, no trailing zeros in the fraction), which
sorts as text in time order; the spec is stored as JSON text. The database's clock is
this process's (SQLite runs in it): each connection gets `now()` and
`placement_lease_end(seconds)` from `clock`, which tests replace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from placement.model import JSONObject, ResourceView, utcnow
from placement.store.base import Cursor, DuplicateId, StoreError, StoreUnavailable
from placement.store.engine import ListKey, Row, SqlEngine, without_spec
from placement.store.migrations import migrate
from placement.store.sql import SqlStore
from placement.store.statements import COLUMN

log = logging.getLogger(__name__)

T = TypeVar("T")

# The API's reads run in this many threads of their own (each with its connection).
READ_THREADS = 2
# OperationalErrors that mean "cannot use the database now", not "this statement failed".
_UNAVAILABLE = ("locked", "unable to open", "disk I/O", "busy", "readonly database")
_SPEC = COLUMN["original_spec"]


class SqliteEngine(SqlEngine):
    """SQLite through the stdlib sqlite3: one connection per thread."""

    name = "sqlite"

    def __init__(self, path: Path, busy_timeout: float, clock: Callable[[], datetime]) -> None:
        super().__init__({})
        self.path = path
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def close(self) -> None:
        """Close every thread's connection (each opens a new one when next used)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._translated():
            yield self.thread_connection()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._translated():
            conn = self.thread_connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                roll_back(conn)
                raise

    def page_rows(self, key: ListKey, params: Sequence[Any], max_bytes: int | None) -> list[Row]:
        """SQLite makes rows as they are read: read no further than the budget (a spec's
        size: the length of its JSON text, ASCII as this service writes it)."""
        rows: list[Row] = []
        held = 0
        with self.connection() as conn:
            cursor = conn.execute(self.lists[key], params)
            for row in cursor:
                if max_bytes is not None and held >= max_bytes:
                    rows.append(without_spec(row))  # there is more; not held
                    break
                held += len(row[_SPEC])
                rows.append(row)
            cursor.close()
        return rows

    def spec_value(self, spec: JSONObject) -> Any:
        return json.dumps(spec, separators=(",", ":"))

    def decode_spec(self, value: Any) -> JSONObject:
        spec: JSONObject = json.loads(value)
        return spec

    def time_value(self, moment: datetime) -> Any:
        return _time_text(moment)

    def decode_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    def sort_key(self, value: Any) -> str:
        return str(value)

    def after_value(self, key: str) -> Any:
        return key

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """sqlite3's errors as the store's."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise StoreError(f"sqlite database {self.path}: {exc}") from exc
            raise DuplicateId(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if any(sign in str(exc) for sign in _UNAVAILABLE):
                raise StoreUnavailable(f"sqlite database {self.path}: {exc}") from exc
            raise StoreError(f"sqlite database {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite database {self.path}: {exc}") from exc

    def thread_connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on its first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.create_function("now", 0, self._now)
            conn.create_function("placement_lease_end", 1, self._lease_end)
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _now(self) -> str:
        return _time_text(self._clock())

    def _lease_end(self, seconds: float) -> str:
        return _time_text(self._clock() + timedelta(seconds=seconds))


class SqliteStore(SqlStore):
    """Records in one SQLite file (DB_NAME)."""

    engine: SqliteEngine

    def __init__(
        self, path: Path, busy_timeout: float = 5.0, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__(SqliteEngine(path, busy_timeout, clock))
        self._path = path
        self._reads: SqliteReads | None = None

    def open(self) -> None:
        if self._path.parent != Path() and not self._path.parent.is_dir():
            raise StoreUnavailable(f"directory {self._path.parent} does not exist")
        with self.engine.connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(lambda statement, params: conn.execute(statement, params or ()), "sqlite")
                conn.execute("COMMIT")
            except BaseException:
                roll_back(conn)
                raise

    def close(self) -> None:
        self.engine.close()

    def reads(self) -> SqliteReads:
        if self._reads is None:
            self._reads = SqliteReads(self)
        return self._reads


class SqliteReads:
    """The API's reads on SQLite. SQLite answers inside this process, blocking, so the
    reads cannot be asynchronous: they run in READ_THREADS threads of their own, apart
    from the request threads (a thread hop each; see the README's Performance)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="sqlite-read")

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def ping(self) -> None:
        await self._run(self._store.ping)

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        return await self._run(functools.partial(self._store.setting, name, default))

    async def get(self, resource_id: str) -> ResourceView | None:
        return await self._run(functools.partial(self._view, resource_id))

    async def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        return await self._run(
            functools.partial(self._list, provider, status, limit, after, max_bytes)
        )

    def _view(self, resource_id: str) -> ResourceView | None:
        """As `SqliteStore.get`, the spec left as the JSON text stored."""
        engine = self._store.engine
        rows = engine.rows(engine.sql["get"], (resource_id,))
        return engine.view(rows[0]) if rows else None

    def _list(
        self,
        provider: str | None,
        status: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        """A list page, the specs left as the JSON text stored."""
        engine = self._store.engine
        key, params = engine.list_query(provider, status, limit, after)
        rows, cursor = engine.page_end(engine.page_rows(key, params, max_bytes), limit)
        return [engine.view(row) for row in rows], cursor

    async def _run(self, call: Callable[[], T]) -> T:
        if self._executor is None:
            raise StoreUnavailable("the SQLite reads are not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)


def roll_back(conn: sqlite3.Connection) -> None:
    """End the transaction open on `conn`, if any. A failed COMMIT (a deferred
    constraint, a full disk, a busy database) leaves it open, holding the database's
    write lock for as long as this thread's connection lives; a failed statement may
    have ended it already (SQLite rolls some back itself), so ROLLBACK may have nothing
    to do, and its own failure must not hide the error that led here."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _time_text(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "+00:00"
