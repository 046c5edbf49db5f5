"""The SQL both stores run, and the store methods built on it. The database modules
supply connections, error translation, value encodings and dialect details."""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from placement.model import JSONObject, Resource, State
from placement.store.base import Cursor, Lease

# Every statement is written out whole (no SQL is assembled from pieces), with "?"
# placeholders that `SqlStore` rewrites for drivers using "%s". `_SQL_LIST` is indexed
# by (filtered by provider, after a cursor).
_SQL = {
    "get": "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources WHERE id = ?",
    "insert": "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, path, create_time, update_time, state, replaces,"
    " lease_owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "replacement_of": "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " WHERE replaces = ?",
    "retire": "DELETE FROM resources WHERE id = ? AND state = 'REHYDRATING'",
    "restore": "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'REHYDRATING'",
    "delete": "DELETE FROM resources WHERE id = ? AND lease_owner = ?",
    "claim": "UPDATE resources SET state = ?, lease_owner = ?, lease_until = ?"
    " WHERE id = ? AND state = ? AND (lease_until IS NULL OR lease_until < ?)"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "claim_stale": "UPDATE resources SET lease_owner = ?, lease_until = ? WHERE id IN"
    " (SELECT id FROM resources WHERE state <> 'READY'"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY lease_until LIMIT ?)"
    " RETURNING id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces",
    "release_ready": "UPDATE resources SET state = 'READY', lease_owner = NULL,"
    " lease_until = NULL, replaces = NULL WHERE id = ? AND lease_owner = ?",
    "release": "UPDATE resources SET state = ?, lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND lease_owner = ?",
    "setting_insert": "INSERT INTO placement_settings (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO NOTHING",
    "setting_get": "SELECT value FROM placement_settings WHERE name = ?",
}
_SQL_LIST = {
    (False, False): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " ORDER BY create_time, id LIMIT ?",
    (True, False): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " WHERE provider_name = ? ORDER BY create_time, id LIMIT ?",
    (False, True): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, create_time, update_time, state, replaces FROM resources"
    " WHERE (create_time, id) > (?, ?) ORDER BY create_time, id LIMIT ?",
    (True, True): "SELECT id, catalog_item_instance_id, original_spec, provider_name,"
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
    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a statement; its rows (none for statements without a result)."""

    @abc.abstractmethod
    def _count(self, statement: str, params: Sequence[Any]) -> int:
        """Run a statement; the number of rows it changed."""

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
    def _time_value(self, moment: datetime) -> Any: ...

    @abc.abstractmethod
    def _decode_spec(self, value: Any) -> JSONObject: ...

    @abc.abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    @abc.abstractmethod
    def _sort_key(self, value: Any) -> str:
        """A row's create_time as a cursor key that `_after_value` turns back."""

    @abc.abstractmethod
    def _after_value(self, key: str) -> Any: ...

    def pool_stats(self) -> dict[str, int]:
        return {}

    def setting(self, name: str, default: Callable[[], str]) -> str:
        self._count(self._sql["setting_insert"], (name, default()))
        [(value,)] = self._rows(self._sql["setting_get"], (name,))
        return str(value)

    def insert(self, resource: Resource, lease: Lease | None = None) -> None:
        self._count(
            self._sql["insert"],
            (
                resource.id,
                resource.catalog_item_instance_id,
                self._spec_value(resource.spec),
                resource.provider_name,
                resource.approval_status,
                resource.path,
                self._time_value(resource.create_time),
                self._time_value(resource.update_time),
                resource.state.value,
                resource.replaces,
                lease.owner if lease else None,
                self._time_value(lease.until) if lease else None,
            ),
        )

    def get(self, resource_id: str) -> Resource | None:
        rows = self._rows(self._sql["get"], (resource_id,))
        return self._resource(rows[0]) if rows else None

    def list_page(
        self, provider: str | None, limit: int, after: Cursor | None, max_bytes: int | None = None
    ) -> tuple[list[Resource], Cursor | None]:
        params: list[Any] = [] if provider is None else [provider]
        if after is not None:
            params += [self._after_value(after.create_key), after.id]
        statement = self._list[provider is not None, after is not None]
        rows = self._page_rows(statement, [*params, limit + 1], max_bytes)
        # A row without its spec is past the budget: the page ends before it.
        kept = list(itertools.takewhile(lambda row: row[2] is not None, rows[:limit]))
        resources = [self._resource(row) for row in kept]
        if len(kept) == len(rows):
            return resources, None
        return resources, Cursor(self._sort_key(kept[-1][5]), kept[-1][0])

    def replacement_of(self, resource_id: str) -> Resource | None:
        rows = self._rows(self._sql["replacement_of"], (resource_id,))
        return self._resource(rows[0]) if rows else None

    def claim(
        self, resource_id: str, expected: State, state: State, lease: Lease, now: datetime
    ) -> Resource | None:
        params = (
            state.value,
            lease.owner,
            self._time_value(lease.until),
            resource_id,
            expected.value,
            self._time_value(now),
        )
        rows = self._rows(self._sql["claim"], params)
        return self._resource(rows[0]) if rows else None

    def claim_stale(self, lease: Lease, now: datetime, limit: int) -> list[Resource]:
        params = (lease.owner, self._time_value(lease.until), self._time_value(now), limit)
        return [self._resource(row) for row in self._rows(self._sql["claim_stale"], params)]

    def release(self, resource_id: str, owner: str, state: State) -> bool:
        if state is State.READY:
            return self._count(self._sql["release_ready"], (resource_id, owner)) > 0
        return self._count(self._sql["release"], (state.value, resource_id, owner)) > 0

    def delete(self, resource_id: str, owner: str) -> bool:
        return self._count(self._sql["delete"], (resource_id, owner)) > 0

    def retire(self, resource_id: str) -> bool:
        return self._count(self._sql["retire"], (resource_id,)) > 0

    def restore(self, resource_id: str) -> bool:
        return self._count(self._sql["restore"], (resource_id,)) > 0

    def _resource(self, row: Sequence[Any]) -> Resource:
        rid, catalog_id, spec, provider, approval, created, updated, state, replaces = row
        return Resource(
            id=rid,
            catalog_item_instance_id=catalog_id,
            spec=self._decode_spec(spec),
            provider_name=provider or "",
            approval_status=approval or "",
            create_time=self._decode_time(created),
            update_time=self._decode_time(updated),
            state=State(state),
            replaces=replaces,
        )
