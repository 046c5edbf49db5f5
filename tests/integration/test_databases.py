"""What only the real databases can show: tables the Go service and earlier versions wrote,
rows without create_time, states a newer version wrote, query plans, start-up failures."""

from __future__ import annotations

import asyncio
import sqlite3
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from placement.config import Database
from placement.model import EPOCH, Placement, Resource, ResourceView, State
from placement.store import (
    Cursor,
    Lease,
    ResourceStore,
    StoreError,
    StoreUnavailable,
    make_store,
    migrations,
)
from placement.store.sqlite import SqliteStore
from placement.store.statements import LIST
from tests.harness.processes import free_port

GO_TABLE = {
    "pgsql": """CREATE TABLE resources (
        id varchar(63) PRIMARY KEY, catalog_item_instance_id text NOT NULL,
        original_spec jsonb NOT NULL, provider_name text, approval_status text,
        path text NOT NULL, create_time timestamptz, update_time timestamptz)""",
    "sqlite": """CREATE TABLE resources (
        id varchar(63) PRIMARY KEY, catalog_item_instance_id text NOT NULL,
        original_spec jsonb NOT NULL, provider_name text, approval_status text,
        path text NOT NULL, create_time datetime, update_time datetime)""",
}
GO_INSERT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time)"
    " VALUES (?, 'cat', ?, 'p', 'APPROVED', ?, ?, ?)"
)


