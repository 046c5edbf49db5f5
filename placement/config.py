"""The one place that reads configuration: environment variables, read once at start-up.

Every variable is declared once, in `VARIABLES`: its names, default, parser and one line
of help. `Config.from_env` reads through it, the settings' dataclasses take their defaults
from it, and the README's configuration table is printed from it (`python -m
placement.config`; a test compares).
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
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


class _Reader:
    """Reads one setting under each of its names, parses it, and names it in any error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __call__(self, name: str) -> Any:
        variable = VARIABLES[name]
        given = self._given(variable)
        (source, raw), *others = given or [(name, None)]
        secret = variable.secret
        for other, value in others:
            if value != raw:
                shown = "" if secret else f"={raw!r}"
                other_shown = "" if secret else f"={value!r}"
                raise ConfigError(
                    f"{source}{shown} and {other}{other_shown} disagree: "
                    "set one of them (or both to the same value)"
                )
        try:
            return variable.parse(variable.default if raw is None else raw)
        except ValueError as exc:
            shown = "***" if secret and raw else repr(raw)
            raise ConfigError(f"{source}={shown}: {exc}") from None

    def _given(self, variable: Variable) -> list[tuple[str, str | None]]:
        """(variable, value) for each name of the setting that is set."""
        names = (variable.name, *variable.aliases)
        given: list[tuple[str, str | None]] = [
            (n, self._env[n]) for n in names if self._env.get(n) is not None
        ]
        if variable.file_help:
            file_name = variable.file_name()
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


def _nats_urls(text: str) -> str:
    """NATS URLs, comma-separated (`nats://`, `tls://`, `ws://`, `wss://`); "" when unset."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls", "ws", "wss") or not parts.hostname:
            raise ValueError("is not a NATS URL (`nats://host:4222`)")
    return ",".join(urls)


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


# --- The table: every environment variable, declared once ---------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable: its names, its default (as an environment would spell
    it), its parser, and its row in the README's configuration table (`help`)."""

    name: str
    default: str
    parse: Callable[[str], Any]
    help: str
    aliases: tuple[str, ...] = ()
    # Where set, a `<name>_FILE` variant names a file holding the value; its README row.
    file_help: str = ""
    secret: bool = False  # its value never appears in an error
    default_note: str = ""  # said after the default in the README, e.g. "(off)"

    def file_name(self) -> str:
        return f"{self.name}_FILE"

    def names(self) -> tuple[str, ...]:
        """Every name it may be set under."""
        return (self.name, *self.aliases, *((self.file_name(),) if self.file_help else ()))


def _table(*variables: Variable) -> dict[str, Variable]:
    """The variables by name; no name (alias and `*_FILE` variant included) twice."""
    names = [name for v in variables for name in v.names()]
    if len(set(names)) != len(names):
        raise ValueError(f"declared twice: {sorted({n for n in names if names.count(n) > 1})}")
    return {v.name: v for v in variables}


