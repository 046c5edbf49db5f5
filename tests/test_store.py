"""The store API, the same cases on a real PostgreSQL and a real SQLite file."""

from __future__ import annotations

import sqlite3
import traceback
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from placement.config import Database
from placement.model import Resource, State
from placement.store import (
    DuplicateId,
    Lease,
    ResourceStore,
    StoreError,
    StoreUnavailable,
    make_store,
)
from tests.processes import free_port

T0 = datetime(2026, 3, 30, 9, 15, 1, 123456, tzinfo=UTC)
HOUR = timedelta(hours=1)
LEASE = Lease("owner-1", T0 + HOUR)


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


def test_delete_needs_the_lease_owner_and_removes_once(store: ResourceStore) -> None:
    store.insert(resource("web-1", state=State.PROVISIONING), LEASE)
    assert store.delete("web-1", "someone-else") is False
    assert store.delete("web-1", LEASE.owner) is True
    assert store.get("web-1") is None
    assert store.delete("web-1", LEASE.owner) is False


def test_list_orders_by_create_time_then_id(store: ResourceStore) -> None:
    store.insert(resource("b", T0))
    store.insert(resource("c", T0 - timedelta(seconds=1)))
    store.insert(resource("a", T0))
    page, cursor = store.list_page(None, 10, None)
    assert ids(page) == ["c", "a", "b"]
    assert cursor is None


def test_list_pages_follow_cursors_without_skips_or_repeats(store: ResourceStore) -> None:
    for n in range(7):
        store.insert(resource(f"r{n}", T0 + timedelta(microseconds=n % 3)))
    seen: list[str] = []
    page, cursor = store.list_page(None, 3, None)
    seen += ids(page)
    while cursor is not None:
        page, cursor = store.list_page(None, 3, cursor)
        seen += ids(page)
    expected = sorted((f"r{n}" for n in range(7)), key=lambda i: (int(i[1:]) % 3, i))
    assert seen == expected


def test_list_exact_page_has_no_cursor(store: ResourceStore) -> None:
    for n in range(3):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n)))
    page, cursor = store.list_page(None, 3, None)
    assert ids(page) == ["r0", "r1", "r2"]
    assert cursor is None


def test_list_filters_by_provider(store: ResourceStore) -> None:
    for n in range(5):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n), provider="p" + str(n % 2)))
    page, cursor = store.list_page("p1", 1, None)
    assert ids(page) == ["r1"]
    assert cursor is not None
    page, cursor = store.list_page("p1", 5, cursor)
    assert ids(page) == ["r3"]
    assert cursor is None


def test_a_page_ends_early_once_its_specs_pass_the_budget(store: ResourceStore) -> None:
    big = {"blob": "x" * 300_000}  # about 300 kB of JSON each
    for n in range(5):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n), spec=big))
    store.insert(resource("small", T0 + timedelta(seconds=9)))
    pages = []
    page, cursor = store.list_page(None, 100, None, max_bytes=500_000)
    pages.append(ids(page))
    while cursor is not None:
        page, cursor = store.list_page(None, 100, cursor, max_bytes=500_000)
        pages.append(ids(page))
    # A spec is taken while those before it stay under the budget: two a page here.
    assert pages == [["r0", "r1"], ["r2", "r3"], ["r4", "small"]]
    assert page[0].spec == big
    one, cursor = store.list_page("kubevirt", 100, None, max_bytes=1)
    assert ids(one) == ["r0"]  # a page always holds one record
    assert cursor is not None
    everything, cursor = store.list_page(None, 100, None)
    assert len(everything) == 6
    assert cursor is None


@pytest.mark.parametrize("db", ["pgsql"], indirect=True)
def test_database_errors_leave_out_the_values_they_were_given(store: ResourceStore) -> None:
    # PostgreSQL cannot store NUL (the API refuses it before); its error quotes the spec.
    secret = "".join(["s3", "cr3t"])  # not in this source line, which a traceback shows
    with pytest.raises(StoreError) as failed:
        store.insert(resource("web-1", spec={"password": f"{secret}\u0000"}))
    logged = "".join(traceback.format_exception(failed.value))
    assert "UntranslatableCharacter" in logged
    assert secret not in logged


def test_changes_between_pages_do_not_skip_remaining_records(store: ResourceStore) -> None:
    for n in range(6):
        store.insert(resource(f"r{n}", T0 + timedelta(seconds=n)), LEASE)
    page, cursor = store.list_page(None, 2, None)
    assert ids(page) == ["r0", "r1"]
    store.delete("r0", LEASE.owner)
    store.delete("r1", LEASE.owner)
    store.insert(resource("new", T0 + timedelta(seconds=10)))
    page, cursor = store.list_page(None, 2, cursor)
    assert ids(page) == ["r2", "r3"]
    page, cursor = store.list_page(None, 10, cursor)
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


