"""`python -m bench` (or `tox -e bench`): the placement service against its floor and
its peer.

Starts a private PostgreSQL, the Policy Engine and SPRM stand-ins, the service, the floor
(`floor.py`) and the peer (`peer.py`), seeds their databases identically, measures every
scenario with wrk against each in turn, pinned and unpinned (bench/pinning.py),
and writes results.json, results.md and ratios.png under bench/results/<UTC timestamp>/
(and results/latest.md). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import audit as audit_bench
from bench import events as events_bench
from bench import report
from bench.load import Load, find_wrk, run_wrk, wrk_version
from bench.pg import PrivatePostgres, default_pg_user, find_bindir
from bench.pinning import OPTIONS, Pinning, own_affinity, plan, set_affinity
from bench.procs import (
    BenchError,
    core_busy,
    core_ticks,
    cpu_seconds,
    machine_busy,
    rss_bytes,
    tree,
)
from bench.reference import SERVICE_POOL_SIZE
from bench.scenarios import SCENARIOS, Scenario, select
from bench.stack import (
    CREATE_BODY,
    FLOOR,
    FLOOR_DB,
    PEER_APP,
    PEER_DB,
    PREFIX,
    REPO,
    SERVICE_DB,
    StandIns,
    Target,
    add_spares,
    check_same_answers,
    deletable_ids,
    peer,
    reference_launch,
    seed_template,
    service_launch,
    start_all,
    walk_pages,
)

PROG = "bench"
NEEDED_MODULES = (
    "aiohttp",
    "matplotlib",
    "uvloop",
    "httptools",
    "psycopg",
    "fastapi",
    "pydantic",
    "httpx",
    "sniffio",
    "nats",
    "placement",
)


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so that everything started is stopped."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the placement service against a minimal Python floor and a"
        " FastAPI peer; every figure is reported as a ratio to theirs, measured in the same"
        " run.",
    )
    add = parser.add_argument
    add("--rows", type=int, default=100_000, help="rows seeded with COPY (100000)")
    add("--duration", type=int, default=10, help="seconds measured per scenario (10)")
    add("--warmup", type=int, default=2, help="seconds of warm-up before each (2; 0: none)")
    add("--repeat", type=int, default=1, help="repeat everything N times; report medians (1)")
    add("--connections", type=int, default=64, help="wrk connections (64)")
    add(
        "--slow-connections",
        type=int,
        default=256,
        help="wrk connections for create with upstream latency (256)",
    )
    add("--latency-ms", type=float, default=50.0, help="upstream latency of create_slow (50)")
    add("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    add("--timeout", default="5s", help="wrk socket timeout; a timeout is an error (5s)")
    add(
        "--scenarios",
        default="all",
        help="comma-separated subset of: " + ", ".join(each.name for each in SCENARIOS),
    )
    add("--workers", type=int, default=1, help="worker processes of each, all but get_scaled (1)")
    add("--scale-workers", type=int, default=2, help="worker processes in get_scaled (2)")
    add("--deep-fraction", type=float, default=0.9, help="how deep the deep page is (0.9)")
    add("--events", type=int, default=20_000, help="status events in the events backlog (20000)")
    add(
        "--instances",
        type=int,
        default=2_000,
        help="records the events are about (2000; --events spread evenly over them)",
    )
    add(
        "--pool",
        "--floor-pool",
        type=int,
        default=SERVICE_POOL_SIZE,
        help=f"database connections a worker of the floor and the peer ({SERVICE_POOL_SIZE},"
        " the service's DB_POOL_SIZE default)",
    )
    add(
        "--peer-app",
        default=PEER_APP,
        metavar="MODULE:APP",
        help=f"the peer's ASGI app, run by uvicorn with the PEER_* variables ({PEER_APP})",
    )
    add(
        "--pin",
        choices=tuple(OPTIONS),
        default="both",
        help="both: every scenario measured unpinned and pinned, interleaved, the targets"
        " judged on the unpinned figures; on (or auto): pinned only, a target with N workers"
        " alone on the last N cores when it can be, wrk, PostgreSQL and the stand-ins on the"
        " first; off: unpinned only, all share every core (both; --smoke: off)",
    )
    add(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the service (repeatable), e.g. SVC_THREADS=100",
    )
    add("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    add("--pg-user", help="run PostgreSQL as this user when root ($SUDO_USER or nobody)")
    add("--wrk", help="the wrk binary (default: wrk on PATH)")
    add("--keep-tmp", action="store_true", help="keep the temporary folder (logs, data)")
    add(
        "--enforce-targets",
        action="store_true",
        help="exit with status 2 when a target (issue 15) is missed",
    )
    add(
        "--smoke",
        action="store_true",
        help="tiny CI run: 2000 rows, 1 s a scenario, no warm-up, 16/64 connections,"
        " 2000 events for 200 instances, unpinned only (with --audit: sizes 1000,3000)",
    )
    add(
        "--audit",
        action="store_true",
        help="instead of the scenarios: the drift audit's peak RSS at --audit-sizes"
        " records and instances, on PostgreSQL and SQLite (bench/audit.py)",
    )
    add(
        "--audit-sizes",
        default=",".join(str(each) for each in audit_bench.SIZES),
        help="comma-separated numbers of records (and instances) for --audit (10000,200000)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.smoke:
        given = set(given_args(argv))
        preset = {
            "--rows": ("rows", 2000),
            "--duration": ("duration", 1),
            "--warmup": ("warmup", 0),
            "--connections": ("connections", 16),
            "--slow-connections": ("slow_connections", 64),
            "--events": ("events", 2000),
            "--instances": ("instances", 200),
            "--pin": ("pin", "off"),
        }
        for flag, (name, value) in preset.items():
            if not any(each == flag or each.startswith(flag + "=") for each in given):
                setattr(args, name, value)
    if args.smoke and not any(each.startswith("--audit-sizes") for each in given_args(argv)):
        args.audit_sizes = ",".join(str(each) for each in audit_bench.SMOKE_SIZES)
    try:
        args.sizes = audit_bench.sizes(args.audit_sizes)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        args.selected = select(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.selected:
        parser.error("--scenarios selects nothing")
    for name in ("rows", "duration", "repeat", "connections", "slow_connections", "wrk_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rows < 200:
        parser.error("--rows must be at least 200 (two pages)")
    if args.instances < 1 or args.events < args.instances:
        parser.error("--instances must be at least 1, --events at least --instances")
    if not 0 < args.deep_fraction < 1:
        parser.error("--deep-fraction must be between 0 and 1")
    overrides = {}
    for each in args.service_env:
        name, sep, value = each.partition("=")
        if not sep or not name:
            parser.error(f"--service-env {each!r}: expected NAME=VALUE")
        overrides[name] = value
    args.overrides = overrides
    return args


def given_args(argv: list[str] | None) -> list[str]:
    return argv if argv is not None else sys.argv[1:]


@dataclass
class Run:
    """Everything one benchmark run started, and what it measured."""

    args: argparse.Namespace
    tmp: Path
    wrk: str
    pg: PrivatePostgres
    standins: StandIns
    pinning: Pinning
    service: Target = field(default_factory=lambda: Target("service", "s", SERVICE_DB))
    floor: Target = field(default_factory=lambda: Target("floor", "f", FLOOR_DB))
    peer: Target = field(default_factory=lambda: Target("peer", "p", PEER_DB))
    token_key: str = field(default_factory=lambda: secrets.token_hex(32))
    deep: dict[str, str] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    handed_out: set[str] = field(default_factory=set)  # ids given to a delete load
    events: events_bench.Events | None = None  # the events scenario's server and backlog
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    loadavg_start: list[str] = field(
        default_factory=lambda: Path("/proc/loadavg").read_text().split()[:3]
    )

    def all_targets(self) -> list[Target]:
        """The service first (the others are compared with it), then the floor, the peer."""
        return [self.service, self.floor, self.peer]

    def targets(self, repeat: int) -> list[Target]:
        """All three, in an order rotated by one each repeat: over three repeats each is
        measured first, second and last once."""
        every = self.all_targets()
        shift = repeat % len(every)
        return every[shift:] + every[:shift]

    def start(self, workers: int) -> None:
        """All three at once, each with `workers` worker processes, started on every core
        this run may use; then where each process placed itself is noted (`pin` moves them
        before each measurement: unpinned, back to that)."""
        args = self.args
        common = (self.pg, self.standins, self.tmp, workers)
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.pinning.cores)
        try:
            start_all(
                service_launch(self.service, *common, args.overrides),
                reference_launch(FLOOR, self.floor, *common, args.pool, self.token_key),
                reference_launch(
                    peer(args.peer_app), self.peer, *common, args.pool, self.token_key
                ),
            )
        finally:
            os.sched_setaffinity(0, mine)
        for each in self.all_targets():
            each.own_cpus = {pid: own_affinity(pid) for pid in each.pids()}

    def pin(self, mode: str, workers: int) -> tuple[frozenset[int] | None, frozenset[int] | None]:
        """Move every process to the cores of `mode` (pinned or unpinned) for a target with
        `workers` workers: this process (and so the wrk it starts next), PostgreSQL (its
        backends, and the ones it forks later), the stand-ins, nats-server, and every running
        target. The (target, load side) cores; None: every core."""
        every = frozenset(self.pinning.cores)
        target, load = self.pinning.target(workers, mode), self.pinning.load(mode)
        side = [os.getpid()]
        if self.pg.child:
            side += tree(self.pg.child.pid)
        for pid in self.standins.pids().values():
            side += tree(pid)
        if self.events is not None:
            side += self.events.nats.pids()
        set_affinity(side, load or every)
        for each in self.all_targets():
            if each.child is not None and target is not None:
                set_affinity(each.pids(), target)
            elif each.child is not None:  # unpinned: where it placed itself, as deployed
                for pid in each.pids():
                    set_affinity([pid], each.own_cpus.get(pid, every))
            each.cpus = target
        note = f"cores: {self.pinning.describe(workers, mode)}"
        if note not in self.notes:
            self.notes.append(note)
            _say(f"{PROG}: {note}")
        return target, load

    def stop_targets(self) -> None:
        """All at once: a multi-worker uvicorn takes seconds to stop."""
        for target in self.all_targets():
            if target.child is not None:
                target.child.ask_to_stop()
        for target in self.all_targets():
            target.stop()


def _say(text: str) -> None:
    print(text, flush=True)


def _load(run: Run, scenario: Scenario, target: Target, repeat: int, mode: str, phase: str) -> Load:
    args = run.args
    when = f"{repeat}{mode[0]}"  # ids and files of one repeat in one mode: unique
    if scenario.name in ("get", "get_scaled"):
        return Load("get", target.url, (f"{PREFIX}/resources/", str(args.rows)), args.connections)
    if scenario.name == "list_first":
        return Load(
            "fixed", f"{target.url}{PREFIX}/resources?max_page_size=100", (), args.connections
        )
    if scenario.name == "list_deep":
        return Load("fixed", target.url + run.deep[target.name], (), args.connections)
    if scenario.name in ("create", "create_slow"):
        code = "c" if scenario.name == "create" else "l"
        prefix = f"x{target.tag}{when}{code}{phase}"
        connections = args.slow_connections if scenario.slow else args.connections
        return Load("create", target.url, (f"{PREFIX}/resources", prefix, CREATE_BODY), connections)
    if scenario.name == "delete":
        stem = run.tmp / f"delete-{target.tag}{when}{phase}"
        return Load("delete", target.url, (f"{PREFIX}/resources/", str(stem)), args.connections)
    raise AssertionError(scenario.name)


def _prepare_delete(
    run: Run,
    target: Target,
    repeat: int,
    mode: str,
    phase: str,
    seconds: int,
    rate: float | None,
) -> dict[str, Any]:
    """Ids for the delete scenario, one file per wrk thread: what the create scenarios
    left, topped up with spares when that may not last `seconds` at `rate` (None: a rate
    guessed from the target's other scenarios in the same repeat and mode)."""
    when = f"{repeat}{mode[0]}"
    if rate is None:
        done = [
            r
            for r in run.results
            if r["repeat"] == repeat and r["target"] == target.name and r.get("pinning") == mode
        ]
        rates = {r["scenario"]: r["rps"] for r in done}
        bounds = []
        if "get" in rates:
            bounds.append(rates["get"])  # a delete does more than a GET by id
        creates = [rates[k] for k in ("create", "create_slow") if k in rates]
        if creates:
            bounds.append(2.0 * max(creates))  # seen: 1.5-1.7x the create rate
        rate = min(bounds) if bounds else 3000.0
    needed = int(rate * seconds * 1.25) + 200
    ids = [rid for rid in deletable_ids(run.pg, target) if rid not in run.handed_out]
    spares = max(0, needed - len(ids))
    started = time.monotonic()
    if spares:
        extra = [f"y{target.tag}{when}{phase}-{n:07d}" for n in range(spares)]
        add_spares(run.pg, run.standins, target, extra)
        ids += extra
    ids = ids[:needed]
    run.handed_out.update(ids)
    threads = max(1, min(run.args.wrk_threads, run.args.connections))
    stem = run.tmp / f"delete-{target.tag}{when}{phase}"
    for thread in range(threads):
        Path(f"{stem}.{thread}").write_text("\n".join(ids[thread::threads]) + "\n")
    return {"ids": len(ids), "spares": spares, "spares_s": round(time.monotonic() - started, 2)}


def _settle(target: Target, quiet: float = 0.02, limit: float = 10.0) -> float:
    """Wait until the target is idle (requests a load left queued are done); seconds waited."""
    started = time.monotonic()
    before = sum(cpu_seconds(target.pids()).values())
    while time.monotonic() - started < limit:
        time.sleep(0.2)
        now = sum(cpu_seconds(target.pids()).values())
        if now - before < quiet:
            break
        before = now
    return round(time.monotonic() - started, 2)


def _cpu_sample(run: Run, target: Target) -> dict[str, dict[int, float]]:
    groups = {
        "target": target.pids(),
        "postgres": tree(run.pg.child.pid) if run.pg.child else [],
        **{f"{kind} stand-in": [pid] for kind, pid in run.standins.pids().items()},
    }
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


def _cpu_used(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    return {
        name: round(sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in times.items()), 3)
        for name, times in after.items()
    }


def _sampled_wrk(
    run: Run, scenario: Scenario, target: Target, repeat: int, mode: str, phase: str, seconds: int
) -> dict[str, Any]:
    """wrk for `seconds`, and the CPU each process group and each core used meanwhile."""
    args = run.args
    load = _load(run, scenario, target, repeat, mode, phase)
    ticks = core_ticks()
    before, started, busy = _cpu_sample(run, target), time.monotonic(), machine_busy()
    result = run_wrk(
        run.wrk,
        load,
        seconds=seconds,
        threads=args.wrk_threads,
        timeout=args.timeout,
        workdir=run.tmp,
    )
    result["wall_s"] = time.monotonic() - started
    result["machine_busy_s"] = machine_busy() - busy
    result["core_busy"] = {str(k): v for k, v in core_busy(ticks, core_ticks()).items()}
    result["samples"] = (before, _cpu_sample(run, target))
    return result


def _drive(
    run: Run,
    scenario: Scenario,
    target: Target,
    repeat: int,
    mode: str,
    phase: str,
    seconds: int,
    record: dict[str, Any],
) -> dict[str, Any]:
    """One wrk run of the scenario. Deletes need ids prepared first; when a noisy machine
    made the target faster than the guess and they ran out (404s), the run is done again,
    up to twice, with ids for 1.5x the rate just seen (the 404s made that rate higher)."""
    rate = None
    for attempt in range(3):
        tag = phase if attempt == 0 else f"{phase}{attempt}"
        if scenario.name == "delete":
            ids = _prepare_delete(run, target, repeat, mode, tag, seconds, rate)
            record.setdefault("ids" if phase == "m" else "warmup_ids", []).append(ids)
        result = _sampled_wrk(run, scenario, target, repeat, mode, tag, seconds)
        if scenario.name != "delete" or not result.get("exhausted") or attempt == 2:
            return result
        rate = 1.5 * result["rps"]
        record["delete_retries"] = record.get("delete_retries", 0) + 1
        _say(
            f"  {scenario.name:<11} {target.name:<7} {mode:<8} ran out of ids"
            f" ({result['exhausted']} requests at {result['rps']:.0f}/s): again with more"
        )
        _settle(target)
    raise AssertionError("unreachable")


def measure(run: Run, scenario: Scenario, target: Target, repeat: int, mode: str) -> dict[str, Any]:
    """One scenario on one target, pinned or unpinned (`mode`)."""
    args = run.args
    target_cores, load_cores = run.pin(mode, target.workers)
    record: dict[str, Any] = {
        "scenario": scenario.name,
        "target": target.name,
        "repeat": repeat,
        "pinning": mode,
        "workers": target.workers,
    }
    if scenario.slow:
        run.standins.set_latency(args.latency_ms / 1000)
    try:
        if args.warmup:
            warm = _drive(run, scenario, target, repeat, mode, "w", args.warmup, record)
            record["warmup_errors"] = warm["errors"]
            record["warmup_error_count"] = warm["error_count"]
            record["warmup_settle_s"] = _settle(target)
        result = _drive(run, scenario, target, repeat, mode, "m", args.duration, record)
    finally:
        if scenario.slow:
            run.standins.set_latency(0)
    before, after = result.pop("samples")
    wall, busy = result.pop("wall_s"), result.pop("machine_busy_s")
    used = _cpu_used(before, after)
    per_process = {
        str(pid): round(seconds - before["target"].get(pid, 0.0), 3)
        for pid, seconds in after["target"].items()
    }
    used["wrk"] = round(result.pop("wrk_cpu_s"), 3)
    used["others"] = round(max(0.0, busy - sum(used.values())), 3)
    pids = target.pids()
    sizes = rss_bytes(pids)
    record["settle_s"] = _settle(target)
    root = target.child.pid if target.child else 0
    record.update(result)
    record["cpu_s"] = used
    record["cpu_cores"] = {name: round(seconds / wall, 2) for name, seconds in used.items()}
    record["target_cpu_s_by_pid"] = per_process
    record["cpu_ms_per_request"] = used["target"] * 1000 / max(1, record["requests"])
    record["target_cores"] = sorted(target_cores) if target_cores else None
    record["load_cores"] = sorted(load_cores) if load_cores else None
    record["rss_bytes"] = sum(sizes.values())
    record["rss_workers_bytes"] = sum(
        size for pid, size in sizes.items() if pid != root or len(sizes) == 1
    )
    record["processes"] = len(pids)
    errors = record["error_count"] + record.get("warmup_error_count", 0)
    latency = record["latency_us"]
    _say(
        f"  {scenario.name:<11} {target.name:<7} {mode:<8} {record['rps']:>9.1f} req/s"
        f"  p50 {latency['p50'] / 1000:7.2f} ms  p99 {latency['p99'] / 1000:7.2f} ms"
        f"  cpu {record['cpu_ms_per_request'] * 1000:7.0f} us/req"
        f"  rss {record['rss_bytes'] / 2**20:6.1f} MB  errors {errors}"
        + (f" (ran out of ids {record['exhausted']}x)" if record.get("exhausted") else "")
        + (f"  cpu by process {sorted(per_process.values())}" if len(per_process) > 1 else "")
    )
    return record


def measure_events(run: Run, repeat: int) -> None:
    """The events scenario: in each mode of the repeat (the order of the HTTP scenarios),
    the service, then the floor (the other way round every other repeat), each draining
    the same backlog alone."""
    args = run.args
    if run.events is None:
        _say(f"{PROG}: events: {args.events:,} events for {args.instances:,} instances")
        run.events, timings = events_bench.prepare(run.pg, run.tmp, args.instances, args.events)
        run.timings.update(timings)
        run.notes.append(
            f"events: {args.events:,} status events (CloudEvents, structured JSON, both subject"
            f" forms, shuffled) for {args.instances:,} READY records, published to a private"
            f" nats-server's stream {events_bench.STREAM} before the consumer starts; events/s"
            " from the first progress seen to the last ack (JetStream's consumer info polled"
            " every 20 ms), then every instance's newest status checked in the database"
        )
    order = [run.service, run.floor]
    if repeat % 2:
        order.reverse()
    for mode in run.pinning.order(repeat):
        for target in order:
            # No HTTP target runs now: this moves the load side; the drainer starts on `cpus`.
            cpus, load = run.pin(mode, 1)
            record = events_bench.measure(
                target,
                repeat,
                mode,
                run.events,
                run.pg,
                run.standins,
                run.tmp,
                args.overrides,
                cpus,
                load,
            )
            run.results.append(record)
            _say_events(record)


def _say_events(record: dict[str, Any]) -> None:
    _say(
        f"  {'events':<11} {record['target']:<7} {record['pinning']:<8}"
        f" {record['rps']:>9.1f} events/s"
        f"  drain {record['drain_s']:6.2f} s  from launch {record['launch_to_done_s']:6.2f} s"
        f"  cpu {record['cpu_ms_per_request'] * 1000:7.0f} us/event"
        f"  rss {record['rss_bytes'] / 2**20:6.1f} MB  errors {record['error_count']}"
        + (f"  {record['counters']}" if record["counters"] else "")
    )


def _scenarios(run: Run, scenarios: list[Scenario], repeat: int) -> None:
    for scenario, mode, target in plan(scenarios, run.targets(repeat), run.pinning.order(repeat)):
        run.results.append(measure(run, scenario, target, repeat, mode))


def run_repeat(run: Run, repeat: int) -> None:
    args = run.args
    normal = [each for each in args.selected if not each.scaled and not each.events]
    scaled = [each for each in args.selected if each.scaled]
    _say(f"repeat {repeat + 1}/{args.repeat}")
    if normal:
        run.start(args.workers)
        if not run.deep and any(each.name == "list_deep" for each in normal):
            started = time.monotonic()
            pages = max(1, int(args.rows * args.deep_fraction) // 100)
            first_ids = {}
            for target in run.all_targets():
                run.deep[target.name], first_ids[target.name] = walk_pages(target.url, pages)
            run.timings["walk_s"] = round(time.monotonic() - started, 2)
            run.notes.append(
                f"deep page: page {pages + 1} of {-(-args.rows // 100)} (first id"
                f" {first_ids['service'][0]}), reached by following {pages} page tokens"
            )
        if repeat == 0:
            check_same_answers(run.all_targets(), run.deep)
        _scenarios(run, normal, repeat)
        run.stop_targets()
    if scaled:
        run.start(args.scale_workers)
        _scenarios(run, scaled, repeat)
        run.stop_targets()
    if any(each.events for each in args.selected):
        measure_events(run, repeat)


def _keep_logs_if_errors(run: Run, folder: Path) -> None:
    """Failed requests: keep every process's log beside the results, to find out why."""
    if not any(r["error_count"] or r.get("warmup_error_count") for r in run.results):
        return
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    for log in run.tmp.glob("*.log"):
        with contextlib.suppress(OSError):
            shutil.copyfile(log, logs / log.name)
    _say(f"{PROG}: failed requests: the processes' logs are in {logs}/")


def _check_modules() -> None:
    missing = [name for name in NEEDED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise BenchError(
            f"missing Python packages: {', '.join(missing)} (run through `tox -e bench`, or"
            f" pip install {' '.join(m for m in missing if m != 'placement')} and the project)"
        )


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Also when started with SIGINT ignored (a background job of a non-interactive shell).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    """Let a clean-up finish: a second Ctrl-C must not leave processes behind."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _audit(run: Run, started_at: datetime, argv: list[str] | None) -> int:
    """The drift audit's memory at each size; status 2 on a MISS with --enforce-targets."""
    args = run.args
    _say(f"{PROG}: drift audit at {', '.join(f'{n:,}' for n in args.sizes)} records+instances")
    results = audit_bench.measure(run.pg, run.standins, run.tmp, args.sizes)
    words = given_args(argv)
    command = "python -m bench" + ("" if not words else " " + shlex.join(words))
    growth = audit_bench.write(args.out, results, started_at, command)
    missed = any(each["verdict"] == "MISS" for each in growth.values())
    return 2 if missed and args.enforce_targets else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    try:
        _check_modules()
        wrk = "" if args.audit else find_wrk(args.wrk)
        bindir = find_bindir()
        if not args.audit and any(each.events for each in args.selected):
            events_bench.find_nats_server()
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    run_as = None
    if os.geteuid() == 0:
        run_as = args.pg_user or default_pg_user()
    tmp = Path(tempfile.mkdtemp(prefix="placement-bench-"))
    pg = PrivatePostgres(tmp, bindir, run_as)
    most_workers = max(args.workers, args.scale_workers)
    pinning = Pinning.choose("off" if args.audit else args.pin, most_workers)
    run = Run(args, tmp, wrk, pg, StandIns(tmp), pinning)
    status = 0
    try:
        with _signals_unwind():
            _say(
                f"{PROG}: temporary folder {tmp};"
                f" interpreter {sys.executable} ({sys.version.split()[0]})"
            )
            if not args.audit:
                # Every process is moved to the cores of each measurement's mode (Run.pin).
                modes = pinning.modes
                _say(
                    f"{PROG}: measured {' and '.join(modes)}, interleaved"
                    if len(modes) > 1
                    else f"{PROG}: measured {modes[0]} only"
                )
            pg.start()
            run.standins.start()
            if args.audit:
                return _audit(run, started_at, argv)
            _say(f"{PROG}: PostgreSQL on 127.0.0.1:{pg.port}; seeding {args.rows} rows")
            run.timings.update(seed_template(pg, run.standins, tmp, args.rows, args.overrides))
            for repeat in range(args.repeat):
                run_repeat(run, repeat)
            run.timings["total_s"] = round(time.monotonic() - clock, 1)
            machine = report.machine(run_as, pg.version(), wrk_version(wrk))
            folder = report.write(run, machine, started_at, argv)
            _keep_logs_if_errors(run, folder)
            status = report.exit_status(folder, args.enforce_targets)
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        status = 1
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"{PROG}: interrupted ({str(exc) or 'Ctrl-C'}); stopping everything", file=sys.stderr)
        status = 130
    finally:
        with _no_signals():
            run.stop_targets()
            if run.events is not None:
                run.events.stop()
            run.standins.stop()
            pg.stop()
            if args.keep_tmp:
                print(f"{PROG}: kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return status
