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
    """Medians over repeats; ratios per repeat first (same-run ratios drift less)."""
    results = run.results
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
    errors = {
        t: sum(
            r["error_count"] + r.get("warmup_error_count", 0) for r in results if r["target"] == t
        )
        for t in TARGETS
    }
    total = sum(errors.values())
    derived["errors"] = {**errors, "total": total, "verdict": "PASS" if total == 0 else "MISS"}
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


def _header(run: Run, meta: dict[str, Any]) -> list[str]:
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


def markdown(run: Run, summary: dict[str, Any], meta: dict[str, Any], image: str) -> str:
    args = run.args
    lines = [
        *_header(run, meta),
        "",
        "| scenario | service req/s | floor req/s | peer req/s | service / floor | target"
        " | service / peer | target | result | CPU us/req service / floor / peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, entry in summary["scenarios"].items():
        cells = [_title(run, BY_NAME[name])]
        cells += [_num(entry[t]["rps"]) for t in TARGETS]
        for reference in REFERENCES:
            versus = entry["vs"][reference]
            target = f">= {versus['target']:g}" if versus["target"] else "-"
            cells += [_num(versus["ratio"], 2), target]
        cells.append(entry["verdict"])
        cells.append(_slashed([entry[t]["cpu_us"] for t in TARGETS]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "service / floor, service / peer: the service's req/s over the reference's, taken"
        " per repeat, then the median: the figures the targets apply to (>= 1.0 against the"
        " peer: the service is ahead). CPU us/req: CPU time (user + system) of the target's"
        " own processes during the measured seconds, per request.",
        "",
        "| scenario | p50 / p99 ms service | floor | peer | errors s / f / p"
        " | RSS MB s / f / p | CPU/req floor / service | CPU/req peer / service |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary["scenarios"].items():
        cells = [_title(run, BY_NAME[name])]
        cells += [_slashed([entry[t]["p50_ms"], entry[t]["p99_ms"]], 1) for t in TARGETS]
        cells.append(" / ".join(str(entry[t]["errors"]) for t in TARGETS))
        cells.append(_slashed([entry[t]["rss_mb"] for t in TARGETS]))
        cells += [_num(entry["vs"][r]["cpu_ratio"], 2) for r in REFERENCES]
        lines.append("| " + " | ".join(cells) + " |")
    derived = summary["derived"]
    lines += [
        "",
        "CPU/req reference / service: above 1 the service spends less CPU a request than the"
        " reference. It hardly moves with other users' load (the req/s ratios do), so it is"
        " the steadier figure on a busy machine; the targets stay on req/s.",
        "",
        "| figure | service | floor | peer | target | result |",
        "|---|---:|---:|---:|---:|:---:|",
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
        if key in derived:
            d = derived[key]
            judged = d.get("judged", True)
            lines.append(
                f"| {label} | "
                + " | ".join(_num(d[t], digits) for t in TARGETS)
                + f" | {sign} {d['target']:g} (service{'' if judged else ', not judged*'})"
                f" | {d['verdict']} |"
            )
    errors = derived["errors"]
    lines.append(
        "| errors (non-2xx, socket errors, timeouts; all runs) | "
        + " | ".join(str(errors[t]) for t in TARGETS)
        + f" | 0 | {errors['verdict']} |"
    )
    if not derived.get("scaling", {}).get("judged", True):
        lines += [
            "",
            f"\\* The {args.scale_workers} workers shared cores with wrk, PostgreSQL and the"
            " stand-ins while 1 worker had a core of its own (pinned, too few cores): the"
            " scaling target is judged only with `--pin off` or on a larger machine.",
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
        "| target | events/s | drain s | launch to first ack s | launch to done s"
        " | events/s from launch | CPU us/event | RSS MB | wrong statuses | service's counters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target in ("service", "floor"):
        mine = [r for r in rows if r["target"] == target]
        if not mine:
            continue

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            return _median([r[key] for r in mine])

        counters = mine[-1].get("counters") or {}
        shown = ", ".join(f"{k} {v:,.0f}" for k, v in counters.items() if v) or "-"
        lines.append(
            f"| {target} | {_num(med('rps'))} | {_num(med('drain_s'), 2)}"
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
        "| scenario | measured | its processes | postgres | policy stand-in | sprm stand-in"
        " | wrk | nats-server | others | busy per core |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in summary["scenarios"]:
        for target in TARGETS:
            rows = [r for r in run.results if r["scenario"] == name and r["target"] == target]
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
                f"| {name} | {target} | "
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


def chart(run: Run, summary: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(
        1, 2, figsize=(14, 5.4), gridspec_kw={"width_ratios": [2.4, 1]}
    )
    names = list(summary["scenarios"])
    width = 0.38
    tops = [1.1]
    for offset, reference, hatch in ((-width / 2, "floor", ""), (width / 2, "peer", "//")):
        versus = [summary["scenarios"][n]["vs"][reference] for n in names]
        values = [each["ratio"] or 0.0 for each in versus]
        tops += values
        positions = [index + offset for index in range(len(names))]
        bars = left.bar(
            positions,
            values,
            width * 0.95,
            color=[_COLORS[each["verdict"]] for each in versus],
            hatch=hatch,
            edgecolor="white",
        )
        left.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=7)
        for x, each in zip(positions, versus, strict=True):
            if each["target"]:
                left.hlines(each["target"], x - width / 2, x + width / 2, colors="black", ls="--")
    left.axhline(1.0, color="grey", linewidth=0.8)
    labels = [textwrap.fill(_title(run, BY_NAME[n]), 14) for n in names]
    left.set_xticks(range(len(names)), labels, fontsize=8)
    left.set_ylabel("service req/s / reference req/s")
    left.set_title(
        "Service throughput over the floor (plain) and the peer (hatched); dashed: target",
        fontsize=9,
    )
    left.set_ylim(0, max(tops) * 1.15)
    from matplotlib.patches import Patch

    keys = [
        Patch(facecolor="white", edgecolor="black", label="service / floor"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="service / peer"),
        Patch(color=_COLORS["PASS"], label="target met"),
        Patch(color=_COLORS["MISS"], label="target missed"),
        Patch(color=_COLORS["-"], label="no target"),
    ]
    left.legend(handles=keys, fontsize=8, loc="best")

    derived = summary["derived"]
    items = []
    if "deep_over_first" in derived:
        d = derived["deep_over_first"]
        items.append(("first/deep\nlist req/s", d["service"], d["target"], d["verdict"]))
    if "scaling" in derived:
        d = derived["scaling"]
        label = f"GET {run.args.scale_workers}w/{run.args.workers}w"
        items.append((label, d["service"], d["target"], d["verdict"]))
    if "rss_mb" in derived:
        d = derived["rss_mb"]
        items.append(
            (f"RSS / {d['target']:g} MB", (d["service"] or 0) / d["target"], 1.0, d["verdict"])
        )
    if items:
        xs = range(len(items))
        right_bars = right.bar(
            xs, [v or 0.0 for _, v, _, _ in items], color=[_COLORS[v] for *_, v in items]
        )
        for index, (_, _, target, _) in enumerate(items):
            right.hlines(target, index - 0.45, index + 0.45, colors="black", linestyles="--")
        right.bar_label(
            right_bars, labels=[f"{v or 0:.2f}" for _, v, _, _ in items], padding=2, fontsize=8
        )
        right.set_xticks(list(xs), [label for label, *_ in items], fontsize=8)
        right.set_ylim(0, max([2.0, *[(v or 0) for _, v, _, _ in items]]) * 1.15)
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
