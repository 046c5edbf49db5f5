"""What the benchmark's two references, the floor (`floor.py`) and the peer (`peer.py`),
share: the paths, the statements on the service's `resources` table, the wire form of
times, the signed page tokens and their settings from the environment, so that they
differ only in the framework around them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from placement.config import VARIABLES
from placement.model import RESOURCE_ID_PATTERN

PREFIX = "/api/v1alpha1"
ID_PATTERN = RESOURCE_ID_PATTERN
LEASE = timedelta(minutes=5)
COLUMNS = (
    "id, catalog_item_instance_id, original_spec, provider_name, approval_status,"
    " create_time, update_time, status, status_message, status_time"
)
SQL_GET = f"SELECT {COLUMNS} FROM resources WHERE id = %s"  # noqa: S608 - constants only
SQL_PAGE = " ORDER BY create_time, id LIMIT %s"
SQL_LIST = {
    (False, False): f"SELECT {COLUMNS} FROM resources" + SQL_PAGE,  # noqa: S608
    (True, False): f"SELECT {COLUMNS} FROM resources WHERE provider_name = %s" + SQL_PAGE,  # noqa: S608
    (False, True): f"SELECT {COLUMNS} FROM resources WHERE (create_time, id) > (%s, %s)"  # noqa: S608
    + SQL_PAGE,
    (True, True): f"SELECT {COLUMNS} FROM resources"  # noqa: S608
    " WHERE provider_name = %s AND (create_time, id) > (%s, %s)" + SQL_PAGE,
}
SQL_INSERT = (
    "INSERT INTO resources (id, catalog_item_instance_id, original_spec, provider_name,"
    " approval_status, path, create_time, update_time, state, lease_owner, lease_until)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'PROVISIONING', %s, %s)"
)
SQL_READY = (
    "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL"
    " WHERE id = %s AND lease_owner = %s"
)
# A create's record made READY with the status the SPRM's create answer gave (None: none),
# as of the record's creation: the service's statement (placement/store/statements.py).
SQL_READY_CREATED = (
    "UPDATE resources SET state = 'READY', lease_owner = NULL, lease_until = NULL,"
    " status = COALESCE(status, CAST(%s AS text)), status_time = CASE"
    " WHEN status IS NULL AND CAST(%s AS text) IS NOT NULL THEN create_time"
    " ELSE status_time END WHERE id = %s AND lease_owner = %s"
)
SQL_CLAIM = (
    "UPDATE resources SET state = 'DELETING', lease_owner = %s, lease_until = %s"
    " WHERE id = %s AND state = 'READY' RETURNING id"
)
SQL_EXISTS = "SELECT 1 FROM resources WHERE id = %s"
SQL_DELETE = "DELETE FROM resources WHERE id = %s AND lease_owner = %s"
# Connections per worker: as many as the service has by default.
SERVICE_POOL_SIZE = int(VARIABLES["DB_POOL_SIZE"].default)


@dataclass(frozen=True, slots=True)
class Settings:
    """A reference's settings, from `<NAME>_*` environment variables (see each module)."""

    name: str
    evaluate_url: str
    instances_url: str
    token_key: bytes

    @classmethod
    def from_env(cls, name: str) -> Settings:
        policy = os.environ.get(f"{name}_POLICY_URL", "http://127.0.0.1:8081").rstrip("/")
        sprm = os.environ.get(f"{name}_SPRM_URL", "http://127.0.0.1:8082").rstrip("/")
        return cls(
            name,
            f"{policy}{PREFIX}/policies:evaluateRequest",
            f"{sprm}{PREFIX}/service-type-instances",
            bytes.fromhex(os.environ.get(f"{name}_TOKEN_KEY", "00" * 32)),
        )

    def dsn(self) -> str:
        """Read when the pool opens: the benchmark always sets it."""
        return os.environ[f"{self.name}_DSN"]

    def pool_size(self) -> int:
        return int(os.environ.get(f"{self.name}_POOL_SIZE", SERVICE_POOL_SIZE))

    def page_token(self, row: tuple[Any, ...], provider: str | None) -> str:
        """The token of the page after `row` (a SQL_LIST row), for this provider filter."""
        payload = json.dumps([row[5].isoformat(), row[0], provider]).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def cursor(self, token: str, provider: str | None) -> tuple[datetime, str] | None:
        """Where a page token continues; None if it is not one of ours for this filter."""
        try:
            text, mac = token.split(".")
            payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
            if not hmac.compare_digest(given, self._mac(payload)):
                return None
            moment, rid, issued_for = json.loads(payload)
            if issued_for != provider:
                return None
            return datetime.fromisoformat(moment), rid
        except (binascii.Error, ValueError, TypeError):
            return None

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.token_key, payload, hashlib.sha256).digest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def rfc3339(moment: datetime) -> str:
    """Go's RFC3339Nano in UTC, as the service writes it (no trailing zeros)."""
    if moment.utcoffset():
        moment = moment.astimezone(UTC)
    text = moment.isoformat()[:-6]  # the database session is in UTC: drop "+00:00"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def add_status(
    wire: dict[str, Any], status: str | None, message: str | None, moment: datetime | None
) -> dict[str, Any]:
    """The provider's status fields as the service writes them: after the others, only
    when there is a status, each of the message and the time only when set."""
    if status is not None:
        wire["status"] = status
        if message is not None:
            wire["status_message"] = message
        if moment is not None:
            wire["status_time"] = rfc3339(moment)
    return wire


def sprm_status(document: Any) -> str | None:
    """The instance status an SPRM create answer gave, if readable (as the service reads it)."""
    status = document.get("status") if isinstance(document, dict) else None
    return status if isinstance(status, str) and status else None


def upstream_status(status: int) -> int:
    """An upstream's refusal passed on as is; anything else a 500."""
    return status if 400 <= status < 500 else 500
