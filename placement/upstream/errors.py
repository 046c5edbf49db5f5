"""The one error type of the upstream clients."""

from __future__ import annotations

# A 4xx answer is permanent, except these; 5xx and network errors are transient.
_TRANSIENT_4XX = frozenset({408, 429})


class UpstreamError(Exception):
    """A call to the Policy Engine or the SPRM did not succeed.

    `status` is the HTTP status, or None when no answer arrived (network error,
    timeout). `reason` is what the upstream said (its problem `detail`), for logs and,
    on 4xx answers, for the client.
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
    def outcome_unknown(self) -> bool:
        """Whether the upstream may have acted although the call failed."""
        return (self.status is None and self.transient) or (self.status or 0) >= 500
