"""What both upstream clients share: a pooled Session, and turning failures into
UpstreamError through the client's own `Translation` (the generated code returns
responses and raises requests' errors)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

import requests

from placement.config import Upstream
from placement.errors import UpstreamError
from placement.telemetry import context, metrics
from placement.upstream import deadlines
from placement.upstream.errors import Translation

log = logging.getLogger("placement.upstream")

API_PREFIX = "/api/v1alpha1"


class Answer(Protocol):
    """The generated `types.Response` of either client."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def parsed(self) -> Any: ...


A = TypeVar("A", bound=Answer)

# requests' errors raised before anything is sent: a fault of ours, not of the upstream
# (e.g. a body that cannot be serialised), never retried or reported as the upstream's.
LOCAL_ERRORS = (
    requests.exceptions.InvalidJSONError,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


C = TypeVar("C")


def generated_client(client_class: Callable[..., C], upstream: Upstream, pool_size: int) -> C:
    """A generated client (`policy_api` or `sprm_api`) on `upstream`, over its own pool."""
    return client_class(
        base_url=upstream.url + API_PREFIX,
        timeout=upstream.timeout,
        session=pooled_session(upstream.url, pool_size),
    )


def pooled_session(base_url: str, pool_size: int) -> requests.Session:
    """One keep-alive pool per upstream, as large as the number of request threads, whose
    calls end by their total deadline (`deadlines.py`).

    The environment's proxy and CA-bundle settings (requests' own rules) are read once
    here: by default requests reads them, and looks for a .netrc, on every call."""
    session = requests.Session()
    adapter = deadlines.DeadlineAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    settings = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(settings["proxies"])
    if base_url.startswith("https://"):  # a CA bundle path costs a stat per plain call too
        session.verify = settings["verify"]
    session.trust_env = False
    return session


def call_headers(forward_auth: bool) -> dict[str, str]:
    """Headers tying an upstream call to the request it serves: its X-Request-ID and,
    when UPSTREAM_FORWARD_AUTH is on, the caller's bearer token."""
    request = context.current()
    if request is None:
        return {}
    headers = {"X-Request-ID": request.request_id}
    if forward_auth and request.bearer_token:
        headers["Authorization"] = f"Bearer {request.bearer_token}"
    return headers


def send(errors: Translation, operation: str, call: Callable[[], A]) -> A:
    """Make one call, timed, counted and logged; no answer at all (refused, reset,
    timed out) or a success answer not matching the upstream's spec is an UpstreamError.
    A request that could not be made (LOCAL_ERRORS) is raised as it is: not sent."""
    started = time.perf_counter()
    outcome, status = "error", None
    try:
        answer = call()
        deadlines.check(answer.status_code)
        status = int(answer.status_code)
        outcome = "credentials_refused" if status in (401, 403) else f"{status // 100}xx"
        return answer
    except requests.JSONDecodeError as exc:  # an answer (a subclass of InvalidJSONError)
        outcome = "malformed"
        raise _malformed(errors, operation, exc) from exc
    except LOCAL_ERRORS:
        outcome = "not_sent"
        raise
    except requests.RequestException as exc:
        cut = deadlines.current()
        if isinstance(exc, requests.Timeout) or (cut is not None and cut.expired):
            outcome = "timeout"
            limit = "" if cut is None else f" (the try's deadline: {cut.seconds:.3g} s in all)"
            raise errors.error(operation, None, f"timed out{limit}: {exc}") from exc
        outcome = "connection_error"
        raise errors.error(operation, None, f"no answer ({exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        outcome = "malformed"
        raise _malformed(errors, operation, exc) from exc
    finally:
        _observe(errors.name, operation, outcome, status, time.perf_counter() - started)


def _observe(
    upstream: str, operation: str, outcome: str, status: int | None, seconds: float
) -> None:
    metrics.UPSTREAM_CALLS.labels(upstream, operation, outcome).inc()
    metrics.UPSTREAM_SECONDS.labels(upstream, operation).observe(seconds)
    refused = outcome == "credentials_refused"
    log.log(
        logging.WARNING if refused else logging.INFO,
        "%s %s: %s",
        upstream,
        operation,
        f"{status}: it refused the service's credentials or the forwarded token"
        if refused
        else status or outcome,
        extra={
            "upstream": upstream,
            "upstream_operation": operation,
            "outcome": outcome,
            "upstream_status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )


def failure(errors: Translation, operation: str, answer: Answer) -> UpstreamError:
    """An UpstreamError for an answer that is not the expected success: another status,
    or the expected one with a body that does not match the API (its status kept: an
    unreadable success may still have acted)."""
    status = int(answer.status_code)
    if 200 <= status < 300:
        reason = f"answer does not match its API: {_reason(answer)}"
        return errors.error(operation, status, reason, transient=False)
    wait = retry_after(answer.headers.get("Retry-After"))
    return errors.error(operation, status, _reason(answer), upstream_wait=wait)


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date); None
    when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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


def _malformed(errors: Translation, operation: str, exc: Exception) -> UpstreamError:
    reason = f"answer does not match its API ({type(exc).__name__}: {exc})"
    return errors.error(operation, None, reason, transient=False)
