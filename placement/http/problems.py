"""The one error table: every problem type the service answers (the domain's kinds and
the HTTP edge's own), and every exception turned into RFC 9457 problem details.

The domain's errors arrive already translated by the adapter that met them (a store's,
an upstream's: each a `PlacementError` with its kind and a detail safe to show): this
module maps kinds to HTTP and knows nothing of upstreams or databases. The HTTP edge
refuses with `HttpProblem` (body limits) or answers `document()` itself (connection
limits); the framework raises its own HTTP errors.

`python -m placement.http.problems` prints the README's table of problem types.
"""

from __future__ import annotations

import http
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from placement.errors import Kind, PlacementError
from placement.http.encoding import json_bytes
from placement.telemetry import context

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class HttpKind(StrEnum):
    """Problem types only the HTTP edge answers: the framework's and the limits'."""

    UNAUTHORIZED = "unauthorized"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    REQUEST_TIMEOUT = "request-timeout"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    HEADERS_TOO_LARGE = "request-header-fields-too-large"


ProblemKind = Kind | HttpKind


@dataclass(frozen=True, slots=True)
class ProblemType:
    status: int
    title: str
    cause: str  # one line for the README: what a client sent or met


PROBLEM_TYPES: dict[ProblemKind, ProblemType] = {
    Kind.VALIDATION: ProblemType(
        400,
        "Invalid request",
        "request fails validation against the spec (patterns match the whole value: an id"
        " ending in a newline is refused; a string holding NUL (`\\u0000`) or a lone surrogate"
        " (`\\ud800`): a body field or key, a parameter; a query parameter that is not UTF-8;"
        " a path holding a control character; a number beyond a float's range (`1e999`), JSON"
        " nested too deep), a bad page token, more than one `Authorization` header; a request"
        " that is not valid HTTP/1.1 (the connection is closed)",
    ),
    HttpKind.UNAUTHORIZED: ProblemType(
        401,
        "Unauthorized",
        "missing or invalid bearer token (only with `AUTH_DISABLED=false`; with"
        " `WWW-Authenticate: Bearer`)",
    ),
    Kind.NOT_FOUND: ProblemType(404, "Resource not found", "no such resource, unknown path"),
    HttpKind.METHOD_NOT_ALLOWED: ProblemType(
        405, "Method Not Allowed", "a method the path does not have (with `Allow`)"
    ),
    Kind.POLICY_REJECTED: ProblemType(406, "Rejected by policy", "the policies reject the spec"),
    HttpKind.REQUEST_TIMEOUT: ProblemType(
        408,
        "Request timeout",
        "line and headers not received within `SVC_HEADER_TIMEOUT`, body not received within"
        " `SVC_BODY_TIMEOUT` (the connection is closed)",
    ),
    Kind.RESOURCE_CONFLICT: ProblemType(
        409,
        "Resource conflict",
        "id already in use (by a resource, or by an instance still to be deleted: a replaced"
        " resource's, or one a failed create may have made, with `Retry-After`); the"
        " resource is busy with another operation (being provisioned, deleted, rehydrated)",
    ),
    Kind.POLICY_CONFLICT: ProblemType(409, "Policy conflict", "the policies conflict"),
    HttpKind.PAYLOAD_TOO_LARGE: ProblemType(
        413,
        "Request body too large",
        "request body over `SVC_MAX_BODY_BYTES` (the connection is closed)",
    ),
    HttpKind.UNSUPPORTED_MEDIA_TYPE: ProblemType(
        415, "Unsupported Media Type", "request body without `Content-Type: application/json`"
    ),
    Kind.PROVIDER_ERROR: ProblemType(422, "Provider error", "the provider refuses"),
    Kind.POLICY_DEPENDENCY: ProblemType(
        424, "Policy dependency not met", "the policies selected no provider"
    ),
    HttpKind.HEADERS_TOO_LARGE: ProblemType(
        431,
        "Request headers too large",
        "request line and headers, or a chunked body's trailers, over `SVC_MAX_HEADER_BYTES`"
        " (the connection is closed)",
    ),
    Kind.INTERNAL: ProblemType(
        500,
        "Internal error",
        "other upstream answers (401 and 403: the upstream refused the service's credentials"
        " or the forwarded token, said in the detail), network errors, a create or rehydrate"
        " the SPRM did not confirm (nothing was created: anything it made is deleted), a"
        " delete it did not confirm (the detail says when it is settled), database errors",
    ),
    Kind.UNAVAILABLE: ProblemType(
        503,
        "Service unavailable",
        "database not answering; every request thread busy for `SVC_QUEUE_WAIT`; more than"
        " `SVC_MAX_CONNECTIONS` connections open; the token issuer unreachable while its keys"
        " are needed; a failed create, delete or rehydrate whose outcome could not be"
        " recorded (all with `Retry-After`)",
    ),
}

