"""The placement flows: create, delete, rehydrate, read. No HTTP requests or responses here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from placement import pagination
from placement.errors import Kind, PlacementError
from placement.model import Evaluation, JSONObject, Resource, utcnow
from placement.store import DuplicateId, ResourceStore
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)


class PolicyEngine(Protocol):
    def evaluate(self, spec: JSONObject) -> Evaluation: ...


class ResourceManager(Protocol):
    """The SPRM: provisions and removes service instances on providers."""

    def create_instance(self, instance_id: str, provider: str, spec: JSONObject) -> None: ...

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
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._policy = policy
        self._sprm = sprm
        self._new_id = new_id
        self._clock = clock

    def check_health(self) -> None:
        self._store.ping()

    def list_resources(self, provider: str | None, page_size: int, page_token: str | None) -> Page:
        after = pagination.decode(page_token, provider) if page_token else None
        resources, cursor = self._store.list(provider, page_size, after)
        token = pagination.encode(cursor, provider) if cursor else None
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
        return self._place(resource_id, catalog_item_instance_id, spec)

    def delete_resource(self, resource_id: str) -> None:
        self.get_resource(resource_id)
        try:
            self._sprm.delete_instance(resource_id)
        except UpstreamError as exc:
            if exc.status != 404:
                raise
            log.info("instance %s already gone from the SPRM; removing the record", resource_id)
        self._store.delete(resource_id)

    def rehydrate_resource(self, resource_id: str, new_resource_id: str) -> Resource:
        old = self.get_resource(resource_id)
        self._ensure_unused(new_resource_id)
        new = self._place(new_resource_id, old.catalog_item_instance_id, old.spec)
        try:
            self._sprm.delete_instance(resource_id, deferred=True)
        except UpstreamError as exc:
            log.warning("deferred delete of old instance %s failed: %s", resource_id, exc)
        self._store.delete(resource_id)
        return new

    def _ensure_unused(self, resource_id: str) -> None:
        if self._store.get(resource_id) is not None:
            raise _conflict(resource_id)

    def _place(self, resource_id: str, catalog_item_instance_id: str, spec: JSONObject) -> Resource:
        """Evaluate, record (original spec), provision (evaluated spec); undo the record
        if provisioning fails."""
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
        )
        try:
            self._store.insert(resource)
        except DuplicateId:
            raise _conflict(resource_id) from None
        try:
            self._sprm.create_instance(resource_id, evaluation.provider, evaluation.spec)
        except BaseException:
            self._store.delete(resource_id)
            raise
        return resource


def _conflict(resource_id: str) -> PlacementError:
    return PlacementError(Kind.RESOURCE_CONFLICT, f"resource id {resource_id} is already in use")
