"""The results: results.json (every raw figure), results.md (the tables, judged against
the targets of issue 15), ratios.png (bar charts of the service's ratios to the floor and
to the peer), latest.md."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.events import FLOOR_BATCH
from bench.pinning import JUDGED, PINNED, UNPINNED, mode_of
from bench.procs import BenchError
from bench.scenarios import (
    BY_NAME,
    MAX_DEEP_OVER_FIRST,
    MAX_RSS_MB,
    MIN_SCALING,
    REFERENCES,
    TARGETS,
    Scenario,
)
from bench.stack import REPO

if TYPE_CHECKING:
    from bench.run import Run

FILES = ("results.json", "results.md", "ratios.png")
PACKAGES = (
    "placement-manager",
    "connexion",
    "uvicorn",
    "starlette",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "requests",
    "uvloop",
    "httptools",
    "aiohttp",
    "fastapi",
    "pydantic",
    "pydantic-core",
    "httpx",
    "httpcore",
    "sniffio",
    "anyio",
    "orjson",
    "matplotlib",
)
MB = 2**20
# Cores a core that other users' processes may take during the measurements (median)
# before a run's figures are flagged as not to be quoted.
QUIET_OTHERS = 0.1


def _first_line(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _git(*args: str) -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    found = subprocess.run(  # noqa: S603 - a fixed command
        [git, "-c", f"safe.directory={REPO}", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    return found.stdout.strip() if found.returncode == 0 else ""


def machine(pg_user: str | None, postgres: str, wrk: str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "memory": _first_line("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "interpreter": {
            "executable": sys.executable,
            "resolved": os.path.realpath(sys.executable),
            "version": sys.version,
            "implementation": platform.python_implementation(),
        },
        "postgres": postgres,
        "postgres_user": pg_user,
        "wrk": wrk,
        "packages": versions,
        "git": {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain"))},
        "user": os.environ.get("USER") or str(os.geteuid()),
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _verdict(value: float | None, limit: float, at_least: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= limit if at_least else value <= limit
    return "PASS" if ok else "MISS"


def _overall(verdicts: list[str]) -> str:
    """MISS if any missed, PASS if any passed, else "-" (no target)."""
    if "MISS" in verdicts or "n/a" in verdicts:
        return "MISS" if "MISS" in verdicts else "n/a"
    return "PASS" if "PASS" in verdicts else "-"


def aggregate(run: Run) -> dict[str, Any]:
    """Medians over repeats, for each mode measured (pinned, unpinned) apart; ratios per
    repeat first (same-run ratios drift less). `scenarios` and `derived` at the top are
    the judged mode's (unpinned when measured), `by_pinning` has every mode's; the errors
    count every run of every mode."""
    results = run.results
    modes = [m for m in (UNPINNED, PINNED) if any(mode_of(r) == m for r in results)]
    judged = JUDGED if JUDGED in modes or not modes else modes[0]
    by_pinning = {m: _aggregate([r for r in results if mode_of(r) == m]) for m in modes}
    view = by_pinning.get(judged) or _aggregate([])
    return {
        "judged_on": judged,
        "modes": modes,
        "scenarios": view["scenarios"],
        "derived": {**view["derived"], "errors": _errors(results)},
        "by_pinning": by_pinning,
    }


def _errors(results: list[dict[str, Any]]) -> dict[str, Any]:
    errors = {
        t: sum(
            r["error_count"] + r.get("warmup_error_count", 0) for r in results if r["target"] == t
        )
        for t in TARGETS
    }
    total = sum(errors.values())
    return {**errors, "total": total, "verdict": "PASS" if total == 0 else "MISS"}


def _aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one mode's results."""
    repeats = sorted({r["repeat"] for r in results})

    def pick(scenario: str, target: str) -> list[dict[str, Any]]:
        return [r for r in results if r["scenario"] == scenario and r["target"] == target]

    def by_repeat(scenario: str, target: str, key: str) -> dict[int, float]:
        return {r["repeat"]: r[key] for r in pick(scenario, target)}

    def ratios(top: dict[int, float], bottom: dict[int, float]) -> list[float]:
        return [top[k] / bottom[k] for k in repeats if k in top and bottom.get(k)]

    scenarios: dict[str, Any] = {}
    for name in dict.fromkeys(r["scenario"] for r in results):
        entry: dict[str, Any] = {}
        for target in TARGETS:
            rows = pick(name, target)
            entry[target] = {
                "rps": _median([r["rps"] for r in rows]),
                # None for the events scenario (no requests: a backlog drained).
                "p50_ms": _median(
                    [r["latency_us"]["p50"] / 1000 for r in rows if "latency_us" in r]
                ),
                "p99_ms": _median(
                    [r["latency_us"]["p99"] / 1000 for r in rows if "latency_us" in r]
                ),
                "errors": sum(r["error_count"] + r.get("warmup_error_count", 0) for r in rows),
                "rss_mb": _median([r["rss_bytes"] / MB for r in rows]),
                "cpu_us": _median([r["cpu_ms_per_request"] * 1000 for r in rows]),
                "workers": rows[0]["workers"] if rows else None,
            }
        entry["vs"] = {}
        for reference in REFERENCES:
            rps = ratios(by_repeat(name, "service", "rps"), by_repeat(name, reference, "rps"))
            # Noise-robust companion: the reference's CPU per request / the service's.
            cpu = ratios(
                by_repeat(name, reference, "cpu_ms_per_request"),
                by_repeat(name, "service", "cpu_ms_per_request"),
            )
            minimum = BY_NAME[name].minimum(reference)
            entry["vs"][reference] = {
                "ratios": rps,
                "ratio": _median(rps),
                "cpu_ratio": _median(cpu),
                "target": minimum,
                "verdict": _verdict(_median(rps), minimum, True) if minimum else "-",
            }
        entry["verdict"] = _overall([each["verdict"] for each in entry["vs"].values()])
        scenarios[name] = entry

    derived: dict[str, Any] = {}

    def per_target(top: str, bottom: str) -> dict[str, float | None]:
        return {
            t: _median(ratios(by_repeat(top, t, "rps"), by_repeat(bottom, t, "rps")))
            for t in TARGETS
        }

    if "list_first" in scenarios and "list_deep" in scenarios:
        values = per_target("list_first", "list_deep")
        derived["deep_over_first"] = {
            **values,
            "target": MAX_DEEP_OVER_FIRST,
            "verdict": _verdict(values["service"], MAX_DEEP_OVER_FIRST, False),
        }
    if "get" in scenarios and "get_scaled" in scenarios:
        values = per_target("get_scaled", "get")
        # Pinned, with too few cores for the workers to have their own, they share the
        # load side's while one worker had a core alone: not a fair scaling figure.
        shared = any(
            set(r.get("target_cores") or ()) & set(r.get("load_cores") or ())
            for r in results
            if r["scenario"] == "get_scaled"
        )
        derived["scaling"] = {
            **values,
            "target": MIN_SCALING,
            "verdict": "-" if shared else _verdict(values["service"], MIN_SCALING, True),
            "judged": not shared,
        }
    single = [r for r in results if r["scenario"] != "get_scaled"]
    if single:
        peaks = {}
        for t in TARGETS:
            mine = [r for r in single if r["target"] == t]
            peaks[t] = _median(
                [
                    max(r["rss_bytes"] for r in mine if r["repeat"] == k) / MB
                    for k in repeats
                    if any(r["repeat"] == k for r in mine)
                ]
            )
        derived["rss_mb"] = {
            **peaks,
            "target": MAX_RSS_MB,
            "verdict": _verdict(peaks["service"], MAX_RSS_MB, False),
        }
    derived["errors"] = _errors(results)
    return {"scenarios": scenarios, "derived": derived}


