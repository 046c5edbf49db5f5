"""Checks of problem-details answers (RFC 9457) from the service."""

from __future__ import annotations

import json
from typing import Any

import requests
from placement_manager_client.models import Problem
from placement_manager_client.types import Response

PROBLEM_JSON = "application/problem+json"

# What a create answers when the SPRM refuses it: (SPRM status, our status, problem type).
SPRM_CREATE_REFUSALS = [
    (400, 400, "validation-error"),
    (404, 404, "not-found"),
    (409, 409, "resource-conflict"),
    (422, 422, "provider-error"),
]


def assert_problem(
    response: Response[Any] | requests.Response, status: int, kind: str
) -> dict[str, Any]:
    """The problem details of an error answer, checked against RFC 9457 and our types."""
    assert response.status_code == status, response.content
    assert response.headers["Content-Type"] == PROBLEM_JSON
    problem: dict[str, Any] = json.loads(response.content)
    assert problem["type"] == kind
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    return problem


def parsed_problem(response: Response[Any], status: int, kind: str) -> Problem:
    """`assert_problem`, and the generated client parsed the answer as a `Problem` (the
    spec declares that status for the operation)."""
    assert_problem(response, status, kind)
    parsed = response.parsed
    assert isinstance(parsed, Problem), response.content
    return parsed


def problem_type(response: Response[Any] | requests.Response) -> str | None:
    """The problem `type` of an error answer in problem details, else None."""
    if not response.headers.get("Content-Type", "").startswith(PROBLEM_JSON):
        return None
    kind = json.loads(response.content).get("type")
    return str(kind) if kind is not None else None
