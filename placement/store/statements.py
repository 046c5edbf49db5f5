"""The SQL both stores run, with "?" placeholders (`SqlEngine` rewrites them for drivers
using "%s"). Lifecycle statements are named after their transition in
`tests.harness.lifecycle` (`<transition>:<row>` when a transition changes several rows);
`tests/unit/test_lifecycle_sql.py` checks them against it.

Time comes from the database: `now()` (PostgreSQL's own; registered on each SQLite
connection) and `placement_lease_end(seconds)` (a function the PostgreSQL migration
creates; registered in SQLite), so that leases are taken and compared on one clock.
"""

from __future__ import annotations

# The columns a resource is read from, in the order every statement selects them; rows
# are read by name through `COLUMN` (a column's position in the row).
COLUMNS = (
    "id",
    "catalog_item_instance_id",
    "original_spec",
    "provider_name",
    "approval_status",
    "create_time",
    "update_time",
    "state",
    "replaces",
    "status",
    "status_message",
    "status_time",
)
COLUMN = {name: position for position, name in enumerate(COLUMNS)}
SELECTED = ", ".join(COLUMNS)
RETURNING = f" RETURNING {SELECTED}"

# A new record (`?`: its placement, lease owner and seconds), stamped by the database's
# clock, inserted on the condition that follows.
_INSERT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status, path, create_time, update_time, state, replaces,"
    " lease_owner, lease_until) SELECT ?, ?, ?, ?, ?, ?, clock.stamp, clock.stamp,"
    " 'PROVISIONING', CAST(? AS varchar(63)), ?, placement_lease_end(?)"
    " FROM (SELECT now() AS stamp) AS clock"
)
# A pending undo of a failed create (`?`: the record's id and the condition's).
_RETIRE_RECORD = (
    "INSERT INTO placement_retired (id, retire_time, lease_owner,"
    " lease_until, catalog_item_instance_id, original_spec, provider_name, approval_status)"
    " SELECT id, now(), NULL, lease_until, catalog_item_instance_id, original_spec,"
    " provider_name, approval_status FROM resources"
)
_LEASE_ENDED = "(lease_until IS NULL OR lease_until < now())"
# The status the SPRM's create answer gave (`?`: it, twice; NULL: none), as of the record's
# creation, unless a status event came first.
_FIRST_STATUS = (
    "status = COALESCE(status, CAST(? AS text)), status_time = CASE"
    " WHEN status IS NULL AND CAST(? AS text) IS NOT NULL THEN create_time"
    " ELSE status_time END"
)

LIFECYCLE = {
    "get": f"SELECT {SELECTED} FROM resources WHERE id = ?",
    "begin_create": _INSERT
    + " WHERE NOT EXISTS (SELECT 1 FROM placement_retired WHERE id = ?)"
    + RETURNING,
    "finish_create": "UPDATE resources SET state = 'READY', replaces = NULL,"
    f" lease_owner = NULL, lease_until = NULL, {_FIRST_STATUS}"
    " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?",
    "undo_create": "DELETE FROM resources"
    " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?",
    "begin_delete": "UPDATE resources SET state = 'DELETING', lease_owner = ?,"
    " lease_until = placement_lease_end(?)"
    f" WHERE id = ? AND state = 'READY' AND {_LEASE_ENDED}" + RETURNING,
    # A delete whose owner gave up (an earlier try of it may have acted).
    "resume_delete": "UPDATE resources SET lease_owner = ?, lease_until = placement_lease_end(?)"
    f" WHERE id = ? AND state = 'DELETING' AND {_LEASE_ENDED}" + RETURNING,
    "finish_delete": "DELETE FROM resources"
    " WHERE id = ? AND state = 'DELETING' AND lease_owner = ?",
    "undo_delete": "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL"
    " WHERE id = ? AND state = 'DELETING' AND lease_owner = ?",
    "begin_rehydrate:replaced": "UPDATE resources SET state = 'REHYDRATING', lease_owner = ?,"
    " lease_until = placement_lease_end(?)"
    f" WHERE id = ? AND state = 'READY' AND {_LEASE_ENDED}",
    "finish_rehydrate:record": "UPDATE resources SET state = 'READY', replaces = NULL,"
    f" lease_owner = NULL, lease_until = NULL, {_FIRST_STATUS}"
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
    "abandon_create:retired": _RETIRE_RECORD
    + " WHERE id = ? AND state = 'PROVISIONING' AND lease_owner = ?"
    " ON CONFLICT (id) DO UPDATE SET lease_owner = NULL, lease_until = CASE"
    " WHEN excluded.lease_until > placement_retired.lease_until THEN excluded.lease_until"
    " ELSE placement_retired.lease_until END",
    "abandon_rehydrate:retired": _RETIRE_RECORD
    + " WHERE id = ? AND state = 'PROVISIONING' AND replaces = ? AND lease_owner = ?",
    # A retry of the same create records it again beside its pending undo, which stays:
    # once the SPRM can no longer act on the failed create, the undo deletes the instance
    # unless a record stands for it then.
    "undo_of": "SELECT catalog_item_instance_id, original_spec, provider_name"
    " FROM placement_retired WHERE id = ? AND original_spec IS NOT NULL",
    "resume_create": _INSERT + " WHERE EXISTS (SELECT 1 FROM placement_retired"
    " WHERE id = ? AND original_spec IS NOT NULL AND lease_owner IS NULL)" + RETURNING,
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
    f" AND {_LEASE_ENDED}" + RETURNING,
    "claim_stale:replaced": "UPDATE resources SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = ? AND state = 'REHYDRATING'"
    f" AND {_LEASE_ENDED}",
    "claim_retired": "UPDATE placement_retired SET lease_owner = ?,"
    " lease_until = placement_lease_end(?) WHERE id = (SELECT r.id FROM placement_retired AS r"
    " WHERE r.lease_until IS NULL OR r.lease_until < now()"
    " ORDER BY r.lease_until NULLS FIRST, r.id LIMIT 1)"
    f" AND {_LEASE_ENDED} RETURNING id",
    "release": "UPDATE resources SET lease_owner = NULL, lease_until = placement_lease_end(?)"
    " WHERE state IN ('PROVISIONING', 'DELETING', 'REHYDRATING') AND lease_owner = ?",
    "setting_insert": "INSERT INTO placement_settings (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO NOTHING",
    "setting_get": "SELECT value FROM placement_settings WHERE name = ?",
}
# Moves another transition makes the same way: one statement, named for each.
LIFECYCLE |= {
    "begin_rehydrate:record": LIFECYCLE["begin_create"],
    "abandon_create:record": LIFECYCLE["undo_create"],
    "abandon_rehydrate:record": LIFECYCLE["undo_rehydrate:record"],
    "abandon_rehydrate:replaced": LIFECYCLE["undo_rehydrate:replaced"],
}


