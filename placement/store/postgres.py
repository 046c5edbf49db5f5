"""PostgreSQL store: psycopg 3 and a connection pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from placement.config import Database
from placement.model import JSONObject, ResourceView
from placement.store import pg_probe
from placement.store.base import Cursor, DuplicateId, StoreError, StoreUnavailable
from placement.store.engine import ListKey, Row, SqlEngine
from placement.store.migrations import VERSIONS, migrate
from placement.store.sql import SqlStore
from placement.store.statements import COLUMNS, POSTGRES

log = logging.getLogger(__name__)

# A list statement (`statements.LIST`) whose page holds a bounded amount of specs: a row
# keeps its spec only while the specs before it (their JSON text, in bytes) stay under
# the budget (the first parameter); the others come without it. PostgreSQL sizes them on
# its side, where they are not even detoasted when left out.
_BUDGETED_SPEC = (
    "CASE WHEN coalesce(sum(octet_length(CAST("
    "original_spec AS text))) OVER (ORDER BY create_time NULLS FIRST, id ROWS BETWEEN UNBOUNDED"
    " PRECEDING AND 1 PRECEDING), 0) < %s THEN original_spec END"
)
_BUDGETED_PAGE = (
    "SELECT "  # noqa: S608 - constants only
    + ", ".join(_BUDGETED_SPEC if column == "original_spec" else column for column in COLUMNS)
    + " FROM (LIST) AS page ORDER BY create_time NULLS FIRST, id"
)
_UNLIMITED = 1 << 62
# Seconds a pool keeps trying to reconnect before giving up: the next request then starts
# a fresh attempt at once, instead of waiting out an ever longer backoff.
_RECONNECT_TIMEOUT = 10.0
# Serialises migrations between replicas starting together.
_MIGRATION_LOCK = 0x706C6163  # "plac"
_ROLE_AND_SCHEMA = "SELECT current_user, to_regclass('placement_schema') IS NOT NULL"
_CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM placement_schema"


class PostgresEngine(SqlEngine):
    """PostgreSQL through psycopg 3: the request threads' connection pool."""

    name = "pgsql"
    placeholder = "%s"

    def __init__(self, db: Database, pool_size: int) -> None:
        super().__init__(POSTGRES)
        self.db = db
        # One connection attempt's limit (libpq's connect_timeout: 0 would mean forever).
        self.try_seconds = max(1, min(10, int(db.connect_timeout)))
        self.conninfo = make_conninfo(
            host=db.host,
            port=db.port,
            dbname=db.name,
            user=db.user or None,
            password=db.password or None,
            connect_timeout=self.try_seconds,
            application_name="placement-manager",
        )
        self.pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=db.pool_timeout,
            reconnect_timeout=_RECONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            name="placement",
        )
        self._budgeted = {
            key: _BUDGETED_PAGE.replace("LIST", statement) for key, statement in self.lists.items()
        }

    def open_timeout(self) -> float:
        """How long a pool may take to open: DB_CONNECT_TIMEOUT, but at least one
        connection attempt (DB_CONNECT_TIMEOUT=0: one try, without waiting for more)."""
        return max(self.db.connect_timeout, float(self.try_seconds))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        with translated(), self.pool.connection() as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with translated(), self.pool.connection() as conn, conn.transaction():
            yield conn

    def budgeted_page(
        self, key: ListKey, params: Sequence[Any], max_bytes: int | None
    ) -> tuple[str, list[Any]]:
        """The list statement `lists[key]` within its page budget (`_BUDGETED_PAGE`), and
        its parameters."""
        budget = _UNLIMITED if max_bytes is None else max_bytes
        return self._budgeted[key], [budget, *params]

    def page_rows(self, key: ListKey, params: Sequence[Any], max_bytes: int | None) -> list[Row]:
        return self.rows(*self.budgeted_page(key, params, max_bytes))

    def spec_value(self, spec: JSONObject) -> Any:
        return Jsonb(spec)

    def decode_spec(self, value: Any) -> JSONObject:
        spec: JSONObject = value
        return spec

    def time_value(self, moment: datetime) -> Any:
        return moment

    def decode_time(self, value: Any) -> datetime:
        moment: datetime = value
        return moment

    def sort_key(self, value: Any) -> str:
        return str(value.isoformat())

    def after_value(self, key: str) -> Any:
        return datetime.fromisoformat(key)


