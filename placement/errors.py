"""The domain's errors: what went wrong, in terms a client can act on. Each adapter
raises its own failures as these (a store's, an upstream's: `UpstreamError`, whose
outcome the flows reason about); `http/problems.py` maps
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


# A 4xx answer is permanent, except these; 5xx and network errors are transient.
_TRANSIENT_4XX = frozenset({408, 429})


def transient_status(status: int | None) -> bool:
    """Whether a call ending so may succeed if tried again (None: no answer)."""
    return status is None or status >= 500 or status in _TRANSIENT_4XX


class UpstreamError(PlacementError):
    """A call to the Policy Engine or the SPRM did not succeed.

    `status` is the HTTP status of the call's last try, or None when no answer arrived
    (network error, timeout). A success status means the answer's body did not match the
    upstream's API (a proxy's page, a truncated answer). `reason` is what the upstream said
    (its problem `detail`), for logs. `kind` and `detail`, what the client is told, are
    the client's `Translation` of the answer; an error made without one is an internal
    error. `upstream_wait` is the upstream's `Retry-After`, in seconds, if it gave one.
    `earlier_try_may_have_acted` is set by the retries (`retry.py`) when a try before
    this last one may have acted: then a refusal does not settle the call.
    """

    def __init__(
        self,
        upstream: str,
        operation: str,
        status: int | None,
        reason: str,
        transient: bool | None = None,
        *,
        kind: Kind = Kind.INTERNAL,
        detail: str | None = None,
        upstream_wait: float | None = None,
    ) -> None:
        super().__init__(
            kind,
            detail or f"{upstream} {operation} failed",
            message=f"{upstream} {operation}: {status or 'no answer'}: {reason}",
        )
        self.upstream = upstream
        self.operation = operation
        self.status = status
        self.reason = reason
        self.transient = transient_status(status) if transient is None else transient
        self.upstream_wait = upstream_wait
        self.earlier_try_may_have_acted = False

    @property
    def garbled(self) -> bool:
        """A success answer whose body does not match the API."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def may_have_acted(self) -> bool:
        """Whether the upstream may have acted on this try although it failed: no answer,
        a 5xx (it may have acted first), or a success that cannot be read."""
        if self.status is None:
            return self.transient
        return self.status >= 500 or self.garbled

    @property
    def outcome_unknown(self) -> bool:
        """Whether the call, all its tries together, may have acted: a refusal after a try
        that may have acted does not say that nothing happened."""
        return self.earlier_try_may_have_acted or self.may_have_acted

    @property
    def refused_credentials(self) -> bool:
        """The upstream refused our credentials or the token we forwarded."""
        return self.status in (401, 403)

    @property
    def summary(self) -> str:
        """How the call ended, in a few words safe to show a client."""
        if self.status is None:
            told = "no answer" if self.transient else "an answer that does not match its API"
        elif self.garbled:
            told = f"HTTP {self.status} with a body that does not match its API"
        else:
            told = f"HTTP {self.status}"
        if self.earlier_try_may_have_acted and not self.may_have_acted:
            told += " after a try that may have acted"
        return told
