"""Opaque page tokens (AEP-158): where the previous page ended, and for which filter.

A token is URL-safe base64 of a small JSON document plus an HMAC of it, keyed by a
secret the replicas share through the database. A malformed or altered token, or one
issued for a different `provider` or `status` filter, is a client error, never a silent restart
at page 1 (as the Go service's offset tokens were).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets

from placement.errors import Kind, PlacementError
from placement.store import Cursor

KEY_SETTING = "page_token_key"
_VERSION = 1
_MAC_BYTES = 16


def new_key() -> str:
    return secrets.token_hex(32)


class PageTokens:
    """Encodes and checks tokens signed with `key` (hex, as `new_key` makes it)."""

    def __init__(self, key: str) -> None:
        self._key = bytes.fromhex(key)

    def encode(self, cursor: Cursor, provider: str | None, status: str | None = None) -> str:
        document = {"v": _VERSION, "t": cursor.create_key, "i": cursor.id, "p": provider}
        if status is not None:  # (a token without it reads the same in older replicas)
            document["s"] = status.upper()
        payload = json.dumps(document, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def decode(self, token: str, provider: str | None, status: str | None = None) -> Cursor:
        """The cursor in `token`; a validation error unless it is intact and was
        issued for this `provider` filter and this `status` filter (without case)."""
        try:
            payload_text, mac_text = token.split(".")
            payload = _unb64(payload_text)
            if not hmac.compare_digest(_unb64(mac_text), self._mac(payload)):
                raise ValueError("altered token")
            document = json.loads(payload)
            key = document["t"]  # null: the page ended among rows without create_time
            cursor = Cursor(None if key is None else _text(key), _text(document["i"]))
            version, issued_for = document["v"], document["p"]
            status_for = document.get("s")
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise PlacementError(Kind.VALIDATION, "page_token is not a valid page token") from None
        if version != _VERSION:
            raise PlacementError(Kind.VALIDATION, "page_token is not a valid page token")
        if issued_for != provider:
            raise PlacementError(
                Kind.VALIDATION, "page_token was issued for a different provider filter"
            )
        if status_for != (None if status is None else status.upper()):
            raise PlacementError(
                Kind.VALIDATION, "page_token was issued for a different status filter"
            )
        return cursor

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value
