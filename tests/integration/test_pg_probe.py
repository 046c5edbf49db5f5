"""The start-up probe tells a database that refuses for good from one not up yet, by the
server's SQLSTATE, whatever language its messages are in."""

from __future__ import annotations

from pytest_postgresql.executors import PostgreSQLExecutor

from placement.store import pg_probe
from tests.harness.processes import free_port


def conninfo(proc: PostgreSQLExecutor, **parts: str) -> str:
    settings = {"host": proc.host, "port": str(proc.port), "user": proc.user, **parts}
    return " ".join(f"{key}='{value}'" for key, value in settings.items())


def test_a_missing_database_is_permanent(postgresql_proc: PostgreSQLExecutor) -> None:
    refusal = pg_probe.attempt(conninfo(postgresql_proc, dbname="nope"), 5)
    assert refusal is not None
    assert (refusal.sqlstate, refusal.permanent) == ("3D000", True)
    assert 'database "nope" does not exist' in refusal.reason
    assert "\n" not in refusal.reason


def test_a_server_that_answers_is_no_refusal(postgresql_proc: PostgreSQLExecutor) -> None:
    assert pg_probe.attempt(conninfo(postgresql_proc, dbname="postgres"), 5) is None


def test_a_closed_port_can_pass() -> None:
    refusal = pg_probe.attempt(f"host=127.0.0.1 port={free_port()} dbname=x", 5)
    assert refusal is not None
    assert (refusal.sqlstate, refusal.permanent) == (None, False)
    assert "Connection refused" in refusal.reason


def test_the_code_is_read_whatever_the_language_of_the_message() -> None:
    # libpq's trace of a German server's answers: the message is never matched.
    trace = (
        b"2026-01-01 00:00:00.000000\tB\t23\tAuthenticationOk\t\n"
        b'2026-01-01 00:00:00.000001\tB\t95\tErrorResponse\t S "FATAL" V "FATAL" C "3D000"'
        b' M "Datenbank \xc2\xbbnope\xc2\xab existiert nicht" F "postinit.c" \\x00\n'
    )
    assert pg_probe._last_sqlstate(trace) == "3D000"
    starting = b'x\tB\t80\tErrorResponse\t S "FATAL" V "FATAL" C "57P03" M "das Datenbanksystem'
    assert pg_probe._last_sqlstate(starting + b' startet"\n') == "57P03"
    assert "57P03" not in pg_probe.PERMANENT
    assert pg_probe._last_sqlstate(b"") is None
