"""The peer: what a Python team would write instead of the placement service, for the
benchmark to report the service next to it (issue 15).

Written as the FastAPI documentation recommends, and no slower: `async def` path
operations, Pydantic v2 models for the request body, the upstream answers and every
response (declared as return types, so that FastAPI validates and serializes them with
Pydantic in Rust), parameters declared with `Path`/`Query` constraints (the id pattern,
the page size), problem details through exception handlers, psycopg 3's
`AsyncConnectionPool` and one `httpx.AsyncClient` made in the lifespan. The client keeps
httpx's default limits (100 connections, 20 kept alive): they measured fastest here, as
httpcore checks every pooled connection on each request (with no limits, or 100 kept
alive, creates were up to 1.5x slower at 64 connections and stalled at 256). Run by
uvicorn with uvloop and httptools at the service's log level (info: one access line per
request, as the service writes one).

Same paths, answers, table and statements as the floor (`floor.py`): a create asks the
Policy Engine, inserts the record PROVISIONING under a lease, calls the SPRM, marks it
READY; a delete claims the record DELETING, calls the SPRM, removes it; lists are keyset
pages on (create_time, id) with HMAC-signed page tokens. Configured by environment
variables (set by the benchmark; a reviewer's own peer gets the same):

    PEER_DSN          libpq connection string of its database
    PEER_POOL_SIZE    connections per worker (default 12, the service's DB_POOL_SIZE)
    PEER_POLICY_URL   Policy Engine base URL
    PEER_SPRM_URL     SPRM base URL
    PEER_TOKEN_KEY    hex HMAC key for page tokens (shared by the workers)

Run: uvicorn bench.peer:app --workers N --loop uvloop --http httptools --log-level info
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import psycopg
from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field, PlainSerializer

from bench.reference import (
    ID_PATTERN,
    LEASE,
    PREFIX,
    SQL_CLAIM,
    SQL_DELETE,
    SQL_EXISTS,
    SQL_GET,
    SQL_INSERT,
    SQL_LIST,
    SQL_READY,
    SQL_READY_CREATED,
    Settings,
    rfc3339,
    upstream_status,
)

SETTINGS = Settings.from_env("PEER")
log = logging.getLogger("peer")


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]
ResourceId = Annotated[str, Path(pattern=ID_PATTERN, max_length=63)]


class Resource(BaseModel):
    id: str
    path: str
    provider_name: str
    catalog_item_instance_id: str
    spec: dict[str, Any]
    approval_status: str
    create_time: Timestamp
    update_time: Timestamp
    # The provider's status, when there is one (left out of the answer when None).
    status: str | None = None
    status_message: str | None = None
    status_time: Timestamp | None = None


class ResourceList(BaseModel):
    resources: list[Resource]
    next_page_token: str | None = None


class ResourceCreate(BaseModel):
    catalog_item_instance_id: str = Field(min_length=1)
    spec: dict[str, Any] = Field(min_length=1)


class Health(BaseModel):
    status: str
    path: str


class ServiceInstance(BaseModel):
    spec: dict[str, Any]


class InstanceCreated(BaseModel):
    """The SPRM's create answer: only its status matters (as to the service)."""

    status: str | None = None


class PolicyVerdict(BaseModel):
    status: str
    selected_provider: str | None = None
    evaluated_service_instance: ServiceInstance