# The framework's own HTTP errors that are rows of the table (its 400 and 404 are the
# domain's validation-error and not-found). Any other (a fault of ours, e.g. a response
# not matching the spec) keeps its status's phrase as title and type.
FRAMEWORK_KINDS: dict[int, HttpKind] = {
    401: HttpKind.UNAUTHORIZED,
    405: HttpKind.METHOD_NOT_ALLOWED,
    415: HttpKind.UNSUPPORTED_MEDIA_TYPE,
}

# Seconds a client is told to wait (Retry-After) before retrying a 503, unless the
# error says otherwise.
RETRY_AFTER = 1


class HttpProblem(Exception):
    """A refusal of the HTTP edge itself (a body too large or too slow), never the
    domain's."""

    def __init__(self, kind: HttpKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def status_of(kind: ProblemKind) -> int:
    return PROBLEM_TYPES[kind].status


def classify(exc: Exception) -> tuple[ProblemKind, str]:
    """The problem type and the detail to show for an exception."""
    if isinstance(exc, PlacementError | HttpProblem):
        return exc.kind, exc.detail
    return Kind.INTERNAL, "an unexpected error occurred"


def response(
    kind: ProblemKind,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
) -> ConnexionResponse:
    row = PROBLEM_TYPES[kind]
    return _response(kind.value, row.title, row.status, detail, instance, headers)


def refusal_headers(kind: ProblemKind, retry_after: int | None = None) -> dict[str, str]:
    """What an answer of `kind` carries besides its body: when to retry a 503 (or another
    refusal that says when); and a request that timed out, or whose headers or body are
    too large, closes the connection (what the client still sends is not read)."""
    if kind is Kind.UNAVAILABLE:
        return {"Retry-After": str(retry_after or RETRY_AFTER)}
    if retry_after is not None:
        return {"Retry-After": str(retry_after)}
    if kind in (HttpKind.REQUEST_TIMEOUT, HttpKind.HEADERS_TOO_LARGE, HttpKind.PAYLOAD_TOO_LARGE):
        return {"Connection": "close"}
    return {}


def document(kind: ProblemKind, detail: str, instance: str | None = None) -> bytes:
    """The problem details of `kind` as bytes, for answers written outside Connexion."""
    row = PROBLEM_TYPES[kind]
    return json_bytes(_document(kind.value, row.title, row.status, detail, instance))


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
        elif status_of(kind) >= 500:
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
    kind = FRAMEWORK_KINDS.get(exc.status_code)
    if kind is not None:
        title = PROBLEM_TYPES[kind].title
        return response(kind, _short(detail) or title, instance, headers)
    if isinstance(exc, ProblemException) and exc.status_code >= 500:
        log.error("framework error on %s: %r", instance, exc)
    phrase = http.HTTPStatus(exc.status_code).phrase
    detail = _short(detail) or phrase
    return _response(slug(phrase), phrase, exc.status_code, detail, instance, headers)


def _short(detail: str, limit: int = 300) -> str:
    """Keep a validation message to its first line and a bounded length (never the schema)."""
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def slug(phrase: str) -> str:
    """A status's phrase as a problem type: "Method Not Allowed" -> method-not-allowed."""
    return re.sub(r"[^a-z0-9]+", "-", phrase.lower()).strip("-")


def markdown(answers: Iterable[tuple[Kind, str]] = ()) -> str:
    """The table of problem types in Markdown, each with its causes: the table's own,
    then the upstream answers (kind, "SPRM 422") the adapters translate into it."""
    upstream: dict[ProblemKind, list[str]] = {}
    for answer_kind, answer in answers:
        upstream.setdefault(answer_kind, []).append(answer)
    lines = ["| status | type | title | cause |", "|---|---|---|---|"]
    for kind, row in PROBLEM_TYPES.items():
        cause = "; ".join([row.cause, *([", ".join(upstream[kind])] if kind in upstream else [])])
        lines.append(f"| {row.status} | `{kind.value}` | {row.title} | {cause} |")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's table of problem types (`python -m placement.http.problems`)."""
    from placement.upstream import policy, sprm  # their own tables of answers, for the docs

    return markdown([*policy.ERRORS.answers(), *sprm.ERRORS.answers()])


if __name__ == "__main__":
    sys.stdout.write(readme_table())
