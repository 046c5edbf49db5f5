"""SVC_CPU_AFFINITY=auto: a server process keeps to one CPU, the least busy it may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from placement import bootstrap

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
PROBE = (
    "import os; from placement.bootstrap import keep_to_one_cpu;"
    " print(keep_to_one_cpu(), sorted(os.sched_getaffinity(0)))"
)


def probe(cpus: set[int]) -> tuple[str, list[int]]:
    """Run keep_to_one_cpu in a child started on `cpus`; what it chose, and where it runs."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        timeout=60,
    ).stdout.split(maxsplit=1)
    return out[0], eval(out[1])


@pytest.mark.skipif(not TWO_CPUS, reason="needs two CPUs")
def test_a_process_that_may_use_several_cpus_keeps_to_one_of_them() -> None:
    cpus = set(sorted(os.sched_getaffinity(0))[:2])
    chosen, runs_on = probe(cpus)
    assert runs_on == [int(chosen)]
    assert int(chosen) in cpus


def test_a_process_on_one_cpu_is_left_as_it_is() -> None:
    cpu = min(os.sched_getaffinity(0))
    assert probe({cpu}) == ("None", [cpu])


def test_the_least_busy_cpu_is_chosen_and_ties_spread_by_process_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    samples = iter([{0: 100, 1: 100, 2: 100}, {0: 101, 1: 105, 2: 103}])
    monkeypatch.setattr(bootstrap, "_idle_ticks", lambda: next(samples))
    assert bootstrap._least_busy([0, 1, 2], window=0) == 1

    chosen = set()
    for pid in (40, 41, 42):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        idle = iter([{0: 0, 1: 0, 2: 0}, {0: 5, 1: 5, 2: 5}])
        monkeypatch.setattr(bootstrap, "_idle_ticks", lambda idle=idle: next(idle))
        chosen.add(bootstrap._least_busy([0, 1, 2], window=0))
    assert chosen == {0, 1, 2}  # sibling workers, started together, take different CPUs
