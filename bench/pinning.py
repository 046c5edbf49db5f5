"""Where the processes run: each measurement pinned (a target alone on cores of its own,
the load side on the others) or unpinned (everything shares every core, as deployed), and
the plan saying which of the two each repeat measures, in which order.

The processes are started once; before each measurement the benchmark moves every one of
them (each thread, see `set_affinity`) to the cores of that measurement's mode. Kept free
of the benchmark's heavier imports, so that its plan can be tested alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

S = TypeVar("S")
T = TypeVar("T")

PINNED = "pinned"
UNPINNED = "unpinned"
# What the judged figures (PASS/MISS) are taken from when a run measured both modes.
JUDGED = UNPINNED

# --pin: the modes measured, in the order of even repeats (odd repeats reverse it).
OPTIONS: dict[str, tuple[str, ...]] = {
    "both": (UNPINNED, PINNED),
    "on": (PINNED,),
    "auto": (PINNED,),  # the spelling before both modes were measured
    "off": (UNPINNED,),
}


@dataclass(frozen=True)
class Pinning:
    """The cores we may use, the modes measured, and how many of the first cores the load
    side (this process, and so wrk, PostgreSQL, the stand-ins and nats-server) gets in the
    pinned mode; a target with N workers then runs on the last N when they are free of
    the load side."""

    cores: tuple[int, ...]  # all we may use
    modes: tuple[str, ...]  # measured, in the order of even repeats
    load_count: int = 1

    @classmethod
    def choose(cls, option: str, most_workers: int, cores: Iterable[int] | None = None) -> Pinning:
        """`option`: a --pin value. With fewer than 2 cores there is nothing to pin to:
        unpinned only. The load side keeps at least one core, and leaves the most workers
        a target will run with cores of their own when the machine has enough."""
        usable = tuple(sorted(os.sched_getaffinity(0) if cores is None else cores))
        modes = OPTIONS[option]
        if len(usable) < 2:
            modes = (UNPINNED,)
        return cls(usable, modes, max(1, len(usable) - most_workers))

    @property
    def pinned(self) -> bool:
        """Whether any measurement is pinned."""
        return PINNED in self.modes

    @property
    def judged(self) -> str:
        """The mode the targets are judged on: unpinned when measured, else pinned."""
        return JUDGED if JUDGED in self.modes else self.modes[0]

    def order(self, repeat: int) -> tuple[str, ...]:
        """The modes for one repeat: unpinned then pinned on even repeats, pinned then
        unpinned on odd ones, so that neither is always measured first."""
        return self.modes if repeat % 2 == 0 else tuple(reversed(self.modes))

    def load(self, mode: str) -> frozenset[int] | None:
        """The load side's cores; None: unpinned (every core)."""
        return frozenset(self.cores[: self.load_count]) if mode == PINNED else None

    def target(self, workers: int, mode: str) -> frozenset[int] | None:
        """A target's cores: the last `workers` when the load side is not on them, else
        every core; None: unpinned."""
        if mode != PINNED:
            return None
        if workers <= len(self.cores) - self.load_count:
            return frozenset(self.cores[-workers:])
        return frozenset(self.cores)

    def describe(self, workers: int, mode: str) -> str:
        target, load = self.target(workers, mode), self.load(mode)
        if target is None or load is None:
            return (
                f"{mode}, {workers} worker(s): wrk, PostgreSQL, the stand-ins and the target"
                f" share every core ({cores_text(frozenset(self.cores))})"
            )
        where = (
            f"alone on core(s) {cores_text(target)}"
            if not target & load
            else f"on every core ({cores_text(target)}: too few to give {workers} worker(s)"
            " cores of their own)"
        )
        return (
            f"{mode}, {workers} worker(s): the target {where}; wrk, PostgreSQL and the"
            f" stand-ins on core(s) {cores_text(load)}"
        )


def plan(
    scenarios: Sequence[S], targets: Sequence[T], modes: Sequence[str]
) -> list[tuple[S, str, T]]:
    """One repeat's measurements (scenario, mode, target), in the order taken: scenario by
    scenario; within one, each mode in turn (`Pinning.order`), and in each mode the
    targets back to back (in the repeat's rotated order). So the three measurements a
    ratio is taken from are seconds apart, in the same mode, and a scenario's two modes
    are measured minutes apart at most."""
    return [(s, mode, t) for s in scenarios for mode in modes for t in targets]


def cores_text(cores: frozenset[int]) -> str:
    return ",".join(str(each) for each in sorted(cores))


def set_affinity(pids: Iterable[int], cores: frozenset[int]) -> None:
    """Every thread of each process onto `cores` (the affinity is per thread; threads and
    processes started later inherit it from the one that starts them). Processes or
    threads that are gone meanwhile are skipped."""
    for pid in pids:
        try:
            threads = [int(each) for each in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for thread in threads:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.sched_setaffinity(thread, cores)


def own_affinity(pid: int) -> frozenset[int]:
    """The cores a process's main thread may run on now (every core if it is gone)."""
    try:
        return frozenset(os.sched_getaffinity(pid))
    except OSError:
        return frozenset(os.sched_getaffinity(0))


def mode_of(record: dict[str, object]) -> str:
    """A result's mode; records written before both modes were measured have none: pinned
    when they name the target's cores."""
    mode = record.get("pinning")
    if isinstance(mode, str):
        return mode
    return PINNED if record.get("target_cores") else UNPINNED
