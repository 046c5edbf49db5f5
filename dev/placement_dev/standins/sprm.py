"""A local stand-in for the DCM Service Provider Resource Manager (SPRM), for development,
demos and tests; not a replacement for the real one. It keeps instances in memory and
serves `api/upstream/sprm.yaml` (errors: application/problem+json):

    POST   /api/v1alpha1/service-type-instances?id=<id>  {"provider_name", "spec"}
             201 the instance (no id: a UUID); 400 malformed; 409 the id exists
    GET    /api/v1alpha1/service-type-instances?max_page_size=1..100&page_token=&show_deleted=
             200 {"instances": [...], "next_page_token": "..."} in id order (no token on
             the last page); 400 bad page size, bad token, or a token of another
             show_deleted
    GET    /api/v1alpha1/service-type-instances/<id>[?show_deleted=true]
             200 the instance; 404
    DELETE /api/v1alpha1/service-type-instances/<id>?deferred=true|false
             204; 404 unknown. With deferred=true, a delete that fails on the provider
             (an injected 4xx `fail` fault) is queued instead: the instance stays,
             marked deletion_status FAILED, and the answer is 204; a 5xx fault is
             answered as it is (the request never reached the queue).

An instance: id, path ("service-type-instances/<id>"), provider_name, spec,
status ("PROVISIONED"), create_time, update_time (RFC 3339), deletion_status if any.

`speak_newer()` makes it answer as DCM's newer SPRM does: instances carry `agent_name`
instead of `provider_name` and a lower-case status ("pending"); create and delete answer
202 Accepted; a delete leaves the instance with deletion_status PENDING_PROVIDER (the
provider has still to delete it), listed and found as such.
A deleted instance is kept (soft-deleted, with `delete_time`; the last `max_deleted`
of them): only `show_deleted=true` shows it, and creating its id again replaces it.
Faults apply to the operations "create", "get", "delete" and "list".

Given a NATS URL (`nats_url`), it also reports status events as a provider does
(`events.py`): PROVISIONING on create, RUNNING `running_after` seconds later, DELETED on
delete, as CloudEvents on `dcm.providers.{provider}.{serviceType}.instances.{id}.status`
in the JetStream stream `dcm-status`. Without one it publishes nothing. Publishing never
delays or changes an answer.

Besides the shared admin endpoints (`base.py`), to change instances behind the
placement service's back (never recorded, no faults):
    GET    /_standin/instances        {"instances": [...]} every live instance
    POST   /_standin/instances        {"instances": [{"id": ..., ...}, ...]} put these
             instances as given (replacing any of the same id); `provider_name`, `spec`
             and `status` have defaults, `create_time` and `update_time` default to
             now (null: no such field); `deletion_status` and `delete_time` as given
    DELETE /_standin/instances        forget every instance, deleted ones too
    DELETE /_standin/instances/<id>   forget one (no soft-deleted trace); 404 unknown
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import re
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from placement_dev.standins.base import ADMIN, StandIn
from placement_dev.standins.events import StatusEvents, Where
from placement_dev.standins.faults import Failure
from placement_dev.standins.problems import (
    API_PREFIX,
    PROBLEM_JSON,
    Problem,
    bad_request,
    json_object,
    parse_json,
)
from placement_dev.standins.server import BackgroundServer

INSTANCES_PATH = f"{API_PREFIX}/service-type-instances"
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Instance = dict[str, Any]
# Deferred deletions (v1alpha1), and the newer SPRM's queued and finished ones.
DELETION_STATUSES = ("SCHEDULED", "FAILED", "PENDING_PROVIDER", "DELETED")


class SprmStandIn(StandIn):
    """Service-type instances in memory; `.instances` is a snapshot for tests."""

    name: ClassVar[str] = "sprm"
    operations: ClassVar[tuple[str, ...]] = ("create", "get", "delete", "list")
    error_media_type: ClassVar[str] = PROBLEM_JSON

    def __init__(
        self,
        *,
        max_recorded: int | None = 10_000,
        max_deleted: int = 10_000,
        nats_url: str | None = None,
        running_after: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        # The status events, when there is a NATS server to publish them to.
        self.events = StatusEvents(nats_url, running_after=running_after) if nats_url else None
        # Live and soft-deleted instances by id, their ids in order (for the list), and
        # the soft-deleted ones oldest first (to forget beyond `max_deleted`).
        self._instances: dict[str, Instance] = {}
        self._order: list[str] = []
        self._deleted: deque[tuple[str, str]] = deque()
        self._max_deleted = max_deleted
        self._newer = False
        super().__init__(max_recorded=max_recorded)

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> BackgroundServer:
        """As `StandIn.serve`; stopping the server also stops publishing status events."""
        return BackgroundServer(self, port, host=host, on_stop=self.close)

    def close(self) -> None:
        """Reset the faults; send the status events still queued and stop publishing."""
        self.reset_faults()
        if self.events is not None:
            self.events.close()

    def speak_newer(self, on: bool = True) -> None:
        """Answer as DCM's newer SPRM (see the module's docstring), or again as v1alpha1."""
        self._newer = on

    @property
    def instances(self) -> dict[str, Instance]:
        """A copy of every live (not deleted) instance, by id."""
        with self._lock:
            return {
                key: copy.deepcopy(value)
                for key, value in self._instances.items()
                if "delete_time" not in value
            }

    def put_instances(self, instances: Iterable[Instance]) -> None:
        """Put instances as given, behind the placement service's back (see the module's
        docstring for the fields and their defaults)."""
        made = [_made(json_object(each, "an instance")) for each in instances]
        with self._lock:
            new = sorted({each["id"] for each in made if each["id"] not in self._instances})
            for each in made:
                self._instances[each["id"]] = each
            self._order = sorted(self._order + new)  # two sorted runs: a linear merge

    def forget(self, instance_id: str) -> bool:
        """Remove an instance without a trace (not even a soft-deleted one)."""
        with self._lock:
            if self._instances.pop(instance_id, None) is None:
                return False
            del self._order[bisect.bisect_left(self._order, instance_id)]
            return True

    def forget_all(self) -> None:
        with self._lock:
            self._instances.clear()
            self._order.clear()
            self._deleted.clear()

    def _api_routes(self) -> list[BaseRoute]:
        one = f"{INSTANCES_PATH}/{{instance_id}}"
        return [
            Route(INSTANCES_PATH, self._create, methods=["POST"]),
            Route(INSTANCES_PATH, self._list, methods=["GET"]),
            Route(one, self._get, methods=["GET"]),
            Route(one, self._delete, methods=["DELETE"]),
        ]

    def _extra_admin_routes(self) -> list[BaseRoute]:
        every, one = f"{ADMIN}/instances", f"{ADMIN}/instances/{{instance_id}}"
        return [
            Route(every, self._admin_list, methods=["GET"]),
            Route(every, self._admin_put, methods=["POST"]),
            Route(every, self._admin_forget_all, methods=["DELETE"]),
            Route(one, self._admin_forget, methods=["DELETE"]),
        ]

    async def _create(self, request: Request) -> Response:
        return await self._call(request, "create", self._created)

    async def _list(self, request: Request) -> Response:
        return await self._call(request, "list", self._listed)

    async def _get(self, request: Request) -> Response:
        return await self._call(request, "get", self._found)

    async def _delete(self, request: Request) -> Response:
        return await self._call(request, "delete", self._deleted_now)

    async def _admin_list(self, request: Request) -> Response:
        return JSONResponse({"instances": list(self.instances.values())})

    async def _admin_put(self, request: Request) -> Response:
        given = json_object(parse_json(await request.body())).get("instances")
        if not isinstance(given, list):
            raise bad_request("instances must be an array of instances")
        self.put_instances(given)
        return Response(status_code=204)

    async def _admin_forget_all(self, request: Request) -> Response:
        self.forget_all()
        return Response(status_code=204)

    async def _admin_forget(self, request: Request) -> Response:
        instance_id = request.path_params["instance_id"]
        if not self.forget(instance_id):
            raise Problem(404, "NOT_FOUND", f"instance {instance_id} does not exist", "Not found")
        return Response(status_code=204)

    def _created(self, request: Request, body: Any) -> Response:
        given = request.query_params.get("id")
        instance_id = str(uuid.uuid4()) if given is None else _valid_id(given)
        fields = json_object(body)
        provider, spec = fields.get("provider_name"), fields.get("spec")
        if not isinstance(provider, str):
            raise bad_request("provider_name is required and must be a string")
        now = _now()
        instance = {
            "id": instance_id,
            "path": f"service-type-instances/{instance_id}",
            "provider_name": provider,
            "spec": json_object(spec, "spec"),
            "status": "PROVISIONED",
            "create_time": now,
            "update_time": now,
        }
        if self._newer:
            del instance["provider_name"]
            instance |= {"agent_name": provider, "status": "pending"}
        with self._lock:
            known = self._instances.get(instance_id)
            if known is not None and "delete_time" not in known:
                raise Problem(409, "ALREADY_EXISTS", f"instance {instance_id} already exists")
            if known is None:
                bisect.insort(self._order, instance_id)
            self._instances[instance_id] = instance
            answer = JSONResponse(copy.deepcopy(instance), 202 if self._newer else 201)
        if self.events is not None:
            self.events.created(_where(instance))
        return answer

    def _listed(self, request: Request, body: Any) -> Response:
        size = _page_size(request.query_params.get("max_page_size", "100"))
        show_deleted = _boolean(request, "show_deleted")
        token = request.query_params.get("page_token")
        after = _token_position(token, show_deleted) if token else None
        with self._lock:
            start = 0 if after is None else bisect.bisect_right(self._order, after)
            page: list[Instance] = []
            more = False
            for index in range(start, len(self._order)):
                instance = self._instances[self._order[index]]
                if not show_deleted and "delete_time" in instance:
                    continue
                if len(page) == size:
                    more = True
                    break
                page.append(copy.deepcopy(instance))
        answer: dict[str, Any] = {"instances": page}
        if more:
            answer["next_page_token"] = _token(page[-1]["id"], show_deleted)
        return JSONResponse(answer)

    def _found(self, request: Request, body: Any) -> Response:
        instance_id = _valid_id(request.path_params["instance_id"])
        show_deleted = _boolean(request, "show_deleted")
        with self._lock:
            return JSONResponse(copy.deepcopy(self._existing(instance_id, show_deleted)))

    def _deleted_now(self, request: Request, body: Any) -> Response:
        instance_id = _valid_id(request.path_params["instance_id"])
        _deferred(request)
        with self._lock:
            instance = self._existing(instance_id)
            where = _where(instance)
            if self._newer:  # queued for the provider: still there, being deleted
                instance["deletion_status"] = "PENDING_PROVIDER"
                instance["update_time"] = _now()
                answer = Response(status_code=202)
            else:
                instance["delete_time"] = instance["update_time"] = _now()
                self._deleted.append((instance_id, instance["delete_time"]))
                self._forget_old_deleted()
                answer = Response(status_code=204)
        if self.events is not None:
            self.events.deleted(where)
        return answer

    def _forget_old_deleted(self) -> None:
        """Keep the last `max_deleted` soft-deleted instances (the lock held)."""
        while len(self._deleted) > self._max_deleted:
            instance_id, deleted_at = self._deleted.popleft()
            instance = self._instances.get(instance_id)
            if instance is not None and instance.get("delete_time") == deleted_at:
                del self._instances[instance_id]
                del self._order[bisect.bisect_left(self._order, instance_id)]

    def _failed(self, operation: str, request: Request, failure: Failure) -> Response:
        """A deferred delete of a known instance that fails on the provider (a 4xx fault)
        is queued, not reported; a 5xx means the request never reached the queue."""
        if operation == "delete" and failure.status < 500 and _deferred_or_false(request):
            instance_id = request.path_params["instance_id"]
            with self._lock:
                instance = self._instances.get(instance_id)
                if instance is not None and "delete_time" not in instance:
                    instance["deletion_status"] = "FAILED"
                    instance["update_time"] = _now()
                    return Response(status_code=204)
        return super()._failed(operation, request, failure)

    def _existing(self, instance_id: str, show_deleted: bool = False) -> Instance:
        """The instance (the lock held), or a 404 problem."""
        instance = self._instances.get(instance_id)
        if instance is None or (not show_deleted and "delete_time" in instance):
            raise Problem(404, "NOT_FOUND", f"instance {instance_id} does not exist", "Not found")
        return instance


def _where(instance: Instance) -> Where:
    """The instance as its status events' subject names it."""
    provider = instance.get("provider_name", instance.get("agent_name"))
    spec = instance.get("spec")
    kind = spec.get("service_type") if isinstance(spec, dict) else None
    return Where(
        instance["id"],
        provider if isinstance(provider, str) else "unknown",
        kind if isinstance(kind, str) else "unknown",
    )


