"""The drift audit: do our records and the SPRM's instances agree?

Three kinds of drift:
- orphaned_instances: instances the SPRM holds that no record (nor a pending deletion or
  undo) names, created before the grace period (or without a create_time); not those the
  SPRM is deleting (`deletion_status` SCHEDULED or PENDING_PROVIDER) or has deleted
  (DELETED). Assumes this service created every instance there.
- missing_instances: READY records created before the grace period whose instance the
  SPRM does not list (gone, only soft-deleted, or DELETED).
- stuck_operations: records in flight (any state but READY), pending deletions and
  undos, past their lease.

The scan reads the SPRM page by page while the service works; it is not a snapshot. So
each instance is checked against the records as soon as its page arrives, a record
counts as missing only if it was old enough to have its instance before the scan began,
and every repair checks its one item again (the SPRM's word on it, the record under a
lease) and leaves it alone if it changed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from placement.errors import UpstreamError
from placement.model import RESOURCE_ID_PATTERN, Change, Instance
from placement.store.drift import DriftStore
from placement.upstream.sprm import InstancePage

KINDS = ("orphaned_instances", "missing_instances", "stuck_operations", "deleted_by_provider")
PAGE_SIZE = 100  # the most the SPRM's list gives at once
_RESOURCE_ID = re.compile(RESOURCE_ID_PATTERN)


def is_resource_id(text: str) -> bool:
    """Whether the API's id pattern matches the whole of `text` (with `re.match`, `$`
    would also match before a final newline)."""
    return _RESOURCE_ID.fullmatch(text) is not None


class Instances(Protocol):
    """The SPRM, as the audit uses it."""

    def list_instances(self, page_size: int, page_token: str | None) -> InstancePage: ...

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def delete_instance(self, instance_id: str, deferred: bool = False) -> Change: ...


class AuditError(Exception):
    """The audit cannot finish: the SPRM answers what it should not."""


@dataclass(frozen=True, slots=True)
class Findings:
    """What one scan found (ids in order), how much it checked, and its cut-off time
    (the database's clock at the start, less the grace period)."""

    orphaned_instances: list[str]
    missing_instances: list[str]
    stuck_operations: list[str]
    # READY records whose provider reported their instance DELETED (a status event) while
    # the SPRM still lists it; reported, never removed (an id also missing at the SPRM is
    # reported as missing only).
    deleted_by_provider: list[str]
    instances: int
    records: int
    cutoff: datetime
    # Records whose id the API refuses (stored before ids were matched whole, such as
    # "nl-1\n"): nobody can read or delete them through the API.
    invalid_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in KINDS}

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {kind: list(getattr(self, kind)) for kind in KINDS}
        checked = {"instances": self.instances, "records": self.records}
        return found | {"invalid_ids": list(self.invalid_ids), "checked": checked}


def scan(
    drift: DriftStore,
    sprm: Instances,
    grace: float,
    page_size: int = PAGE_SIZE,
    on_page: Callable[[], None] = lambda: None,
) -> Findings:
    """Read every SPRM instance and every record once, in bounded memory."""
    cutoff = drift.clock() - timedelta(seconds=grace)
    orphaned: list[str] = []
    with drift.instance_table() as table:
        token: str | None = None
        page = 0
        while True:
            listed = sprm.list_instances(page_size, token)
            rows = [
                (each.id, _may_be_orphan(each, cutoff))
                for each in listed.instances
                if not each.deleted  # gone (DELETED): its record is missing it
            ]
            orphaned += table.add(page, rows)
            on_page()
            if listed.next_page_token is None:
                break
            if listed.next_page_token == token:
                raise AuditError("the SPRM's list answered the same page token twice")
            token, page = listed.next_page_token, page + 1
        missing = table.missing(cutoff)
        instances = table.listed()
    gone = set(missing)
    return Findings(
        orphaned_instances=sorted(orphaned),
        missing_instances=missing,
        stuck_operations=drift.stuck_operations(),
        deleted_by_provider=[i for i in drift.deleted_by_provider() if i not in gone],
        instances=instances,
        records=drift.record_count(),
        cutoff=cutoff,
        invalid_ids=drift.invalid_ids(is_resource_id),
    )


def _may_be_orphan(instance: Instance, cutoff: datetime) -> bool:
    """Old enough, and not being deleted by the SPRM (SCHEDULED, PENDING_PROVIDER; a
    FAILED deletion counts)."""
    old = instance.create_time is None or instance.create_time < cutoff
    return old and instance.live


