"""PostgreSQL store: psycopg 3 and a connection pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from placement.config import Database
from placement.model import JSONObject, ResourceView
from placement.store import pg_probe
from placement.store.base import Cursor, DuplicateId, StoreError, StoreUnavailable
from placement.store.migrations import VERSIONS, migrate
from placement.store.sql import SqlStore

log = logging.getLogger(__name__)

# A list statement (`sql._SQL_LIST`, in its order) whose page holds a bounded amount of
# specs: a row keeps its spec only while the specs before it (their JSON text, in
# bytes) stay under the budget (the first parameter); the others come without it.
# PostgreSQL sizes them on its side, where they are not even detoasted when left out.
_BUDGETED_PAGE = (
    "SELECT id, catalog_item_instance_id, CASE WHEN coalesce(sum(octet_length(CAST("
    "original_spec AS text))) OVER (ORDER BY create_time NULLS FIRST, id ROWS BETWEEN UNBOUNDED"
    " PRECEDING AND 1 PRECEDING), 0) < %s THEN original_spec END, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM (LIST) AS page"
    " ORDER BY create_time NULLS FIRST, id"
)
_UNLIMITED = 1 << 62
# Seconds a pool keeps trying to reconnect before giving up: the next request then starts
# a fresh attempt at once, instead of waiting out an ever longer backoff.
_RECONNECT_TIMEOUT = 10.0
# Serialises migrations between replicas starting together.
_MIGRATION_LOCK = 0x706C6163  # "plac"
_ROLE_AND_SCHEMA = "SELECT current_user, to_regclass('placement_schema') IS NOT NULL"
_CURRENT_VERSION = "SELECT coalesce(max(version), 0) FROM placement_schema"

# Replicas claiming at once skip the rows another one is claiming.
_LOCKED_CLAIMS: dict[str, str] = {
    "claim_stale:record": "UPDATE resources SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = (SELECT r.id FROM resources AS r"
    " WHERE r.state IN ('PROVISIONING', 'DELETING', 'REHYDRATING')"
    " AND (r.lease_until IS NULL OR r.lease_until < now())"
    " AND NOT (r.state = 'REHYDRATING'"
    " AND EXISTS (SELECT 1 FROM resources AS n WHERE n.replaces = r.id))"
    " ORDER BY r.lease_until NULLS FIRST, r.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " AND (lease_until IS NULL OR lease_until < now())"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "claim_retired": "UPDATE placement_retired SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = (SELECT r.id FROM placement_retired AS r"
    " WHERE r.lease_until IS NULL OR r.lease_until < now()"
    " ORDER BY r.lease_until NULLS FIRST, r.id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
}


class PostgresStore(SqlStore):
    """Records in PostgreSQL; connection failures surface as StoreUnavailable."""

    placeholder = "%s"
    dialect: ClassVar[dict[str, str]] = _LOCKED_CLAIMS

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._budgeted = {
            statement: _BUDGETED_PAGE.replace("LIST", statement)
            for statement in self._list.values()
        }
        self._db = db
        # One connection attempt's limit (libpq's connect_timeout: 0 would mean forever).
        self._try_seconds = max(1, min(10, int(db.connect_timeout)))
        self._conninfo = make_conninfo(
            host=db.host,
            port=db.port,
            dbname=db.name,
            user=db.user or None,
            password=db.password or None,
            connect_timeout=self._try_seconds,
            application_name="placement-manager",
        )
        read_size, write_size = pool_sizes(db.pool_size)
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=write_size,
            open=False,
            timeout=db.pool_timeout,
            reconnect_timeout=_RECONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            name="placement",
        )
        self._reads = PostgresReads(self, read_size)

    def open(self) -> None:
        self._wait_until_reachable()
        with _translated():
            self._pool.open(wait=True, timeout=self.open_timeout())
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._migrate(conn)

    def open_timeout(self) -> float:
        """How long a pool may take to open: DB_CONNECT_TIMEOUT, but at least one
        connection attempt (DB_CONNECT_TIMEOUT=0: one try, without waiting for more)."""
        return max(self._db.connect_timeout, float(self._try_seconds))

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
                migrate(conn.execute, "pgsql", self.placeholder)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreUnavailable(
                f"role {role!r} may not migrate the schema of {self._db.describe()} "
                f"(SQLSTATE 42501; not retried): {_needed(current)}, to be run by a role"
                f" that may (the tables' owner): {exc.diag.message_primary or exc.sqlstate}"
            ) from None

    def close(self) -> None:
        self._pool.close()

    def pool_stats(self) -> dict[str, int]:
        """Both pools together (the threads' and the reads')."""
        total = {"in_use": 0, "idle": 0, "waiting": 0}
        for stats in (self._pool.get_stats(), self._reads.pool.get_stats()):
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            total["in_use"] += size - idle
            total["idle"] += idle
            total["waiting"] += stats.get("requests_waiting", 0)
        return total

    def ping(self) -> None:
        self._rows("SELECT 1", ())

    def reads(self) -> PostgresReads:
        return self._reads

    def _page_rows(
        self, statement: str, params: Sequence[Any], max_bytes: int | None
    ) -> list[tuple[Any, ...]]:
        return self._rows(*self._budgeted_page(statement, params, max_bytes))

    def _budgeted_page(
        self, statement: str, params: Sequence[Any], max_bytes: int | None
    ) -> tuple[str, list[Any]]:
        """A list statement within its page budget (`_BUDGETED_PAGE`), and its parameters."""
        budget = _UNLIMITED if max_bytes is None else max_bytes
        return self._budgeted[statement], [budget, *params]

    def _spec_value(self, spec: JSONObject) -> Any:
        return Jsonb(spec)

    def _time_value(self, moment: datetime) -> Any:
        return moment

    def _decode_spec(self, value: Any) -> JSONObject:
        spec: JSONObject = value
        return spec

    def _decode_time(self, value: Any) -> datetime:
        moment: datetime = value
        return moment

    def _sort_key(self, value: Any) -> str:
        return str(value.isoformat())

    def _after_value(self, key: str) -> Any:
        return datetime.fromisoformat(key)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with _translated(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with _translated(), self._pool.connection() as conn, conn.transaction():
            yield conn

    def _wait_until_reachable(self) -> None:
        """Retry connecting until DB_CONNECT_TIMEOUT, then fail with the last reason; fail
        at once when the server refuses for good (no such database, credentials refused)."""
        deadline = time.monotonic() + self._db.connect_timeout
        delay = 0.25
        while True:
            # Each try within libpq's connect_timeout (1-10 s), as the pool's connections.
            left = deadline - time.monotonic()
            refusal = pg_probe.attempt(self._conninfo, min(max(left, 1.0), 10.0))
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
    the rest for the threads; at least one each (so 2 connections when DB_POOL_SIZE is 1).
    The default, 12, gives the reads 4 and the threads 8, sizes the benchmark measured:
    with 2 for the reads, list pages waited for a connection (472 against 622 req/s at
    64 connections); creates at 256 connections saw timeouts with 6 for the threads
    that 8 did not."""
    reads = max(1, pool_size // 3)
    return reads, max(1, pool_size - reads)


class PostgresReads:
    """The API's reads on their own asynchronous pool, with the store's statements.
    Specs are selected as the JSON text PostgreSQL sends (jsonb loaded as text), never
    decoded: a list page embeds them as they are."""

    def __init__(self, store: PostgresStore, size: int) -> None:
        self._store = store
        self.pool = AsyncConnectionPool(
            store._conninfo,
            min_size=1,
            max_size=size,
            open=False,
            timeout=store._db.pool_timeout,
            reconnect_timeout=_RECONNECT_TIMEOUT,
            kwargs={"autocommit": True},
            configure=_specs_as_text,
            name="placement-reads",
        )

    async def open(self) -> None:
        with _translated():
            await self.pool.open(wait=True, timeout=self._store.open_timeout())

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        await self._rows("SELECT 1", ())

    async def setting(self, name: str, default: Callable[[], str]) -> str:
        sql = self._store._sql
        with _translated():
            async with self.pool.connection() as conn:
                await conn.execute(sql["setting_insert"], (name, default()))
        [(value,)] = await self._rows(sql["setting_get"], (name,))
        return str(value)

    async def get(self, resource_id: str) -> ResourceView | None:
        rows = await self._rows(self._store._sql["get"], (resource_id,))
        return self._store._view(rows[0]) if rows else None

    async def list_page(
        self, provider: str | None, limit: int, after: Cursor | None, max_bytes: int | None = None
    ) -> tuple[list[ResourceView], Cursor | None]:
        store = self._store
        statement, params = store._list_query(provider, limit, after)
        rows, cursor = store._page_end(
            await self._rows(*store._budgeted_page(statement, params, max_bytes)), limit
        )
        return [store._view(row) for row in rows], cursor

    async def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows of a query (every statement here returns rows: no need to look at
        the cursor's description, which builds an object per column)."""
        with _translated():
            async with self.pool.connection() as conn:
                cursor = await conn.execute(statement, params)
                return await cursor.fetchall()


async def _specs_as_text(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("jsonb", TextLoader)


@contextmanager
def _translated() -> Iterator[None]:
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