def _made(given: dict[str, Any]) -> Instance:
    """An instance from an admin request: checked, with defaults filled in."""
    instance_id = given.get("id")
    if not isinstance(instance_id, str) or not instance_id:
        raise bad_request("every instance needs an id (a non-empty string)")
    now = _now()
    made: Instance = {
        "id": instance_id,
        "path": f"service-type-instances/{instance_id}",
        "provider_name": "standin-provider",
        "spec": {},
        "status": "PROVISIONED",
        "create_time": now,
        "update_time": now,
    }
    made.update(given)
    for name in ("create_time", "update_time", "delete_time"):
        if name in made and made[name] is None:
            del made[name]
        elif name in made:
            _valid_time(made[name], name)
    if made.get("deletion_status") not in (None, *DELETION_STATUSES):
        raise bad_request(f"deletion_status must be one of {', '.join(DELETION_STATUSES)}")
    return made


def _valid_time(value: Any, name: str) -> None:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an RFC 3339 time, not {value!r}") from None


def _page_size(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise bad_request(f"max_page_size must be a whole number from 1 to 100, not {value!r}")
    return int(value)


def _token(last_id: str, show_deleted: bool) -> str:
    raw = f"{int(show_deleted)}:{last_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_position(token: str, show_deleted: bool) -> str:
    """The id a page token resumes after; 400 if it is not one of ours or was issued
    for another `show_deleted`."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    flag, sep, after = raw.partition(":")
    if not sep or flag not in ("0", "1") or not after:
        raise bad_request("page_token is not a token this list issued")
    if flag != str(int(show_deleted)):
        raise bad_request("page_token was issued for another show_deleted")
    return after


def _boolean(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise bad_request(f"{name} must be true or false, not {value!r}")
    return value == "true"


def _valid_id(value: str) -> str:
    if not _ID.match(value):
        raise bad_request(f"instance id {value!r} is not a DNS-1123 label (1-63 of a-z 0-9 -)")
    return value


def _deferred(request: Request) -> bool:
    return _boolean(request, "deferred")


def _deferred_or_false(request: Request) -> bool:
    try:
        return _deferred(request)
    except Problem:
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
