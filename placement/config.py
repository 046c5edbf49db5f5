"""The one place that reads configuration: environment variables, read once at start-up.

Names and defaults are the Go service's, so a deployment can swap one for the other.
Every invalid value stops start-up with a `ConfigError` naming the variable.

A setting may have other names: an alias (`BIND_ADDRESS` for `SVC_ADDRESS`, as DCM's
deployments spell it) and, for secrets, a `*_FILE` variant naming a file that holds the
value (as container platforms mount secrets). No name outranks another: every name that
is set must give the same value, else start-up stops naming them (a deployment's setting
can never be silently overridden by another name, e.g. one baked into an image).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff between tries of an upstream call (factor 2)."""

    tries: int = 4
    initial: float = 1.0
    maximum: float = 4.0


@dataclass(frozen=True, slots=True)
class Upstream:
    url: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Database:
    type: str
    host: str
    port: int
    name: str
    user: str
    password: str
    connect_timeout: float
    pool_size: int
    pool_timeout: float = 2.0

    def describe(self) -> str:
        """Where the data lives, without credentials, for log lines and errors."""
        if self.type == "sqlite":
            return f"sqlite:{self.name}"
        return f"postgresql://{self.host}:{self.port}/{self.name}"


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The reconciler: how often it looks for stale operations, and how long past the
    longest possible SPRM call an operation's lease lasts."""

    interval: float = 30.0
    grace: float = 30.0


