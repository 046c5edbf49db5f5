"""Opaque page tokens (AEP-158): where the previous page ended, and for which filter.

A token is URL-safe base64 of a small JSON document. It is checked on the way in: a
malformed token, or one issued for a different `provider` filter, is a client error
rather than a silent restart at page 1 (as the Go service's offset tokens did).
"""

from __future__ import annotations

import base64
import binascii
import json

from placement.errors import Kind, PlacementError
from placement.store import Cursor

_VERSION = 1


def encode(cursor: Cursor, provider: str | None) -> str:
    document = {"v": _VERSION, "t": cursor.create_key, "i": cursor.id, "p": provider}
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, provider: str | None) -> Cursor:
    """Return the cursor in `token`; raise a validation error if it is not ours or
    was issued for another filter."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
        cursor = Cursor(_text(document["t"]), _text(document["i"]))
        version, issued_for = document["v"], document["p"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise PlacementError(Kind.VALIDATION, "page_token is not a valid page token") from None
    if version != _VERSION:
        raise PlacementError(Kind.VALIDATION, "page_token is not a valid page token")
    if issued_for != provider:
        raise PlacementError(
            Kind.VALIDATION, "page_token was issued for a different provider filter"
        )
    return cursor


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value
