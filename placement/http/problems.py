"""The one error-mapping table: every exception becomes RFC 9457 problem details."""

from __future__ import annotations

import http
import logging
import re
from collections.abc import Awaitable, Callable

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from placement import context
from placement.errors import Kind, PlacementError
from placement.http.encoding import json_bytes
from placement.store import StoreError, StoreUnavailable
from placement.upstream.errors import UpstreamError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_AND_TITLE: dict[Kind, tuple[int, str]] = {
    Kind.VALIDATION: (400, "Invalid request"),
    Kind.NOT_FOUND: (404, "Resource not found"),
    Kind.POLICY_REJECTED: (406, "Rejected by policy"),
    Kind.RESOURCE_CONFLICT: (409, "Resource conflict"),
    Kind.POLICY_CONFLICT: (409, "Policy conflict"),
    Kind.REQUEST_TIMEOUT: (408, "Request timeout"),
    Kind.PAYLOAD_TOO_LARGE: (413, "Request body too large"),
    Kind.PROVIDER_ERROR: (422, "Provider error"),
    Kind.POLICY_DEPENDENCY: (424, "Policy dependency not met"),
    Kind.HEADERS_TOO_LARGE: (431, "Request headers too large"),
    Kind.INTERNAL: (500, "Internal error"),
    Kind.UNAVAILABLE: (503, "Service unavailable"),
}

# Upstream answers the client can act on; anything else from an upstream is internal.
UPSTREAM_STATUS_KIND: dict[tuple[str, int], Kind] = {
    ("policy", 400): Kind.VALIDATION,
    ("policy", 406): Kind.POLICY_REJECTED,
    ("policy", 409): Kind.POLICY_CONFLICT,
    ("sprm", 400): Kind.VALIDATION,
    ("sprm", 404): Kind.NOT_FOUND,
    ("sprm", 409): Kind.RESOURCE_CONFLICT,
    ("sprm", 422): Kind.PROVIDER_ERROR,
}

UPSTREAM_NAMES = {"policy": "the Policy Engine", "sprm": "the SPRM"}

# Seconds a client is told to wait (Retry-After) before retrying a 503, unless the
# error says otherwise.
RETRY_AFTER = 1


def classify(exc: Exception) -> tuple[Kind, str]:
    """The problem type and the detail to show for an exception."""
    if isinstance(exc, PlacementError):
        return exc.kind, exc.detail
    if isinstance(exc, UpstreamError):
        return _upstream_problem(exc)
    if isinstance(exc, StoreUnavailable):
        return Kind.UNAVAILABLE, "the database is not answering; retry later"
    if isinstance(exc, StoreError):
        return Kind.INTERNAL, "the database failed"
    return Kind.INTERNAL, "an unexpected error occurred"


def _upstream_problem(exc: UpstreamError) -> tuple[Kind, str]:
    name = UPSTREAM_NAMES.get(exc.upstream, exc.upstream)
    kind = UPSTREAM_STATUS_KIND.get((exc.upstream, exc.status or 0))
    if kind is not None:
        return kind, f"{name} answered {exc.status}: {exc.reason}"
    if exc.status is None and exc.transient:
        return Kind.INTERNAL, f"{name} could not be reached"
    if exc.status is None or exc.garbled:
        return Kind.INTERNAL, f"{name} answered in a form that does not match its API"
    return Kind.INTERNAL, f"{name} failed (HTTP {exc.status})"


def response(
    kind: Kind, detail: str, instance: str | None = None, headers: dict[str, str] | None = None
) -> ConnexionResponse:
    status, title = STATUS_AND_TITLE[kind]
    return _response(kind.value, title, status, detail, instance, headers)


def refusal_headers(kind: Kind, retry_after: int | None = None) -> dict[str, str]:
    """What an answer of `kind` carries besides its body: when to retry a 503; and a
    request that timed out, or whose headers are too large, closes the connection."""
    if kind is Kind.UNAVAILABLE:
        return {"Retry-After": str(retry_after or RETRY_AFTER)}
    if kind in (Kind.REQUEST_TIMEOUT, Kind.HEADERS_TOO_LARGE):
        return {"Connection": "close"}
    return {}


def document(kind: Kind, detail: str, instance: str | None = None) -> bytes:
    """The problem details of `kind` as bytes, for answers written outside Connexion."""
    status, title = STATUS_AND_TITLE[kind]
    return json_bytes(_document(kind.value, title, status, detail, instance))


def _response(
    type_: str,
    title: str,
    status: int,
    detail: str,
    instance: str | None,
    headers: dict[str, str] | None,
) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=status,
        content_type=PROBLEM_JSON,
        body=json_bytes(_document(type_, title, status, detail, instance)),
        headers=headers or {},
    )


def _document(
    type_: str, title: str, status: int, detail: str, instance: str | None
) -> dict[str, object]:
    body: dict[str, object] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    request = context.current()
    if request is not None:
        body["request_id"] = request.request_id
    return body


ErrorHandler = Callable[[ConnexionRequest, Exception], Awaitable[ConnexionResponse]]


def handler(allowed_methods: Callable[[str], str]) -> ErrorHandler:
    """The Connexion error handler for every exception: log it, answer problem details.
    `allowed_methods(path)` gives a 405's `Allow` header."""

    async def handle(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        instance = request.url.path
        if isinstance(exc, HTTPException):
            headers = dict(exc.headers or {})
            if exc.status_code == 405:
                headers["Allow"] = allowed_methods(instance)
            if exc.status_code == 401:
                headers["WWW-Authenticate"] = "Bearer"
            return _http_problem(exc, instance, headers)
        kind, detail = classify(exc)
        if kind is Kind.UNAVAILABLE:
            log.warning("%s %s: %s", request.method, instance, exc)
        elif STATUS_AND_TITLE[kind][0] >= 500:
            log.error("%s %s failed: %s", request.method, instance, exc, exc_info=exc)
        else:
            log.info("%s %s: %s: %s", request.method, instance, kind.value, exc)
        retry_after = exc.retry_after if isinstance(exc, PlacementError) else None
        return response(kind, detail, instance, refusal_headers(kind, retry_after))

    return handle


def _http_problem(exc: HTTPException, instance: str, headers: dict[str, str]) -> ConnexionResponse:
    """Framework errors: request validation (400), unknown path, method, media type."""
    detail = str(exc.detail) if exc.detail else ""
    if exc.status_code == 400:
        return response(Kind.VALIDATION, _short(detail), instance, headers)
    if exc.status_code == 404:
        detail = f"no route matches {instance}"
        return response(Kind.NOT_FOUND, detail, instance, headers)
    if isinstance(exc, ProblemException) and exc.status_code >= 500:
        log.error("framework error on %s: %r", instance, exc)
    phrase = http.HTTPStatus(exc.status_code).phrase
    slug = re.sub(r"[^a-z0-9]+", "-", phrase.lower()).strip("-")
    return _response(slug, phrase, exc.status_code, _short(detail) or phrase, instance, headers)


def _short(detail: str, limit: int = 300) -> str:
    """Keep a validation message to its first line and a bounded length (never the schema)."""
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."
