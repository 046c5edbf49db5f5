"""Where the status events come from and how to connect (DCM's variable names; the
service's configuration table reads them and builds `NatsSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SUBJECT = "dcm.>"
DEFAULT_STREAM = "dcm-status"
DEFAULT_CONSUMER = "placement-manager"


@dataclass(frozen=True)
class NatsSettings:
    """NATS_URL and friends. `url` None means the consumer is off."""

    url: str | None = None
    subject: str = DEFAULT_SUBJECT
    stream: str = DEFAULT_STREAM
    consumer: str = DEFAULT_CONSUMER
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
        return ",".join(_mask(part.strip()) for part in self.url.split(","))

    def servers(self) -> list[str]:
        """The URLs to connect to (NATS_URL may list several, comma-separated)."""
        if not self.url:
            return []
        return [part.strip() for part in self.url.split(",") if part.strip()]


def _mask(url: str) -> str:
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
