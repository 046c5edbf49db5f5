"""The one error type of the upstream clients."""

from __future__ import annotations

# A 4xx answer is permanent, except these; 5xx and network errors are transient.
_TRANSIENT_4XX = frozenset({408, 429})


class UpstreamError(Exception):
    """A call to the Policy Engine or the SPRM did not succeed.

    `status` is the HTTP status, or None when no answer arrived (network error,
    timeout). A success status means the answer's body did not match the upstream's API
    (a proxy's page, a truncated answer). `reason` is what the upstream said (its problem
    `detail`), for logs and, on 4xx answers, for the client.
    """

    def __init__(
        self,
        upstream: str,
        operation: str,
        status: int | None,
        reason: str,
        transient: bool | None = None,
    ) -> None:
        super().__init__(f"{upstream} {operation}: {status or 'no answer'}: {reason}")
        self.upstream = upstream
        self.operation = operation
        self.status = status
        self.reason = reason
        if transient is None:
            transient = status is None or status >= 500 or status in _TRANSIENT_4XX
        self.transient = transient

    @property
    def garbled(self) -> bool:
        """A success answer whose body does not match the API."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome_unknown(self) -> bool:
        """Whether the upstream may have acted although the call failed: no answer, a
        5xx (it may have acted first), or a success that cannot be read."""
        if self.status is None:
            return self.transient
        return self.status >= 500 or self.garbled

    @property
    def summary(self) -> str:
        """How the call ended, in a few words safe to show a client."""
        if self.status is None:
            return "no answer" if self.transient else "an answer that does not match its API"
        if self.garbled:
            return f"HTTP {self.status} with a body that does not match its API"
        return f"HTTP {self.status}"
