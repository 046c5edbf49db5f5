"""The placement flows: create, delete, rehydrate, read. No HTTP requests or responses here.

Every flow that calls the SPRM first records where the resource stands (PROVISIONING,
DELETING, REHYDRATING) under a lease, then settles the record by what the SPRM did.
When that cannot be known (timeout, reset, 5xx after the last retry, a crash), the
record is left for the reconciler (`reconciler.py`), which asks the SPRM and settles it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from placement.errors import Kind, PlacementError
from placement.model import Evaluation, JSONObject, Resource, State, utcnow
from placement.pagination import KEY_SETTING, PageTokens, new_key
from placement.store import DuplicateId, Lease, ResourceStore, StoreError
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    def evaluate(self, spec: JSONObject) -> Evaluation: ...


class ResourceManager(Protocol):
    """The SPRM: provisions and removes service instances on providers."""

    def create_instance(self, instance_id: str, provider: str, spec: JSONObject) -> None: ...

    def get_instance(self, instance_id: str) -> JSONObject | None: ...

    def delete_instance(self, instance_id: str, deferred: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Page:
    resources: list[Resource]
    next_page_token: str | None


class PlacementService:
    def __init__(
        self,
        store: ResourceStore,
        policy: PolicyEngine,
        sprm: ResourceManager,
        lease_seconds: float,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: Callable[[], datetime] = utcnow,
        page_max_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._sprm = sprm
        self._lease_time = timedelta(seconds=lease_seconds)
        self._new_id = new_id
        self._clock = clock
        self._page_max_bytes = page_max_bytes
        self._tokens = PageTokens(lambda: store.setting(KEY_SETTING, new_key))

    def check_health(self) -> None:
        self._store.ping()

    def list_resources(self, provider: str | None, page_size: int, page_token: str | None) -> Page:
        after = self._tokens.decode(page_token, provider) if page_token else None
        resources, cursor = self._store.list_page(provider, page_size, after, self._page_max_bytes)
        token = self._tokens.encode(cursor, provider) if cursor else None
        return Page(resources, token)

    def get_resource(self, resource_id: str) -> Resource:
        resource = self._store.get(resource_id)
        if resource is None:
            raise PlacementError(Kind.NOT_FOUND, f"resource {resource_id} not found")
        return resource

    def create_resource(
        self, catalog_item_instance_id: str, spec: JSONObject, resource_id: str | None
    ) -> Resource:
        resource_id = resource_id or self._new_id()
        self._ensure_unused(resource_id)
        lease = self._lease()
        resource = self._place(resource_id, catalog_item_instance_id, spec, lease)
        self._finish(resource_id, lease)
        return replace(resource, state=State.READY)

    def delete_resource(self, resource_id: str) -> None:
        """SPRM first, then the record; an instance the SPRM no longer has is gone."""
        lease = self._lease()
        self._claim(resource_id, State.DELETING, lease)
        try:
            self._sprm.delete_instance(resource_id)
        except UpstreamError as exc:
            if exc.status != 404:
                self._settle(
                    resource_id, lease, State.DELETING if exc.outcome_unknown else State.READY
                )
                raise
            log.info("instance %s already gone from the SPRM; removing the record", resource_id)
        self._store.delete(resource_id, lease.owner)

    def rehydrate_resource(self, resource_id: str, new_resource_id: str) -> Resource:
        """Place the old spec again under a new id; retire the old one only once the
        new one is provisioned. On failure the old resource stays as it was."""
        self._ensure_unused(new_resource_id)
        lease = self._lease()
        old = self._claim(resource_id, State.REHYDRATING, lease)
        try:
            new = self._place(
                new_resource_id, old.catalog_item_instance_id, old.spec, lease, replaces=old.id
            )
        except BaseException:
            self._abandon_rehydration(resource_id, lease)
            raise
        try:
            retire_replaced(self._store, self._sprm, resource_id)
        except StoreError as exc:
            # The new resource is provisioned: the reconciler finishes the rest.
            log.warning("rehydration of %s to be finished by the reconciler: %s", resource_id, exc)
            return new
        self._finish(new_resource_id, lease)
        return replace(new, state=State.READY, replaces=None)

    def _abandon_rehydration(self, resource_id: str, lease: Lease) -> None:
        """The old resource goes back to READY, unless its replacement was left to the
        reconciler, which then finishes or undoes the whole rehydration."""
        try:
            left = self._store.replacement_of(resource_id) is not None
        except StoreError:
            return  # the lease expires; the reconciler decides
        self._settle(resource_id, lease, State.REHYDRATING if left else State.READY)

    def _place(
        self,
        resource_id: str,
        catalog_item_instance_id: str,
        spec: JSONObject,
        lease: Lease,
        replaces: str | None = None,
    ) -> Resource:
        """Evaluate, record (original spec, PROVISIONING), provision (evaluated spec)."""
        evaluation = self._policy.evaluate(spec)
        if not evaluation.provider:
            raise PlacementError(Kind.POLICY_DEPENDENCY, "the policies selected no provider")
        now = self._clock()
        resource = Resource(
            id=resource_id,
            catalog_item_instance_id=catalog_item_instance_id,
            spec=spec,
            provider_name=evaluation.provider,
            approval_status=evaluation.status,
            create_time=now,
            update_time=now,
            state=State.PROVISIONING,
            replaces=replaces,
        )
        try:
            self._store.insert(resource, lease)
        except DuplicateId:
            raise _conflict(resource_id) from None
        try:
            self._sprm.create_instance(resource_id, evaluation.provider, evaluation.spec)
        except UpstreamError as exc:
            self._after_failed_create(resource_id, lease, exc)
        return resource

    def _after_failed_create(self, resource_id: str, lease: Lease, exc: UpstreamError) -> None:
        """Return if the instance exists after all; else undo the record (the SPRM
        surely did nothing) or leave it to the reconciler (cannot tell), and raise."""
        if exc.outcome_unknown:
            try:
                exists = self._sprm.get_instance(resource_id) is not None
            except UpstreamError:
                log.warning("outcome of creating %s unknown; left to the reconciler", resource_id)
                self._settle(resource_id, lease, State.PROVISIONING)
                raise exc from None
            if exists:
                log.info("instance %s exists although its create failed (%s)", resource_id, exc)
                return
        self._undo(resource_id, lease)
        raise exc

    def _claim(self, resource_id: str, state: State, lease: Lease) -> Resource:
        """Take a READY record for an operation; raise if absent or busy."""
        now = self._clock()
        claimed = self._store.claim(resource_id, State.READY, state, lease, now)
        if claimed is None and state is State.DELETING:
            # A delete abandoned by a crashed or failed caller may be taken over.
            claimed = self._store.claim(resource_id, State.DELETING, state, lease, now)
        if claimed is not None:
            return claimed
        current = self.get_resource(resource_id)
        raise PlacementError(
            Kind.RESOURCE_CONFLICT,
            f"resource {resource_id} is busy ({current.state.value.lower()}); retry later",
        )

    def _ensure_unused(self, resource_id: str) -> None:
        if self._store.get(resource_id) is not None:
            raise _conflict(resource_id)

    def _finish(self, resource_id: str, lease: Lease) -> None:
        """Mark a provisioned resource READY. The instance exists, so if the database
        is away now, the operation succeeded all the same: the reconciler marks it."""
        try:
            released = self._store.release(resource_id, lease.owner, State.READY)
        except StoreError as exc:
            log.warning(
                "%s is provisioned; the reconciler will mark it ready: %s", resource_id, exc
            )
            return
        if not released:
            raise PlacementError(
                Kind.INTERNAL, f"lost track of resource {resource_id}; the reconciler settles it"
            )

    def _undo(self, resource_id: str, lease: Lease) -> None:
        try:
            self._store.delete(resource_id, lease.owner)
        except StoreError as exc:
            log.error("could not undo record %s (the reconciler will): %s", resource_id, exc)

    def _settle(self, resource_id: str, lease: Lease, state: State) -> None:
        """End the lease with `state`; on a database failure the lease simply expires
        and the reconciler takes over, so the caller's own error is what is raised."""
        try:
            self._store.release(resource_id, lease.owner, state)
        except StoreError as exc:
            log.error("could not settle %s as %s: %s", resource_id, state.value, exc)

    def _lease(self) -> Lease:
        return Lease(uuid.uuid4().hex, self._clock() + self._lease_time)


def retire_replaced(store: ResourceStore, sprm: ResourceManager, resource_id: str) -> None:
    """The end of a rehydration: delete the old instance (deferred in the SPRM: a
    failure there is logged, not returned) and the old record."""
    try:
        sprm.delete_instance(resource_id, deferred=True)
    except UpstreamError as exc:
        log.warning("deferred delete of replaced instance %s failed: %s", resource_id, exc)
    store.retire(resource_id)


def _conflict(resource_id: str) -> PlacementError:
    return PlacementError(Kind.RESOURCE_CONFLICT, f"resource id {resource_id} is already in use")