class PostgresStore(SqlStore):
    """Records in PostgreSQL; connection failures surface as StoreUnavailable."""

    engine: PostgresEngine

    def __init__(self, db: Database) -> None:
        read_size, write_size = pool_sizes(db.pool_size)
        super().__init__(PostgresEngine(db, write_size))
        self._db = db
        self._reads = PostgresReads(self.engine, read_size)

    def open(self) -> None:
        self._wait_until_reachable()
        with translated():
            self.engine.pool.open(wait=True, timeout=self.engine.open_timeout())
        with self.engine.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._migrate(conn)

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        """Bring the schema to the last version; a current one needs no DDL at all, so a
        role with only the rights to read and write the tables (as the Go service's
        deployments grant) serves it. A role that may not migrate is one line, naming
        the role and what it would need."""
        [(role, has_versions)] = conn.execute(_ROLE_AND_SCHEMA).fetchall()
        current: int | None = None if has_versions else 0
        try:
            if current is None:
                [(current,)] = conn.execute(_CURRENT_VERSION).fetchall()
            if current < len(VERSIONS):
                migrate(conn.execute, "pgsql", self.engine.placeholder)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreUnavailable(
                f"role {role!r} may not migrate the schema of {self._db.describe()} "
                f"(SQLSTATE 42501; not retried): {_needed(current)}, to be run by a role"
                f" that may (the tables' owner): {exc.diag.message_primary or exc.sqlstate}"
            ) from None

    def close(self) -> None:
        self.engine.pool.close()

    def pool_stats(self) -> dict[str, int]:
        """Both pools together (the threads' and the reads')."""
        total = {"in_use": 0, "idle": 0, "waiting": 0}
        for stats in (self.engine.pool.get_stats(), self._reads.pool.get_stats()):
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            total["in_use"] += size - idle
            total["idle"] += idle
            total["waiting"] += stats.get("requests_waiting", 0)
        return total

    def reads(self) -> PostgresReads:
        return self._reads

    def _wait_until_reachable(self) -> None:
        """Retry connecting until DB_CONNECT_TIMEOUT, then fail with the last reason; fail
        at once when the server refuses for good (no such database, credentials refused)."""
        deadline = time.monotonic() + self._db.connect_timeout
        delay = 0.25
        while True:
            # Each try within libpq's connect_timeout (1-10 s), as the pool's connections.
            left = deadline - time.monotonic()
            refusal = pg_probe.attempt(self.engine.conninfo, min(max(left, 1.0), 10.0))
            if refusal is None:
                return
            if refusal.permanent:
                code = f"SQLSTATE {refusal.sqlstate}" if refusal.sqlstate else "no password set"
                raise StoreUnavailable(
                    f"{self._db.describe()} refuses the connection ({code}; not retried): "
                    f"{refusal.reason}"
                )
            if time.monotonic() + delay > deadline:
                raise StoreUnavailable(
                    f"cannot reach {self._db.describe()} within "
                    f"{self._db.connect_timeout:g}s: {refusal.reason}"
                )
            log.warning("database not reachable yet, retrying: %s", refusal.reason)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _needed(current: int | None) -> str:
    """The migrations a schema at version `current` (None: unknown) needs."""
    last = len(VERSIONS)
    if current is None:
        return f"its version is unknown (the last is {last})"
    needed = f"migration {last}" if current + 1 == last else f"migrations {current + 1} to {last}"
    return f"it is at version {current} and needs {needed}"


def pool_sizes(pool_size: int) -> tuple[int, int]:
    """DB_POOL_SIZE split between the reads' pool (asynchronous, on the event loop) and
    the request threads' (writes, the reconciler): a third for the reads, rounded down,
    the rest for the threads; at least one each (so 2 connections when DB_POOL_SIZE is 1)."""
    reads = max(1, pool_size // 3)
    return reads, max(1, pool_size - reads)


class PostgresReads:
    """The API's reads on their own asynchronous pool, with the engine's statements.
    Specs are selected as the JSON text PostgreSQL sends (jsonb loaded as text), never
    decoded: a list page embeds them as they are."""

    def __init__(self, engine: PostgresEngine, size: int) -> None:
        self._engine = engine
        self.pool = AsyncConnectionPool(
            engine.conninfo,
            min_size=1,
            max_size=size,
            open=False,
            timeout=engine.db.pool_timeout,
            reconnect_timeout=_RECONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            configure=_specs_as_text,
            name="placement-reads",
        )

    async def open(self) -> None:
        with translated():
            await self.pool.open(wait=True, timeout=self._engine.open_timeout())

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        await self._rows("SELECT 1", ())

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        sql = self._engine.sql
        with translated():
            async with self.pool.connection() as conn:
                await conn.execute(sql["setting_insert"], (name, default()))
        [(value,)] = await self._rows(sql["setting_get"], (name,))
        return str(value)

    async def get(self, resource_id: str) -> ResourceView | None:
        rows = await self._rows(self._engine.sql["get"], (resource_id,))
        return self._engine.view(rows[0]) if rows else None

    async def list_page(
        self,
        provider: str | None,
        limit: int,
        after: Cursor | None,
        max_bytes: int | None = None,
        status: str | None = None,
    ) -> tuple[list[ResourceView], Cursor | None]:
        engine = self._engine
        key, params = engine.list_query(provider, status, limit, after)
        page = await self._rows(*engine.budgeted_page(key, params, max_bytes))
        rows, cursor = engine.page_end(page, limit)
        return [engine.view(row) for row in rows], cursor

    async def _rows(self, statement: str, params: Sequence[Any]) -> list[Row]:
        """The rows of a query (every statement here returns rows: no need to look at
        the cursor's description, which builds an object per column)."""
        with translated():
            async with self.pool.connection() as conn:
                cursor = await conn.execute(statement, params)
                return await cursor.fetchall()


async def _specs_as_text(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("jsonb", TextLoader)


@contextmanager
def translated() -> Iterator[None]:
    """psycopg's errors as the store's."""
    try:
        yield
    except PoolTimeout as exc:
        raise StoreUnavailable(f"no database connection within the pool timeout: {exc}") from exc
    except psycopg.errors.UniqueViolation as exc:
        raise DuplicateId(_without_data(exc)) from None
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"database connection failed: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"database error: {_without_data(exc)}") from None


def _without_data(exc: psycopg.Error) -> str:
    """What failed, without the values the statement was given: PostgreSQL's detail and
    context lines (and psycopg's parameter lines) may quote them (a spec, for one)."""
    primary = exc.diag.message_primary or str(exc).strip().split("\n", 1)[0]
    return f"{type(exc).__name__} ({exc.sqlstate or 'client'}): {primary}"
