"""The floor: the thinnest reasonable Python implementation of the placement service's
hot endpoints, for the benchmark to report every figure of the service as a ratio to it.

Same paths, same JSON shapes, the same `resources` table (the service's own migrations
create it), the same lifecycle columns written the same way (a create inserts the record
PROVISIONING under a lease, calls the SPRM, then marks it READY; a delete claims the
record DELETING, calls the SPRM, then removes it), the same keyset pagination on
(create_time, id) with HMAC-signed page tokens. What it leaves out is everything that is
not needed on the happy path: request validation beyond what the flow needs (the id
pattern, the body's two fields, the page size), retries, the reconciler, logging.

Stack: Starlette on uvicorn (uvloop, httptools), psycopg 3's async connection pool,
aiohttp for the Policy Engine and SPRM calls (no concurrency cap). Configured by
environment variables (set by the benchmark):

    FLOOR_DSN          libpq connection string of its database
    FLOOR_POOL_SIZE    connections per worker (default 12, the service's DB_POOL_SIZE)
    FLOOR_POLICY_URL   Policy Engine base URL
    FLOOR_SPRM_URL     SPRM base URL
    FLOOR_TOKEN_KEY    hex HMAC key for page tokens (shared by the workers)

Run: uvicorn bench.floor:app --workers N --loop uvloop --http httptools
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    add_status,
    rfc3339,
    sprm_status,
    upstream_status,
)

ID = re.compile(ID_PATTERN)
SETTINGS = Settings.from_env("FLOOR")
log = logging.getLogger("floor")


class State:
    pool: AsyncConnectionPool
    http: aiohttp.ClientSession


state = State()


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    size = SETTINGS.pool_size()
    state.pool = AsyncConnectionPool(
        SETTINGS.dsn(),
        min_size=size,
        max_size=size,
        open=False,
        kwargs={"autocommit": True},
    )
    await state.pool.open(wait=True, timeout=30)
    state.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        yield
    finally:
        await state.http.close()
        await state.pool.close()


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _problem(status: int, kind: str, detail: str) -> Response:
    log.warning("answering %d %s: %s", status, kind, detail)  # never on the happy path
    body = {"type": kind, "title": kind.replace("-", " "), "status": status, "detail": detail}
    return Response(orjson.dumps(body), status, media_type="application/problem+json")


def _resource(row: tuple[Any, ...]) -> dict[str, Any]:
    rid, catalog_id, spec, provider, approval, created, updated, status, message, moment = row
    wire = {
        "id": rid,
        "path": "resources/" + rid,
        "provider_name": provider or "",
        "catalog_item_instance_id": catalog_id,
        "spec": spec,
        "approval_status": approval or "",
        "create_time": rfc3339(created),
        "update_time": rfc3339(updated),
    }
    return add_status(wire, status, message, moment)


async def health(request: Request) -> Response:
    async with state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return _json(200, {"status": "healthy", "path": "health"})


async def get_resource(request: Request) -> Response:
    rid = request.path_params["rid"]
    if not ID.match(rid):
        return _problem(400, "validation-error", "resource_id is not a DNS-1123 label")
    async with state.pool.connection() as conn:
        cursor = await conn.execute(SQL_GET, (rid,))
        row = await cursor.fetchone()
    if row is None:
        return _problem(404, "not-found", f"resource {rid} not found")
    return _json(200, _resource(row))


async def list_resources(request: Request) -> Response:
    query = request.query_params
    size_text = query.get("max_page_size", "100")
    if not size_text.isdigit() or not 1 <= int(size_text) <= 100:
        return _problem(400, "validation-error", "max_page_size must be 1 to 100")
    size = int(size_text)
    provider = query.get("provider") or None
    token = query.get("page_token")
    after = SETTINGS.cursor(token, provider) if token else None
    if token and after is None:
        return _problem(400, "validation-error", "page_token is not a valid page token")
    params: list[Any] = [provider] if provider else []
    if after:
        params += after
    async with state.pool.connection() as conn:
        cursor = await conn.execute(
            SQL_LIST[provider is not None, after is not None], [*params, size + 1]
        )
        rows = await cursor.fetchall()
    body: dict[str, Any] = {"resources": [_resource(row) for row in rows[:size]]}
    if len(rows) > size:
        body["next_page_token"] = SETTINGS.page_token(rows[size - 1], provider)
    return _json(200, body)


async def create_resource(request: Request) -> Response:
    rid = request.query_params.get("id") or str(uuid.uuid4())
    if not ID.match(rid):
        return _problem(400, "validation-error", "id is not a DNS-1123 label")
    try:
        body = json.loads(await request.body())
        catalog_id, spec = body["catalog_item_instance_id"], body["spec"]
    except (ValueError, TypeError, KeyError):
        return _problem(400, "validation-error", "body must have catalog_item_instance_id, spec")
    if not isinstance(catalog_id, str) or not catalog_id or not isinstance(spec, dict) or not spec:
        return _problem(400, "validation-error", "catalog_item_instance_id and spec are required")
    async with state.http.post(
        SETTINGS.evaluate_url, json={"service_instance": {"spec": spec}}
    ) as answer:
        if answer.status != 200:
            return _problem(upstream_status(answer.status), "policy-error", await answer.text())
        verdict = await answer.json()
    provider = verdict.get("selected_provider")
    if not provider:
        return _problem(424, "policy-dependency", "the policies selected no provider")
    status = verdict["status"]
    now = datetime.now(UTC)
    owner = uuid.uuid4().hex
    try:
        async with state.pool.connection() as conn:
            path, until = "resources/" + rid, now + LEASE
            values = (rid, catalog_id, Jsonb(spec), provider, status, path, now, now, owner, until)
            await conn.execute(SQL_INSERT, values)
    except psycopg.errors.UniqueViolation:
        return _problem(409, "resource-conflict", f"resource id {rid} is already in use")
    instance = {"provider_name": provider, "spec": verdict["evaluated_service_instance"]["spec"]}
    async with state.http.post(SETTINGS.instances_url, params={"id": rid}, json=instance) as answer:
        created, detail = answer.status == 201, "" if answer.status == 201 else await answer.text()
        failed_status = answer.status
        made = sprm_status(orjson.loads(await answer.read())) if created else None
    async with state.pool.connection() as conn:
        if created:
            await conn.execute(SQL_READY_CREATED, (made, made, rid, owner))
        else:
            await conn.execute(SQL_DELETE, (rid, owner))
    if not created:
        return _problem(upstream_status(failed_status), "provider-error", detail)
    stamp = rfc3339(now)
    resource = {
        "id": rid,
        "path": "resources/" + rid,
        "provider_name": provider,
        "catalog_item_instance_id": catalog_id,
        "spec": spec,
        "approval_status": status,
        "create_time": stamp,
        "update_time": stamp,
    }
    return _json(201, add_status(resource, made, None, now))


async def delete_resource(request: Request) -> Response:
    rid = request.path_params["rid"]
    if not ID.match(rid):
        return _problem(400, "validation-error", "resource_id is not a DNS-1123 label")
    owner = uuid.uuid4().hex
    async with state.pool.connection() as conn:
        cursor = await conn.execute(SQL_CLAIM, (owner, datetime.now(UTC) + LEASE, rid))
        if await cursor.fetchone() is None:
            cursor = await conn.execute(SQL_EXISTS, (rid,))
            if await cursor.fetchone() is None:
                return _problem(404, "not-found", f"resource {rid} not found")
            return _problem(409, "resource-conflict", f"resource {rid} is busy")
    async with state.http.delete(f"{SETTINGS.instances_url}/{rid}") as answer:
        gone = answer.status in (204, 404)
        failed_status = answer.status
        if not gone:
            detail = await answer.text()
    async with state.pool.connection() as conn:
        if not gone:
            await conn.execute(SQL_READY, (rid, owner))
            return _problem(upstream_status(failed_status), "provider-error", detail)
        await conn.execute(SQL_DELETE, (rid, owner))
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route(f"{PREFIX}/health", health, methods=["GET"]),
        Route(f"{PREFIX}/resources", list_resources, methods=["GET"]),
        Route(f"{PREFIX}/resources", create_resource, methods=["POST"]),
        Route(f"{PREFIX}/resources/{{rid}}", get_resource, methods=["GET"]),
        Route(f"{PREFIX}/resources/{{rid}}", delete_resource, methods=["DELETE"]),
    ],
    lifespan=lifespan,
)