VARIABLES: dict[str, Variable] = _table(
    Variable(
        "SVC_ADDRESS",
        ":8080",
        parse_address,
        "listen address, `host:port`, `:port` or `[v6]:port`",
        aliases=("BIND_ADDRESS",),
    ),
    Variable("SVC_LOG_LEVEL", "info", _log_level, "`debug`, `info`, `warn`, `error`"),
    Variable(
        "LOG_FORMAT",
        "json",
        _choice("json", "text"),
        "`json` (one object per line) or `text`",
    ),
    Variable("DB_TYPE", "pgsql", _choice("pgsql", "sqlite"), "`pgsql` or `sqlite`"),
    Variable("DB_HOST", "localhost", _non_empty, "PostgreSQL host"),
    Variable("DB_PORT", "5432", _int_between(1, 65535), "PostgreSQL port"),
    Variable(
        "DB_NAME",
        "placement-manager",
        _non_empty,
        "database name; for SQLite, the database file",
    ),
    Variable("DB_USER", "", str, "PostgreSQL user"),
    Variable(
        "DB_PASSWORD",
        "",
        str,
        "PostgreSQL password",
        aliases=("DB_PASS",),
        file_help="a file holding the PostgreSQL password"
        " (a mounted secret; trailing line breaks are ignored)",
        secret=True,
    ),
    Variable(
        "DB_CONNECT_TIMEOUT",
        "30s",
        parse_duration,
        "how long start-up waits for the database (`0`: one try)",
    ),
    Variable(
        "DB_POOL_SIZE",
        "12",
        _int_between(1, 1000),
        "PostgreSQL connections per worker process, both pools together: a third (rounded"
        " down) for the reads served on the event loop, the rest for the request threads;"
        " at least one each (so 2 when set to 1)",
    ),
    Variable(
        "DB_POOL_TIMEOUT",
        "2s",
        _positive_duration,
        "longest wait for a free connection before answering 503",
    ),
    Variable(
        "POLICY_MANAGER_EVALUATION_URL",
        "http://localhost:8081",
        _http_url,
        "Policy Engine base URL",
    ),
    Variable(
        "POLICY_MANAGER_EVALUATION_TIMEOUT",
        "10s",
        _positive_duration,
        "each try's total deadline: connect, send and the whole answer",
    ),
    Variable("SP_RESOURCE_MANAGER_URL", "http://localhost:8082", _http_url, "SPRM base URL"),
    Variable(
        "SP_RESOURCE_MANAGER_TIMEOUT",
        "10s",
        _positive_duration,
        "each try's total deadline: connect, send and the whole answer",
    ),
    Variable(
        "UPSTREAM_RETRY_MAX_TRIES",
        "4",
        _int_between(1, 100),
        "tries per upstream call, first included",
    ),
    Variable(
        "UPSTREAM_RETRY_INITIAL_INTERVAL",
        "1s",
        parse_duration,
        "wait after the first failure; doubles each time",
    ),
    Variable("UPSTREAM_RETRY_MAX_INTERVAL", "4s", parse_duration, "longest wait between tries"),
    Variable(
        "SVC_THREADS",
        "256",
        _int_between(1, 4096),
        "request threads per worker: caps the creates, deletes and rehydrations served at"
        " once (each holds a thread while it waits for an upstream); reads run on the event"
        " loop",
    ),
    Variable(
        "SVC_WORKERS",
        "1",
        _int_between(1, 64),
        "server processes",
        aliases=("WEB_CONCURRENCY",),
    ),
    Variable(
        "SVC_CPU_AFFINITY",
        "auto",
        _choice("auto", "off"),
        "`auto`: each server process keeps to one CPU (the least busy of those it may use,"
        " at start), so that its event loop and request threads hand work over on one core;"
        " `off`: the kernel moves its threads between CPUs",
    ),
    Variable(
        "SVC_MAX_BODY_BYTES",
        str(1 << 20),
        _int_between(1, 1 << 30),
        "larger request bodies get 413",
    ),
    Variable(
        "RECONCILE_INTERVAL",
        "30s",
        _positive_duration,
        "how often the reconciler looks for abandoned operations",
    ),
    Variable(
        "RECONCILE_GRACE",
        "30s",
        parse_duration,
        "added to the longest possible SPRM exchange to make an operation's lease",
    ),
    Variable(
        "AUDIT_INTERVAL",
        "0",
        parse_duration,
        "how often the service audits drift against the SPRM and publishes it as metrics"
        " (see [Drift](#drift))",
        default_note="(off)",
    ),
    Variable(
        "SVC_MAX_HEADER_BYTES",
        str(64 << 10),
        _int_between(1 << 10, 16 << 20),
        "larger request lines and headers get 431",
    ),
    Variable(
        "SVC_HEADER_TIMEOUT",
        "10s",
        _positive_duration,
        "longest time to send a request's line and headers"
        " (from connecting, or from the previous answer)",
    ),
    Variable(
        "SVC_BODY_TIMEOUT",
        "30s",
        _positive_duration,
        "longest time to send a request's body, from when the service starts reading it",
    ),
    Variable(
        "SVC_MAX_CONNECTIONS",
        "1024",
        _int_between(1, 1 << 20),
        "open connections per worker beyond which requests get 503"
        " (health and `/metrics` never do)",
    ),
    Variable(
        "SVC_QUEUE_WAIT",
        "5s",
        parse_duration,
        "longest wait for a free request thread before answering 503",
    ),
    Variable(
        "SVC_PAGE_MAX_BYTES",
        str(1 << 20),
        _int_between(1, 1 << 40),
        "a list page ends early once its specs' JSON passes this many bytes",
    ),
    Variable(
        "AUTH_DISABLED",
        "true",
        _boolean,
        "`false` requires a bearer token on every API operation but health",
    ),
    Variable(
        "AUTH_ISSUER_URL",
        "",
        # Kept as written: it must equal the tokens' `iss`, trailing slash included.
        _required(_issuer_url),
        "OIDC issuer: tokens' `iss`, exactly as written (a trailing `/` included);"
        " its JWKS is found by discovery",
    ),
    Variable("AUTH_JWT_AUDIENCE", "", _required(str), "tokens' required `aud`"),
    Variable(
        "AUTH_KEYS_MAX_AGE",
        "1h",
        _positive_duration,
        "how long the issuer's keys are still used after fetching them again fails",
    ),
    Variable(
        "UPSTREAM_FORWARD_AUTH",
        "false",
        _boolean,
        "pass the caller's bearer token on to the Policy Engine and SPRM",
    ),
    # The providers' status events (see [Status events](#status-events)); DCM's names.
    Variable(
        "NATS_URL",
        "",
        _nats_urls,
        "NATS server(s) to read status events from (`nats://host:4222`, comma-separated);"
        " unset: no status events",
    ),
    Variable("NATS_DISABLED", "false", _boolean, "`true` reads no status events, NATS_URL or not"),
    Variable(
        "NATS_STATUS_SUBJECT",
        "dcm.>",
        _non_empty,
        "subjects of the status events (DCM's `dcm.*` misses the per-instance form)",
    ),
    Variable("NATS_STREAM_NAME", "dcm-status", _non_empty, "JetStream stream of the events"),
    Variable(
        "NATS_CONSUMER_NAME",
        "placement-manager",
        _non_empty,
        "durable consumer every process and replica shares",
    ),
    Variable(
        "NATS_TOKEN",
        "",
        str,
        "NATS token",
        file_help="a file holding the NATS token",
        secret=True,
    ),
    Variable("NATS_USER", "", str, "NATS user"),
    Variable(
        "NATS_PASSWORD",
        "",
        str,
        "NATS password",
        file_help="a file holding the NATS password",
        secret=True,
    ),
    Variable(
        "NATS_NKEY_SEED",
        "",
        str,
        "NATS NKey seed (or a path to a seed file)",
        file_help="a file holding the NKey seed",
        secret=True,
    ),
    Variable("NATS_CREDS_FILE", "", str, "NATS credentials file (JWT and seed)"),
    Variable("NATS_TLS_CA_FILE", "", str, "CA bundle that verifies the NATS server"),
    Variable("NATS_TLS_CERT_FILE", "", str, "client certificate for NATS (mutual TLS)"),
    Variable("NATS_TLS_KEY_FILE", "", str, "client key for NATS (mutual TLS)"),
)


