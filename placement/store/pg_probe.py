"""One connection attempt to PostgreSQL, and whether waiting can make it succeed.

Start-up waits for a database that is not up yet, but not for one that refuses for good
(no such database, no such role, wrong password, no right to connect): that is a
deployment error, and waiting only hides it. psycopg's connection errors carry no
SQLSTATE, only libpq's message, which the server writes in its own language
(`lc_messages`) and libpq in the client's (`LC_MESSAGES`, when built with translations).
So the message is never matched: the attempt is traced (libpq's `PQtrace`, into an
anonymous in-memory file that is read once and never logged, since it holds the
authentication exchange) and the SQLSTATE is read from the server's ErrorResponse.
Anything without a SQLSTATE (refused, timed out, name not resolved) can pass.
"""

from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass

from psycopg import pq

# SQLSTATEs (or classes) that no amount of waiting fixes.
PERMANENT = frozenset(
    {
        "28",  # invalid_authorization_specification: password, role, pg_hba.conf refused
        "3D000",  # invalid_catalog_name: no such database
        "42501",  # insufficient_privilege: no CONNECT right on the database
    }
)
# An ErrorResponse in libpq's trace (PostgreSQL 14+ format): `... ErrorResponse\t S "FATAL"
# V "FATAL" C "3D000" M "..."`.
_ERROR_CODE = re.compile(rb'\tErrorResponse\t.*? C "([0-9A-Z]{5})"')


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt failed: libpq's message (on one line), the server's SQLSTATE if it
    answered with an error, and whether waiting can help."""

    reason: str
    sqlstate: str | None
    permanent: bool


def attempt(conninfo: str, timeout: float) -> Refusal | None:
    """Connect once (within `timeout` seconds) and close; None if it worked."""
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    trace = _Trace(pgconn)
    try:
        failed = _poll(pgconn, time.monotonic() + timeout)
        sqlstate = _last_sqlstate(trace.stop())
        if failed is None:
            return None
        if sqlstate is not None:
            permanent = sqlstate in PERMANENT or sqlstate[:2] in PERMANENT
            return Refusal(failed, sqlstate, permanent)
        # libpq's own refusal to go on: the server asks for a password and none is set.
        return Refusal(failed, None, pgconn.needs_password)
    finally:
        trace.stop()
        pgconn.finish()


def _poll(pgconn: pq.abc.PGconn, deadline: float) -> str | None:
    """Drive libpq's non-blocking connect to the end: None on success, else its message."""
    while True:
        if pgconn.status == pq.ConnStatus.BAD:
            return _message(pgconn)
        status = pgconn.connect_poll()
        if status == pq.PollingStatus.OK:
            return None
        if status == pq.PollingStatus.FAILED:
            return _message(pgconn)
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout expired"
        reading = status == pq.PollingStatus.READING
        ready = select.select(
            [pgconn.socket] if reading else [], [] if reading else [pgconn.socket], [], left
        )
        if not any(ready):
            return "timeout expired"


def _message(pgconn: pq.abc.PGconn) -> str:
    """libpq's message on one line (it may hold one line per address tried, and hints)."""
    text = pgconn.error_message.decode("utf-8", "replace")
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "failed"


def _last_sqlstate(trace: bytes) -> str | None:
    codes = _ERROR_CODE.findall(trace)
    return codes[-1].decode() if codes else None


class _Trace:
    """libpq's protocol trace of one connection, in an anonymous in-memory file. Without
    memfd (not Linux) nothing is traced, and every failure counts as one that can pass.
    (psycopg never closes the stdio stream it opens for libpq: a few hundred bytes per
    attempt, made only at start-up; libpq flushes it when the trace stops.)"""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self._fd: int | None = None
        if hasattr(os, "memfd_create") and pgconn.status != pq.ConnStatus.BAD:
            self._fd = os.memfd_create("placement-pg-probe")
            pgconn.trace(self._fd)

    def stop(self) -> bytes:
        """End the trace (libpq flushes it then) and return it; b"" once stopped."""
        if self._fd is None:
            return b""
        fd, self._fd = self._fd, None
        try:
            self._pgconn.untrace()
            return os.pread(fd, os.lseek(fd, 0, os.SEEK_END), 0)
        finally:
            os.close(fd)