def test_unreachable_postgres_fails_open_within_the_timeout(pg_db: Database) -> None:
    unreachable = replace(pg_db, host="127.0.0.1", port=free_port(), connect_timeout=1.0)
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
        assert got.state is State.READY
        store.insert(resource("ours", T0 + timedelta(microseconds=1)))
        page, cursor = store.list_page(None, 1, None)
        rest, _ = store.list_page(None, 5, cursor)
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
        assert got.state is State.READY
        store.insert(resource("ours", T0 + timedelta(seconds=1)))
        with psycopg.connect(conninfo, autocommit=True) as conn:  # the Go service, after us
            conn.execute(
                "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
                " provider_name, approval_status, path, create_time, update_time) VALUES"
                " ('go-2', 'cat', '{}', 'p', 'APPROVED', 'resources/go-2', now(), now())"
            )
        assert ids(store.list_page(None, 10, None)[0]) == ["go-1", "ours", "go-2"]
        assert store.get("go-2").state is State.READY  # type: ignore[union-attr]
    finally:
        store.close()


# --- lifecycle: leases, claims, the reconciler's view -----------------------------


def test_claim_moves_a_ready_record_once(store: ResourceStore) -> None:
    store.insert(resource("web-1"))

    claimed = store.claim("web-1", State.READY, State.DELETING, LEASE, T0)

    assert claimed is not None
    assert claimed.state is State.DELETING
    other = Lease("owner-2", T0 + HOUR)
    assert store.claim("web-1", State.READY, State.DELETING, other, T0) is None
    assert store.claim("absent", State.READY, State.DELETING, other, T0) is None


def test_claim_respects_a_valid_lease_and_takes_an_expired_one(store: ResourceStore) -> None:
    store.insert(resource("web-1", state=State.DELETING), LEASE)
    other = Lease("owner-2", T0 + 2 * HOUR)

    assert store.claim("web-1", State.DELETING, State.DELETING, other, T0) is None
    after_expiry = T0 + HOUR + timedelta(seconds=1)
    assert store.claim("web-1", State.DELETING, State.DELETING, other, after_expiry) is not None
    assert store.delete("web-1", LEASE.owner) is False
    assert store.delete("web-1", other.owner) is True


def test_release_to_ready_ends_the_lease_and_clears_replaces(store: ResourceStore) -> None:
    store.insert(resource("new", state=State.PROVISIONING, replaces="old"), LEASE)

    assert store.release("new", "someone-else", State.READY) is False
    assert store.release("new", LEASE.owner, State.READY) is True

    got = store.get("new")
    assert got is not None
    assert (got.state, got.replaces) == (State.READY, None)
    assert store.claim("new", State.READY, State.DELETING, Lease("o2", T0 + HOUR), T0)


def test_claim_stale_takes_abandoned_operations_only(store: ResourceStore) -> None:
    store.insert(resource("ready"))
    store.insert(resource("busy", state=State.PROVISIONING), LEASE)
    store.insert(resource("expired", state=State.DELETING), Lease("gone", T0 - HOUR))
    store.insert(resource("released", state=State.PROVISIONING), LEASE)
    store.release("released", LEASE.owner, State.PROVISIONING)
    reconciler = Lease("reconciler", T0 + HOUR)

    stale = store.claim_stale(reconciler, T0, 10)

    assert sorted(ids(stale)) == ["expired", "released"]
    assert store.claim_stale(Lease("again", T0 + HOUR), T0, 10) == []
    assert store.delete("expired", reconciler.owner) is True


def test_claim_stale_honours_the_batch_size(store: ResourceStore) -> None:
    for n in range(5):
        store.insert(resource(f"r{n}", state=State.PROVISIONING), Lease("gone", T0 - HOUR))
    first = store.claim_stale(Lease("a", T0 + HOUR), T0, 3)
    second = store.claim_stale(Lease("b", T0 + HOUR), T0, 3)
    assert len(first) == 3
    assert len(second) == 2
    assert not set(ids(first)) & set(ids(second))


def test_rehydration_links(store: ResourceStore) -> None:
    store.insert(resource("old"))
    store.claim("old", State.READY, State.REHYDRATING, LEASE, T0)
    store.insert(resource("new", state=State.PROVISIONING, replaces="old"), LEASE)

    replacement = store.replacement_of("old")
    assert replacement is not None
    assert replacement.id == "new"
    assert store.restore("old") is True
    assert store.get("old").state is State.READY  # type: ignore[union-attr]
    assert store.retire("old") is False  # only a record being rehydrated is retired
    store.claim("old", State.READY, State.REHYDRATING, LEASE, T0)
    assert store.retire("old") is True
    assert store.get("old") is None


def test_settings_are_created_once(store: ResourceStore) -> None:
    first = store.setting("key", lambda: "one")
    assert first == "one"
    assert store.setting("key", lambda: "two") == "one"


def test_migrations_apply_once(db: Database, store: ResourceStore) -> None:
    store.insert(resource("web-1", state=State.PROVISIONING, replaces="x"), LEASE)
    again = make_store(db)
    again.open()
    try:
        assert again.get("web-1") == resource("web-1", state=State.PROVISIONING, replaces="x")
    finally:
        again.close()
