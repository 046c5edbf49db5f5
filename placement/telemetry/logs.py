"""Logging set-up, shared by the CLI and every server worker: one JSON object per line
(LOG_FORMAT=json, the default) or plain text for humans (LOG_FORMAT=text). Every line
written while a request is served carries its request id. No line shows a URL's user
information (`http://user:secret@host` is written `http://***@host`), whoever wrote it:
an upstream's or the issuer's URL, a library's message quoting one."""

from __future__ import annotations

import json
import logging
import re
import textwrap
from datetime import UTC, datetime
from typing import Any

from placement.telemetry import context

# Attributes every LogRecord has; anything else was passed with `extra=` and is output.
# (uvicorn also passes `color_message`, the message with terminal colours: dropped.)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


# A URL's user information: after the scheme, up to the last "@" of the authority (as
# urllib.parse splits it: the authority ends at "/", "?", "#").
_USER_INFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")


def mask_urls(text: str) -> str:
    """`text` with the user information of every URL in it masked."""
    if "@" not in text or "://" not in text:
        return text
    return _USER_INFO.sub(r"\g<scheme>***@", text)


_ENCODER = json.JSONEncoder(default=str)  # json.dumps(line, default=str) makes one a line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(self._line(record))

    def _line(self, record: logging.LogRecord) -> str:
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
        return _ENCODER.encode(line)


# Control characters (C0, DEL, C1): a CR, LF or terminal escape from a client must not
# start a line of its own or rewrite the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escape(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TextFormatter(logging.Formatter):
    """One line per record, control characters escaped; a traceback follows on lines
    of its own, indented, so that none can pass for a record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(self._text(record))

    def _text(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        request = context.current()
        if request is not None:
            extra = {"request_id": request.request_id} | extra
        text = escape(self.formatMessage(record) + "".join(f" {k}={v}" for k, v in extra.items()))
        if record.exc_info:
            lines = [escape(line) for line in self.formatException(record.exc_info).splitlines()]
            text += "\n" + textwrap.indent("\n".join(lines), "    | ")
        return text


def configure(level: str, fmt: str = "json") -> None:
    # No formatter here writes where a line was logged from, nor the thread or process:
    # the logging HOWTO's "Optimization" switches keep every record from looking them up
    # (a stack walk and three lookups a line, one access line a request).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # uvicorn's own access lines duplicate our request lines.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
