"""A local stand-in for the DCM Service Provider Resource Manager (SPRM), for development,
demos and tests; not a replacement for the real one. It keeps instances in memory and
serves `api/upstream/sprm.yaml` (errors: application/problem+json):

    POST   /api/v1alpha1/service-type-instances?id=<id>  {"provider_name", "spec"}
             201 the instance (no id: a UUID); 400 malformed; 409 the id exists
    GET    /api/v1alpha1/service-type-instances/<id>     200 the instance; 404
    DELETE /api/v1alpha1/service-type-instances/<id>?deferred=true|false
             204; 404 unknown. With deferred=true, a delete that fails on the provider
             (an injected 4xx `fail` fault) is queued instead: the instance stays,
             marked deletion_status FAILED, and the answer is 204; a 5xx fault is
             answered as it is (the request never reached the queue).

An instance: id, path ("service-type-instances/<id>"), provider_name, spec,
status ("PROVISIONED"), create_time, update_time (RFC 3339), deletion_status if any.
Faults apply to the operations "create", "get" and "delete". Besides the shared admin
endpoints (`base.py`):  GET /_standin/instances  {"instances": [...]}
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from placement.standins.base import ADMIN, StandIn
from placement.standins.faults import Failure
from placement.standins.problems import (
    API_PREFIX,
    PROBLEM_JSON,
    Problem,
    bad_request,
    json_object,
)

INSTANCES_PATH = f"{API_PREFIX}/service-type-instances"
_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Instance = dict[str, Any]


class SprmStandIn(StandIn):
    """Service-type instances in memory; `.instances` is a snapshot for tests."""

    name: ClassVar[str] = "sprm"
    operations: ClassVar[tuple[str, ...]] = ("create", "get", "delete")
    error_media_type: ClassVar[str] = PROBLEM_JSON

    def __init__(self, *, max_recorded: int | None = 10_000) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, Instance] = {}
        super().__init__(max_recorded=max_recorded)

    @property
    def instances(self) -> dict[str, Instance]:
        """A copy of every instance, by id."""
        with self._lock:
            return copy.deepcopy(self._instances)

    def _api_routes(self) -> list[BaseRoute]:
        one = f"{INSTANCES_PATH}/{{instance_id}}"
        return [
            Route(INSTANCES_PATH, self._create, methods=["POST"]),
            Route(one, self._get, methods=["GET"]),
            Route(one, self._delete, methods=["DELETE"]),
        ]

    def _extra_admin_routes(self) -> list[BaseRoute]:
        return [Route(f"{ADMIN}/instances", self._list, methods=["GET"])]

    async def _create(self, request: Request) -> Response:
        return await self._call(request, "create", self._created)

    async def _get(self, request: Request) -> Response:
        return await self._call(request, "get", self._found)

    async def _delete(self, request: Request) -> Response:
        return await self._call(request, "delete", self._deleted)

    async def _list(self, request: Request) -> Response:
        return JSONResponse({"instances": list(self.instances.values())})

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
        with self._lock:
            if instance_id in self._instances:
                raise Problem(409, "ALREADY_EXISTS", f"instance {instance_id} already exists")
            self._instances[instance_id] = instance
            return JSONResponse(copy.deepcopy(instance), 201)

    def _found(self, request: Request, body: Any) -> Response:
        instance_id = _valid_id(request.path_params["instance_id"])
        with self._lock:
            return JSONResponse(copy.deepcopy(self._existing(instance_id)))

    def _deleted(self, request: Request, body: Any) -> Response:
        instance_id = _valid_id(request.path_params["instance_id"])
        _deferred(request)
        with self._lock:
            self._existing(instance_id)
            del self._instances[instance_id]
        return Response(status_code=204)

    def _failed(self, operation: str, request: Request, failure: Failure) -> Response:
        """A deferred delete of a known instance that fails on the provider (a 4xx fault)
        is queued, not reported; a 5xx means the request never reached the queue."""
        if operation == "delete" and failure.status < 500 and _deferred_or_false(request):
            instance_id = request.path_params["instance_id"]
            with self._lock:
                instance = self._instances.get(instance_id)
                if instance is not None:
                    instance["deletion_status"] = "FAILED"
                    instance["update_time"] = _now()
                    return Response(status_code=204)
        return super()._failed(operation, request, failure)

    def _existing(self, instance_id: str) -> Instance:
        """The instance (the lock held), or a 404 problem."""
        instance = self._instances.get(instance_id)
        if instance is None:
            raise Problem(404, "NOT_FOUND", f"instance {instance_id} does not exist", "Not found")
        return instance


def _valid_id(value: str) -> str:
    if not _ID.match(value):
        raise bad_request(f"instance id {value!r} is not a DNS-1123 label (1-63 of a-z 0-9 -)")
    return value


def _deferred(request: Request) -> bool:
    value = request.query_params.get("deferred", "false").lower()
    if value not in ("true", "false"):
        raise bad_request(f"deferred must be true or false, not {value!r}")
    return value == "true"


def _deferred_or_false(request: Request) -> bool:
    try:
        return _deferred(request)
    except Problem:
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