def _title(run: Run, scenario: Scenario) -> str:
    args = run.args
    return scenario.title.format(
        latency=f"{args.latency_ms:g}",
        conns=args.slow_connections,
        workers=args.scale_workers,
        events=args.events,
        instances=args.instances,
    )


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _slashed(values: list[float | None], digits: int = 0) -> str:
    return " / ".join(_num(value, digits) for value in values)


def _warning(run: Run, meta: dict[str, Any]) -> str:
    """A line in bold when the figures are not to be quoted: a smoke run, or a busy
    machine: other users' processes taking more than QUIET_OTHERS a core, median over
    the measurements (the load averages count the benchmark's own work and tox's)."""
    if run.args.smoke:
        return "**Smoke run (CI): tiny table and durations, figures not meaningful.**\n"
    cores = meta["machine"]["cores"] or 1
    others = _median([r["cpu_cores"]["others"] for r in run.results]) or 0.0
    if others > QUIET_OTHERS * cores:
        return (
            f"**Loaded machine: other users' processes used {others:.2f} of the {cores} cores"
            " (median over the measurements): the figures are not to be quoted (CPU per"
            " request is the least affected).**\n"
        )
    return ""


def _pinning_line(run: Run, summary: dict[str, Any]) -> str:
    modes = summary.get("modes") or []
    judged = summary.get("judged_on", "")
    if len(modes) > 1:
        order = (
            "unpinned then pinned on even repeats, pinned then unpinned on odd ones"
            if run.args.repeat > 1
            else "unpinned, then pinned"
        )
        return (
            "- Cores: every scenario measured unpinned (every process shares every core, as"
            " deployed) and pinned (each target alone on its core(s), wrk, PostgreSQL and the"
            f" stand-ins on the others), the three targets back to back in each ({order});"
            f" targets judged on the {judged} figures, the pinned ones the low-noise view"
        )
    what = {
        PINNED: "pinned only (each target alone on its core(s), wrk, PostgreSQL and the"
        " stand-ins on the others)",
        UNPINNED: "unpinned only (every process shares every core)",
    }
    return f"- Cores: {what.get(judged, judged)}"


