"""Errors the service raises; `problems.py` turns them into HTTP answers."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """Problem types on the wire (the `type` of problem details)."""

    VALIDATION = "validation-error"
    NOT_FOUND = "not-found"
    RESOURCE_CONFLICT = "resource-conflict"
    POLICY_REJECTED = "policy-rejected"
    POLICY_CONFLICT = "policy-conflict"
    POLICY_DEPENDENCY = "policy-dependency"
    PROVIDER_ERROR = "provider-error"
    PAYLOAD_TOO_LARGE = "payload-too-large"
    REQUEST_TIMEOUT = "request-timeout"
    HEADERS_TOO_LARGE = "request-header-fields-too-large"
    UNAVAILABLE = "service-unavailable"
    INTERNAL = "internal-error"


class PlacementError(Exception):
    """A request the service cannot fulfil, with a detail safe to show the client and,
    for a temporary refusal, the seconds after which to retry (`Retry-After`)."""

    def __init__(self, kind: Kind, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
