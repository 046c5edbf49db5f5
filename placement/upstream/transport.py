"""What both upstream clients share: a pooled Session, and turning failures into
UpstreamError (the generated code returns responses and raises requests' errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from placement.upstream.errors import UpstreamError

API_PREFIX = "/api/v1alpha1"


class Answer(Protocol):
    """The generated `types.Response` of either client."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def parsed(self) -> Any: ...


A = TypeVar("A", bound=Answer)


def pooled_session(pool_size: int) -> requests.Session:
    """One keep-alive pool per upstream, as large as the number of request threads."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def send(upstream: str, operation: str, call: Callable[[], A]) -> A:
    """Make one call; no answer at all (refused, reset, timed out) or a success answer
    that does not match the upstream's spec is an UpstreamError."""
    try:
        return call()
    except requests.JSONDecodeError as exc:
        raise _malformed(upstream, operation, exc) from exc
    except requests.Timeout as exc:
        raise UpstreamError(upstream, operation, None, f"timed out ({exc})") from exc
    except requests.RequestException as exc:
        raise UpstreamError(upstream, operation, None, f"no answer ({exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise _malformed(upstream, operation, exc) from exc


def failure(upstream: str, operation: str, answer: Answer) -> UpstreamError:
    """An UpstreamError for an answer that is not the expected success."""
    return UpstreamError(upstream, operation, int(answer.status_code), _reason(answer))


def _reason(answer: Answer) -> str:
    """The upstream's own explanation: its problem `detail` (or `title`), else the body."""
    try:
        problem = json.loads(answer.content)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        for key in ("detail", "title"):
            if isinstance(problem.get(key), str) and problem[key]:
                return str(problem[key])
    return answer.content[:200].decode("utf-8", "replace").strip() or "no detail"


def _malformed(upstream: str, operation: str, exc: Exception) -> UpstreamError:
    reason = f"answer does not match its API ({type(exc).__name__}: {exc})"
    return UpstreamError(upstream, operation, None, reason, transient=False)
