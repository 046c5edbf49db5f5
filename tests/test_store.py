"""The store API, the same cases on a real PostgreSQL and a real SQLite file."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from placement.config import Database
from placement.model import Resource
from placement.store import DuplicateId, ResourceStore, StoreUnavailable, make_store

T0 = datetime(2026, 3, 30, 9, 15, 1, 123456, tzinfo=UTC)


def resource(
    rid: str, at: datetime = T0, provider: str = "kubevirt", **changes: object
) -> Resource:
    base = Resource(
        id=rid,
        catalog_item_instance_id=f"cat-{rid}",
        spec={"vm": {"cpu": 2, "name": "é-ü", "tags": ["a", None, 1.5]}},
        provider_name=provider,
        approval_status="APPROVED",
        create_time=at,
        update_time=at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(db: Database) -> Iterator[ResourceStore]:
    store = make_store(db)
    store.open()
    yield store
    store.close()


def ids(resources: list[Resource]) -> list[str]:
    return [r.id for r in resources]


def test_insert_then_get_returns_the_same_record(store: ResourceStore) -> None:
    original = resource("web-1")
    store.insert(original)
    assert store.get("web-1") == original


def test_get_unknown_id_is_none(store: ResourceStore) -> None:
    assert store.get("nope") is None


def test_duplicate_id_is_refused(store: ResourceStore) -> None:
    store.insert(resource("web-1"))
    with pytest.raises(DuplicateId):
        store.insert(resource("web-1", provider="other"))
    assert store.get("web-1") == resource("web-1")


def test_delete_removes_once(store: ResourceStore) -> None:
    store.insert(resource("web-1"))
    assert store.delete("web-1") is True
    assert store.get("web-1") is None
    assert store.delete("web-1") is False


def test_list_orders_by_create_time_then_id(store: ResourceStore) -> None:
    store.insert(resource("b", T0))
    store.insert(resource("c", T0 - timedelta(seconds=1)))
    store.insert(resource("a", T0))
    page, cursor = store.list(None, 10, None)
    assert ids(page) == ["c", "a", "b"]
    assert cursor is None


def test_list_pages_follow_cursors_without_skips_or_repeats(store: ResourceStore) -> None:
    for n in range(7):
        store.insert(resource(f"r{n}", T0 + timedelta(microseconds=n % 3)))
    seen: list[str] = []
    page, cursor = store.list(None, 3, None)
    seen += ids(page)
    while cursor is not None:
        page, cursor = store.list(None, 3, cursor)
        seen += ids(page)
    expected = sorted((f"r{n}" for n in range(7)), key=lambda i: (int(i[1:]) % 3, i))
    assert seen == expected


def test_list_exact_page_has_no_cursor(store: ResourceStore) -> None:
    for n in range(3):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n)))
    page, cursor = store.list(None, 3, None)
    assert ids(page) == ["r0", "r1", "r2"]
    assert cursor is None


def test_list_filters_by_provider(store: ResourceStore) -> None:
    for n in range(5):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n), provider="p" + str(n % 2)))
    page, cursor = store.list("p1", 1, None)
    assert ids(page) == ["r1"]
    assert cursor is not None
    page, cursor = store.list("p1", 5, cursor)
    assert ids(page) == ["r3"]
    assert cursor is None


def test_changes_between_pages_do_not_skip_remaining_records(store: ResourceStore) -> None:
    for n in range(6):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n)))
    page, cursor = store.list(None, 2, None)
    assert ids(page) == ["r0", "r1"]
    store.delete("r0")
    store.delete("r1")
    store.insert(resource("new", T0 + timedelta(seconds=10)))
    page, cursor = store.list(None, 2, cursor)
    assert ids(page) == ["r2", "r3"]
    page, cursor = store.list(None, 10, cursor)
    assert ids(page) == ["r4", "r5", "new"]


def test_open_is_idempotent_and_keeps_data(db: Database, store: ResourceStore) -> None:
    store.insert(resource("web-1"))
    again = make_store(db)
    again.open()
    try:
        assert again.get("web-1") == resource("web-1")
    finally:
        again.close()


def test_ping_answers(store: ResourceStore) -> None:
    store.ping()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_postgres_fails_open_within_the_timeout(pg_db: Database) -> None:
    unreachable = replace(pg_db, host="127.0.0.1", port=_free_port(), connect_timeout=1.0)
    store = make_store(unreachable)
    with pytest.raises(StoreUnavailable, match=r"cannot reach postgresql://127\.0\.0\.1:\d+/.* 1s"):
        store.open()


def test_sqlite_in_a_missing_directory_is_unavailable(sqlite_db: Database) -> None:
    store = make_store(replace(sqlite_db, name="/nonexistent-dir/x.db"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.open()


GO_SQLITE_TABLE = """
CREATE TABLE resources (
    id varchar(63) PRIMARY KEY, catalog_item_instance_id text NOT NULL,
    original_spec jsonb NOT NULL, provider_name text, approval_status text,
    path text NOT NULL, create_time datetime, update_time datetime)
"""


def test_sqlite_serves_a_table_the_go_service_wrote(sqlite_db: Database) -> None:
    with sqlite3.connect(sqlite_db.name) as conn:
        conn.execute(GO_SQLITE_TABLE)
        conn.executemany(
            "INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "go-1",
                    "cat",
                    '{"a":1}',
                    "p",
                    "APPROVED",
                    "resources/go-1",
                    "2026-03-30 09:15:01.123456789+00:00",
                    "2026-03-30 09:15:01.123456789+00:00",
                ),
                (
                    "go-2",
                    "cat",
                    '{"b":2}',
                    "p",
                    "MODIFIED",
                    "resources/go-2",
                    "2026-03-30 09:15:01.1234575+00:00",
                    "2026-03-30 09:15:02+00:00",
                ),
            ],
        )
    store = make_store(sqlite_db)
    store.open()
    try:
        got = store.get("go-1")
        assert got is not None
        assert got.spec == {"a": 1}
        assert got.create_time == T0
        store.insert(resource("ours", T0 + timedelta(microseconds=1)))
        page, cursor = store.list(None, 1, None)
        rest, _ = store.list(None, 5, cursor)
        assert ids(page + rest) == ["go-1", "ours", "go-2"]
    finally:
        store.close()


GO_PG_TABLE = """
CREATE TABLE resources (
    id varchar(63) PRIMARY KEY, catalog_item_instance_id text NOT NULL,
    original_spec jsonb NOT NULL, provider_name text, approval_status text,
    path text NOT NULL, create_time timestamptz, update_time timestamptz)
"""


def test_postgres_serves_a_table_the_go_service_wrote(pg_db: Database) -> None:
    conninfo = f"host={pg_db.host} port={pg_db.port} dbname={pg_db.name} user={pg_db.user}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(GO_PG_TABLE)
        conn.execute(
            "INSERT INTO resources VALUES ('go-1', 'cat', '{\"a\": 1}', 'p', 'APPROVED',"
            " 'resources/go-1', '2026-03-30 09:15:01.123456+00', '2026-03-30 09:15:01.123456+00')"
        )
    store = make_store(pg_db)
    store.open()
    try:
        got = store.get("go-1")
        assert got is not None
        assert got.spec == {"a": 1}
        assert got.create_time == T0
        store.insert(resource("ours", T0 + timedelta(seconds=1)))
        assert ids(store.list(None, 10, None)[0]) == ["go-1", "ours"]
    finally:
        store.close()
