"""The domain's errors: what went wrong, in terms a client can act on. Each adapter
raises its own failures as these (a store's, an upstream's); `http/problems.py` maps
their kinds to HTTP and knows nothing else about them."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What kind of failure (the `type` of problem details on the wire)."""

    VALIDATION = "validation-error"
    NOT_FOUND = "not-found"
    RESOURCE_CONFLICT = "resource-conflict"
    POLICY_REJECTED = "policy-rejected"
    POLICY_CONFLICT = "policy-conflict"
    POLICY_DEPENDENCY = "policy-dependency"
    PROVIDER_ERROR = "provider-error"
    UNAVAILABLE = "service-unavailable"
    INTERNAL = "internal-error"


class PlacementError(Exception):
    """A request the service cannot fulfil: its `kind`, a `detail` safe to show the
    client and, for a temporary refusal, the seconds after which to retry
    (`Retry-After`). `message`, when given, is what logs show instead of the detail (it
    may hold what the client must not see: SQL, an upstream's 5xx body)."""

    def __init__(
        self,
        kind: Kind,
        detail: str,
        retry_after: int | None = None,
        *,
        message: str | None = None,
    ) -> None:
        super().__init__(detail if message is None else message)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
