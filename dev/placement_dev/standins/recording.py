"""What the stand-ins were asked: every API request, in order, for tests to assert on."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request

# Headers worth asserting on (correlation, auth, tracing); names are stored lower-case.
RECORDED_HEADERS = ("authorization", "content-type", "traceparent", "x-request-id")


def redact(authorization: str) -> str:
    """An Authorization value as recorded (readable by anyone at /_standin/requests):
    its scheme and a fingerprint of the credentials, never the credentials."""
    scheme, _, credentials = authorization.partition(" ")
    digest = hashlib.sha256(credentials.encode()).hexdigest()[:12]
    return f"{scheme} <redacted sha256:{digest}>"


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the stand-in received it."""

    operation: str
    method: str
    path: str
    query: dict[str, str]
    body: Any  # the parsed JSON body; None when absent or not JSON
    headers: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    """A thread-safe log of requests; the oldest are dropped past `limit` so that a
    long benchmark run does not grow without bound."""

    def __init__(self, limit: int | None = 10_000) -> None:
        self._lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque(maxlen=limit)

    def add(self, operation: str, request: Request, body: Any) -> None:
        sent = request.headers
        headers = {name: sent[name] for name in RECORDED_HEADERS if name in sent}
        if "authorization" in headers:
            headers["authorization"] = redact(headers["authorization"])
        record = RecordedRequest(
            operation=operation,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            body=body,
            headers=headers,
        )
        with self._lock:
            self._requests.append(record)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