def _header(run: Run, meta: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    args, mach = run.args, meta["machine"]
    interp = mach["interpreter"]
    version = interp["version"].split()[0]
    commit = (mach["git"]["commit"][:12] or "?") + (
        " (+ local changes)" if mach["git"]["dirty"] else ""
    )
    services = (
        f", with {', '.join(f'{k}={v}' for k, v in args.overrides.items())}"
        if args.overrides
        else ", its defaults otherwise (info-level logs: one access line a request)"
    )
    peer = (
        "`bench/peer.py` (FastAPI, Pydantic v2 models, psycopg async pool"
        f" of {args.pool}, one httpx.AsyncClient)"
        if args.peer_app == "bench.peer:app"
        else f"`{args.peer_app}`"
    )
    return [
        f"# placement-manager benchmark, {meta['date']}",
        "",
        _warning(run, meta) + f"- Command: `{meta['command']}`",
        f"- Machine: {mach['cores']} cores ({mach['cpu_model'] or 'unknown CPU'}), Linux"
        f" {mach['kernel']}, load average at start {' '.join(meta['loadavg_start'])},"
        f" at end {' '.join(mach['loadavg_end'])}",
        f"- Interpreter: {interp['implementation']} {version}, `{interp['executable']}`"
        f" (resolves to `{interp['resolved']}`), for every target and the stand-ins",
        f"- {args.rows:,} rows; {args.duration} s measured per scenario after {args.warmup} s"
        f" of warm-up; {args.connections} connections ({args.slow_connections} for create"
        f" with {args.latency_ms:g} ms upstreams); wrk {args.wrk_threads} thread(s);"
        f" {args.repeat} repeat(s), medians shown; the targets' order rotated each repeat",
        f"- Service: `placement-manager serve`, {args.workers} worker(s){services}",
        f"- Floor: `bench/floor.py` (Starlette, psycopg async pool of {args.pool}, aiohttp, no"
        " logs); peer: " + peer + ", uvicorn's info-level log with its access line; both"
        " under uvicorn with uvloop and httptools, same workers, same PostgreSQL",
        f"- {mach['postgres']} (private, fsync off); {mach['wrk']}; git {commit}",
        _pinning_line(run, summary),
        *(
            [
                f"- Events: the service (NATS_URL set, else the same) and `bench/events_floor.py`"
                f" (nats-py pull consumer, batches of {FLOOR_BATCH}, one psycopg UPDATE an event,"
                f" acked after it) each drain {args.events:,} status events for"
                f" {args.instances:,} records from a private nats-server; events/s in the req/s"
                " columns, CPU us per event"
            ]
            if "events" in {each.name for each in args.selected}
            else []
        ),
    ]


def _views(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(mode, its figures), the judged mode first; older summaries have one, unnamed."""
    judged = summary.get("judged_on", "")
    by_pinning = summary.get("by_pinning") or {judged: summary}
    return sorted(by_pinning.items(), key=lambda item: item[0] != judged)


def _result(verdict: str, judged: bool) -> str:
    """A verdict; in parentheses on a mode that is not judged (what it would say)."""
    return verdict if judged or verdict == "-" else f"({verdict})"


def markdown(run: Run, summary: dict[str, Any], meta: dict[str, Any], image: str) -> str:
    args = run.args
    views = _views(summary)
    judged_on = summary.get("judged_on", "")
    lines = [
        *_header(run, meta, summary),
        "",
        "| scenario | cores | service req/s | floor req/s | peer req/s | service / floor"
        " | target | service / peer | target | result | CPU us/req service / floor / peer |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name in _scenario_names(summary):
        for index, (mode, view) in enumerate(views):
            entry = view["scenarios"].get(name)
            if entry is None:
                continue
            cells = [_title(run, BY_NAME[name]) if index == 0 else "", mode]
            cells += [_num(entry[t]["rps"]) for t in TARGETS]
            for reference in REFERENCES:
                versus = entry["vs"][reference]
                target = f">= {versus['target']:g}" if versus["target"] else "-"
                cells += [_num(versus["ratio"], 2), target]
            cells.append(_result(entry["verdict"], mode == judged_on))
            cells.append(_slashed([entry[t]["cpu_us"] for t in TARGETS]))
            lines.append("| " + " | ".join(cells) + " |")
    pinned_note = (
        f" Each scenario was measured {' and '.join(m for m, _ in views)}, interleaved; the"
        f" results and targets are judged on the {judged_on} figures"
        + (
            " (every core shared, as a deployed service runs); the pinned ones (each target"
            " alone on its core, the load side on the others) are the low-noise view, their"
            " results in parentheses are not judged."
            if len(views) > 1
            else "."
        )
        if judged_on
        else ""
    )
    lines += [
        "",
        "service / floor, service / peer: the service's req/s over the reference's, taken"
        " per repeat, then the median: the figures the targets apply to (>= 1.0 against the"
        " peer: the service is ahead). CPU us/req: CPU time (user + system) of the target's"
        " own processes during the measured seconds, per request." + pinned_note,
        "",
        "| scenario | cores | p50 / p99 ms service | floor | peer | errors s / f / p"
        " | RSS MB s / f / p | CPU/req floor / service | CPU/req peer / service |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in _scenario_names(summary):
        for index, (mode, view) in enumerate(views):
            entry = view["scenarios"].get(name)
            if entry is None:
                continue
            cells = [_title(run, BY_NAME[name]) if index == 0 else "", mode]
            cells += [_slashed([entry[t]["p50_ms"], entry[t]["p99_ms"]], 1) for t in TARGETS]
            cells.append(" / ".join(str(entry[t]["errors"]) for t in TARGETS))
            cells.append(_slashed([entry[t]["rss_mb"] for t in TARGETS]))
            cells += [_num(entry["vs"][r]["cpu_ratio"], 2) for r in REFERENCES]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU/req reference / service: above 1 the service spends less CPU a request than the"
        " reference. It hardly moves with other users' load (the req/s ratios do), so it is"
        " the steadier figure on a busy machine; the targets stay on req/s.",
        "",
        "| figure | cores | service | floor | peer | target | result |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    rows = (
        ("deep_over_first", "list: first-page req/s / deep-page req/s", 2, "<="),
        (
            "rss_mb",
            f"RSS, {args.workers} worker(s), MB (highest at the end of a scenario)",
            0,
            "<=",
        ),
        ("scaling", f"GET by id req/s, {args.scale_workers} workers / {args.workers}", 2, ">="),
    )
    for key, label, digits, sign in rows:
        for index, (mode, view) in enumerate(views):
            if key not in view["derived"]:
                continue
            d = view["derived"][key]
            judged = d.get("judged", True)
            lines.append(
                f"| {label if index == 0 else ''} | {mode} | "
                + " | ".join(_num(d[t], digits) for t in TARGETS)
                + f" | {sign} {d['target']:g} (service{'' if judged else ', not judged*'})"
                f" | {_result(d['verdict'], mode == judged_on)} |"
            )
    derived = summary["derived"]
    errors = derived["errors"]
    lines.append(
        "| errors (non-2xx, socket errors, timeouts; all runs) | all | "
        + " | ".join(str(errors[t]) for t in TARGETS)
        + f" | 0 | {errors['verdict']} |"
    )
    if any(not view["derived"].get("scaling", {}).get("judged", True) for _, view in views):
        lines += [
            "",
            f"\\* Pinned, the {args.scale_workers} workers shared cores with wrk, PostgreSQL and"
            " the stand-ins while 1 worker had a core of its own (too few cores): that scaling"
            " figure is not judged; the unpinned one is (or a larger machine).",
        ]
    lines += [*_events_table(run), *_cpu_table(run, summary, meta), *_footer(run, image)]
    return "\n".join(lines)


def _events_table(run: Run) -> list[str]:
    """The events scenario's own figures (medians over repeats)."""
    rows = [r for r in run.results if r["scenario"] == "events"]
    if not rows:
        return []
    lines = [
        "",
        f"Status events: {run.args.events:,} for {run.args.instances:,} records, published"
        " before the consumer starts. events/s: from the first progress seen to the last ack;"
        " from launch: the same including the process's start-up and connecting. Wrong"
        " statuses: records whose status, message or time is not their newest event's.",
        "",
        "| target | cores | events/s | drain s | launch to first ack s | launch to done s"
        " | events/s from launch | CPU us/event | RSS MB | wrong statuses | service's counters |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    modes = [m for m in (UNPINNED, PINNED) if any(mode_of(r) == m for r in rows)]
    for target, mode in ((t, m) for t in ("service", "floor") for m in modes):
        mine = [r for r in rows if r["target"] == target and mode_of(r) == mode]
        if not mine:
            continue

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            return _median([r[key] for r in mine])

        counters = mine[-1].get("counters") or {}
        shown = ", ".join(f"{k} {v:,.0f}" for k, v in counters.items() if v) or "-"
        lines.append(
            f"| {target} | {mode} | {_num(med('rps'))} | {_num(med('drain_s'), 2)}"
            f" | {_num(med('launch_to_first_s'), 2)} | {_num(med('launch_to_done_s'), 2)}"
            f" | {_num(med('events_per_s_from_launch'))}"
            f" | {_num(_median([r['cpu_ms_per_request'] * 1000 for r in mine]))}"
            f" | {_num(_median([r['rss_bytes'] / MB for r in mine]))}"
            f" | {sum(r['errors']['wrong_status'] for r in mine)} | {shown} |"
        )
    return lines


_CPU_GROUPS = (
    "target",
    "postgres",
    "policy stand-in",
    "sprm stand-in",
    "wrk",
    "nats-server",
    "others",
)


def _cpu_table(run: Run, summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "CPU in use during each measurement, in cores (of"
        f" {meta['machine']['cores']}): the measured target's processes, PostgreSQL, the"
        " stand-ins, wrk, and everything else on the machine (other users: noise); then how"
        " busy each core was (the target's cores marked *). A load side near 100 % busy"
        " means the figure is a floor for what that target could do.",
        "",
        "| scenario | measured | cores | its processes | postgres | policy stand-in"
        " | sprm stand-in | wrk | nats-server | others | busy per core |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    modes = [mode for mode, _ in _views(summary)]
    for name in _scenario_names(summary):
        for target, mode in ((t, m) for t in TARGETS for m in modes):
            rows = [
                r
                for r in run.results
                if r["scenario"] == name and r["target"] == target and mode_of(r) == mode
            ]
            if not rows:
                continue
            cores = [_median([r["cpu_cores"].get(key, 0.0) for r in rows]) for key in _CPU_GROUPS]
            mine = set(rows[0].get("target_cores") or ())
            busy = {
                core: _median([r["core_busy"].get(core, 0.0) for r in rows])
                for core in rows[0].get("core_busy", {})
            }
            per_core = ", ".join(
                f"{core}{'*' if int(core) in mine else ''} {value or 0:.0%}"
                for core, value in busy.items()
            )
            lines.append(
                f"| {name} | {target} | {mode} | "
                + " | ".join(_num(value, 2) for value in cores)
                + f" | {per_core} |"
            )
    return lines


def _footer(run: Run, image: str) -> list[str]:
    t = run.timings
    lines = [""]
    if run.notes:
        lines += [f"- {note}" for note in run.notes]
    lines += [
        f"- Took {t.get('total_s', 0):g} s in all (seeding: migrate {t.get('migrate_s', 0):g} s,"
        f" COPY {t.get('copy_s', 0):g} s, clone {t.get('clone_s', 0):g} s;"
        f" walking to the deep page {t.get('walk_s', 0):g} s"
        + (
            f"; events: seeding {t['events_seed_s']:g} s, publishing {t['events_publish_s']:g} s"
            if "events_seed_s" in t
            else ""
        )
        + ").",
        "",
        f"![the service's ratios to the floor and to the peer]({image})",
        "",
    ]
    return lines


_COLORS = {"PASS": "#2e7d32", "MISS": "#c62828", "-": "#607d8b", "n/a": "#607d8b"}


def _scenario_names(summary: dict[str, Any]) -> list[str]:
    """Every scenario of any mode, in the order measured."""
    return list(dict.fromkeys(n for _, view in _views(summary) for n in view["scenarios"]))


def chart(run: Run, summary: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    """Left: the service's ratios to the floor (plain) and the peer (hatched), per
    scenario; with both modes the unpinned bar (judged, solid) beside the pinned one
    (faded). Right: the derived figures, the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    views = _views(summary)
    judged_on = summary.get("judged_on", "")
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(15 if len(views) > 1 else 14, 5.6), gridspec_kw={"width_ratios": [2.4, 1]}
    )
    names = _scenario_names(summary)
    slots = [(reference, mode, view) for reference in REFERENCES for mode, view in views]
    width = 0.8 / len(slots)
    tops = [1.1]
    for slot, (reference, mode, view) in enumerate(slots):
        offset = (slot - (len(slots) - 1) / 2) * width
        versus = [
            view["scenarios"][n]["vs"][reference] if n in view["scenarios"] else None for n in names
        ]
        values = [(each or {}).get("ratio") or 0.0 for each in versus]
        tops += values
        positions = [index + offset for index in range(len(names))]
        bars = left.bar(
            positions,
            values,
            width * 0.95,
            color=[_COLORS[(each or {}).get("verdict", "-")] for each in versus],
            alpha=1.0 if mode == judged_on else 0.45,
            hatch="//" if reference == "peer" else "",
            edgecolor="white",
        )
        size = 6 if len(slots) > 2 else 7
        left.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=size)
        for x, each in zip(positions, versus, strict=True):
            if each and each["target"]:
                left.hlines(each["target"], x - width / 2, x + width / 2, colors="black", ls="--")
    left.axhline(1.0, color="grey", linewidth=0.8)
    labels = [textwrap.fill(_title(run, BY_NAME[n]), 14) for n in names]
    left.set_xticks(range(len(names)), labels, fontsize=8)
    left.set_ylabel("service req/s / reference req/s")
    title = "Service throughput over the floor (plain) and the peer (hatched); dashed: target"
    if len(views) > 1:
        title += f"\n{judged_on} (solid, judged) beside " + ", ".join(
            f"{mode} (faded)" for mode, _ in views if mode != judged_on
        )
    elif judged_on:
        title += f"; {judged_on}"
    left.set_title(title, fontsize=9)
    left.set_ylim(0, max(tops) * 1.15)
    keys = [
        Patch(facecolor="white", edgecolor="black", label="service / floor"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="service / peer"),
        Patch(color=_COLORS["PASS"], label="target met"),
        Patch(color=_COLORS["MISS"], label="target missed"),
        Patch(color=_COLORS["-"], label="no target"),
    ]
    if len(views) > 1:
        keys += [
            Patch(color=_COLORS["-"], label=f"{judged_on}: judged"),
            Patch(color=_COLORS["-"], alpha=0.45, label="pinned: low-noise view"),
        ]
    left.legend(handles=keys, fontsize=7, loc="best")

    items = []
    for mode, view in views:
        derived = view["derived"]
        suffix = f"\n{mode}" if len(views) > 1 else ""
        alpha = 1.0 if mode == judged_on else 0.45
        if "deep_over_first" in derived:
            d = derived["deep_over_first"]
            items.append(
                ("first/deep\nlist req/s" + suffix, d["service"], d["target"], d["verdict"], alpha)
            )
        if "scaling" in derived:
            d = derived["scaling"]
            label = f"GET {run.args.scale_workers}w/{run.args.workers}w" + suffix
            items.append((label, d["service"], d["target"], d["verdict"], alpha))
        if "rss_mb" in derived:
            d = derived["rss_mb"]
            items.append(
                (
                    f"RSS / {d['target']:g} MB" + suffix,
                    (d["service"] or 0) / d["target"],
                    1.0,
                    d["verdict"],
                    alpha,
                )
            )
    if len(views) > 1:  # each figure's modes side by side
        items.sort(key=lambda item: item[0].split("\n")[0])
    if items:
        xs = range(len(items))
        right_bars = right.bar(
            xs,
            [v or 0.0 for _, v, *_ in items],
            color=[_COLORS[verdict] for *_, verdict, _ in items],
        )
        for bar, (*_, alpha) in zip(right_bars, items, strict=True):
            bar.set_alpha(alpha)
        for index, (_, _, target, *_) in enumerate(items):
            right.hlines(target, index - 0.45, index + 0.45, colors="black", linestyles="--")
        right.bar_label(
            right_bars, labels=[f"{v or 0:.2f}" for _, v, *_ in items], padding=2, fontsize=8
        )
        right.set_xticks(list(xs), [label for label, *_ in items], fontsize=7)
        right.set_ylim(0, max([2.0, *[(v or 0) for _, v, *_ in items]]) * 1.15)
    right.set_title("Service: derived figures (dashed: target)", fontsize=9)
    mach = meta["machine"]
    figure.suptitle(
        f"placement-manager vs floor and peer, {meta['date']}; {mach['cores']} cores;"
        f" {mach['interpreter']['implementation']} {mach['interpreter']['version'].split()[0]};"
        f" {run.args.rows:,} rows; {run.args.repeat} repeat(s)"
        + ("; SMOKE" if run.args.smoke else ""),
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(run: Run, mach: dict[str, Any], started: datetime, argv: list[str] | None) -> Path:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    folder = run.args.out / stamp
    folder.mkdir(parents=True, exist_ok=True)
    words = sys.argv[1:] if argv is None else argv
    command = "python -m bench" + ("" if not words else " " + shlex.join(words))
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "command": command,
        "argv": [sys.executable, *sys.argv],
        "loadavg_start": run.loadavg_start,
        "machine": mach,
    }
    summary = aggregate(run)
    settings = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in vars(run.args).items()
        if key != "selected"
    }
    document = {
        "meta": meta,
        "settings": settings,
        "timings": run.timings,
        "notes": run.notes,
        "summary": summary,
        "results": run.results,
    }
    (folder / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    table = markdown(run, summary, meta, "ratios.png")
    (folder / "results.md").write_text(table)
    chart(run, summary, meta, folder / "ratios.png")
    latest = markdown(run, summary, meta, f"{stamp}/ratios.png")
    (run.args.out / "latest.md").write_text(
        latest.replace("\n", f"\n\nFrom [`{stamp}/`]({stamp}/).\n", 1)
    )
    print("\n" + table)
    print(f"results: {folder}/ ({', '.join(FILES)}); {run.args.out / 'latest.md'}")
    return folder


def exit_status(folder: Path, enforce: bool) -> int:
    missing = [
        name
        for name in FILES
        if not (folder / name).is_file() or not (folder / name).stat().st_size
    ]
    if missing:
        raise BenchError(f"results missing in {folder}: {', '.join(missing)}")
    summary = json.loads((folder / "results.json").read_text())["summary"]
    errors = summary["derived"]["errors"]["total"]
    if errors:
        print(
            f"\n!!! {errors} FAILED REQUESTS (non-2xx, socket errors or timeouts): the figures"
            " are not valid. See results.json (errors per scenario).",
            file=sys.stderr,
        )
        return 1
    verdicts = [e["verdict"] for e in summary["scenarios"].values()]
    verdicts += [d["verdict"] for d in summary["derived"].values()]
    if enforce and "MISS" in verdicts:
        print("targets missed (--enforce-targets)", file=sys.stderr)
        return 2
    return 0