# --- The settings, their defaults read from the table --------------------------------


def _default(name: str) -> Any:
    """The value of a setting whose variable is not set (`VARIABLES`' default, parsed)."""
    variable = VARIABLES[name]
    return variable.parse(variable.default)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff between tries of an upstream call (factor 2)."""

    tries: int = _default("UPSTREAM_RETRY_MAX_TRIES")
    initial: float = _default("UPSTREAM_RETRY_INITIAL_INTERVAL")
    maximum: float = _default("UPSTREAM_RETRY_MAX_INTERVAL")

    def waits(self) -> list[float]:
        """The waits after each failed try but the last: `initial`, doubling up to `maximum`."""
        return [min(self.initial * 2.0**n, self.maximum) for n in range(self.tries - 1)]

    def exchange(self, timeout: float) -> float:
        """The longest one upstream call lasts: every try to its total deadline (`timeout`)
        and the waits between them. Each call's tries end by then (upstream/retry.py)."""
        return self.tries * timeout + sum(self.waits())


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
    pool_timeout: float = _default("DB_POOL_TIMEOUT")

    def describe(self) -> str:
        """Where the data lives, without credentials, for log lines and errors."""
        if self.type == "sqlite":
            return f"sqlite:{self.name}"
        return f"postgresql://{self.host}:{self.port}/{self.name}"


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The reconciler: how often it looks for stale operations, and how long past the
    longest possible SPRM call an operation's lease lasts."""

    interval: float = _default("RECONCILE_INTERVAL")
    grace: float = _default("RECONCILE_GRACE")