@dataclass
class Repairs:
    """Repairs of one scan's findings, each item checked again first. `say` gets one
    line per item; the lists are what is still drift afterwards."""

    drift: DriftStore
    sprm: Instances
    findings: Findings
    lease_seconds: float
    say: Callable[[str], None]
    owner: str = field(default_factory=lambda: f"audit-{uuid.uuid4().hex}")

    def delete_orphans(self, max_deletes: int) -> list[str]:
        """Delete orphaned instances from the SPRM, at most `max_deletes`; the ids still
        orphaned."""
        remaining: list[str] = []
        deleted = 0
        for instance_id in self.findings.orphaned_instances:
            if not is_resource_id(instance_id):
                self.say(f"kept orphaned instance {instance_id!r}: not a resource id")
                remaining.append(instance_id)
            elif deleted >= max_deletes:
                self.say(f"kept orphaned instance {instance_id}: --max-deletes {max_deletes}")
                remaining.append(instance_id)
            else:
                outcome = self._delete_orphan(instance_id)
                deleted += outcome == "deleted"
                remaining += [instance_id] if outcome == "failed" else []
        return remaining

    def _delete_orphan(self, instance_id: str) -> str:
        try:
            instance = self.sprm.get_instance(instance_id)
            why_not = self._still_orphaned(instance_id, instance)
            if why_not:
                self.say(f"kept orphaned instance {instance_id}: {why_not}")
                return "changed"
            if not self.sprm.delete_instance(instance_id).found:
                self.say(f"kept orphaned instance {instance_id}: already gone")
                return "changed"
        except UpstreamError as exc:
            self.say(f"failed to delete orphaned instance {instance_id}: {exc}")
            return "failed"
        self.say(f"deleted orphaned instance {instance_id}")
        return "deleted"

    def _still_orphaned(self, instance_id: str, instance: Instance | None) -> str:
        """Why the instance is no longer an orphan to delete ("" if it still is)."""
        if instance is None or instance.deleted:
            return "already gone"
        if instance.being_deleted:
            return "the SPRM is deleting it"
        if instance.create_time is not None and instance.create_time >= self.findings.cutoff:
            return "created again since the scan began"
        if self.drift.has_record(instance_id):
            return "it has a record (or a pending deletion) now"
        return ""

    def remove_invalid(self) -> list[str]:
        """Remove the records whose id the API refuses, and their instances; the ids
        still recorded."""
        return [rid for rid in self.findings.invalid_ids if not self._remove_invalid(rid)]

    def _remove_invalid(self, resource_id: str) -> bool:
        """False if the record is still there. Checked again first: READY and free (a
        lease keeps operations off it), and its instance deleted before the record."""
        shown = repr(resource_id)  # one line whatever the id holds
        lease = (self.owner, self.lease_seconds, self.findings.cutoff)
        if not self.drift.claim_ready(resource_id, *lease):
            if self.drift.has_record(resource_id):
                self.say(f"kept record {shown}: busy, or not READY")
                return False
            self.say(f"kept record {shown}: already gone")
            return True
        try:
            deleted = self.sprm.delete_instance(resource_id).found
        except UpstreamError as exc:
            self.drift.unclaim(resource_id, self.owner)
            self.say(f"failed to delete the instance of record {shown}: {exc}")
            return False
        if not self.drift.forget(resource_id, self.owner):
            self.say(f"failed to remove record {shown}: its lease was taken over")
            return False
        instance = "its instance" if deleted else "no instance (already gone)"
        self.say(f"removed record {shown} and {instance}: the API refuses its id")
        return True

    def forget_missing(self) -> list[str]:
        """Remove READY records whose instance is gone; the ids still missing."""
        remaining: list[str] = []
        for resource_id in self.findings.missing_instances:
            if not self._forget(resource_id):
                remaining.append(resource_id)
        return remaining

    def _forget(self, resource_id: str) -> bool:
        """False if the record is still missing its instance."""
        claimed = self.drift.claim_ready(
            resource_id, self.owner, self.lease_seconds, self.findings.cutoff
        )
        if not claimed:
            self.say(f"kept record {resource_id}: it changed (gone, busy or no longer READY)")
            return True
        try:
            instance = self.sprm.get_instance(resource_id)
        except UpstreamError as exc:
            self.drift.unclaim(resource_id, self.owner)
            self.say(f"failed to check record {resource_id}: {exc}")
            return False
        if instance is not None and not instance.deleted:
            self.drift.unclaim(resource_id, self.owner)
            self.say(f"kept record {resource_id}: its instance exists")
            return True
        if not self.drift.forget(resource_id, self.owner):
            self.say(f"failed to forget record {resource_id}: its lease was taken over")
            return False
        self.say(f"forgot record {resource_id}: its instance is gone")
        return True
