"""The one ordered list of schema changes, and the one runner that applies them.

Version N is `VERSIONS[N - 1]`, applied once, in order, inside the transaction that
opens the store, and recorded in `placement_schema`. Version 1 is the Go service's table,
created only when missing (an existing one is served as it is); every later version only
adds, so the previous version of this service and the Go service keep working on a
migrated database. Each step is written out whole for each database (`Step.sqlite` is
None where SQLite needs nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Step:
    pgsql: str
    sqlite: str | None

    def text(self, dialect: str) -> str | None:
        return self.pgsql if dialect == "pgsql" else self.sqlite


def same(statement: str) -> Step:
    """A step both databases spell the same way."""
    return Step(statement, statement)


VERSIONS: tuple[tuple[Step, ...], ...] = (
    # 1: the Go service's table.
    (
        Step(
            "CREATE TABLE IF NOT EXISTS resources (id varchar(63) PRIMARY KEY,"
            " catalog_item_instance_id text NOT NULL, original_spec jsonb NOT NULL,"
            " provider_name text NOT NULL, approval_status text NOT NULL, path text NOT NULL,"
            " create_time timestamptz, update_time timestamptz)",
            "CREATE TABLE IF NOT EXISTS resources (id varchar(63) PRIMARY KEY,"
            " catalog_item_instance_id text NOT NULL, original_spec text NOT NULL,"
            " provider_name text NOT NULL, approval_status text NOT NULL, path text NOT NULL,"
            " create_time datetime, update_time datetime)",
        ),
    ),
    # 2: the lifecycle (states and leases), list indexes, service-wide settings.
    (
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'READY'",
            "ALTER TABLE resources ADD COLUMN state text NOT NULL DEFAULT 'READY'",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS lease_owner text",
            "ALTER TABLE resources ADD COLUMN lease_owner text",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS lease_until timestamptz",
            "ALTER TABLE resources ADD COLUMN lease_until datetime",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS replaces varchar(63)",
            "ALTER TABLE resources ADD COLUMN replaces varchar(63)",
        ),
        same(
            "CREATE INDEX IF NOT EXISTS resources_create_time_id_idx ON resources (create_time, id)"
        ),
        same(
            "CREATE INDEX IF NOT EXISTS resources_provider_create_time_id_idx"
            " ON resources (provider_name, create_time, id)"
        ),
        same(
            "CREATE INDEX IF NOT EXISTS resources_in_flight_idx ON resources (lease_until)"
            " WHERE state <> 'READY'"
        ),
        same(
            "CREATE INDEX IF NOT EXISTS resources_replaces_idx ON resources (replaces)"
            " WHERE replaces IS NOT NULL"
        ),
        same(
            "CREATE TABLE IF NOT EXISTS placement_settings"
            " (name text PRIMARY KEY, value text NOT NULL)"
        ),
    ),
    # 3: pending deletions of replaced resources (a table the Go service and earlier
    # versions never read, so neither meets a state it does not know), and leases that
    # end on the database's clock (SQLite's is this process's: the store registers it).
    (
        Step(
            "CREATE TABLE IF NOT EXISTS placement_retired (id varchar(63) PRIMARY KEY,"
            " retire_time timestamptz NOT NULL, lease_owner text, lease_until timestamptz)",
            "CREATE TABLE IF NOT EXISTS placement_retired (id varchar(63) PRIMARY KEY,"
            " retire_time datetime NOT NULL, lease_owner text, lease_until datetime)",
        ),
        Step(
            "CREATE OR REPLACE FUNCTION placement_lease_end(seconds double precision)"
            " RETURNS timestamptz LANGUAGE sql STABLE"
            " AS $$ SELECT now() + seconds * interval '1 second' $$",
            None,
        ),
    ),
    # 4: the in-service drift audit (placement/flows/drift_monitor.py): its lease, so that one
    # replica at a time runs it, and the counts of the last run, which every replica shows.
    (
        Step(
            "CREATE TABLE IF NOT EXISTS placement_audit (name text PRIMARY KEY,"
            " owner text NOT NULL, lease_until timestamptz NOT NULL, finish_time timestamptz,"
            " orphaned_instances integer, missing_instances integer, stuck_operations integer)",
            "CREATE TABLE IF NOT EXISTS placement_audit (name text PRIMARY KEY,"
            " owner text NOT NULL, lease_until datetime NOT NULL, finish_time datetime,"
            " orphaned_instances integer, missing_instances integer, stuck_operations integer)",
        ),
    ),
    # 5: pending undos of failed creates, beside pending deletions of replaced resources
    # (both: an instance no record stands for, deleted once the SPRM can no longer act).
    # An undo keeps the record it was, so that a retry of the same create can take it
    # over; older versions treat its row as a pending deletion, which it also is.
    (
        Step(
            "ALTER TABLE placement_retired ADD COLUMN IF NOT EXISTS catalog_item_instance_id text",
            "ALTER TABLE placement_retired ADD COLUMN catalog_item_instance_id text",
        ),
        Step(
            "ALTER TABLE placement_retired ADD COLUMN IF NOT EXISTS original_spec jsonb",
            "ALTER TABLE placement_retired ADD COLUMN original_spec text",
        ),
        Step(
            "ALTER TABLE placement_retired ADD COLUMN IF NOT EXISTS provider_name text",
            "ALTER TABLE placement_retired ADD COLUMN provider_name text",
        ),
        Step(
            "ALTER TABLE placement_retired ADD COLUMN IF NOT EXISTS approval_status text",
            "ALTER TABLE placement_retired ADD COLUMN approval_status text",
        ),
    ),
    # 6: the provider's view of each resource (its status events): nullable columns the
    # Go service ignores, and the index of the list's status filter (compared without
    # case: on the upper-cased status).
    (
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS status text",
            "ALTER TABLE resources ADD COLUMN status text",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS status_message text",
            "ALTER TABLE resources ADD COLUMN status_message text",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS status_time timestamptz",
            "ALTER TABLE resources ADD COLUMN status_time datetime",
        ),
        Step(
            "ALTER TABLE resources ADD COLUMN IF NOT EXISTS status_sequence bigint",
            "ALTER TABLE resources ADD COLUMN status_sequence integer",
        ),
        same(
            "CREATE INDEX IF NOT EXISTS resources_status_create_time_id_idx"
            " ON resources (upper(status), create_time, id)"
        ),
        # The audit's new kind of drift: instances their provider reports DELETED.
        Step(
            "ALTER TABLE placement_audit ADD COLUMN IF NOT EXISTS deleted_by_provider integer",
            "ALTER TABLE placement_audit ADD COLUMN deleted_by_provider integer",
        ),
    ),
)

_SCHEMA_TABLE = Step(
    "CREATE TABLE IF NOT EXISTS placement_schema"
    " (version integer PRIMARY KEY, applied_time timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS placement_schema"
    " (version integer PRIMARY KEY, applied_time datetime NOT NULL)",
)
_CURRENT = "SELECT coalesce(max(version), 0) FROM placement_schema"
_APPLIED = "INSERT INTO placement_schema (version, applied_time) VALUES (?, now())"

# Runs one statement with its parameters (None: none) on the migrating connection.
Execute = Callable[[str, Sequence[Any] | None], Any]


def migrate(execute: Execute, dialect: str, placeholder: str = "?") -> list[int]:
    """Bring the schema to the last version with `execute` (one connection, inside the
    caller's transaction, which also serialises replicas); the versions applied."""
    execute(_SCHEMA_TABLE.pgsql if dialect == "pgsql" else str(_SCHEMA_TABLE.sqlite), None)
    (current,) = execute(_CURRENT, None).fetchone()
    applied = []
    for version in range(int(current) + 1, len(VERSIONS) + 1):
        for statement in _texts(VERSIONS[version - 1], dialect):
            execute(statement, None)
        execute(_APPLIED.replace("?", placeholder), (version,))
        log.info("database schema migrated to version %d", version)
        applied.append(version)
    return applied


def statements(dialect: str, up_to: int) -> list[str]:
    """Every statement of versions 1..`up_to` (for tests that make an older database)."""
    return [text for version in VERSIONS[:up_to] for text in _texts(version, dialect)]


def _texts(steps: Sequence[Step], dialect: str) -> list[str]:
    return [text for step in steps if (text := step.text(dialect)) is not None]
