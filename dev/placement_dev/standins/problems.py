"""Problem-details answers (RFC 9457) and JSON bodies, as both upstream contracts use them."""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

PROBLEM_JSON = "application/problem+json"
API_PREFIX = "/api/v1alpha1"


class Problem(Exception):
    """Raised by a handler to answer with problem details."""

    def __init__(
        self,
        status: int,
        type_: str,
        detail: str,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.type, self.detail = status, type_, detail
        self.title = title or _phrase(status)
        self.headers = headers

    def response(self, media_type: str) -> Response:
        body = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        return JSONResponse(body, self.status, headers=self.headers, media_type=media_type)


def as_problem(exc: Exception) -> Problem:
    """Any exception as a problem: Starlette's own (no such path, method not allowed)
    keep their status; anything else is a stand-in bug, still answered in the contract's
    shape."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, HTTPException):
        type_ = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "ERROR")
        return Problem(exc.status_code, type_, str(exc.detail), headers=exc.headers)
    return Problem(500, "INTERNAL", f"stand-in error: {type(exc).__name__}: {exc}")


def bad_request(detail: str) -> Problem:
    return Problem(400, "BAD_REQUEST", detail, "Invalid request")


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, or None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def json_object(body: Any, what: str = "the body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"{what} must be a JSON object")
    return body


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
