"""How each upstream's failures read to the domain: each client keeps its own
`Translation` (which answers mean what), which makes the `UpstreamError` it raises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from placement.errors import Kind, UpstreamError, transient_status


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
