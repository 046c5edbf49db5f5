"""What one request carries through every layer without being passed around: its id
(for logs, problem details and upstream calls), the resource it concerns, and the
caller's bearer token (forwarded upstream only when configured)."""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from dataclasses import dataclass

# A client's id is echoed in logs and headers: accept only a plain token of bounded size.
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    operation: str = ""
    resource_id: str = ""
    bearer_token: str = ""


_current: ContextVar[RequestContext | None] = ContextVar("placement_request", default=None)

# Ids are unique without a random number per request: a random prefix per process, and
# a counter (uuid4 per request showed in profiles).
_PROCESS = os.urandom(6).hex()
_counter = itertools.count(1)


def begin(client_request_id: str | None, prefix: str = "req") -> RequestContext:
    """Start a request's context: the client's X-Request-ID if sane, else a new one."""
    rid = client_request_id if client_request_id and _VALID_ID.fullmatch(client_request_id) else ""
    context = RequestContext(rid or f"{prefix}-{_PROCESS}-{next(_counter):x}")
    _current.set(context)
    return context


def current() -> RequestContext | None:
    return _current.get()


def note_resource(resource_id: str) -> None:
    """Name the resource a request concerns, for its log line."""
    context = _current.get()
    if context is not None:
        context.resource_id = resource_id
