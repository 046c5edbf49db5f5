"""The SPRM client: create, read, list and delete service instances. Requests are made by
the generated `sprm_api` code (the upstream spec is the source of what is sent); answers
are read for what the flows need only (the status code, and on a look-up or a list each
instance's id, status, deletion_status, create_time and delete_time), so that SPRMs that
add, rename or drop other fields, or answer enum values this spec does not know, are
understood."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from placement.config import RetryPolicy, Upstream
from placement.errors import Kind
from placement.model import Change, Instance, JSONObject
from placement.upstream.errors import Translation
from placement.upstream.retry import Retrier, Tries
from placement.upstream.sprm_api.api.default import (
    create_instance,
    delete_instance,
    get_instance,
    list_instances,
)
from placement.upstream.sprm_api.client import Client
from placement.upstream.sprm_api.models import ServiceTypeInstance
from placement.upstream.sprm_api.types import UNSET
from placement.upstream.transport import Answer, call_headers, failure, generated_client, send

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

# Successes: 202 Accepted means the SPRM took the work on (newer SPRMs queue it).
CREATED = (201, 202)
DELETED = (204, 202)


@dataclass(frozen=True, slots=True)
class InstancePage:
    instances: list[Instance]
    next_page_token: str | None  # None on the last page


class SprmClient:
    def __init__(
        self, upstream: Upstream, retry: RetryPolicy, pool_size: int, forward_auth: bool = False
    ) -> None:
        self._forward_auth = forward_auth
        self._client = generated_client(Client, upstream, pool_size)
        self._retry = Retrier(retry, upstream.timeout)

    def close(self) -> None:
        self._client.close()

    def create_instance(
        self, instance_id: str, provider: str, spec: JSONObject, may_exist: bool = False
    ) -> Change:
        """Provision `spec` on `provider` under our resource id (201 or 202 is success).
        A 409 means the instance exists when it may already (`may_exist`: an earlier
        call of this create may have acted) or when an earlier try of this call may have."""
        body = ServiceTypeInstance.from_dict({"provider_name": provider, "spec": spec})

        def attempt(tries: Tries) -> Change:
            answer = send(
                ERRORS,
                "create",
                lambda: create_instance.sync_detailed(
                    client=self._call_client(), body=body, id=instance_id
                ),
            )
            if answer.status_code in CREATED:
                return Change(status=_status_of(answer))
            if answer.status_code == 409 and (may_exist or tries.may_have_acted):
                log.info("create of %s met 409: an earlier try made it", instance_id)
                return Change()
            raise failure(ERRORS, "create", answer)

        return self._retry(attempt)

    def get_instance(self, instance_id: str) -> Instance | None:
        """The instance as the SPRM knows it, deleted ones included (show_deleted), or
        None if the SPRM has no trace of it."""

        def attempt(tries: Tries) -> Instance | None:
            answer = send(
                ERRORS,
                "get",
                lambda: get_instance.sync_detailed(
                    instance_id, client=self._call_client(), show_deleted=True
                ),
            )
            if answer.status_code == 404:
                return None
            if answer.status_code != 200:
                raise failure(ERRORS, "get", answer)
            return _instance(_document(answer, "get"), answer, "get")

        return self._retry(attempt)

    def list_instances(self, page_size: int, page_token: str | None) -> InstancePage:
        """One page of the live instances, in the SPRM's order."""

        def attempt(tries: Tries) -> InstancePage:
            answer = send(
                ERRORS,
                "list",
                lambda: list_instances.sync_detailed(
                    client=self._call_client(),
                    max_page_size=page_size,
                    page_token=UNSET if page_token is None else page_token,
                ),
            )
            if answer.status_code != 200:
                raise failure(ERRORS, "list", answer)
            page = _document(answer, "list")
            listed, token = page.get("instances"), page.get("next_page_token")
            if not isinstance(listed, list) or not isinstance(token, str | None):
                raise failure(ERRORS, "list", answer)
            instances = [_instance(each, answer, "list") for each in listed]
            return InstancePage(instances, token or None)

        return self._retry(attempt)

    def delete_instance(self, instance_id: str, deferred: bool = False) -> Change:
        """Delete the instance: 204 or 202 (taken on), or 404 (already gone: not found)."""

        def attempt(tries: Tries) -> Change:
            answer = send(
                ERRORS,
                "delete",
                lambda: delete_instance.sync_detailed(
                    instance_id, client=self._call_client(), deferred=True if deferred else UNSET
                ),
            )
            if answer.status_code in DELETED or answer.status_code == 404:
                return Change(found=answer.status_code != 404)
            raise failure(ERRORS, "delete", answer)

        return self._retry(attempt)

    def _call_client(self) -> Client:
        return self._client.with_headers(call_headers(self._forward_auth))


def _document(answer: Answer, operation: str) -> dict[str, Any]:
    """The answer's JSON object; a garbled success otherwise."""
    try:
        document = json.loads(answer.content)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise failure(ERRORS, operation, answer)
    return document


def _status_of(answer: Answer) -> str | None:
    """The instance status a create's answer gave, if it is readable (nothing else in it
    matters: the success is the status code)."""
    try:
        document = json.loads(answer.content)
    except ValueError:
        return None
    status = document.get("status") if isinstance(document, dict) else None
    return status if isinstance(status, str) and status else None


def _instance(fields: Any, answer: Answer, operation: str) -> Instance:
    """An instance from its JSON object; only a missing id makes it unreadable."""
    if not isinstance(fields, dict) or not isinstance(fields.get("id"), str) or not fields["id"]:
        raise failure(ERRORS, operation, answer)
    deletion = _text(fields.get("deletion_status"))
    return Instance(
        id=fields["id"],
        status=_text(fields.get("status")),
        create_time=_time(fields.get("create_time")),
        deletion_status=deletion,
        deleted=bool(fields.get("delete_time")) or (deletion or "").upper() == "DELETED",
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> datetime | None:
    """A time the SPRM gave, in UTC (one without an offset is taken as UTC); None when
    absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
