"""Logging set-up, shared by the CLI and every server worker: one JSON object per line
(LOG_FORMAT=json, the default) or plain text for humans (LOG_FORMAT=text). Every line
written while a request is served carries its request id."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from placement import context

# Attributes every LogRecord has; anything else was passed with `extra=` and is output.
# (uvicorn also passes `color_message`, the message with terminal colours: dropped.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = context.current()
        if request is not None:
            line["request_id"] = request.request_id
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        request = context.current()
        if request is not None:
            extra = {"request_id": request.request_id} | extra
        return text + "".join(f" {k}={v}" for k, v in extra.items())


def configure(level: str, fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # uvicorn's own access lines duplicate our request lines.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
