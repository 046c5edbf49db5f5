"""The SQL the stores run makes exactly the moves of the lifecycle table
(`tests/harness/lifecycle.py`): for every transition and every row it changes, the statement
of that name checks the states and the owner (or lease) condition the table names, sets
the state the table names, and takes time only from the database's clock."""

from __future__ import annotations

import re

import pytest

from placement.model import State
from placement.store import drift
from placement.store.statements import LIFECYCLE, POSTGRES
from tests.harness.lifecycle import TRANSITIONS, Actor, Guard, Move, Row, Transition, allowed

# The lifecycle's statements, and the audit's moves on records.
AUDIT_MOVES = {name: text for name, text in drift.SQL.items() if name.startswith("audit_")}
DIALECTS = {
    "sqlite": LIFECYCLE | AUDIT_MOVES,
    "pgsql": LIFECYCLE | POSTGRES | AUDIT_MOVES,
}
READS = {"get", "pending_deletion", "undo_of", "setting_insert", "setting_get"}


def statement_name(transition: Transition, move: Move) -> str:
    return transition.name if len(transition.moves) == 1 else f"{transition.name}:{move.row}"


def cases() -> list[tuple[str, Transition, Move]]:
    return [
        (dialect, transition, move)
        for dialect in DIALECTS
        for transition in TRANSITIONS
        for move in transition.moves
    ]


def states(value: State | tuple[State, ...] | None) -> tuple[State, ...]:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize(
    ("dialect", "transition", "move"),
    cases(),
    ids=[f"{d}-{t.name}-{m.row}" for d, t, m in cases()],
)
def test_statement_makes_the_move_of_the_table(
    dialect: str, transition: Transition, move: Move
) -> None:
    text = " ".join(DIALECTS[dialect][statement_name(transition, move)].split())
    table = "placement_retired" if move.row is Row.RETIRED else "resources"

    if move.before is None:
        assert text.startswith(f"INSERT INTO {table} "), text
        for state in states(move.after):
            if table == "resources":
                assert f"'{state.value}'" in text, text
    elif move.after is None:
        assert text.startswith(f"DELETE FROM {table} "), text
    else:
        assert text.startswith(f"UPDATE {table} SET "), text
        assignments = text.split(" WHERE ", 1)[0]
        if move.keeps_state:
            assert "state =" not in assignments, text
        else:
            [after] = states(move.after)
            assert f"state = '{after.value}'" in assignments, text

    if move.before is not None and table == "resources":
        before = states(move.before)
        condition = text.split(" WHERE ", 1)[1]
        if len(before) == 1:
            assert f"state = '{before[0].value}'" in condition, text
        else:
            listed = ", ".join(f"'{s.value}'" for s in before)
            assert re.search(rf"state IN \({re.escape(listed)}\)", condition), text

    guard = {
        Guard.OWNER: "lease_owner = ?",
        Guard.LEASE_ENDED: "lease_until IS NULL OR",
        Guard.FREE_ID: "WHERE NOT EXISTS (SELECT 1 FROM",
        Guard.UNDONE_UNCLAIMED: "WHERE EXISTS (SELECT 1 FROM placement_retired",
    }[move.guard]
    assert guard in text, text
    if move.guard is Guard.LEASE_ENDED:
        assert "lease_until < now()" in text, text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_write_is_a_move_of_the_table(dialect: str) -> None:
    named = {statement_name(t, m) for t in TRANSITIONS for m in t.moves}
    writes = {name for name in DIALECTS[dialect] if name not in READS}
    assert writes == named


@pytest.mark.parametrize("dialect", DIALECTS)
def test_time_comes_only_from_the_database_clock(dialect: str) -> None:
    """No lease takes a time from a replica: leases end at placement_lease_end(?) and are
    compared with now(); new records are stamped with now()."""
    for name, text in DIALECTS[dialect].items():
        assert not re.search(r"(lease_until|retire_time)\s*[<>=]+\s*\?", text), name
        if name in ("begin_create", "begin_rehydrate:record", "resume_create"):
            assert "SELECT now() AS stamp" in text, name


def test_the_table_covers_every_state_with_an_operation() -> None:
    touched = {
        state
        for transition in TRANSITIONS
        for move in transition.moves
        for state in (*states(move.before), *states(move.after))
    }
    assert touched == set(State) - {State.UNKNOWN}  # unknown states are never moved


def test_only_the_reconciler_settles_what_a_request_left() -> None:
    assert allowed("claim_stale", Actor.RECONCILER)
    assert not allowed("claim_stale", Actor.REQUEST)
    assert not allowed("begin_create", Actor.RECONCILER)
    owners = [t for t in TRANSITIONS if any(m.guard is Guard.OWNER for m in t.moves)]
    assert all(all(m.guard is not Guard.LEASE_ENDED for m in t.moves) for t in owners)
