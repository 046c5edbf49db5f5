"""The SQL engine the store, its asynchronous reads and the drift audit share: a
database's connections, its spelling of the statements, its value encodings, and the
list pages built on them. Each database module supplies one (`PostgresEngine`,
`SqliteEngine`)."""

from __future__ import annotations

import abc
import itertools
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from placement.model import EPOCH, JSONObject, ProviderStatus, Resource, ResourceView, State
from placement.store.base import Cursor
from placement.store.statements import COLUMN, LIFECYCLE, LIST, STATUS, ListFilters

Row = tuple[Any, ...]
ListKey = tuple[ListFilters, str | None]
# A column's position in a resource row (`statements.COLUMNS`), by name.
_AT = COLUMN
_SPEC = COLUMN["original_spec"]


class SqlEngine(abc.ABC):
    """One database's connections, statements and value encodings."""

    # "pgsql" or "sqlite" (DB_TYPE), for the few statements spelled per database.
    name: str
    placeholder = "?"

    def __init__(self, dialect: dict[str, str]) -> None:
        """`dialect`: the statements this database spells its own way, by name."""
        statements = LIFECYCLE | STATUS | dialect
        self.sql = {name: self.marks(text) for name, text in statements.items()}
        self.lists = {key: self.marks(text) for key, text in LIST.items()}

    def marks(self, statement: str) -> str:
        """`statement` with the driver's placeholders."""
        return statement.replace("?", self.placeholder)

    # The database.

    @abc.abstractmethod
    def connection(self) -> AbstractContextManager[Any]:
        """A connection in autocommit mode; driver errors translated."""

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A connection inside a transaction (committed on exit, rolled back on an
        exception); driver errors translated."""

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.connection() as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    def count(self, statement: str, params: Sequence[Any] = ()) -> int:
        """How many rows `statement` changed."""
        with self.connection() as conn:
            return int(conn.execute(statement, params).rowcount)

    @abc.abstractmethod
    def page_rows(self, key: ListKey, params: Sequence[Any], max_bytes: int | None) -> list[Row]:
        """Run the list statement `lists[key]`, holding at most about `max_bytes` of specs: once the
        specs of the rows before reach it, a row comes without its spec (None), and
        the rows after it may be left out."""

    # Values as the database holds them.

    @abc.abstractmethod
    def spec_value(self, spec: JSONObject) -> Any: ...

    @abc.abstractmethod
    def decode_spec(self, value: Any) -> JSONObject: ...

    @abc.abstractmethod
    def time_value(self, moment: datetime) -> Any: ...

    @abc.abstractmethod
    def decode_time(self, value: Any) -> datetime: ...

    @abc.abstractmethod
    def sort_key(self, value: Any) -> str:
        """A row's (non-NULL) create_time as a cursor key that `after_value` turns back."""

    @abc.abstractmethod
    def after_value(self, key: str) -> Any: ...

    # Resource rows (`statements.COLUMNS`).

    def resource(self, row: Row) -> Resource:
        return Resource(
            id=row[_AT["id"]],
            catalog_item_instance_id=row[_AT["catalog_item_instance_id"]],
            spec=self.decode_spec(row[_AT["original_spec"]]),
            provider_name=row[_AT["provider_name"]] or "",
            approval_status=row[_AT["approval_status"]] or "",
            create_time=self._time_or_epoch(row[_AT["create_time"]]),
            update_time=self._time_or_epoch(row[_AT["update_time"]]),
            state=State.parse(row[_AT["state"]]),
            replaces=row[_AT["replaces"]],
            status=self._status(row),
        )

    def view(self, row: Row) -> ResourceView:
        """A row whose spec is JSON text (how the reads select it), not decoded."""
        return ResourceView(
            id=row[_AT["id"]],
            catalog_item_instance_id=row[_AT["catalog_item_instance_id"]],
            spec_json=row[_AT["original_spec"]],
            provider_name=row[_AT["provider_name"]] or "",
            approval_status=row[_AT["approval_status"]] or "",
            create_time=self._time_or_epoch(row[_AT["create_time"]]),
            update_time=self._time_or_epoch(row[_AT["update_time"]]),
            status=self._status(row),
        )

    def _status(self, row: Row) -> ProviderStatus | None:
        """The provider's view of the resource, if it has one."""
        status = row[_AT["status"]]
        if status is None:
            return None
        moment = row[_AT["status_time"]]
        return ProviderStatus(
            status,
            row[_AT["status_message"]],
            None if moment is None else self.decode_time(moment),
        )

    def _time_or_epoch(self, value: Any) -> datetime:
        """The Go table allows NULL times: they read as the epoch."""
        return EPOCH if value is None else self.decode_time(value)

    # List pages.

    def list_query(
        self, provider: str | None, status: str | None, limit: int, after: Cursor | None
    ) -> tuple[ListKey, list[Any]]:
        """Which list statement serves this page (a key of `lists`), and its parameters
        (one more row than `limit`: whether more follow). `status` is compared without
        case."""
        params: list[Any] = []
        if after is None:
            where, params = None, [limit + 1, limit + 1, limit + 1]
        elif after.create_key is None:
            where, params = "unstamped", [after.id, limit + 1, limit + 1, limit + 1]
        else:
            where, params = "stamped", [self.after_value(after.create_key), after.id, limit + 1]
        values = [v for v in (provider, status) if v is not None]
        filters = (provider is not None, status is not None)
        return (filters, where), _with_filters(where, values, params)

    def page_end(self, rows: list[Row], limit: int) -> tuple[list[Row], Cursor | None]:
        """The rows of the page, and the cursor of its last one when more may follow."""
        # A row without its spec is past the budget: the page ends before it.
        kept = list(itertools.takewhile(lambda row: row[_SPEC] is not None, rows[:limit]))
        if len(kept) == len(rows):
            return kept, None
        last = kept[-1]
        created = last[_AT["create_time"]]
        key = None if created is None else self.sort_key(created)
        return kept, Cursor(key, last[_AT["id"]])


def without_spec(row: Row) -> Row:
    """A list row past the page's budget: its spec left out."""
    return (*row[:_SPEC], None, *row[_SPEC + 1 :])


def _with_filters(where: str | None, values: list[Any], params: list[Any]) -> list[Any]:
    """The parameters of a filtered statement: the filters' values before each branch."""
    if where == "stamped":
        return [*values, *params]
    if where is None:
        first, second, limit = params
        return [*values, first, *values, second, limit]
    after, first, second, limit = params
    return [*values, after, first, *values, second, limit]
