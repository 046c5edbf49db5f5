"""HTTP only: one method per operationId, translating requests to service calls.

Connexion has validated every request against the spec before a handler runs; errors
raised here (or below) become problem details in `problems.py`. Reads (get, list,
health) run on the event loop (`reads.ReadFlows`); the flows that change records block
(the database, `requests` to the upstreams), so their handlers run in the request
threads (`threads.RequestThreads`: a plain executor, cheaper per request than the one
Connexion uses for sync handlers).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec

from connexion.lifecycle import ConnexionResponse

from placement.flows.changes import PlacementService
from placement.flows.queries import ReadFlows
from placement.http.encoding import embedded, json_bytes
from placement.http.threads import RequestThreads
from placement.telemetry import context

JSON = "application/json"
_HEALTHY = json_bytes({"status": "healthy", "path": "health"})


P = ParamSpec("P")


def in_thread(
    method: Callable[Concatenate[Handlers, P], ConnexionResponse],
) -> Callable[Concatenate[Handlers, P], Awaitable[ConnexionResponse]]:
    """Run a handler in the request threads, with the request's context."""

    async def run(self: Handlers, /, *args: P.args, **kwargs: P.kwargs) -> ConnexionResponse:
        call = functools.partial(contextvars.copy_context().run, method, self, *args, **kwargs)
        return await self.threads.run(call)

    # Connexion reads the parameters to pass from the handler's signature: keep it.
    functools.update_wrapper(run, method)
    return run


class Handlers:
    """Bound by operationId: `GetResource` -> `get_resource` (see `app.resolver`)."""

    def __init__(
        self, service: PlacementService, reads: ReadFlows, threads: RequestThreads
    ) -> None:
        self._service = service
        self._reads = reads
        self.threads = threads

    async def get_health(self) -> ConnexionResponse:
        """On the loop: a readiness probe never waits for busy request threads."""
        await self._reads.check_health()
        return ConnexionResponse(200, content_type=JSON, body=_HEALTHY)

    async def list_resources(
        self,
        max_page_size: int = 100,
        provider: str | None = None,
        page_token: str | None = None,
        status: str | None = None,
    ) -> ConnexionResponse:
        page = await self._reads.list_resources(
            provider or None, max_page_size, page_token or None, status or None
        )
        body: dict[str, Any] = {"resources": [r.to_json(embedded) for r in page.resources]}
        if page.next_page_token:
            body["next_page_token"] = page.next_page_token
        return _json(200, body)

    @in_thread
    def create_resource(self, body: dict[str, Any], id: str = "") -> ConnexionResponse:  # noqa: A002 - the spec's name
        context.note_resource(id)
        resource = self._service.create_resource(
            body["catalog_item_instance_id"], body["spec"], id or None
        )
        context.note_resource(resource.id)
        return _json(201, resource.to_json())

    async def get_resource(self, resource_id: str) -> ConnexionResponse:
        resource = await self._reads.get_resource(resource_id)
        return _json(200, resource.to_json(embedded))

    @in_thread
    def delete_resource(self, resource_id: str) -> ConnexionResponse:
        self._service.delete_resource(resource_id)
        return ConnexionResponse(204)

    @in_thread
    def rehydrate_resource(self, resource_id: str, body: dict[str, Any]) -> ConnexionResponse:
        resource = self._service.rehydrate_resource(resource_id, body["new_resource_id"])
        return _json(200, resource.to_json())


def _json(status: int, body: dict[str, Any]) -> ConnexionResponse:
    return ConnexionResponse(status, content_type=JSON, body=json_bytes(body))
