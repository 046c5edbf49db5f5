"""The lifecycle of a resource as one state machine: every move a record can make, who
may make it, and on what condition. The service, the reconciler and the audit make these
moves through the store (one method per transition, one SQL statement per row it changes,
named `<transition>` or `<transition>:<row>`, in `store/statements.py` and `store/drift.py`);
`tests/unit/test_lifecycle_sql.py` checks every statement's states and conditions against
this table.

The rule that keeps the record and the SPRM in agreement: a call to the SPRM that can
change an instance is made only by the holder of the record's lease, right after the
store move that took (or renewed) the lease, and the lease outlasts the longest such
exchange (`Config.operation_lease`). An outcome the SPRM left unknown is decided only by
the reconciler, after the lease has run out, when the SPRM can no longer act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from placement.model import State


class Row(StrEnum):
    """The rows a transition touches: the record the operation is about, the record a
    rehydration replaces, and a pending deletion (of a replaced resource's instance, or
    the undo of a failed create) in `placement_retired`."""

    RECORD = "record"
    REPLACED = "replaced"
    RETIRED = "retired"


class Actor(StrEnum):
    REQUEST = "request"  # a client's operation, under the lease it took
    RECONCILER = "reconciler"  # a reconciler round, under the lease of its claim
    AUDIT = "audit"  # a repair of `placement-manager audit`, under the lease of its claim


class Guard(StrEnum):
    """The condition a move checks in the same statement that makes it."""

    OWNER = "owner"  # the caller holds the row's lease
    LEASE_ENDED = "lease ended"  # nobody holds a valid lease (no lease, or it ran out)
    FREE_ID = "free id"  # no record and no pending deletion use the id
    UNDONE_UNCLAIMED = "undone, unclaimed"  # the id's pending undo is not claimed (not acted on)


# States with an operation in flight, which the reconciler settles once their lease ran
# out. (RETIRED rows are settled too, from their own table.)
TRANSIENT = (State.PROVISIONING, State.DELETING, State.REHYDRATING)


@dataclass(frozen=True, slots=True)
class Move:
    """One row from `before` (None: no row) to `after` (None: removed)."""

    row: Row
    before: State | tuple[State, ...] | None
    after: State | tuple[State, ...] | None  # equal to `before`: the state stays
    guard: Guard

    @property
    def keeps_state(self) -> bool:
        """A claim or a release: only the lease changes."""
        return self.after == self.before


@dataclass(frozen=True, slots=True)
class Transition:
    name: str
    moves: tuple[Move, ...]
    by: frozenset[Actor]
    why: str


REQUEST = frozenset({Actor.REQUEST})
RECONCILER = frozenset({Actor.RECONCILER})
AUDIT = frozenset({Actor.AUDIT})
BOTH = REQUEST | RECONCILER
R, OLD, GONE = Row.RECORD, Row.REPLACED, Row.RETIRED
P, READY, D, H, X = (
    State.PROVISIONING,
    State.READY,
    State.DELETING,
    State.REHYDRATING,
    State.RETIRED,
)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(
        "begin_create",
        (Move(R, None, P, Guard.FREE_ID),),
        REQUEST,
        "record the evaluated placement before asking the SPRM",
    ),
    Transition("finish_create", (Move(R, P, READY, Guard.OWNER),), BOTH, "the instance exists"),
    Transition(
        "undo_create",
        (Move(R, P, None, Guard.OWNER),),
        BOTH,
        "the SPRM refused, or (reconciler, lease over) has no instance",
    ),
    Transition(
        "abandon_create",
        (Move(R, P, None, Guard.OWNER), Move(GONE, None, X, Guard.OWNER)),
        REQUEST,
        "the SPRM may have acted and the client is told an error: the record becomes a"
        " pending undo (its instance is deleted once the SPRM can no longer act)",
    ),
    Transition(
        "resume_create",
        (Move(R, None, P, Guard.UNDONE_UNCLAIMED),),
        REQUEST,
        "a retry of the same create records it again and provisions again; its pending undo"
        " stays, and deletes the instance once the SPRM can no longer act on the failed"
        " create unless a record stands for it then",
    ),
    Transition(
        "retire_instance",
        (Move(GONE, None, X, Guard.FREE_ID),),
        REQUEST,
        "the SPRM answered after the lease ran out and the record was settled without the"
        " instance: delete it",
    ),
    Transition(
        "begin_delete",
        (Move(R, READY, D, Guard.LEASE_ENDED),),
        REQUEST,
        "take a ready record before asking the SPRM",
    ),
    Transition(
        "resume_delete",
        (Move(R, D, D, Guard.LEASE_ENDED),),
        REQUEST,
        "take over a delete whose owner gave up (an earlier try of it may have acted)",
    ),
    Transition(
        "finish_delete",
        (Move(R, D, None, Guard.OWNER),),
        BOTH,
        "the SPRM deleted the instance or no longer has it",
    ),
    Transition(
        "undo_delete", (Move(R, D, READY, Guard.OWNER),), BOTH, "the SPRM refused the delete"
    ),
    Transition(
        "begin_rehydrate",
        (Move(OLD, READY, H, Guard.LEASE_ENDED), Move(R, None, P, Guard.FREE_ID)),
        REQUEST,
        "take the old record and record its replacement, in one transaction",
    ),
    Transition(
        "finish_rehydrate",
        (
            Move(R, P, READY, Guard.OWNER),
            Move(OLD, H, None, Guard.OWNER),
            Move(GONE, None, X, Guard.FREE_ID),
        ),
        BOTH,
        "the replacement exists: it is READY, the old record becomes a pending deletion",
    ),
    Transition(
        "undo_rehydrate",
        (Move(R, P, None, Guard.OWNER), Move(OLD, H, READY, Guard.OWNER)),
        BOTH,
        "the replacement failed: the old resource is READY again",
    ),
    Transition(
        "abandon_rehydrate",
        (
            Move(R, P, None, Guard.OWNER),
            Move(OLD, H, READY, Guard.OWNER),
            Move(GONE, None, X, Guard.OWNER),
        ),
        REQUEST,
        "the replacement may have been made and the client is told an error: it becomes a"
        " pending undo, the old resource is READY again",
    ),
    Transition(
        "restore",
        (Move(OLD, H, READY, Guard.OWNER),),
        RECONCILER,
        "a rehydration that never recorded its replacement (older versions)",
    ),
    Transition(
        "finish_retire",
        (Move(GONE, X, None, Guard.OWNER),),
        BOTH,
        "the SPRM deleted the instance (204, 202) or no longer has it (404); or (reconciler)"
        " a record stands for it: a retry of a failed create took it over",
    ),
    Transition(
        "claim_stale",
        (
            Move(R, TRANSIENT, TRANSIENT, Guard.LEASE_ENDED),
            Move(OLD, H, H, Guard.LEASE_ENDED),
        ),
        RECONCILER,
        "take one abandoned operation (a replacement with the record it replaces)",
    ),
    Transition(
        "claim_retired",
        (Move(GONE, X, X, Guard.LEASE_ENDED),),
        RECONCILER,
        "take one pending deletion whose last try failed or was abandoned",
    ),
    Transition(
        "release",
        (Move(R, TRANSIENT, TRANSIENT, Guard.OWNER),),
        RECONCILER,
        "hand a record back unchanged after a look-up that could not answer",
    ),
    # The audit's repairs (placement/flows/drift.py; statements in store/drift.py).
    Transition(
        "audit_claim",
        (Move(R, READY, READY, Guard.LEASE_ENDED),),
        AUDIT,
        "hold a READY record (no operation may start) while its instance is checked",
    ),
    Transition(
        "audit_forget",
        (Move(R, READY, None, Guard.OWNER),),
        AUDIT,
        "--forget-missing: the instance of a READY record is gone",
    ),
    Transition(
        "audit_release",
        (Move(R, READY, READY, Guard.OWNER),),
        AUDIT,
        "the instance exists after all: the record is left as it was",
    ),
)

BY_NAME = {transition.name: transition for transition in TRANSITIONS}


def allowed(name: str, actor: Actor) -> bool:
    """Whether `actor` may make the transition `name`."""
    return actor in BY_NAME[name].by
