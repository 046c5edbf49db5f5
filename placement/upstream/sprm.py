"""The SPRM client: create, read, list and delete service instances, over the generated
`sprm_api` code."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from placement.config import RetryPolicy, Upstream
from placement.errors import Kind
from placement.model import JSONObject
from placement.upstream.errors import Translation, UpstreamError
from placement.upstream.retry import Retrier
from placement.upstream.sprm_api.api.default import (
    create_instance,
    delete_instance,
    get_instance,
    list_instances,
)
from placement.upstream.sprm_api.client import Client
from placement.upstream.sprm_api.models import ServiceTypeInstance, ServiceTypeInstanceList
from placement.upstream.sprm_api.types import UNSET, Unset
from placement.upstream.transport import call_headers, failure, generated_client, send

log = logging.getLogger(__name__)

# The SPRM's refusals a client can act on; any other failure is internal. (A 404 from
# a delete is no failure: the instance is already gone.)
ERRORS = Translation(
    "sprm",
    "the SPRM",
    {
        400: Kind.VALIDATION,
        404: Kind.NOT_FOUND,
        409: Kind.RESOURCE_CONFLICT,
        422: Kind.PROVIDER_ERROR,
    },
    notes={404: "not on delete: there it means already gone"},
)


@dataclass(frozen=True, slots=True)
class InstanceState:
    """What the drift audit needs to know of one SPRM instance."""

    id: str
    create_time: datetime | None  # None: the SPRM did not say
    deletion_status: str | None  # SCHEDULED or FAILED: a deletion the SPRM queued
    deleted: bool = False  # soft-deleted (only seen with show_deleted)


@dataclass(frozen=True, slots=True)
class InstancePage:
    instances: list[InstanceState]
    next_page_token: str | None  # None on the last page


class SprmClient:
    def __init__(
        self, upstream: Upstream, retry: RetryPolicy, pool_size: int, forward_auth: bool = False
    ) -> None:
        self._forward_auth = forward_auth
        self._client = generated_client(Client, upstream, pool_size)
        self._retry = Retrier(retry)

    def close(self) -> None:
        self._client.close()

    def create_instance(self, instance_id: str, provider: str, spec: JSONObject) -> None:
        """Provision `spec` on `provider` under our resource id (201 is success). A
        retry meeting 409 after a try whose outcome is unknown means that try acted."""
        body = ServiceTypeInstance.from_dict({"provider_name": provider, "spec": spec})
        may_have_acted = False

        def attempt() -> None:
            nonlocal may_have_acted
            try:
                answer = send(
                    ERRORS,
                    "create",
                    lambda: create_instance.sync_detailed(
                        client=self._call_client(), body=body, id=instance_id
                    ),
                )
                if answer.status_code != 201 or not isinstance(answer.parsed, ServiceTypeInstance):
                    raise failure(ERRORS, "create", answer)
            except UpstreamError as exc:
                if exc.status == 409 and may_have_acted:
                    log.info("retried create of %s met 409: the earlier try acted", instance_id)
                    return
                may_have_acted = may_have_acted or exc.outcome_unknown
                raise

        self._retry(attempt)

    def get_instance(self, instance_id: str) -> JSONObject | None:
        """The instance as the SPRM knows it, or None if it does not exist."""

        def attempt() -> JSONObject | None:
            answer = send(
                ERRORS,
                "get",
                lambda: get_instance.sync_detailed(instance_id, client=self._call_client()),
            )
            if answer.status_code == 404:
                return None
            if answer.status_code != 200 or not isinstance(answer.parsed, ServiceTypeInstance):
                raise failure(ERRORS, "get", answer)
            return answer.parsed.to_dict()

        return self._retry(attempt)

    def find_instance(self, instance_id: str) -> InstanceState | None:
        """The instance, soft-deleted ones included (show_deleted), or None if the SPRM
        has no trace of it."""

        def attempt() -> InstanceState | None:
            answer = send(
                ERRORS,
                "get",
                lambda: get_instance.sync_detailed(
                    instance_id, client=self._call_client(), show_deleted=True
                ),
            )
            if answer.status_code == 404:
                return None
            if answer.status_code != 200 or not isinstance(answer.parsed, ServiceTypeInstance):
                raise failure(ERRORS, "get", answer)
            return _state(answer.parsed, "get")

        return self._retry(attempt)

    def list_instances(self, page_size: int, page_token: str | None) -> InstancePage:
        """One page of the live instances, in the SPRM's order."""

        def attempt() -> InstancePage:
            answer = send(
                ERRORS,
                "list",
                lambda: list_instances.sync_detailed(
                    client=self._call_client(),
                    max_page_size=page_size,
                    page_token=UNSET if page_token is None else page_token,
                ),
            )
            parsed = answer.parsed
            if answer.status_code != 200 or not isinstance(parsed, ServiceTypeInstanceList):
                raise failure(ERRORS, "list", answer)
            token = parsed.next_page_token
            return InstancePage(
                [_state(each, "list") for each in parsed.instances],
                token if isinstance(token, str) and token else None,
            )

        return self._retry(attempt)

    def delete_instance(self, instance_id: str, deferred: bool = False) -> bool:
        """Delete the instance: True on 204, False when the SPRM has none by this id (404:
        already gone)."""

        def attempt() -> bool:
            answer = send(
                ERRORS,
                "delete",
                lambda: delete_instance.sync_detailed(
                    instance_id, client=self._call_client(), deferred=True if deferred else UNSET
                ),
            )
            if answer.status_code in (204, 404):
                return answer.status_code == 204
            raise failure(ERRORS, "delete", answer)

        return self._retry(attempt)

    def _call_client(self) -> Client:
        return self._client.with_headers(call_headers(self._forward_auth))


def _state(instance: ServiceTypeInstance, operation: str) -> InstanceState:
    if not isinstance(instance.id, str) or not instance.id:
        raise ERRORS.error(operation, None, "an instance without an id", transient=False)
    status = instance.deletion_status
    return InstanceState(
        id=instance.id,
        create_time=_utc(instance.create_time),
        deletion_status=None if isinstance(status, Unset) else status.value,
        deleted=not isinstance(instance.delete_time, Unset),
    )


def _utc(moment: datetime | Unset) -> datetime | None:
    """A time the SPRM gave, in UTC (one without an offset is taken as UTC)."""
    if isinstance(moment, Unset):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
