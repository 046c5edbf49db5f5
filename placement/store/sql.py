"""The SQL both stores run, and the store methods built on it. The database modules
supply connections, transactions, error translation, value encodings and the few
dialect details (PostgreSQL's row locks).

Time comes from the database: `now()` (PostgreSQL's own; registered on each SQLite
connection) and `placement_lease_end(seconds)` (a function the PostgreSQL migration
creates; registered in SQLite), so that leases are taken and compared on one clock.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar

from placement.model import EPOCH, JSONObject, Placement, Resource, ResourceView, State
from placement.store.base import Cursor, DuplicateId, Lease, PendingDeletion

# Every statement is written out whole (no SQL is assembled from pieces), with "?"
# placeholders that `SqlStore` rewrites for drivers using "%s". Lifecycle statements are
# named after their transition in `tests.harness.lifecycle` (`<transition>:<row>` when a
# transition changes several rows); `tests/test_lifecycle_sql.py` checks them against it.
_SQL = {
    "get": "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources WHERE id = ?",
    "begin_create": "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, path, create_time, update_time, state, replaces,"
    " lease_owner, lease_until) SELECT ?, ?, ?, ?, ?, ?, clock.stamp, clock.stamp,"
    " 'PROVISIONING', CAST(? AS varchar(63)), ?, placement_lease_end(?)"
    " FROM (SELECT now() AS stamp) AS clock"
    " WHERE NOT EXISTS (SELECT 1 FROM placement_retired WHERE id = ?)"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "finish_create": "UPDATE resources SET state = 'READY', replaces = NULL,"
    " lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?",
    "undo_create": "DELETE FROM resources"
    " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?",
    "begin_delete": "UPDATE resources SET state = 'DELETING', lease_owner = ?,"
    " lease_until = placement_lease_end(?)"
    " WHERE id = ? AND state = 'READY' AND (lease_until IS NULL OR lease_until < now())"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    # A delete whose owner gave up (an earlier try of it may have acted).
    "resume_delete": "UPDATE resources SET lease_owner = ?, lease_until = placement_lease_end(?)"
    " WHERE id = ? AND state = 'DELETING' AND (lease_until IS NULL OR lease_until < now())"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "finish_delete": "DELETE FROM resources"
    " WHERE id = ? AND state = 'DELETING' AND lease_owner = ?",
    "undo_delete": "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'DELETING' AND lease_owner = ?",
    "begin_rehydrate:replaced": "UPDATE resources SET state = 'REHYDRATING', lease_owner = ?,"
    " lease_until = placement_lease_end(?)"
    " WHERE id = ? AND state = 'READY' AND (lease_until IS NULL OR lease_until < now())",
    "finish_rehydrate:record": "UPDATE resources SET state = 'READY', replaces = NULL,"
    " lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'PROVISIONING' AND replaces = ? AND lease_owner = ?",
    "finish_rehydrate:replaced": "DELETE FROM resources"
    " WHERE id = ? AND state = 'REHYDRATING' AND lease_owner = ?",
    "finish_rehydrate:retired": "INSERT INTO placement_retired"
    " (id, retire_time, lease_owner, lease_until)"
    " SELECT ?, now(), ?, placement_lease_end(?)"
    " WHERE NOT EXISTS (SELECT 1 FROM resources WHERE id = ?)",
    "undo_rehydrate:record": "DELETE FROM resources"
    " WHERE id = ? AND state = 'PROVISIONING' AND replaces = ? AND lease_owner = ?",
    "undo_rehydrate:replaced": "UPDATE resources SET state = 'READY', lease_owner = NULL,"
    " lease_until = NULL WHERE id = ? AND state = 'REHYDRATING' AND lease_owner = ?",
    "restore": "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'REHYDRATING' AND lease_owner = ?"
    " AND NOT EXISTS (SELECT 1 FROM resources AS n WHERE n.replaces = ?)",
    "finish_retire": "DELETE FROM placement_retired WHERE id = ? AND lease_owner = ?",
    # The record of a create whose client is told an error becomes a pending undo under
    # the create's lease (no owner: nobody acts on it before the lease ends, and a retry
    # of the same create may take it over until the reconciler claims it). A retry that
    # took over and failed again extends the undo it left in place.
    "abandon_create:retired": "INSERT INTO placement_retired (id, retire_time, lease_owner,"
    " lease_until, catalog_item_instance_id, original_spec, provider_name, approval_status)"
    " SELECT id, now(), NULL, lease_until, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status FROM resources"
    " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?"
    " ON CONFLICT (id) DO UPDATE SET lease_owner = NULL, lease_until = CASE"
    " WHEN excluded.lease_until > placement_retired.lease_until THEN excluded.lease_until"
    " ELSE placement_retired.lease_until END",
    "abandon_rehydrate:retired": "INSERT INTO placement_retired (id, retire_time, lease_owner,"
    " lease_until, catalog_item_instance_id, original_spec, provider_name, approval_status)"
    " SELECT id, now(), NULL, lease_until, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status FROM resources"
    " WHERE id = ? AND state = 'PROVISIONING' AND replaces = ? AND lease_owner = ?",
    # A retry of the same create records it again beside its pending undo, which stays:
    # once the SPRM can no longer act on the failed create, the undo deletes the instance
    # unless a record stands for it then.
    "undo_of": "SELECT catalog_item_instance_id, original_spec, provider_name"
    " FROM placement_retired WHERE id = ? AND original_spec IS NOT NULL",
    "resume_create": "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, path, create_time, update_time, state, replaces,"
    " lease_owner, lease_until) SELECT ?, ?, ?, ?, ?, ?, clock.stamp, clock.stamp,"
    " 'PROVISIONING', CAST(? AS varchar(63)), ?, placement_lease_end(?)"
    " FROM (SELECT now() AS stamp) AS clock WHERE EXISTS (SELECT 1 FROM placement_retired"
    " WHERE id = ? AND original_spec IS NOT NULL AND lease_owner IS NULL)"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "retire_instance": "INSERT INTO placement_retired"
    " (id, retire_time, lease_owner, lease_until)"
    " SELECT ?, now(), ?, placement_lease_end(?)"
    " WHERE NOT EXISTS (SELECT 1 FROM resources WHERE id = ?)"
    " AND NOT EXISTS (SELECT 1 FROM placement_retired WHERE id = ?)",
    "pending_deletion": "SELECT original_spec IS NOT NULL, lease_until, now()"
    " FROM placement_retired WHERE id = ?",
    "claim_stale:record": "UPDATE resources SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = (SELECT r.id FROM resources AS r"
    " WHERE r.state IN ('PROVISIONING', 'DELETING', 'REHYDRATING')"
    " AND (r.lease_until IS NULL OR r.lease_until < now())"
    " AND NOT (r.state = 'REHYDRATING'"
    " AND EXISTS (SELECT 1 FROM resources AS n WHERE n.replaces = r.id))"
    " ORDER BY r.lease_until NULLS FIRST, r.id LIMIT 1)"
    " AND (lease_until IS NULL OR lease_until < now())"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "claim_stale:replaced": "UPDATE resources SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = ? AND state = 'REHYDRATING'"
    " AND (lease_until IS NULL OR lease_until < now())",
    "claim_retired": "UPDATE placement_retired SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = (SELECT r.id FROM placement_retired AS r"
    " WHERE r.lease_until IS NULL OR r.lease_until < now()"
    " ORDER BY r.lease_until NULLS FIRST, r.id LIMIT 1)"
    " AND (lease_until IS NULL OR lease_until < now()) RETURNING id",
    "release": "UPDATE resources SET lease_owner = NULL, lease_until = placement_lease_end(?)"
    " WHERE state IN ('PROVISIONING', 'DELETING', 'REHYDRATING') AND lease_owner = ?",
    "setting_insert": "INSERT INTO placement_settings (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO NOTHING",
    "setting_get": "SELECT value FROM placement_settings WHERE name = ?",
}
# Moves another transition makes the same way: one statement, named for each.
_SQL |= {
    "begin_rehydrate:record": _SQL["begin_create"],
    "abandon_create:record": _SQL["undo_create"],
    "abandon_rehydrate:record": _SQL["undo_rehydrate:record"],
    "abandon_rehydrate:replaced": _SQL["undo_rehydrate:replaced"],
}

# List pages, by (filtered by provider, where the previous page ended: None, among rows
# without create_time ("unstamped", which sort first), or among the others). Rows without
# create_time are read in a branch of their own, so that both branches use the
# (create_time, id) indexes (the Go table allows NULL there).
_SQL_LIST = {
    (False, None): "SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE create_time IS NULL ORDER BY id LIMIT ?) AS unstamped"
    " UNION ALL SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE create_time IS NOT NULL ORDER BY create_time, id LIMIT ?) AS stamped"
    " ORDER BY create_time NULLS FIRST, id LIMIT ?",
    (True, None): "SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE provider_name = ? AND create_time IS NULL ORDER BY id LIMIT ?)"
    " AS unstamped UNION ALL SELECT * FROM (SELECT id, catalog_item_instance_id,"
    " original_spec, provider_name, approval_status, create_time, update_time, state,"
    " replaces FROM resources WHERE provider_name = ? AND create_time IS NOT NULL"
    " ORDER BY create_time, id LIMIT ?) AS stamped ORDER BY create_time NULLS FIRST, id LIMIT ?",
    (False, "unstamped"): "SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE create_time IS NULL AND id > ? ORDER BY id LIMIT ?) AS unstamped"
    " UNION ALL SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE create_time IS NOT NULL ORDER BY create_time, id LIMIT ?) AS stamped"
    " ORDER BY create_time NULLS FIRST, id LIMIT ?",
    (True, "unstamped"): "SELECT * FROM (SELECT id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, create_time, update_time, state, replaces"
    " FROM resources WHERE provider_name = ? AND create_time IS NULL AND id > ?"
    " ORDER BY id LIMIT ?) AS unstamped UNION ALL SELECT * FROM (SELECT id,"
    " catalog_item_instance_id, original_spec, provider_name, approval_status, create_time,"
    " update_time, state, replaces FROM resources WHERE provider_name = ?"
    " AND create_time IS NOT NULL ORDER BY create_time, id LIMIT ?) AS stamped"
    " ORDER BY create_time NULLS FIRST, id LIMIT ?",
    (False, "stamped"): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " WHERE (create_time, id) > (?, ?) ORDER BY create_time, id LIMIT ?",
    (True, "stamped"): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " WHERE provider_name = ? AND (create_time, id) > (?, ?) ORDER BY create_time, id LIMIT ?",
}


class SqlStore(abc.ABC):
    """A ResourceStore over a DB-API driver."""

    placeholder = "?"
    # Statements a database needs in its own dialect, by name.
    dialect: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        statements = _SQL | self.dialect
        self._sql = {name: self._marks(text) for name, text in statements.items()}
        self._list = {key: self._marks(text) for key, text in _SQL_LIST.items()}

    def _marks(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    @abc.abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """A connection in autocommit mode; driver errors translated."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A connection inside a transaction (committed on exit, rolled back on an
        exception); driver errors translated."""

    @abc.abstractmethod
    def _page_rows(
        self, statement: str, params: Sequence[Any], max_bytes: int | None
    ) -> list[tuple[Any, ...]]:
        """Run a list statement, holding at most about `max_bytes` of specs: once the
        specs of the rows before reach it, a row comes without its spec (None), and
        the rows after it may be left out."""

    @abc.abstractmethod
    def _spec_value(self, spec: JSONObject) -> Any: ...

    @abc.abstractmethod
    def _decode_spec(self, value: Any) -> JSONObject: ...

    @abc.abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    @abc.abstractmethod
    def _sort_key(self, value: Any) -> str:
        """A row's (non-NULL) create_time as a cursor key that `_after_value` turns back."""

    @abc.abstractmethod
    def _after_value(self, key: str) -> Any: ...

    def pool_stats(self) -> dict[str, int]:
        return {}

    def setting(self, name: str, default: Callable[[], str]) -> str:
        self._count(self._sql["setting_insert"], (name, default()))
        [(value,)] = self._rows(self._sql["setting_get"], (name,))
        return str(value)

    # Reads.

    def get(self, resource_id: str) -> Resource | None:
        rows = self._rows(self._sql["get"], (resource_id,))
        return self._resource(rows[0]) if rows else None

    def list_page(
        self, provider: str | None, limit: int, after: Cursor | None, max_bytes: int | None = None
    ) -> tuple[list[Resource], Cursor | None]:
        statement, params = self._list_query(provider, limit, after)
        rows, cursor = self._page_end(self._page_rows(statement, params, max_bytes), limit)
        return [self._resource(row) for row in rows], cursor

    def _list_query(
        self, provider: str | None, limit: int, after: Cursor | None
    ) -> tuple[str, list[Any]]:
        """The list statement for this page and its parameters (one more row than
        `limit`: whether more follow)."""
        params: list[Any] = []
        if after is None:
            where, params = None, [limit + 1, limit + 1, limit + 1]
        elif after.create_key is None:
            where, params = "unstamped", [after.id, limit + 1, limit + 1, limit + 1]
        else:
            where, params = "stamped", [self._after_value(after.create_key), after.id, limit + 1]
        if provider is not None:
            params = _with_provider(where, provider, params)
        return self._list[provider is not None, where], params

    def _page_end(
        self, rows: list[tuple[Any, ...]], limit: int
    ) -> tuple[list[tuple[Any, ...]], Cursor | None]:
        """The rows of the page, and the cursor of its last one when more may follow."""
        # A row without its spec is past the budget: the page ends before it.
        kept = list(itertools.takewhile(lambda row: row[2] is not None, rows[:limit]))
        if len(kept) == len(rows):
            return kept, None
        last = kept[-1]
        key = None if last[5] is None else self._sort_key(last[5])
        return kept, Cursor(key, last[0])

    def pending_deletion(self, resource_id: str) -> PendingDeletion | None:
        rows = self._rows(self._sql["pending_deletion"], (resource_id,))
        if not rows:
            return None
        undo, until, now = rows[0]
        if until is None:
            return PendingDeletion(bool(undo), 0.0)
        left = self._decode_time(until) - self._decode_time(now)
        return PendingDeletion(bool(undo), max(0.0, left.total_seconds()))

    # Lifecycle transitions (tests.harness.lifecycle).

    def begin_create(self, placement: Placement, lease: Lease) -> Resource:
        rows = self._rows(self._sql["begin_create"], self._insert_params(placement, lease))
        if not rows:
            raise DuplicateId(f"{placement.id} is a pending deletion")
        return self._resource(rows[0])

    def finish_create(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["finish_create"], (resource_id, owner)) == 1

    def undo_create(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["undo_create"], (resource_id, owner)) == 1

    def begin_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        params = (lease.owner, lease.seconds, resource_id)
        rows = self._rows(self._sql["begin_delete"], params)
        return self._resource(rows[0]) if rows else None

    def resume_delete(self, resource_id: str, lease: Lease) -> Resource | None:
        params = (lease.owner, lease.seconds, resource_id)
        rows = self._rows(self._sql["resume_delete"], params)
        return self._resource(rows[0]) if rows else None

    def finish_delete(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["finish_delete"], (resource_id, owner)) == 1

    def undo_delete(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["undo_delete"], (resource_id, owner)) == 1

    def begin_rehydrate(self, placement: Placement, lease: Lease) -> Resource | None:
        replaced = placement.replaces
        with self._transaction() as conn:
            taken = conn.execute(
                self._sql["begin_rehydrate:replaced"], (lease.owner, lease.seconds, replaced)
            ).rowcount
            if taken != 1:
                return None  # nothing changed: the transaction ends without a write
            params = self._insert_params(placement, lease)
            rows = conn.execute(self._sql["begin_rehydrate:record"], params).fetchall()
            if not rows:
                raise DuplicateId(f"{placement.id} is a pending deletion")
            return self._resource(rows[0])

    def finish_rehydrate(self, resource_id: str, replaced_id: str, lease: Lease) -> bool:
        owner = lease.owner
        return self._all_or_nothing(
            ("finish_rehydrate:record", (resource_id, replaced_id, owner)),
            ("finish_rehydrate:replaced", (replaced_id, owner)),
            ("finish_rehydrate:retired", (replaced_id, owner, lease.seconds, replaced_id)),
        )

    def undo_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("undo_rehydrate:record", (resource_id, replaced_id, owner)),
            ("undo_rehydrate:replaced", (replaced_id, owner)),
        )

    def restore(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["restore"], (resource_id, owner, resource_id)) == 1

    def finish_retire(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["finish_retire"], (resource_id, owner)) == 1

    def abandon_create(self, resource_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("abandon_create:retired", (resource_id, owner)),
            ("abandon_create:record", (resource_id, owner)),
        )

    def abandon_rehydrate(self, resource_id: str, replaced_id: str, owner: str) -> bool:
        return self._all_or_nothing(
            ("abandon_rehydrate:retired", (resource_id, replaced_id, owner)),
            ("abandon_rehydrate:record", (resource_id, replaced_id, owner)),
            ("abandon_rehydrate:replaced", (replaced_id, owner)),
        )

    def resume_create(self, placement: Placement, lease: Lease) -> Resource | None:
        undone = self._rows(self._sql["undo_of"], (placement.id,))
        if not undone or not _same_placement(undone[0], placement, self._decode_spec):
            return None
        try:
            rows = self._rows(self._sql["resume_create"], self._insert_params(placement, lease))
        except DuplicateId:
            return None  # another retry was first
        return self._resource(rows[0]) if rows else None

    def retire_instance(self, resource_id: str, lease: Lease) -> bool:
        params = (resource_id, lease.owner, lease.seconds, resource_id, resource_id)
        return self._count(self._sql["retire_instance"], params) == 1

    def claim_stale(self, lease: Lease) -> Resource | None:
        with self._transaction() as conn:
            rows = conn.execute(
                self._sql["claim_stale:record"], (lease.owner, lease.seconds)
            ).fetchall()
            if not rows:
                return None
            claimed = self._resource(rows[0])
            if claimed.replaces is not None:
                # The record it replaces, when it can be had: the pair moves need both.
                params = (lease.owner, lease.seconds, claimed.replaces)
                conn.execute(self._sql["claim_stale:replaced"], params)
            return claimed

    def claim_retired(self, lease: Lease) -> str | None:
        rows = self._rows(self._sql["claim_retired"], (lease.owner, lease.seconds))
        return str(rows[0][0]) if rows else None

    def release(self, owner: str, seconds: float) -> bool:
        return self._count(self._sql["release"], (seconds, owner)) >= 1

    # Helpers.

    def _all_or_nothing(self, *steps: tuple[str, Sequence[Any]]) -> bool:
        """Run the statements in one transaction; commit only if each changed one row."""
        try:
            with self._transaction() as conn:
                for name, params in steps:
                    if conn.execute(self._sql[name], params).rowcount != 1:
                        raise _Busy
        except _Busy:
            return False
        return True

    def _insert_params(self, placement: Placement, lease: Lease) -> tuple[Any, ...]:
        return (
            placement.id,
            placement.catalog_item_instance_id,
            self._spec_value(placement.spec),
            placement.provider_name,
            placement.approval_status,
            f"resources/{placement.id}",
            placement.replaces,
            lease.owner,
            lease.seconds,
            placement.id,
        )

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    def _count(self, statement: str, params: Sequence[Any]) -> int:
        with self._connection() as conn:
            return int(conn.execute(statement, params).rowcount)

    def _view(self, row: Sequence[Any]) -> ResourceView:
        """A row whose spec is JSON text (how the reads select it), not decoded."""
        rid, catalog_id, spec, provider, approval, created, updated = row[:7]
        return ResourceView(
            id=rid,
            catalog_item_instance_id=catalog_id,
            spec_json=spec,
            provider_name=provider or "",
            approval_status=approval or "",
            create_time=EPOCH if created is None else self._decode_time(created),
            update_time=EPOCH if updated is None else self._decode_time(updated),
        )

    def _resource(self, row: Sequence[Any]) -> Resource:
        rid, catalog_id, spec, provider, approval, created, updated, state, replaces = row
        return Resource(
            id=rid,
            catalog_item_instance_id=catalog_id,
            spec=self._decode_spec(spec),
            provider_name=provider or "",
            approval_status=approval or "",
            create_time=EPOCH if created is None else self._decode_time(created),
            update_time=EPOCH if updated is None else self._decode_time(updated),
            state=State.parse(state),
            replaces=replaces,
        )


class _Busy(Exception):
    """Rolls back a transaction whose rows were not all where the transition needs them."""


def _same_placement(
    row: Sequence[Any], placement: Placement, decode_spec: Callable[[Any], JSONObject]
) -> bool:
    """Whether a pending undo's (catalog item instance id, spec, provider) are the
    placement's: only the same create may take it over."""
    catalog_id, spec, provider = row
    return (catalog_id, decode_spec(spec), provider) == (
        placement.catalog_item_instance_id,
        placement.spec,
        placement.provider_name,
    )


def _with_provider(where: str | None, provider: str, params: list[Any]) -> list[Any]:
    """The parameters of the provider-filtered statement: the filter before each branch."""
    if where == "stamped":
        return [provider, *params]
    if where is None:
        first, second, limit = params
        return [provider, first, provider, second, limit]
    after, first, second, limit = params
    return [provider, after, first, provider, second, limit]
