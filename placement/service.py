"""The placement flows: create, delete, rehydrate, read. No HTTP requests or responses here.

Every flow that asks the SPRM to change an instance first makes a lifecycle move in the
store that takes a lease on the record (`lifecycle.py`), then calls the SPRM, then
records what the SPRM did. When the SPRM's answer leaves the outcome unknown (no answer,
5xx, an unreadable success), the record stays as it is under the lease: only once the
lease has run out, when the SPRM can no longer act on the request, does the reconciler
ask the SPRM and decide (`reconciler.py`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from placement.errors import Kind, PlacementError
from placement.model import Evaluation, JSONObject, Placement, Resource, State
from placement.store import DuplicateId, Lease, ResourceStore, StoreError
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    def evaluate(self, spec: JSONObject) -> Evaluation: ...


class ResourceManager(Protocol):
    """The SPRM: provisions and removes service instances on providers. Failures are
    UpstreamError, whose `outcome_unknown` says whether the SPRM may have acted."""

    def create_instance(self, instance_id: str, provider: str, spec: JSONObject) -> None: ...

    def get_instance(self, instance_id: str) -> JSONObject | None:
        """The instance, or None when the SPRM has none by this id."""

    def delete_instance(self, instance_id: str, deferred: bool = False) -> bool:
        """True once deleted, False when the SPRM has no such instance (404)."""


class PlacementService:
    def __init__(
        self,
        store: ResourceStore,
        policy: PolicyEngine,
        sprm: ResourceManager,
        lease_seconds: float,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._policy = policy
        self._sprm = sprm
        self._lease_seconds = lease_seconds
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
        try:
            record = self._store.begin_create(placement, lease)
        except DuplicateId:
            raise self._taken(resource_id, catalog_item_instance_id, spec) from None
        self._provision(record, evaluation, lambda: self._store.undo_create(record.id, lease.owner))
        self._record(record.id, lambda: self._store.finish_create(record.id, lease.owner))
        return replace(record, state=State.READY)

    def delete_resource(self, resource_id: str) -> None:
        """SPRM first, then the record; an instance the SPRM no longer has is gone."""
        lease = self._lease()
        if self._store.begin_delete(resource_id, lease) is None:
            raise self._busy_or_absent(resource_id)
        try:
            if not self._sprm.delete_instance(resource_id):
                log.info("instance %s already gone from the SPRM; removing the record", resource_id)
        except UpstreamError as exc:
            self._after_failed_delete(resource_id, lease, exc)
        self._record(resource_id, lambda: self._store.finish_delete(resource_id, lease.owner))

    def _after_failed_delete(self, resource_id: str, lease: Lease, exc: UpstreamError) -> None:
        """Return if the instance is gone after all (this call, or an earlier delete of
        the record, acted); else put the record back (refused, and the instance is there)
        or leave it under its lease for the reconciler (cannot tell), and raise."""
        exists = self._exists(resource_id)
        if exists is False:
            log.info("instance %s is gone although its delete failed (%s)", resource_id, exc)
            return
        if exc.outcome_unknown:
            raise self._unknown("deleting", resource_id, exc) from exc
        if exists:
            self._quietly(resource_id, lambda: self._store.undo_delete(resource_id, lease.owner))
        raise exc

    def rehydrate_resource(self, resource_id: str, new_resource_id: str) -> Resource:
        """Place the old spec again under a new id; retire the old one only once the
        new one is provisioned. On failure the old resource stays as it was."""
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
        self._provision(
            new, evaluation, lambda: self._store.undo_rehydrate(new.id, old.id, lease.owner)
        )
        if self._record(new.id, lambda: self._store.finish_rehydrate(new.id, old.id, lease)):
            try:
                retire(self._store, self._sprm, old.id, lease.owner)
            except StoreError as exc:
                log.warning("replaced %s: the reconciler will finish retiring it: %s", old.id, exc)
        return replace(new, state=State.READY, replaces=None)

    def _evaluate(self, spec: JSONObject) -> Evaluation:
        evaluation = self._policy.evaluate(spec)
        if not evaluation.provider:
            raise PlacementError(Kind.POLICY_DEPENDENCY, "the policies selected no provider")
        return evaluation

    def _provision(
        self, record: Resource, evaluation: Evaluation, undo: Callable[[], bool]
    ) -> None:
        """Have the SPRM create the instance. Return once it exists; on a refusal undo the
        record and raise; when the outcome is unknown, leave the record under its lease
        for the reconciler and raise."""
        try:
            self._sprm.create_instance(record.id, evaluation.provider, evaluation.spec)
            return
        except UpstreamError as exc:
            if not exc.outcome_unknown:
                self._quietly(record.id, undo)
                raise
            if self._exists(record.id):
                log.info("instance %s exists although its create failed (%s)", record.id, exc)
                return
            raise self._unknown("creating", record.id, exc) from exc

    def _exists(self, instance_id: str) -> bool | None:
        """Whether the SPRM has the instance now; None when it cannot say."""
        try:
            return self._sprm.get_instance(instance_id) is not None
        except UpstreamError as exc:
            log.warning("cannot learn whether instance %s exists: %s", instance_id, exc)
            return None

    def _record(self, resource_id: str, finish: Callable[[], bool]) -> bool:
        """Record what the SPRM did; whether this operation did. The SPRM has acted, so the
        operation succeeded even when the record cannot follow now (the database is away,
        or the lease ran out): the reconciler brings it in line once the lease has run out."""
        try:
            if finish():
                return True
            log.warning("the lease on %s ran out; the reconciler settles the record", resource_id)
        except StoreError as exc:
            log.warning(
                "%s: the SPRM acted; the reconciler updates the record: %s", resource_id, exc
            )
        return False

    def _quietly(self, resource_id: str, undo: Callable[[], bool]) -> None:
        """Undo a record after the SPRM refused; the caller's error is what is raised."""
        try:
            undo()
        except StoreError as exc:
            log.error("could not undo record %s (the reconciler will): %s", resource_id, exc)

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
            detail = f"resource id {resource_id} is in use by a replaced resource being deleted"
        elif (existing.catalog_item_instance_id, existing.spec) != (catalog_id, spec):
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

    def _unknown(self, doing: str, resource_id: str, exc: UpstreamError) -> PlacementError:
        return PlacementError(
            Kind.INTERNAL,
            f"the SPRM did not confirm {doing} {resource_id} ({exc.summary}); the outcome is"
            f" settled within {self._lease_seconds:g} s: GET the resource to follow",
        )

    def _lease(self) -> Lease:
        return Lease(uuid.uuid4().hex, self._lease_seconds)


def retire(store: ResourceStore, sprm: ResourceManager, resource_id: str, owner: str) -> bool:
    """Delete a replaced resource's instance (deferred: the SPRM retries failures on the
    provider itself) and forget the pending deletion once the SPRM has deleted it or no
    longer has it. Any failure leaves it, under `owner`'s lease, for the reconciler to try
    again once the lease has run out: whether the pending deletion was forgotten."""
    try:
        sprm.delete_instance(resource_id, deferred=True)
    except UpstreamError as exc:
        log.warning(
            "deferred delete of replaced %s failed; tried again later: %s", resource_id, exc
        )
        return False
    return store.finish_retire(resource_id, owner)
