"""JSON response bodies: orjson (several times faster than the stdlib on the list page),
with the stdlib for what orjson refuses (integers beyond 64 bits, which JSON allows)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_bytes(document: Any) -> bytes:
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":")).encode()
