"""The scenarios, and the targets of issue 6 they are judged against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    # Target on the service/floor throughput ratio (None: reported only).
    min_ratio: float | None = None
    scaled: bool = False  # runs with --scale-workers workers instead of --workers
    slow: bool = False  # upstream latency on, --slow-connections connections


SCENARIOS = (
    Scenario("get", "GET by id", 0.6),
    Scenario("list_first", "list, first page (100)", 0.6),
    Scenario("list_deep", "list, deep page (100)"),
    Scenario("create", "create, 0 ms upstreams", 0.5),
    Scenario("create_slow", "create, {latency} ms upstreams, {conns} conns", 0.5, slow=True),
    Scenario("delete", "delete"),
    Scenario("get_scaled", "GET by id, {workers} workers", scaled=True),
)
BY_NAME = {each.name: each for each in SCENARIOS}

# Targets on derived figures (issue 6).
MAX_DEEP_OVER_FIRST = 1.5  # service: first-page req/s / deep-page req/s
MAX_RSS_MB = 150.0  # service, 1 worker, at the end of any scenario
MIN_SCALING = 1.3  # service: GET req/s with 2 workers / with 1 worker


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
