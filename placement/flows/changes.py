"""The placement flows that change resources: create, delete, rehydrate. No HTTP
requests or responses here.

Every flow that asks the SPRM to change an instance first makes a lifecycle move in the
store that takes a lease on the record (the moves of `tests/harness/lifecycle.py`), then
calls the SPRM, then records what the SPRM did. What the client is told is what the
records show right after (as the Go service did): a create or rehydrate answered with an
error leaves no new record. When the SPRM's answer leaves the outcome unknown (no
answer, a 5xx, a refusal after a try that may have acted), the record moves into the
pending undos before the error is sent; the reconciler deletes whatever the SPRM made
once it can no longer act (`reconciler.py`). A delete keeps its record when it fails, as
in Go.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from placement.errors import Kind, PlacementError, UpstreamError
from placement.model import (
    Change,
    Evaluation,
    Instance,
    JSONObject,
    Placement,
    ProviderStatus,
    Resource,
    State,
)
from placement.store import DuplicateId, Lease, ResourceStore, StoreError

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    def evaluate(self, spec: JSONObject) -> Evaluation: ...


class ResourceManager(Protocol):
    """The SPRM: provisions and removes service instances on providers. Failures are
    UpstreamError, whose `outcome_unknown` says whether the SPRM may have acted."""

    def create_instance(
        self, instance_id: str, provider: str, spec: JSONObject, may_exist: bool = False
    ) -> Change:
        """With `may_exist`, a 409 is a success (an earlier call may have made it)."""

    def get_instance(self, instance_id: str) -> Instance | None:
        """The instance (deleted ones too), or None when the SPRM has no trace of it."""

    def delete_instance(self, instance_id: str, deferred: bool = False) -> Change:
        """Deleted (or taken on); not found when the SPRM has no such instance."""


class PlacementService:
    def __init__(
        self,
        store: ResourceStore,
        policy: PolicyEngine,
        sprm: ResourceManager,
        lease_seconds: float,
        reconcile_interval: float = 30.0,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._policy = policy
        self._sprm = sprm
        self._lease_seconds = lease_seconds
        self._reconcile_interval = reconcile_interval
        self._new_id = new_id

    def get_resource(self, resource_id: str) -> Resource:
        resource = self._store.get(resource_id)
        if resource is None:
            raise PlacementError(Kind.NOT_FOUND, f"resource {resource_id} not found")
        return resource

    def create_resource(
        self, catalog_item_instance_id: str, spec: JSONObject, resource_id: str | None
    ) -> Resource:
        resource_id = resource_id or self._new_id()
        self._refuse_taken(resource_id, catalog_item_instance_id, spec)
        evaluation = self._evaluate(spec)
        placement = Placement(
            resource_id, catalog_item_instance_id, spec, evaluation.provider, evaluation.status
        )
        lease = self._lease()
        record, may_exist = self._begin_create(placement, lease)
        owner = record.id, lease.owner
        status = self._provision(
            record,
            evaluation,
            may_exist,
            undo=lambda: self._store.undo_create(*owner),
            abandon=lambda: self._store.abandon_create(*owner),
        )
        return self._finished(
            _with_status(record, status),
            lambda: self._store.finish_create(*owner, status),
            None,
        )[0]

    def delete_resource(self, resource_id: str) -> None:
        """SPRM first, then the record; an instance the SPRM no longer has is gone."""
        lease = self._lease()
        resumed = False
        if self._store.begin_delete(resource_id, lease) is None:
            resumed = self._store.resume_delete(resource_id, lease) is not None
            if not resumed:
                raise self._busy_or_absent(resource_id)
        try:
            if not self._sprm.delete_instance(resource_id).found:
                log.info("instance %s already gone from the SPRM; removing the record", resource_id)
        except UpstreamError as exc:
            self._after_failed_delete(resource_id, lease, exc, resumed)
        self._record(resource_id, lambda: self._store.finish_delete(resource_id, lease.owner))

    def _after_failed_delete(
        self, resource_id: str, lease: Lease, exc: UpstreamError, resumed: bool
    ) -> None:
        """Return if the instance is gone after all (an earlier delete of the record may
        have acted); else, when every try was refused, put the record back (READY) and
        raise the refusal. When a try may have acted, or an earlier delete of the record
        (`resumed`) and the look-up cannot say, leave the record DELETING under its lease
        for the reconciler and raise."""
        live = self._live(resource_id)
        if live is False:
            log.info("instance %s is gone although its delete failed (%s)", resource_id, exc)
            return
        if exc.outcome_unknown or (resumed and live is None):
            raise self._unknown_delete(resource_id, exc) from exc
        self._before_error(resource_id, lambda: self._store.undo_delete(resource_id, lease.owner))
        raise exc

    def rehydrate_resource(self, resource_id: str, new_resource_id: str) -> Resource:
        """Place the old spec again under a new id; retire the old one only once the
        new one is provisioned. On failure the old resource stays as it was (READY)."""
        old = self.get_resource(resource_id)
        if old.state is not State.READY:
            raise self._busy(old)
        self._refuse_taken(new_resource_id)
        evaluation = self._evaluate(old.spec)
        placement = Placement(
            new_resource_id,
            old.catalog_item_instance_id,
            old.spec,
            evaluation.provider,
            evaluation.status,
            replaces=old.id,
        )
        lease = self._lease()
        try:
            new = self._store.begin_rehydrate(placement, lease)
        except DuplicateId:
            raise self._taken(new_resource_id) from None
        if new is None:
            raise self._busy_or_absent(resource_id)
        moves = new.id, old.id, lease.owner
        status = self._provision(
            new,
            evaluation,
            False,
            undo=lambda: self._store.undo_rehydrate(*moves),
            abandon=lambda: self._store.abandon_rehydrate(*moves),
        )
        done, moved = self._finished(
            _with_status(new, status),
            lambda: self._store.finish_rehydrate(new.id, old.id, lease, status),
            old,
        )
        if moved:  # else the reconciler retires the old instance once it records the new one
            try:
                retire(self._store, self._sprm, old.id, lease.owner)
            except StoreError as exc:
                log.warning("replaced %s: the reconciler will finish retiring it: %s", old.id, exc)
        return done

    def _begin_create(self, placement: Placement, lease: Lease) -> tuple[Resource, bool]:
        """Record the placement (PROVISIONING), or take over the pending undo of the same
        create that failed (whose instance may exist); the record, and whether it may."""
        try:
            return self._store.begin_create(placement, lease), False
        except DuplicateId:
            resumed = self._store.resume_create(placement, lease)
        if resumed is None:
            raise self._taken(placement.id, placement.catalog_item_instance_id, placement.spec)
        log.info("create of %s takes over the undo of the same create, which failed", placement.id)
        return resumed, True

    def _evaluate(self, spec: JSONObject) -> Evaluation:
        evaluation = self._policy.evaluate(spec)
        if not evaluation.provider:
            raise PlacementError(Kind.POLICY_DEPENDENCY, "the policies selected no provider")
        return evaluation

    def _provision(
        self,
        record: Resource,
        evaluation: Evaluation,
        may_exist: bool,
        undo: Callable[[], bool],
        abandon: Callable[[], bool],
    ) -> str | None:
        """Have the SPRM create the instance. Return once it exists, with the status its
        answer gave, if any. Otherwise the record leaves `resources` before the error is
        raised: removed (`undo`) when every try was refused, moved into the pending undos
        (`abandon`) when one may have acted."""
        try:
            made = self._sprm.create_instance(
                record.id, evaluation.provider, evaluation.spec, may_exist
            )
            return made.status
        except UpstreamError as exc:
            if not exc.outcome_unknown:
                self._before_error(record.id, undo)
                raise
            if self._live(record.id):
                log.info("instance %s exists although its create failed (%s)", record.id, exc)
                return None
            self._before_error(record.id, abandon)
            raise self._not_created(record.id, exc) from exc

    def _before_error(self, resource_id: str, move: Callable[[], bool]) -> None:
        """Make the move that leaves the records as the error about to be sent says;
        when it cannot be made, the error would lie: 503, retry later."""
        try:
            if move():
                return
            why = "the operation's lease ran out and the reconciler has taken it over"
        except StoreError as exc:
            log.error("%s: cannot record the failed operation: %s", resource_id, exc)
            why = "the database did not record the outcome"
        raise PlacementError(
            Kind.UNAVAILABLE,
            f"resource {resource_id}: the operation failed and {why}; retry later",
            retry_after=self._settle_seconds(self._lease_seconds),
        )

    def _live(self, instance_id: str) -> bool | None:
        """Whether the SPRM has the instance now, not being deleted; None when it cannot
        say."""
        try:
            found = self._sprm.get_instance(instance_id)
        except UpstreamError as exc:
            log.warning("cannot learn whether instance %s exists: %s", instance_id, exc)
            return None
        return found is not None and found.live

    def _finished(
        self, record: Resource, finish: Callable[[], bool], replaced: Resource | None
    ) -> tuple[Resource, bool]:
        """Record that the instance exists: the resource as the client is told it, and
        whether this operation made the move. When the database fails, the SPRM still
        acted: a success, which the reconciler records once the lease has run out."""
        try:
            if finish():
                return replace(record, state=State.READY, replaces=None), True
        except StoreError as exc:
            log.warning("%s: the SPRM acted; the reconciler records it: %s", record.id, exc)
            return replace(record, state=State.READY, replaces=None), False
        return self._settled(record, replaced), False

    def _settled(self, record: Resource, replaced: Resource | None) -> Resource:
        """The lease ran out before the SPRM's answer was recorded, and the reconciler
        took the record over: the records as they now stand decide what the client is
        told. The new record READY is a success; gone, with the resource it was to
        replace (if any) READY as it was, the operation was undone: the instance the SPRM
        made is deleted and the client told so; anything else is still being settled (or
        was changed since by another operation): retry later."""
        current = self._store.get(record.id)
        if current is not None and current.state is State.READY and _same(current, record):
            log.info("%s was settled READY by the reconciler", record.id)
            return current
        if current is not None or not self._still_ready(replaced):
            raise PlacementError(
                Kind.UNAVAILABLE,
                f"the SPRM answered after the lease on {record.id} ran out; the reconciler"
                " has settled it, or is settling it: GET it, or retry later",
                retry_after=self._settle_seconds(self._lease_seconds),
            )
        self._store.retire_instance(record.id, self._lease())
        raise PlacementError(
            Kind.INTERNAL,
            f"the SPRM answered after the lease on {record.id} ran out, and the record was"
            f" settled without it: resource {record.id} was not created, and its instance"
            " is deleted",
        )

    def _record(self, resource_id: str, finish: Callable[[], bool]) -> None:
        """Record what the SPRM did. The SPRM has acted, so the operation succeeded even
        when the record cannot follow now (the database is away, or the lease ran out):
        the reconciler brings it in line once the lease has run out."""
        try:
            if not finish():
                log.warning("the lease on %s ran out; the reconciler settles it", resource_id)
        except StoreError as exc:
            log.warning("%s: the SPRM acted; the reconciler records it: %s", resource_id, exc)

    def _still_ready(self, replaced: Resource | None) -> bool:
        """Whether the resource a rehydration was to replace is READY as it was (True
        when there is none)."""
        if replaced is None:
            return True
        current = self._store.get(replaced.id)
        return current is not None and current.state is State.READY and _same(current, replaced)

    def _refuse_taken(
        self, resource_id: str, catalog_id: str | None = None, spec: JSONObject | None = None
    ) -> None:
        """Refuse an id in use before asking the Policy Engine for a doomed evaluation."""
        if self._store.get(resource_id) is not None:
            raise self._taken(resource_id, catalog_id, spec)

    def _taken(
        self, resource_id: str, catalog_id: str | None = None, spec: JSONObject | None = None
    ) -> PlacementError:
        """409 for an id in use; a retry of the same create learns how its resource stands."""
        existing = self._store.get(resource_id)
        if existing is None:
            return self._pending(resource_id)
        if (existing.catalog_item_instance_id, existing.spec) != (catalog_id, spec):
            detail = f"resource id {resource_id} is already in use"
        elif existing.state is State.READY:
            detail = f"resource {resource_id} already exists with this spec and is READY"
        elif existing.state is State.PROVISIONING:
            detail = (
                f"resource {resource_id} with this spec is still being provisioned; its outcome"
                f" is settled within {self._lease_seconds:g} s: GET it to follow"
            )
        else:
            return self._busy(existing)
        return PlacementError(Kind.RESOURCE_CONFLICT, detail)

    def _pending(self, resource_id: str) -> PlacementError:
        """409 for an id whose instance is still to be deleted (a replaced resource, or a
        create that failed), with when to try again."""
        pending = self._store.pending_deletion(resource_id)
        seconds = self._settle_seconds(0.0 if pending is None else pending.seconds_left)
        if pending is None:
            doing = "was just in use"
        elif pending.undo:
            doing = "is in use by a create that failed, whose instance is being undone"
        else:
            doing = "is in use by an instance still being deleted"
        return PlacementError(
            Kind.RESOURCE_CONFLICT,
            f"resource id {resource_id} {doing}; retry in {seconds} s",
            retry_after=seconds,
        )

    def _settle_seconds(self, lease_left: float) -> int:
        """Seconds after which work that waits for a lease and a reconciler round is
        done."""
        return max(1, math.ceil(lease_left + self._reconcile_interval))

    def _busy_or_absent(self, resource_id: str) -> PlacementError:
        current = self._store.get(resource_id)
        if current is None:
            return PlacementError(Kind.NOT_FOUND, f"resource {resource_id} not found")
        return self._busy(current)

    def _busy(self, resource: Resource) -> PlacementError:
        doing = {
            State.PROVISIONING: "being provisioned",
            State.DELETING: "being deleted",
            State.REHYDRATING: "being rehydrated",
            State.READY: "being changed",
        }.get(resource.state, "in an operation of a newer version")
        return PlacementError(
            Kind.RESOURCE_CONFLICT, f"resource {resource.id} is busy ({doing}); retry later"
        )

    def _not_created(self, resource_id: str, exc: UpstreamError) -> PlacementError:
        return PlacementError(
            Kind.INTERNAL,
            f"the SPRM did not confirm creating {resource_id} ({exc.summary}); resource"
            f" {resource_id} was not created, and anything the SPRM made of it is deleted",
        )

    def _unknown_delete(self, resource_id: str, exc: UpstreamError) -> PlacementError:
        return PlacementError(
            Kind.INTERNAL,
            f"the SPRM did not confirm deleting {resource_id} ({exc.summary}); the outcome is"
            f" settled within {self._lease_seconds:g} s: GET the resource to follow",
        )

    def _lease(self) -> Lease:
        return Lease(uuid.uuid4().hex, self._lease_seconds)


def _same(current: Resource, record: Resource) -> bool:
    return (current.catalog_item_instance_id, current.spec) == (
        record.catalog_item_instance_id,
        record.spec,
    )


def retire(store: ResourceStore, sprm: ResourceManager, resource_id: str, owner: str) -> bool:
    """Delete an instance no record stands for any more (a replaced resource's, or one a
    failed create may have made), deferred: the SPRM retries failures on the provider
    itself; then forget the pending deletion once the SPRM has deleted it or no longer
    has it. Any failure leaves it, under `owner`'s lease, for the reconciler to try again
    once the lease has run out: whether the pending deletion was forgotten."""
    try:
        sprm.delete_instance(resource_id, deferred=True)
    except UpstreamError as exc:
        log.warning("deferred delete of %s failed; tried again later: %s", resource_id, exc)
        return False
    return store.finish_retire(resource_id, owner)


def _with_status(record: Resource, status: str | None) -> Resource:
    """The record as it reads once the create is recorded: with the status the SPRM's
    answer gave, as of the record's creation (until the provider's events say more)."""
    if status is None:
        return record
    return replace(record, status=ProviderStatus(status, None, record.create_time))
