"""The benchmark's pinning plan (bench/pinning.py): which modes a run measures, in which
order, on which cores."""

from __future__ import annotations

import pytest

from bench.pinning import PINNED, UNPINNED, Pinning, mode_of, plan

TWO_CORES = (0, 1)


@pytest.mark.parametrize(
    ("option", "modes"),
    [
        ("both", (UNPINNED, PINNED)),
        ("on", (PINNED,)),
        ("auto", (PINNED,)),  # the spelling from before both modes were measured
        ("off", (UNPINNED,)),
    ],
)
def test_the_option_picks_the_modes(option: str, modes: tuple[str, ...]) -> None:
    assert Pinning.choose(option, 2, TWO_CORES).modes == modes


def test_one_core_measures_unpinned_only() -> None:
    for option in ("both", "on", "off"):
        assert Pinning.choose(option, 2, (0,)).modes == (UNPINNED,)


def test_both_modes_alternate_which_comes_first_and_unpinned_is_judged() -> None:
    pinning = Pinning.choose("both", 2, TWO_CORES)
    assert [pinning.order(repeat) for repeat in range(4)] == [
        (UNPINNED, PINNED),
        (PINNED, UNPINNED),
        (UNPINNED, PINNED),
        (PINNED, UNPINNED),
    ]
    assert pinning.judged == UNPINNED
    assert Pinning.choose("on", 2, TWO_CORES).judged == PINNED


def test_a_repeat_measures_each_scenario_in_both_modes_the_targets_back_to_back() -> None:
    targets = ["floor", "peer", "service"]  # rotated: the second repeat's order
    steps = plan(["get", "create"], targets, (PINNED, UNPINNED))
    assert steps == [
        ("get", PINNED, "floor"),
        ("get", PINNED, "peer"),
        ("get", PINNED, "service"),
        ("get", UNPINNED, "floor"),
        ("get", UNPINNED, "peer"),
        ("get", UNPINNED, "service"),
        ("create", PINNED, "floor"),
        ("create", PINNED, "peer"),
        ("create", PINNED, "service"),
        ("create", UNPINNED, "floor"),
        ("create", UNPINNED, "peer"),
        ("create", UNPINNED, "service"),
    ]


def test_cores_of_each_mode_on_two_cores() -> None:
    pinning = Pinning.choose("both", 2, TWO_CORES)
    # Pinned: one worker alone on the last core, the load side on the first; two workers
    # cannot have cores of their own and get both.
    assert pinning.target(1, PINNED) == frozenset({1})
    assert pinning.load(PINNED) == frozenset({0})
    assert pinning.target(2, PINNED) == frozenset({0, 1})
    # Unpinned: nothing restricted (every core).
    assert pinning.target(1, UNPINNED) is None
    assert pinning.load(UNPINNED) is None


def test_cores_on_a_larger_machine_leave_the_most_workers_their_own() -> None:
    pinning = Pinning.choose("both", 2, range(4))
    assert pinning.load(PINNED) == frozenset({0, 1})
    assert pinning.target(1, PINNED) == frozenset({3})
    assert pinning.target(2, PINNED) == frozenset({2, 3})


def test_results_without_a_mode_read_as_before() -> None:
    assert mode_of({"pinning": UNPINNED, "target_cores": [1]}) == UNPINNED
    assert mode_of({"target_cores": [1], "load_cores": [0]}) == PINNED
    assert mode_of({"target_cores": None}) == UNPINNED
