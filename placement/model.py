"""The resource record and its wire form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

JSONObject = dict[str, Any]

EPOCH = datetime.fromtimestamp(0, UTC)
# The API's resource ids: the spec's `ResourceId` pattern (`placement/openapi.yaml`;
# tests/integration/test_spec_constraints.py checks they agree), for the code that checks
# ids itself.
RESOURCE_ID_PATTERN = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class State(StrEnum):
    """Where a resource stands in its lifecycle (the moves between states are tabled in
    `tests/harness/lifecycle.py`, the oracle the flows and statements are checked against).
    Every state but READY means an operation is in flight: its owner holds a
    lease on the record, and once the lease has run out the reconciler finishes or undoes
    the operation."""

    PROVISIONING = "PROVISIONING"
    READY = "READY"
    DELETING = "DELETING"
    REHYDRATING = "REHYDRATING"
    # Not stored in `resources`: a replaced resource whose instance the SPRM has still to
    # delete is a row of `placement_retired` (neither readable nor listed).
    RETIRED = "RETIRED"
    # A state this version does not know, written by a newer replica during a rolling
    # upgrade: the record is busy, and nothing here moves it.
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str) -> State:
        """The stored state; UNKNOWN for a value a newer version wrote."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class Resource:
    """A placed resource as it is stored: `spec` is the spec the client sent.
    `replaces` names the resource a rehydration is replacing, until it is done."""

    id: str
    catalog_item_instance_id: str
    spec: JSONObject
    provider_name: str
    approval_status: str
    create_time: datetime
    update_time: datetime
    state: State = State.READY
    replaces: str | None = None
    status: ProviderStatus | None = None

    def to_json(self) -> JSONObject:
        return _wire(self, self.spec)


@dataclass(frozen=True, slots=True)
class ResourceView:
    """A stored resource as the reads (GET, list) serve it: `spec_json` is the spec's JSON
    text as the database holds it, never decoded (the answer embeds it as it is)."""

    id: str
    catalog_item_instance_id: str
    spec_json: str
    provider_name: str
    approval_status: str
    create_time: datetime
    update_time: datetime
    status: ProviderStatus | None = None

    def to_json(self, embed: Callable[[str], Any]) -> JSONObject:
        """The wire form, the spec given by `embed(spec_json)` (e.g. orjson.Fragment)."""
        return _wire(self, embed(self.spec_json))


def _wire(resource: Resource | ResourceView, spec: Any) -> JSONObject:
    """A resource's JSON form: the Go service's fields in its order, then the provider's
    status when there is one (fields a Go client ignores)."""
    wire: JSONObject = {
        "id": resource.id,
        "path": f"resources/{resource.id}",
        "provider_name": resource.provider_name,
        "catalog_item_instance_id": resource.catalog_item_instance_id,
        "spec": spec,
        "approval_status": resource.approval_status,
        "create_time": rfc3339(resource.create_time),
        "update_time": rfc3339(resource.update_time),
    }
    status = resource.status
    if status is not None:
        wire["status"] = status.status
        if status.message is not None:
            wire["status_message"] = status.message
        if status.time is not None:
            wire["status_time"] = rfc3339(status.time)
    return wire


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """The instance's status as its provider last reported it (a status event, or the
    SPRM's create answer before any event): stored as sent, compared without case."""

    status: str
    message: str | None
    time: datetime | None


@dataclass(frozen=True, slots=True)
class Placement:
    """What a new record holds before the store stamps it (times, state PROVISIONING)."""

    id: str
    catalog_item_instance_id: str
    spec: JSONObject
    provider_name: str
    approval_status: str
    replaces: str | None = None


@dataclass(frozen=True, slots=True)
class Instance:
    """What the flows and the audit read of one SPRM instance (the rest of what the SPRM
    sends is ignored: newer SPRMs add and rename fields). `deletion_status` is as the SPRM
    wrote it: SCHEDULED or PENDING_PROVIDER (being deleted), FAILED (a deferred deletion
    that failed: the instance stays), DELETED (gone); any letter case."""

    id: str
    status: str | None = None
    create_time: datetime | None = None  # None: the SPRM did not say
    deletion_status: str | None = None
    deleted: bool = False  # soft-deleted (`delete_time`), or deletion_status DELETED

    @property
    def being_deleted(self) -> bool:
        return (self.deletion_status or "").upper() in ("SCHEDULED", "PENDING_PROVIDER")

    @property
    def live(self) -> bool:
        """Neither gone nor being deleted: an instance a record may stand for."""
        return not self.deleted and not self.being_deleted


@dataclass(frozen=True, slots=True)
class Change:
    """A create or delete the SPRM made: whether it had the instance (False: a delete's
    404, already gone), and the instance's status if its answer gave one."""

    found: bool = True
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The Policy Engine's verdict on a spec: APPROVED or MODIFIED, and where to place it."""

    status: str
    provider: str
    spec: JSONObject


def rfc3339(moment: datetime) -> str:
    """Format as Go's RFC3339Nano does (UTC, `Z`, no trailing zeros), as the Go service did."""
    text = moment.astimezone(UTC).isoformat()[:-6]  # without "+00:00"
    if "." in text:  # microseconds, six digits: drop the trailing zeros
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def utcnow() -> datetime:
    return datetime.now(UTC)
