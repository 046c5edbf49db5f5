"""Records written straight into the table, as the Go service, an earlier version or an
operation under way left them: any create_time, any state, any lease. (The store itself
stamps new records with the database's clock.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from placement.model import State
from placement.store import Lease, ResourceStore

_PUT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time, state, lease_owner, lease_until)"
    " VALUES (?, 'cat', ?, 'p', 'APPROVED', ?, ?, ?, ?, ?,"
    " CASE WHEN ? THEN placement_lease_end(?) END)"
)


def put_record(
    store: ResourceStore,
    rid: str,
    created: datetime,
    state: State = State.READY,
    lease: Lease | None = None,
) -> None:
    """A record `rid` created at `created`, in `state`, under `lease` (its seconds from
    now on the database's clock; negative: already run out) or none."""
    sql: Any = store
    statement = _PUT.replace("?", sql.placeholder)
    params = (
        rid,
        sql._spec_value({"n": 1}),
        f"resources/{rid}",
        sql._time_value(created),
        sql._time_value(created),
        state.value,
        lease.owner if lease else None,
        lease is not None,
        lease.seconds if lease else 0.0,
    )
    sql._count(statement, params)