class ProblemError(Exception):
    """Answered as RFC 9457 problem details by the handler below."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


class State:
    pool: AsyncConnectionPool
    http: httpx.AsyncClient


state = State()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    size = SETTINGS.pool_size()
    state.pool = AsyncConnectionPool(
        SETTINGS.dsn(),
        min_size=size,
        max_size=size,
        open=False,
        kwargs={"autocommit": True},
    )
    await state.pool.open(wait=True, timeout=30)
    async with httpx.AsyncClient() as http:
        state.http = http
        try:
            yield
        finally:
            await state.pool.close()


app = FastAPI(title="placement peer", lifespan=lifespan)


def _problem(status: int, kind: str, detail: str) -> JSONResponse:
    log.warning("answering %d %s: %s", status, kind, detail)  # never on the happy path
    body = {"type": kind, "title": kind.replace("-", " "), "status": status, "detail": detail}
    return JSONResponse(body, status, media_type="application/problem+json")


@app.exception_handler(ProblemError)
async def problem_handler(_request: Request, error: ProblemError) -> JSONResponse:
    return _problem(error.status, error.kind, error.detail)


@app.exception_handler(RequestValidationError)
async def validation_handler(_request: Request, error: RequestValidationError) -> JSONResponse:
    """400 problem details, as the contract says (FastAPI's default is a 422)."""
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return _problem(400, "validation-error", detail)


def _resource(row: tuple[Any, ...]) -> Resource:
    rid, catalog_id, spec, provider, approval, created, updated, status, message, moment = row
    return Resource(
        id=rid,
        path="resources/" + rid,
        provider_name=provider or "",
        catalog_item_instance_id=catalog_id,
        spec=spec,
        approval_status=approval or "",
        create_time=created,
        update_time=updated,
        status=status,
        status_message=message if status is not None else None,
        status_time=moment if status is not None else None,
    )


def _cursor(token: str, provider: str | None) -> tuple[datetime, str]:
    after = SETTINGS.cursor(token, provider)
    if after is None:
        raise ProblemError(400, "validation-error", "page_token is not a valid page token")
    return after


@app.get(f"{PREFIX}/health")
async def health() -> Health:
    async with state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return Health(status="healthy", path="health")


@app.get(f"{PREFIX}/resources/{{resource_id}}", response_model_exclude_none=True)
async def get_resource(resource_id: ResourceId) -> Resource:
    async with state.pool.connection() as conn:
        cursor = await conn.execute(SQL_GET, (resource_id,))
        row = await cursor.fetchone()
    if row is None:
        raise ProblemError(404, "not-found", f"resource {resource_id} not found")
    return _resource(row)


@app.get(f"{PREFIX}/resources", response_model_exclude_none=True)
async def list_resources(
    max_page_size: Annotated[int, Query(ge=1, le=100)] = 100,
    provider: str | None = None,
    page_token: str | None = None,
) -> ResourceList:
    provider = provider or None
    after = _cursor(page_token, provider) if page_token else None
    params: list[Any] = [provider] if provider else []
    if after:
        params += after
    async with state.pool.connection() as conn:
        cursor = await conn.execute(
            SQL_LIST[provider is not None, after is not None], [*params, max_page_size + 1]
        )
        rows = await cursor.fetchall()
    page = ResourceList(resources=[_resource(row) for row in rows[:max_page_size]])
    if len(rows) > max_page_size:
        page.next_page_token = SETTINGS.page_token(rows[max_page_size - 1], provider)
    return page


@app.post(f"{PREFIX}/resources", status_code=201, response_model_exclude_none=True)
async def create_resource(
    body: ResourceCreate,
    id: Annotated[str | None, Query(pattern=ID_PATTERN, max_length=63)] = None,  # noqa: A002
) -> Resource:
    rid = id or str(uuid.uuid4())
    answer = await state.http.post(
        SETTINGS.evaluate_url, json={"service_instance": {"spec": body.spec}}
    )
    if answer.status_code != 200:
        raise ProblemError(upstream_status(answer.status_code), "policy-error", answer.text)
    verdict = PolicyVerdict.model_validate_json(answer.content)
    provider = verdict.selected_provider
    if not provider:
        raise ProblemError(424, "policy-dependency", "the policies selected no provider")
    now = datetime.now(UTC)
    owner = uuid.uuid4().hex
    path = "resources/" + rid
    try:
        async with state.pool.connection() as conn:
            await conn.execute(
                SQL_INSERT,
                (
                    rid,
                    body.catalog_item_instance_id,
                    Jsonb(body.spec),
                    provider,
                    verdict.status,
                    path,
                    now,
                    now,
                    owner,
                    now + LEASE,
                ),
            )
    except psycopg.errors.UniqueViolation:
        raise ProblemError(
            409, "resource-conflict", f"resource id {rid} is already in use"
        ) from None
    instance = {"provider_name": provider, "spec": verdict.evaluated_service_instance.spec}
    answer = await state.http.post(SETTINGS.instances_url, params={"id": rid}, json=instance)
    created = answer.status_code == 201
    made = InstanceCreated.model_validate_json(answer.content).status if created else None
    made = made or None
    async with state.pool.connection() as conn:
        if created:
            await conn.execute(SQL_READY_CREATED, (made, made, rid, owner))
        else:
            await conn.execute(SQL_DELETE, (rid, owner))
    if not created:
        raise ProblemError(upstream_status(answer.status_code), "provider-error", answer.text)
    return Resource(
        id=rid,
        path=path,
        provider_name=provider,
        catalog_item_instance_id=body.catalog_item_instance_id,
        spec=body.spec,
        approval_status=verdict.status,
        create_time=now,
        update_time=now,
        status=made,
        status_time=now if made is not None else None,
    )


@app.delete(f"{PREFIX}/resources/{{resource_id}}", status_code=204)
async def delete_resource(resource_id: ResourceId) -> Response:
    owner = uuid.uuid4().hex
    async with state.pool.connection() as conn:
        cursor = await conn.execute(SQL_CLAIM, (owner, datetime.now(UTC) + LEASE, resource_id))
        if await cursor.fetchone() is None:
            cursor = await conn.execute(SQL_EXISTS, (resource_id,))
            if await cursor.fetchone() is None:
                raise ProblemError(404, "not-found", f"resource {resource_id} not found")
            raise ProblemError(409, "resource-conflict", f"resource {resource_id} is busy")
    answer = await state.http.delete(f"{SETTINGS.instances_url}/{resource_id}")
    gone = answer.status_code in (204, 404)
    async with state.pool.connection() as conn:
        await conn.execute(SQL_DELETE if gone else SQL_READY, (resource_id, owner))
    if not gone:
        raise ProblemError(upstream_status(answer.status_code), "provider-error", answer.text)
    return Response(status_code=204)