@dataclass(frozen=True, slots=True)
class Auth:
    """Bearer-token authentication; off unless AUTH_DISABLED=false. `keys_max_age`: how
    long the issuer's keys are still used while fetching them again fails."""

    enabled: bool = not _default("AUTH_DISABLED")
    issuer_url: str = ""  # no default: required once enabled
    audience: str = ""
    keys_max_age: float = _default("AUTH_KEYS_MAX_AGE")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost the service (see the README's operations section)."""

    max_header_bytes: int = _default("SVC_MAX_HEADER_BYTES")
    header_timeout: float = _default("SVC_HEADER_TIMEOUT")
    body_timeout: float = _default("SVC_BODY_TIMEOUT")
    max_connections: int = _default("SVC_MAX_CONNECTIONS")
    queue_wait: float = _default("SVC_QUEUE_WAIT")
    page_max_bytes: int = _default("SVC_PAGE_MAX_BYTES")


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """NATS_URL and friends. `url` None means the consumer is off."""

    url: str | None = None
    subject: str = _default("NATS_STATUS_SUBJECT")
    stream: str = _default("NATS_STREAM_NAME")
    consumer: str = _default("NATS_CONSUMER_NAME")
    token: str | None = None
    user: str | None = None
    password: str | None = None
    nkey_seed: str | None = None
    creds_file: str | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    def __repr__(self) -> str:
        # Never print the secrets (a repr may reach a log or a traceback).
        return (
            f"NatsSettings(url={self.safe_url()!r}, subject={self.subject!r},"
            f" stream={self.stream!r}, consumer={self.consumer!r})"
        )

    def safe_url(self) -> str | None:
        """The URL (or comma-separated URLs) for logs: any password or token in it masked."""
        if self.url is None:
            return None
        return ",".join(_mask_url(part.strip()) for part in self.url.split(","))

    def servers(self) -> list[str]:
        """The URLs to connect to (NATS_URL may list several, comma-separated)."""
        if not self.url:
            return []
        return [part.strip() for part in self.url.split(",") if part.strip()]


def _mask_url(url: str) -> str:
    """`nats://user:secret@host` → `nats://user:***@host`; a lone token → `***@host`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return urlunsplit(parts._replace(netloc=f"{masked}@{host}"))


def _nats(read: Callable[[str], Any]) -> NatsSettings:
    """The status events' settings; no URL (off) unless NATS_URL is set and not disabled."""

    def optional(name: str) -> str | None:
        return read(name) or None

    url, disabled = read("NATS_URL"), read("NATS_DISABLED")
    return NatsSettings(
        url=url if url and not disabled else None,
        subject=read("NATS_STATUS_SUBJECT"),
        stream=read("NATS_STREAM_NAME"),
        consumer=read("NATS_CONSUMER_NAME"),
        token=optional("NATS_TOKEN"),
        user=optional("NATS_USER"),
        password=optional("NATS_PASSWORD"),
        nkey_seed=optional("NATS_NKEY_SEED"),
        creds_file=optional("NATS_CREDS_FILE"),
        tls_ca_file=optional("NATS_TLS_CA_FILE"),
        tls_cert_file=optional("NATS_TLS_CERT_FILE"),
        tls_key_file=optional("NATS_TLS_KEY_FILE"),
    )


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
    cpu_affinity: str = _default("SVC_CPU_AFFINITY")  # "auto": one CPU per server process
    reconcile: Reconcile = Reconcile()
    max_body_bytes: int = _default("SVC_MAX_BODY_BYTES")
    log_format: str = _default("LOG_FORMAT")
    forward_auth: bool = _default("UPSTREAM_FORWARD_AUTH")
    auth: Auth = Auth()
    audit_interval: float = _default("AUDIT_INTERVAL")  # the in-service drift audit; 0: off
    limits: Limits = Limits()
    nats: NatsSettings = NatsSettings()  # the providers' status events; url None: off

    def operation_lease(self) -> float:
        """Seconds an operation holds a resource: its two longest possible SPRM calls
        (a create, then a get to learn an unknown outcome), plus the reconcile grace."""
        return float(2 * self.retry.exchange(self.sprm.timeout) + self.reconcile.grace)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Every setting, read through the one table of variables (`VARIABLES`)."""
        read = _Reader(env)
        host, port = read("SVC_ADDRESS")
        return cls(
            host=host,
            port=port,
            log_level=read("SVC_LOG_LEVEL"),
            database=Database(
                type=read("DB_TYPE"),
                host=read("DB_HOST"),
                port=read("DB_PORT"),
                name=read("DB_NAME"),
                user=read("DB_USER"),
                password=read("DB_PASSWORD"),
                connect_timeout=read("DB_CONNECT_TIMEOUT"),
                pool_size=read("DB_POOL_SIZE"),
                pool_timeout=read("DB_POOL_TIMEOUT"),
            ),
            policy=Upstream(
                url=read("POLICY_MANAGER_EVALUATION_URL"),
                timeout=read("POLICY_MANAGER_EVALUATION_TIMEOUT"),
            ),
            sprm=Upstream(
                url=read("SP_RESOURCE_MANAGER_URL"),
                timeout=read("SP_RESOURCE_MANAGER_TIMEOUT"),
            ),
            retry=RetryPolicy(
                tries=read("UPSTREAM_RETRY_MAX_TRIES"),
                initial=read("UPSTREAM_RETRY_INITIAL_INTERVAL"),
                maximum=read("UPSTREAM_RETRY_MAX_INTERVAL"),
            ),
            threads=read("SVC_THREADS"),
            workers=read("SVC_WORKERS"),
            cpu_affinity=read("SVC_CPU_AFFINITY"),
            reconcile=Reconcile(
                interval=read("RECONCILE_INTERVAL"),
                grace=read("RECONCILE_GRACE"),
            ),
            max_body_bytes=read("SVC_MAX_BODY_BYTES"),
            log_format=read("LOG_FORMAT"),
            forward_auth=read("UPSTREAM_FORWARD_AUTH"),
            auth=_auth(read),
            audit_interval=read("AUDIT_INTERVAL"),
            nats=_nats(read),
            limits=Limits(
                max_header_bytes=read("SVC_MAX_HEADER_BYTES"),
                header_timeout=read("SVC_HEADER_TIMEOUT"),
                body_timeout=read("SVC_BODY_TIMEOUT"),
                max_connections=read("SVC_MAX_CONNECTIONS"),
                queue_wait=read("SVC_QUEUE_WAIT"),
                page_max_bytes=read("SVC_PAGE_MAX_BYTES"),
            ),
        )


def _auth(read: _Reader) -> Auth:
    """The AUTH_* settings, read only when authentication is on."""
    if read("AUTH_DISABLED"):
        return Auth()
    return Auth(
        enabled=True,
        issuer_url=read("AUTH_ISSUER_URL"),
        audience=read("AUTH_JWT_AUDIENCE"),
        keys_max_age=read("AUTH_KEYS_MAX_AGE"),
    )


def variables() -> frozenset[str]:
    """Every environment variable the configuration reads (names, aliases, `*_FILE`
    variants): what a deployment file may set."""
    return frozenset(name for variable in VARIABLES.values() for name in variable.names())


def markdown_table() -> str:
    """The README's configuration table: one row a name (a `*_FILE` variant has its own)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for v in VARIABLES.values():
        default = f"`{v.default}`" if v.default else "(none)"
        default += f" {v.default_note}" if v.default_note else ""
        lines.append(_row(f"`{v.name}`{_aliases(v.aliases)}", default, v.help))
        if v.file_help:
            lines.append(_row(f"`{v.file_name()}`", "(none)", v.file_help))
    return "\n".join(lines) + "\n"


def _aliases(aliases: tuple[str, ...]) -> str:
    if not aliases:
        return ""
    word = "alias" if len(aliases) == 1 else "aliases"
    return f" ({word} {', '.join(f'`{a}`' for a in aliases)})"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


if __name__ == "__main__":
    print(markdown_table(), end="")
