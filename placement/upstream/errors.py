"""The one error type of the upstream clients, and how each upstream's failures read to
the domain: each client keeps its own `Translation` (which answers mean what)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from placement.errors import Kind, PlacementError

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


@dataclass(frozen=True, slots=True)
class Translation:
    """How one upstream's failures read to the domain. The answers a client can act on
    (`kinds`: status -> Kind) pass the upstream's explanation on in the detail; any other
    failure is an internal error whose detail says only how the call ended (never a 5xx
    body). `notes` say, for the README, where a status means something else."""

    name: str  # in logs and metrics: "sprm"
    title: str  # in what the client is told: "the SPRM"
    kinds: Mapping[int, Kind]
    notes: Mapping[int, str] = field(default_factory=dict)

    def error(
        self,
        operation: str,
        status: int | None,
        reason: str,
        transient: bool | None = None,
        upstream_wait: float | None = None,
    ) -> UpstreamError:
        """The error for a call of `operation` that ended with `status` (None: no answer)."""
        if transient is None:
            transient = transient_status(status)
        kind, detail = self._told(status, reason, transient)
        return UpstreamError(
            self.name,
            operation,
            status,
            reason,
            transient,
            kind=kind,
            detail=detail,
            upstream_wait=upstream_wait,
        )

    def answers(self) -> Iterator[tuple[Kind, str]]:
        """The answers a client can act on, as the README names them: (kind, "SPRM 422")."""
        name = self.title.removeprefix("the ")
        for status, kind in self.kinds.items():
            note = self.notes.get(status)
            yield kind, f"{name} {status}" + (f" ({note})" if note else "")

    def _told(self, status: int | None, reason: str, transient: bool) -> tuple[Kind, str]:
        kind = None if status is None else self.kinds.get(status)
        if kind is not None:
            return kind, f"{self.title} answered {status}: {reason}"
        if status is None and transient:
            return Kind.INTERNAL, f"{self.title} could not be reached"
        if status is None or 200 <= status < 300:
            return Kind.INTERNAL, f"{self.title} answered in a form that does not match its API"
        if status in (401, 403):
            return Kind.INTERNAL, (
                f"{self.title} refused the service's credentials or the forwarded token"
                f" (HTTP {status}): {reason}"
            )
        return Kind.INTERNAL, f"{self.title} failed (HTTP {status})"