@dataclass(frozen=True, slots=True)
class Auth:
    """Bearer-token authentication; off unless AUTH_DISABLED=false. `keys_max_age`: how
    long the issuer's keys are still used while fetching them again fails."""

    enabled: bool = False
    issuer_url: str = ""
    audience: str = ""
    keys_max_age: float = 3600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost the service (see the README's operations section)."""

    max_header_bytes: int = 64 << 10
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024
    queue_wait: float = 5.0
    page_max_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class Config:
    host: str
    port: int
    log_level: str
    database: Database
    policy: Upstream
    sprm: Upstream
    retry: RetryPolicy
    threads: int
    workers: int
    reconcile: Reconcile = Reconcile()
    max_body_bytes: int = 1 << 20
    log_format: str = "json"
    forward_auth: bool = False
    auth: Auth = Auth()
    audit_interval: float = 0.0  # the in-service drift audit; 0: off
    limits: Limits = Limits()

    def operation_lease(self) -> float:
        """Seconds an operation holds a resource: its two longest possible SPRM calls
        (a create, then a get to learn an unknown outcome), plus the reconcile grace."""
        retry = self.retry
        waits = sum(min(retry.initial * 2.0**n, retry.maximum) for n in range(retry.tries - 1))
        return float(2 * (retry.tries * self.sprm.timeout + waits) + self.reconcile.grace)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        read = _Reader(env)
        host, port = read("SVC_ADDRESS", ":8080", parse_address, alias="BIND_ADDRESS")
        return cls(
            host=host,
            port=port,
            log_level=read("SVC_LOG_LEVEL", "info", _log_level),
            database=Database(
                type=read("DB_TYPE", "pgsql", _choice("pgsql", "sqlite")),
                host=read("DB_HOST", "localhost", _non_empty),
                port=read("DB_PORT", "5432", _int_between(1, 65535)),
                name=read("DB_NAME", "placement-manager", _non_empty),
                user=read("DB_USER", "", str),
                password=read("DB_PASSWORD", "", str, alias="DB_PASS", secret=True),
                connect_timeout=read("DB_CONNECT_TIMEOUT", "30s", parse_duration),
                pool_size=read("DB_POOL_SIZE", "10", _int_between(1, 1000)),
                pool_timeout=read("DB_POOL_TIMEOUT", "2s", _positive_duration),
            ),
            policy=Upstream(
                url=read("POLICY_MANAGER_EVALUATION_URL", "http://localhost:8081", _http_url),
                timeout=read("POLICY_MANAGER_EVALUATION_TIMEOUT", "10s", _positive_duration),
            ),
            sprm=Upstream(
                url=read("SP_RESOURCE_MANAGER_URL", "http://localhost:8082", _http_url),
                timeout=read("SP_RESOURCE_MANAGER_TIMEOUT", "10s", _positive_duration),
            ),
            retry=RetryPolicy(
                tries=read("UPSTREAM_RETRY_MAX_TRIES", "4", _int_between(1, 100)),
                initial=read("UPSTREAM_RETRY_INITIAL_INTERVAL", "1s", parse_duration),
                maximum=read("UPSTREAM_RETRY_MAX_INTERVAL", "4s", parse_duration),
            ),
            threads=read("SVC_THREADS", "256", _int_between(1, 4096)),
            workers=read("SVC_WORKERS", "1", _int_between(1, 64), alias="WEB_CONCURRENCY"),
            reconcile=Reconcile(
                interval=read("RECONCILE_INTERVAL", "30s", _positive_duration),
                grace=read("RECONCILE_GRACE", "30s", parse_duration),
            ),
            max_body_bytes=read("SVC_MAX_BODY_BYTES", str(1 << 20), _int_between(1, 1 << 30)),
            log_format=read("LOG_FORMAT", "json", _choice("json", "text")),
            forward_auth=read("UPSTREAM_FORWARD_AUTH", "false", _boolean),
            auth=_auth(read),
            audit_interval=read("AUDIT_INTERVAL", "0", parse_duration),
            limits=Limits(
                max_header_bytes=read(
                    "SVC_MAX_HEADER_BYTES", str(64 << 10), _int_between(1 << 10, 16 << 20)
                ),
                header_timeout=read("SVC_HEADER_TIMEOUT", "10s", _positive_duration),
                body_timeout=read("SVC_BODY_TIMEOUT", "30s", _positive_duration),
                max_connections=read("SVC_MAX_CONNECTIONS", "1024", _int_between(1, 1 << 20)),
                queue_wait=read("SVC_QUEUE_WAIT", "5s", parse_duration),
                page_max_bytes=read("SVC_PAGE_MAX_BYTES", str(1 << 20), _int_between(1, 1 << 40)),
            ),
        )


def _auth(read: _Reader) -> Auth:
    if read("AUTH_DISABLED", "true", _boolean):
        return Auth()
    return Auth(
        enabled=True,
        # Kept as written: it must equal the tokens' `iss`, trailing slash included.
        issuer_url=read("AUTH_ISSUER_URL", "", _required(_issuer_url)),
        audience=read("AUTH_JWT_AUDIENCE", "", _required(str)),
        keys_max_age=read("AUTH_KEYS_MAX_AGE", "1h", _positive_duration),
    )


def variables() -> frozenset[str]:
    """Every environment variable the configuration reads (names, aliases, `*_FILE`
    variants): what a deployment file may set."""
    env = _Recorder(
        {"AUTH_DISABLED": "false", "AUTH_ISSUER_URL": "https://idp", "AUTH_JWT_AUDIENCE": "a"}
    )
    Config.from_env(env)
    return frozenset(env.asked)


class _Reader:
    """Reads one setting under each of its names, parses it, and names it in any error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(
        self,
        name: str,
        default: str,
        parse: Callable[[str], T],
        alias: str | None = None,
        *,
        secret: bool = False,
    ) -> T:
        given = self._given(name, alias, secret)
        (source, raw), *others = given or [(name, None)]
        for other, value in others:
            if value != raw:
                shown = "" if secret else f"={raw!r}"
                other_shown = "" if secret else f"={value!r}"
                raise ConfigError(
                    f"{source}{shown} and {other}{other_shown} disagree: "
                    "set one of them (or both to the same value)"
                )
        try:
            return parse(default if raw is None else raw)
        except ValueError as exc:
            shown = "***" if secret and raw else repr(raw)
            raise ConfigError(f"{source}={shown}: {exc}") from None

    def _given(self, name: str, alias: str | None, secret: bool) -> list[tuple[str, str | None]]:
        """(variable, value) for each name of the setting that is set."""
        names = [name] if alias is None else [name, alias]
        given: list[tuple[str, str | None]] = [
            (n, self._env[n]) for n in names if self._env.get(n) is not None
        ]
        if secret:
            file_name = f"{name}_FILE"
            path = self._env.get(file_name)
            if path is not None:
                given.append((file_name, _read_secret_file(file_name, path)))
        return given


def _read_secret_file(variable: str, path: str) -> str:
    """A secret mounted as a file; the line break editors and `echo` add is not part of it."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{variable}={path!r}: cannot read it: {reason}") from None


class _Recorder(dict[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Parse a Go duration ("10s", "1m30s", "250ms") into seconds."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError('not a duration (use Go syntax such as "10s", "500ms", "1m30s")')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError("empty duration")
    return total


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError("must be greater than zero")
    return seconds


def parse_address(text: str) -> tuple[str, int]:
    """Parse a Go listen address: ":8080", "127.0.0.1:8080", "[::1]:8080"."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError('expected "host:port" or ":port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("IPv6 hosts must be in brackets, e.g. [::1]:8080")
    port = _int_between(1, 65535)(port_text)
    # ":8080" means every interface, as in Go.
    return host or "0.0.0.0", port  # noqa: S104  # nosec B104


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.strip().isdigit():
            raise ValueError("not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse


_LOG_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
}


def _log_level(text: str) -> str:
    level = _LOG_LEVELS.get(text.lower())
    if level is None:
        raise ValueError("must be debug, info, warn or error")
    return level


def _required(parse: Callable[[str], T]) -> Callable[[str], T]:
    def parse_required(text: str) -> T:
        if not text:
            raise ValueError("required when AUTH_DISABLED=false")
        return parse(text)

    return parse_required


def _boolean(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if text.lower() not in value:
        raise ValueError("must be true or false")
    return value[text.lower()]


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _http_url(text: str) -> str:
    return _issuer_url(text).rstrip("/")


def _issuer_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return text
