"""The scenarios, and the targets of issue 15 they are judged against."""

from __future__ import annotations

from dataclasses import dataclass

# The targets and the references they compare the service with, in report order.
TARGETS = ("service", "floor", "peer")
REFERENCES = ("floor", "peer")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    # Targets on the service's throughput over the floor's and over the peer's
    # (None: reported only).
    min_vs_floor: float | None = None
    min_vs_peer: float | None = None
    scaled: bool = False  # runs with --scale-workers workers instead of --workers
    slow: bool = False  # upstream latency on, --slow-connections connections
    events: bool = False  # not wrk: a backlog of status events drained (bench/events.py)

    def minimum(self, reference: str) -> float | None:
        return self.min_vs_floor if reference == "floor" else self.min_vs_peer


SCENARIOS = (
    Scenario("get", "GET by id", 0.5, 1.0),
    Scenario("list_first", "list, first page (100)", 0.6, 1.0),
    Scenario("list_deep", "list, deep page (100)", None, 1.0),
    Scenario("create", "create, 0 ms upstreams", None, 1.0),
    Scenario("create_slow", "create, {latency} ms upstreams, {conns} conns", None, 1.0, slow=True),
    Scenario("delete", "delete", None, 1.0),
    Scenario("get_scaled", "GET by id, {workers} workers", scaled=True),
    # events/s instead of req/s; the service against the events floor only (no peer).
    Scenario(
        "events", "status events applied ({events:,}, {instances:,} instances)", 0.5, events=True
    ),
)
BY_NAME = {each.name: each for each in SCENARIOS}

# Targets on derived figures (issues 6 and 15), all on the service.
MAX_DEEP_OVER_FIRST = 1.5  # first-page req/s / deep-page req/s
MAX_RSS_MB = 150.0  # 1 worker, at the end of any scenario
MIN_SCALING = 1.3  # GET req/s with 2 workers / with 1 worker


def select(names: str) -> list[Scenario]:
    """Scenarios by comma-separated names ("all": every one), in the canonical order."""
    wanted = {each.strip() for each in names.split(",") if each.strip()}
    if "all" in wanted:
        return list(SCENARIOS)
    unknown = wanted - set(BY_NAME)
    if unknown:
        raise ValueError(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from all, "
            + ", ".join(BY_NAME)
        )
    return [each for each in SCENARIOS if each.name in wanted]
