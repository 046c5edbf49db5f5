"""JSON response bodies: orjson (several times faster than the stdlib on the list page),
with the stdlib for what orjson refuses (integers beyond 64 bits, which JSON allows).
Stored specs are embedded as the JSON text the database holds (`embedded`), never
decoded and encoded again."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_bytes(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":")).encode()


def embedded(json_text: str) -> Any:
    """JSON text put into a document as it is. Only orjson encodes it, and it never needs
    the stdlib for it: the text is not looked into (a big integer in it is just text)."""
    return orjson.Fragment(json_text)
