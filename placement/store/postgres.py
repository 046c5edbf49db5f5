"""PostgreSQL store: raw SQL through psycopg 3 and a connection pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from placement.config import Database
from placement.model import Resource
from placement.store.base import Cursor, DuplicateId, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

# The Go service's table, created only when missing; an existing one is served as it is.
_SCHEMA = (
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
    "CREATE INDEX IF NOT EXISTS resources_create_time_id_idx ON resources (create_time, id)",
)
# Serialises schema changes between replicas starting together.
_SCHEMA_LOCK = 0x706C6163  # "plac"

_COLUMNS = sql.SQL(
    "id, catalog_item_instance_id, original_spec, provider_name, approval_status,"
    " create_time, update_time"
)
_GET = sql.SQL("SELECT {} FROM resources WHERE id = %s").format(_COLUMNS)
_INSERT = sql.SQL(
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_DELETE = sql.SQL("DELETE FROM resources WHERE id = %s")
_BY_PROVIDER = sql.SQL("provider_name = %(provider)s")
_AFTER = sql.SQL("(create_time, id) > (%(after_time)s::timestamptz, %(after_id)s)")


class PostgresStore:
    """Records in PostgreSQL; connection failures surface as StoreUnavailable."""

    def __init__(self, db: Database, pool_timeout: float = 5.0) -> None:
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
            timeout=pool_timeout,
            kwargs={"autocommit": True},
            name="placement",
        )

    def open(self) -> None:
        self._wait_until_reachable()
        self._pool.open(wait=True, timeout=self._db.connect_timeout)
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    def insert(self, resource: Resource) -> None:
        params = (
            resource.id,
            resource.catalog_item_instance_id,
            Jsonb(resource.spec),
            resource.provider_name,
            resource.approval_status,
            resource.path,
            resource.create_time,
            resource.update_time,
        )
        with self._connection() as conn:
            try:
                conn.execute(_INSERT, params)
            except psycopg.errors.UniqueViolation:
                raise DuplicateId(resource.id) from None

    def get(self, resource_id: str) -> Resource | None:
        with self._connection() as conn:
            row = conn.execute(_GET, (resource_id,)).fetchone()
        return None if row is None else _resource(row)

    def delete(self, resource_id: str) -> bool:
        with self._connection() as conn:
            return conn.execute(_DELETE, (resource_id,)).rowcount > 0

    def list(
        self, provider: str | None, limit: int, after: Cursor | None
    ) -> tuple[list[Resource], Cursor | None]:
        conditions = []
        params: dict[str, Any] = {"limit": limit + 1}
        if provider is not None:
            conditions.append(_BY_PROVIDER)
            params["provider"] = provider
        if after is not None:
            conditions.append(_AFTER)
            params |= {"after_time": after.create_key, "after_id": after.id}
        where = (
            sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        )
        query = sql.SQL("SELECT {} FROM resources{} ORDER BY create_time, id LIMIT %(limit)s")
        with self._connection() as conn:
            rows = conn.execute(query.format(_COLUMNS, where), params).fetchall()
        resources = [_resource(row) for row in rows[:limit]]
        if len(rows) <= limit:
            return resources, None
        last = resources[-1]
        return resources, Cursor(last.create_time.isoformat(), last.id)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"no database connection within the pool timeout: {exc}"
            ) from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"database connection failed: {exc}") from exc
        except psycopg.Error as exc:
            raise StoreError(f"database error: {exc}") from exc

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


def _resource(row: tuple[Any, ...]) -> Resource:
    rid, catalog_id, spec, provider, approval, created, updated = row
    return Resource(
        id=rid,
        catalog_item_instance_id=catalog_id,
        spec=spec,
        provider_name=provider or "",
        approval_status=approval or "",
        create_time=created,
        update_time=updated,
    )
