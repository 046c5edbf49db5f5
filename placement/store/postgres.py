"""PostgreSQL store: psycopg 3 and a connection pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from placement.config import Database
from placement.model import JSONObject
from placement.store.base import DuplicateId, StoreError, StoreUnavailable
from placement.store.sql import SqlStore

log = logging.getLogger(__name__)

# Schema versions, applied in order once each. Version 1 is the Go service's table,
# created only when missing (an existing one is served as it is); later versions add.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE IF NOT EXISTS resources (
            id varchar(63) PRIMARY KEY,
            catalog_item_instance_id text NOT NULL,
            original_spec jsonb NOT NULL,
            provider_name text NOT NULL,
            approval_status text NOT NULL,
            path text NOT NULL,
            create_time timestamptz,
            update_time timestamptz
        )
        """,
    ),
    (
        "ALTER TABLE resources ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'READY'",
        "ALTER TABLE resources ADD COLUMN IF NOT EXISTS lease_owner text",
        "ALTER TABLE resources ADD COLUMN IF NOT EXISTS lease_until timestamptz",
        "ALTER TABLE resources ADD COLUMN IF NOT EXISTS replaces varchar(63)",
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
# A list statement (`sql._SQL_LIST`, in its order) whose page holds a bounded amount of
# specs: a row keeps its spec only while the specs before it (their JSON text, in
# bytes) stay under the budget (the first parameter); the others come without it.
# PostgreSQL sizes them on its side, where they are not even detoasted when left out.
_BUDGETED_PAGE = (
    "SELECT id, catalog_item_instance_id, CASE WHEN coalesce(sum(octet_length(CAST("
    "original_spec AS text))) OVER (ORDER BY create_time, id ROWS BETWEEN UNBOUNDED"
    " PRECEDING AND 1 PRECEDING), 0) < %s THEN original_spec END, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM (LIST) AS page"
    " ORDER BY create_time, id"
)
_UNLIMITED = 1 << 62
# Serialises migrations between replicas starting together.
_MIGRATION_LOCK = 0x706C6163  # "plac"


class PostgresStore(SqlStore):
    """Records in PostgreSQL; connection failures surface as StoreUnavailable."""

    placeholder = "%s"
    # Replicas claiming stale records at once skip the rows another one is claiming.
    dialect: ClassVar[dict[str, str]] = {
        "claim_stale": "UPDATE resources SET lease_owner = ?, lease_until = ? WHERE id IN"
        " (SELECT id FROM resources WHERE state <> 'READY'"
        " AND (lease_until IS NULL OR lease_until < ?) ORDER BY lease_until LIMIT ?"
        " FOR UPDATE SKIP LOCKED)"
        " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
        " approval_status, create_time, update_time, state, replaces",
    }

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._db = db
        self._conninfo = make_conninfo(
            host=db.host,
            port=db.port,
            dbname=db.name,
            user=db.user or None,
            password=db.password or None,
            connect_timeout=max(1, min(10, int(db.connect_timeout))),
            application_name="placement-manager",
        )
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=db.pool_size,
            open=False,
            timeout=db.pool_timeout,
            # Give up reconnecting after a while: the next request then starts a fresh
            # attempt at once, instead of waiting out an ever longer backoff.
            reconnect_timeout=10.0,
            kwargs={"autocommit": True},
            name="placement",
        )

    def open(self) -> None:
        self._wait_until_reachable()
        self._pool.open(wait=True, timeout=self._db.connect_timeout)
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS placement_schema"
                " (version integer PRIMARY KEY, applied_time timestamptz NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT coalesce(max(version), 0) FROM placement_schema").fetchone()
            for version in range(row[0] if row else 0, len(MIGRATIONS)):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO placement_schema (version) VALUES (%s)", (version + 1,))
                log.info("database schema migrated to version %d", version + 1)

    def close(self) -> None:
        self._pool.close()

    def pool_stats(self) -> dict[str, int]:
        stats = self._pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return {"in_use": size - idle, "idle": idle, "waiting": stats.get("requests_waiting", 0)}

    def ping(self) -> None:
        self._rows("SELECT 1", ())

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def _count(self, statement: str, params: Sequence[Any]) -> int:
        with self._connection() as conn:
            return conn.execute(statement, params).rowcount

    def _page_rows(
        self, statement: str, params: Sequence[Any], max_bytes: int | None
    ) -> list[tuple[Any, ...]]:
        budget = _UNLIMITED if max_bytes is None else max_bytes
        return self._rows(_BUDGETED_PAGE.replace("LIST", statement), [budget, *params])

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
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"no database connection within the pool timeout: {exc}"
            ) from exc
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateId(_without_data(exc)) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"database connection failed: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database error: {_without_data(exc)}") from None

    def _wait_until_reachable(self) -> None:
        """Retry connecting until DB_CONNECT_TIMEOUT, then fail with the last reason."""
        deadline = time.monotonic() + self._db.connect_timeout
        delay = 0.25
        while True:
            try:
                psycopg.connect(self._conninfo).close()
                return
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"cannot reach {self._db.describe()} within "
                        f"{self._db.connect_timeout:g}s: {reason}"
                    ) from None
                log.warning("database not reachable yet, retrying: %s", reason)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


def _without_data(exc: psycopg.Error) -> str:
    """What failed, without the values the statement was given: PostgreSQL's detail and
    context lines (and psycopg's parameter lines) may quote them (a spec, for one)."""
    primary = exc.diag.message_primary or str(exc).strip().split("\n", 1)[0]
    return f"{type(exc).__name__} ({exc.sqlstate or 'client'}): {primary}"