def sql(db: Database, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the database behind the store's back (as the Go service or
    an older version would); its rows."""
    if db.type == "sqlite":
        with sqlite3.connect(db.name) as conn:
            return conn.execute(statement, params).fetchall()
    conninfo = f"host={db.host} port={db.port} dbname={db.name} user={db.user}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        query = statement.replace("?", "%s") if params else statement
        cursor = conn.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


def go_row(db: Database, rid: str, time: str | None, spec: str = '{"a": 1}') -> None:
    sql(db, GO_INSERT, (rid, spec, f"resources/{rid}", time, time))


def ids(resources: list[Resource] | list[ResourceView]) -> list[str]:
    return [r.id for r in resources]


@contextmanager
def listing(store: ResourceStore) -> Iterator[Callable[..., list[str]]]:
    """`every_page(size, provider=None)`: the ids of every list page, as the API's reads
    serve them (on an event loop of their own here)."""
    runner = asyncio.Runner()
    reads = store.reads()
    runner.run(reads.open())

    async def pages(size: int, provider: str | None) -> list[str]:
        seen: list[str] = []
        cursor: Cursor | None = None
        while True:
            page, cursor = await reads.list_page(provider, size, cursor)
            seen += ids(page)
            if cursor is None:
                return seen
            assert len(seen) < 1000, "pagination does not end"

    try:
        yield lambda size, provider=None: runner.run(pages(size, provider))
    finally:
        runner.run(reads.close())
        runner.close()


def test_open_is_idempotent_and_keeps_data(db: Database, store: ResourceStore) -> None:
    lease = Lease("o", 60)
    made = store.begin_create(Placement("web-1", "cat", {"a": 1}, "p", "APPROVED"), lease)
    again = make_store(db)
    again.open()
    try:
        assert again.get("web-1") == made
    finally:
        again.close()


def test_unreachable_postgres_fails_open_within_the_timeout(pg_db: Database) -> None:
    unreachable = replace(pg_db, host="127.0.0.1", port=free_port(), connect_timeout=1.0)
    store = make_store(unreachable)
    with pytest.raises(StoreUnavailable, match=r"cannot reach postgresql://127\.0\.0\.1:\d+/.* 1s"):
        store.open()


def test_sqlite_in_a_missing_directory_is_unavailable(sqlite_db: Database) -> None:
    store = make_store(replace(sqlite_db, name="/nonexistent-dir/x.db"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.open()


def test_a_table_the_go_service_wrote_is_served_and_extended(db: Database) -> None:
    sql(db, GO_TABLE[db.type])
    # As Go's drivers wrote times: nanoseconds in SQLite text, microseconds in PostgreSQL.
    go_row(db, "go-1", "2026-03-30 09:15:01.123456789+00:00")
    go_row(db, "go-2", "2026-03-30 09:15:02+00:00", '{"b": 2}')
    store = make_store(db)
    store.open()
    try:
        got = store.get("go-1")
        assert got is not None
        assert (got.spec, got.state) == ({"a": 1}, State.READY)
        assert got.create_time.microsecond in (123456, 123457)  # truncated, or rounded (PG)
        assert store.begin_delete("go-2", Lease("o", 60)) is not None
        with listing(store) as every_page:
            assert every_page(1) == ["go-1", "go-2"]
            go_row(db, "go-3", "2099-01-01 00:00:00+00:00")  # the Go service, after us
            assert store.get("go-3").state is State.READY  # type: ignore[union-attr]
            assert every_page(2) == ["go-1", "go-2", "go-3"]
    finally:
        store.close()


def test_rows_without_create_time_are_served_from_the_epoch(
    db: Database, store: ResourceStore
) -> None:
    """The Go table allows NULL times: such rows are served with 1970-01-01T00:00:00Z,
    sort first, and page through one by one without a skip or a repeat."""
    go_row(db, "late", "2026-03-30 09:15:01+00:00")
    for rid in ("n3", "n1", "n2"):
        go_row(db, rid, None)
    store.begin_create(Placement("ours", "cat", {"a": 1}, "q", "APPROVED"), Lease("o", 60))
    got = store.get("n1")
    assert got is not None
    assert (got.create_time, got.update_time) == (EPOCH, EPOCH)
    with listing(store) as every_page:
        assert every_page(1) == ["n1", "n2", "n3", "late", "ours"]
        assert every_page(2) == ["n1", "n2", "n3", "late", "ours"]
        assert every_page(100) == ["n1", "n2", "n3", "late", "ours"]
        assert every_page(1, provider="p") == ["n1", "n2", "n3", "late"]


def test_a_state_a_newer_version_wrote_is_busy(db: Database, store: ResourceStore) -> None:
    go_row(db, "future", "2026-03-30 09:15:01+00:00")
    sql(db, "UPDATE resources SET state = 'FROZEN', lease_owner = NULL WHERE id = 'future'")
    got = store.get("future")
    assert got is not None
    assert got.state is State.UNKNOWN
    with listing(store) as every_page:
        assert every_page(10) == ["future"]
    assert store.begin_delete("future", Lease("o", 60)) is None
    assert store.claim_stale(Lease("reconciler", 60)) is None


def test_list_pages_use_the_indexes(db: Database, store: ResourceStore) -> None:
    """EXPLAIN of every list statement over 100,000 rows: an index, never a full scan."""
    if db.type == "pgsql":
        sql(
            db,
            "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
            " approval_status, path, create_time, update_time) SELECT 'r' || n, 'c', '{}',"
            " 'p' || (n % 50), 'APPROVED', 'resources/r' || n,"
            " now() - n * interval '1 second', now() FROM generate_series(1, 100000) AS n",
        )
        sql(db, "ANALYZE resources")
    else:
        with sqlite3.connect(db.name) as conn:
            conn.executemany(
                "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
                " provider_name, approval_status, path, create_time, update_time)"
                " VALUES (?, 'c', '{}', ?, 'APPROVED', ?, ?, ?)",
                (
                    (f"r{n}", f"p{n % 50}", f"resources/r{n}", f"2026-{n:09d}", "x")
                    for n in range(100_000)
                ),
            )
            conn.execute("ANALYZE")
    for key, statement in LIST.items():
        _check_plan(db, statement, list_params(*key))


def list_params(filters: tuple[bool, bool], where: str | None) -> tuple[object, ...]:
    """Values for a list statement: the filters' (provider p7, status RUNNING) before each
    branch."""
    values = [v for v, on in zip(("p7", "RUNNING"), filters, strict=True) if on]
    if where == "stamped":
        return (*values, "2026-01-01", "r5", 101)
    after = ["r5"] if where == "unstamped" else []
    return (*values, *after, 101, *values, 101, 101)


def _check_plan(db: Database, statement: str, params: tuple[object, ...]) -> None:
    """The statement reads through an index, never a whole-table scan."""
    if db.type == "pgsql":
        plan = "\n".join(row[0] for row in sql(db, "EXPLAIN " + statement, params))
        assert "Seq Scan" not in plan, (statement, plan)
        assert "Index" in plan, (statement, plan)
        return
    plan = "\n".join(str(row[-1]) for row in sql(db, "EXPLAIN QUERY PLAN " + statement, params))
    full_scans = [
        line for line in plan.splitlines() if "SCAN resources" in line and "INDEX" not in line
    ]
    assert not full_scans, (statement, plan)


@pytest.mark.parametrize("version", range(1, len(migrations.VERSIONS)))
def test_every_earlier_schema_version_migrates(db: Database, version: int) -> None:
    """A database left at any earlier version (1: the Go table), with a record in it, is
    brought to the current one and keeps its record."""
    sql(db, "CREATE TABLE placement_schema (version integer PRIMARY KEY, applied_time text)")
    for statement in migrations.statements(db.type, version):
        sql(db, statement)
    for number in range(1, version + 1):
        sql(db, "INSERT INTO placement_schema VALUES (?, 'then')", (number,))
    go_row(db, "kept", "2026-03-30 09:15:01+00:00")
    if version >= 2:
        sql(db, "UPDATE resources SET state = 'DELETING', lease_owner = 'old' WHERE id = 'kept'")
    store = make_store(db)
    store.open()
    try:
        assert sql(db, "SELECT max(version) FROM placement_schema") == [(len(migrations.VERSIONS),)]
        kept = store.get("kept")
        assert kept is not None
        assert kept.state is (State.DELETING if version >= 2 else State.READY)
        if version >= 2:  # a lease an earlier version left without an end is claimable
            assert store.claim_stale(Lease("reconciler", 60)) is not None
    finally:
        store.close()


@pytest.mark.parametrize("db", ["pgsql"], indirect=True)
def test_database_errors_leave_out_the_values_they_were_given(store: ResourceStore) -> None:
    # PostgreSQL cannot store NUL (the API refuses it before); its error quotes the spec.
    secret = "".join(["s3", "cr3t"])  # not in this source line, which a traceback shows
    with pytest.raises(StoreError) as failed:
        store.begin_create(
            Placement("web-1", "cat", {"password": f"{secret}\u0000"}, "p", "APPROVED"),
            Lease("o", 60),
        )
    logged = "".join(traceback.format_exception(failed.value))
    assert "UntranslatableCharacter" in logged
    assert secret not in logged


def test_a_failed_commit_on_sqlite_leaves_no_lock_behind(sqlite_db: Database) -> None:
    """A COMMIT that fails (here a deferred constraint; a full disk in production) leaves
    SQLite's transaction open on the thread's connection, holding the write lock that
    every other writer then waits for: the store rolls it back."""
    store = SqliteStore(Path(sqlite_db.name))
    store.open()
    conn = store.engine.thread_connection()
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent (id integer PRIMARY KEY)")
    conn.execute("CREATE TABLE child (id integer REFERENCES parent DEFERRABLE INITIALLY DEFERRED)")

    with pytest.raises(StoreError, match="FOREIGN KEY"), store.engine.transaction() as open_one:
        open_one.execute("INSERT INTO child VALUES (1)")

    assert not conn.in_transaction
    other = sqlite3.connect(sqlite_db.name, timeout=0.5, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock is free
    other.execute("ROLLBACK")
    other.close()
    lease = Lease("make-after", 60)
    assert store.begin_create(Placement("after", "c", {"a": 1}, "p", "APPROVED"), lease)
    store.close()