def _locked(name: str) -> str:
    """A claim whose subquery skips the rows another replica is claiming (PostgreSQL)."""
    text = LIFECYCLE[name]
    if text.count(" LIMIT 1)") != 1:
        raise ValueError(f"{name}: no single subquery to lock")
    return text.replace(" LIMIT 1)", " LIMIT 1 FOR UPDATE SKIP LOCKED)")


# PostgreSQL's spelling of the statements it runs differently.
POSTGRES = {name: _locked(name) for name in ("claim_stale:record", "claim_retired")}


# The list's filters, in the order their values are bound: `provider` (as stored), and
# `status` (compared without case: both sides upper-cased by the database's own `upper`, so
# that the exact value always matches; Python's `str.upper` differs from it beyond ASCII).
FILTERS = {"provider": "provider_name = ?", "status": "upper(status) = upper(?)"}
ListFilters = tuple[bool, bool]  # (by provider, by status)


def _branch(filters: ListFilters, condition: str, order: str) -> str:
    """One side of a list statement: the rows matching `condition`, in `order`."""
    chosen = [text for text, on in zip(FILTERS.values(), filters, strict=True) if on]
    where = " AND ".join([*chosen, condition])
    return f"SELECT {SELECTED} FROM resources WHERE {where} ORDER BY {order} LIMIT ?"


def _both_branches(filters: ListFilters, unstamped: str) -> str:
    """The rows without create_time (`unstamped`: their condition) before the others."""
    first = _branch(filters, unstamped, "id")
    second = _branch(filters, "create_time IS NOT NULL", "create_time, id")
    return (
        f"SELECT * FROM ({first}) AS unstamped UNION ALL SELECT * FROM ({second}) AS stamped"
        " ORDER BY create_time NULLS FIRST, id LIMIT ?"
    )


def _list(filters: ListFilters, where: str | None) -> str:
    if where == "stamped":
        return _branch(filters, "(create_time, id) > (?, ?)", "create_time, id")
    unstamped = "create_time IS NULL" + (" AND id > ?" if where == "unstamped" else "")
    return _both_branches(filters, unstamped)


# List pages, by (filters, where the previous page ended: None, among rows without
# create_time ("unstamped", which sort first), or among the others). Rows without
# create_time are read in a branch of their own, so that both branches use the
# (create_time, id) indexes (the Go table allows NULL there).
LIST = {
    (filters, where): _list(filters, where)
    for where in (None, "unstamped", "stamped")
    for filters in ((False, False), (True, False), (False, True), (True, True))
}


# The provider's status events. One statement checks and writes (two replicas may apply
# two events of one instance at once): an event is applied only if it is newer than the
# recorded one (its time, then its stream sequence) and not older than the record (an
# event of an earlier instance of a reused id). `?`: status, message, time, sequence; the
# id; the time; the time, the time and the sequence.
STATUS = {
    "apply_status": "UPDATE resources SET status = ?, status_message = ?, status_time = ?,"
    " status_sequence = ? WHERE id = ? AND (create_time IS NULL OR create_time <= ?)"
    " AND (status_time IS NULL OR status_time < ?"
    " OR (status_time = ? AND (status_sequence IS NULL OR status_sequence < ?)))",
    "has_record": "SELECT 1 FROM resources WHERE id = ?",
}
