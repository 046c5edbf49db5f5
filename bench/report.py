"""The results: results.json (every raw figure), results.md (the table, judged against
the targets of issue 6), ratios.png (a bar chart of ratios to the floor), latest.md."""

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

from bench.procs import BenchError
from bench.scenarios import (
    BY_NAME,
    MAX_DEEP_OVER_FIRST,
    MAX_RSS_MB,
    MIN_SCALING,
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
    "matplotlib",
)
MB = 2**20


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


def aggregate(run: Run) -> dict[str, Any]:
    """Medians over repeats; ratios per repeat first (same-run ratios drift less)."""
    results = run.results
    repeats = sorted({r["repeat"] for r in results})

    def pick(scenario: str, target: str) -> list[dict[str, Any]]:
        return [r for r in results if r["scenario"] == scenario and r["target"] == target]

    def rps_by_repeat(scenario: str, target: str) -> dict[int, float]:
        return {r["repeat"]: r["rps"] for r in pick(scenario, target)}

    scenarios: dict[str, Any] = {}
    for name in dict.fromkeys(r["scenario"] for r in results):
        entry: dict[str, Any] = {}
        for target in ("service", "floor"):
            rows = pick(name, target)
            entry[target] = {
                "rps": _median([r["rps"] for r in rows]),
                "p50_ms": _median([r["latency_us"]["p50"] / 1000 for r in rows]),
                "p99_ms": _median([r["latency_us"]["p99"] / 1000 for r in rows]),
                "errors": sum(r["error_count"] + r.get("warmup_error_count", 0) for r in rows),
                "rss_mb": _median([r["rss_bytes"] / MB for r in rows]),
                "cpu_ms": _median([r["cpu_ms_per_request"] for r in rows]),
                "workers": rows[0]["workers"] if rows else None,
            }
        service, floor = rps_by_repeat(name, "service"), rps_by_repeat(name, "floor")
        ratios = [service[k] / floor[k] for k in repeats if k in service and floor.get(k)]
        entry["ratios"] = ratios
        entry["ratio"] = _median(ratios)
        # Noise-robust companion: the floor's CPU per request / the service's.
        cpu = {
            t: {r["repeat"]: r["cpu_ms_per_request"] for r in pick(name, t)}
            for t in ("service", "floor")
        }
        entry["cpu_ratio"] = _median(
            [
                cpu["floor"][k] / cpu["service"][k]
                for k in repeats
                if cpu["service"].get(k) and k in cpu["floor"]
            ]
        )
        minimum = BY_NAME[name].min_ratio
        entry["target"] = minimum
        entry["verdict"] = _verdict(entry["ratio"], minimum, True) if minimum else "-"
        scenarios[name] = entry

    derived: dict[str, Any] = {}

    def per_repeat(top: str, bottom: str, target: str) -> list[float]:
        up, down = rps_by_repeat(top, target), rps_by_repeat(bottom, target)
        return [up[k] / down[k] for k in repeats if k in up and down.get(k)]

    if "list_first" in scenarios and "list_deep" in scenarios:
        values = {
            t: _median(per_repeat("list_first", "list_deep", t)) for t in ("service", "floor")
        }
        derived["deep_over_first"] = {
            **values,
            "target": MAX_DEEP_OVER_FIRST,
            "verdict": _verdict(values["service"], MAX_DEEP_OVER_FIRST, False),
        }
    if "get" in scenarios and "get_scaled" in scenarios:
        values = {t: _median(per_repeat("get_scaled", "get", t)) for t in ("service", "floor")}
        derived["scaling"] = {
            **values,
            "target": MIN_SCALING,
            "verdict": _verdict(values["service"], MIN_SCALING, True),
        }
    single = [r for r in results if r["target"] == "service" and r["scenario"] != "get_scaled"]
    if single:
        peaks = [
            max(r["rss_bytes"] for r in single if r["repeat"] == k) / MB
            for k in repeats
            if any(r["repeat"] == k for r in single)
        ]
        floor_single = [
            r for r in results if r["target"] == "floor" and r["scenario"] != "get_scaled"
        ]
        derived["rss_mb"] = {
            "service": _median(peaks),
            "floor": max((r["rss_bytes"] for r in floor_single), default=0) / MB or None,
            "target": MAX_RSS_MB,
            "verdict": _verdict(_median(peaks), MAX_RSS_MB, False),
        }
    errors = sum(r["error_count"] + r.get("warmup_error_count", 0) for r in results)
    derived["errors"] = {"total": errors, "verdict": "PASS" if errors == 0 else "MISS"}
    return {"scenarios": scenarios, "derived": derived}


def _title(run: Run, scenario: Scenario) -> str:
    args = run.args
    return scenario.title.format(
        latency=f"{args.latency_ms:g}", conns=args.slow_connections, workers=args.scale_workers
    )


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown(run: Run, summary: dict[str, Any], meta: dict[str, Any], image: str) -> str:
    args, mach = run.args, meta["machine"]
    interp = mach["interpreter"]
    version = interp["version"].split()[0]
    commit = (mach["git"]["commit"][:12] or "?") + (
        " (+ local changes)" if mach["git"]["dirty"] else ""
    )
    t = run.timings
    lines = [
        f"# placement-manager benchmark, {meta['date']}",
        "",
        (
            "**Smoke run (CI): tiny table and durations, figures not meaningful.**\n"
            if args.smoke
            else ""
        )
        + f"- Command: `{meta['command']}`",
        f"- Machine: {mach['cores']} cores ({mach['cpu_model'] or 'unknown CPU'}), Linux"
        f" {mach['kernel']}, load average at start {' '.join(meta['loadavg_start'])},"
        f" at end {' '.join(mach['loadavg_end'])}",
        f"- Interpreter: {interp['implementation']} {version}, `{interp['executable']}`"
        f" (resolves to `{interp['resolved']}`), for the service, the floor and the stand-ins",
        f"- {args.rows:,} rows; {args.duration} s measured per scenario after {args.warmup} s"
        f" of warm-up; {args.connections} connections ({args.slow_connections} for create"
        f" with {args.latency_ms:g} ms upstreams); wrk {args.wrk_threads} thread(s);"
        f" {args.repeat} repeat(s), medians shown",
        f"- Service: `placement-manager serve`, {args.workers} worker(s)"
        + (
            f", with {', '.join(f'{k}={v}' for k, v in args.overrides.items())}"
            if args.overrides
            else ", its defaults otherwise"
        ),
        f"- Floor: `bench/floor.py` (Starlette, uvicorn with uvloop and httptools, psycopg"
        f" async pool of {args.floor_pool}, aiohttp), same workers, same PostgreSQL",
        f"- {mach['postgres']} (private, fsync off); {mach['wrk']}; git {commit}",
        "",
        "| scenario | service req/s | floor req/s | ratio | target | result"
        " | service p50 / p99 ms | floor p50 / p99 ms | errors service / floor | service RSS MB"
        " | CPU ms/req service / floor (ratio) |",
        "|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in summary["scenarios"].items():
        service, floor = entry["service"], entry["floor"]
        target = f">= {entry['target']:g}" if entry["target"] else "-"
        lines.append(
            f"| {_title(run, BY_NAME[name])} | {_num(service['rps'])} | {_num(floor['rps'])}"
            f" | {_num(entry['ratio'], 2)} | {target} | {entry['verdict']}"
            f" | {_num(service['p50_ms'], 1)} / {_num(service['p99_ms'], 1)}"
            f" | {_num(floor['p50_ms'], 1)} / {_num(floor['p99_ms'], 1)}"
            f" | {service['errors']} / {floor['errors']} | {_num(service['rss_mb'])}"
            f" | {_num(service['cpu_ms'], 2)} / {_num(floor['cpu_ms'], 2)}"
            f" ({_num(entry['cpu_ratio'], 2)}) |"
        )
    derived = summary["derived"]
    lines += [
        "",
        "ratio: service req/s / floor req/s, the figure the targets apply to. CPU ms/req: CPU"
        " time of the target's own processes per request; its ratio (floor / service) does"
        " not depend on how much CPU other users left, so it is the steadier figure on a"
        " busy machine.",
        "",
        "| figure | service | floor | target | result |",
        "|---|---:|---:|---:|:---:|",
    ]
    if "deep_over_first" in derived:
        d = derived["deep_over_first"]
        lines.append(
            f"| list: first-page req/s / deep-page req/s | {_num(d['service'], 2)}"
            f" | {_num(d['floor'], 2)} | <= {d['target']:g} | {d['verdict']} |"
        )
    if "rss_mb" in derived:
        d = derived["rss_mb"]
        lines.append(
            f"| RSS, {args.workers} worker(s), MB (highest at the end of a scenario)"
            f" | {_num(d['service'])} | {_num(d['floor'])} | <= {d['target']:g} | {d['verdict']} |"
        )
    if "scaling" in derived:
        d = derived["scaling"]
        lines.append(
            f"| GET by id req/s, {args.scale_workers} workers / {args.workers}"
            f" | {_num(d['service'], 2)} | {_num(d['floor'], 2)} | >= {d['target']:g}"
            f" | {d['verdict']} |"
        )
    errors = derived["errors"]
    lines.append(
        f"| errors (non-2xx, socket errors, timeouts; all runs) | {errors['total']} | | 0"
        f" | {errors['verdict']} |"
    )
    lines += [
        "",
        "CPU in use during each measurement, in cores (of"
        f" {mach['cores']}): the measured target's processes, PostgreSQL, the stand-ins, wrk,"
        " and everything else on the machine (other users: noise).",
        "",
        "| scenario | measured | its processes | postgres | policy stand-in | sprm stand-in"
        " | wrk | others |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in summary["scenarios"]:
        for target in ("service", "floor"):
            rows = [r for r in run.results if r["scenario"] == name and r["target"] == target]
            if not rows:
                continue
            cores = {
                key: _median([r["cpu_cores"].get(key, 0.0) for r in rows])
                for key in (
                    "target",
                    "postgres",
                    "policy stand-in",
                    "sprm stand-in",
                    "wrk",
                    "others",
                )
            }
            lines.append(
                f"| {name} | {target} | " + " | ".join(_num(cores[key], 2) for key in cores) + " |"
            )
    if run.notes:
        lines += ["", *[f"- {note}" for note in run.notes]]
    lines += [
        f"- Took {t.get('total_s', 0):g} s in all (seeding: migrate {t.get('migrate_s', 0):g} s,"
        f" COPY {t.get('copy_s', 0):g} s, clone {t.get('clone_s', 0):g} s;"
        f" walking to the deep page {t.get('walk_s', 0):g} s).",
        "",
        f"![ratios to the floor]({image})",
        "",
    ]
    return "\n".join(lines)


def chart(run: Run, summary: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"PASS": "#2e7d32", "MISS": "#c62828", "-": "#607d8b", "n/a": "#607d8b"}
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    names = list(summary["scenarios"])
    labels = [textwrap.fill(_title(run, BY_NAME[n]), 14) for n in names]
    values = [summary["scenarios"][n]["ratio"] or 0.0 for n in names]
    bars = left.bar(
        range(len(names)), values, color=[colors[summary["scenarios"][n]["verdict"]] for n in names]
    )
    for index, name in enumerate(names):
        target = summary["scenarios"][name]["target"]
        if target:
            left.hlines(target, index - 0.45, index + 0.45, colors="black", linestyles="--")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    left.set_xticks(range(len(names)), labels, fontsize=8)
    left.set_ylabel("service req/s / floor req/s")
    left.set_title("Throughput ratio to the floor (dashed: target)")
    left.set_ylim(0, max([1.1, *values]) * 1.15)

    derived = summary["derived"]
    items = []
    if "deep_over_first" in derived:
        d = derived["deep_over_first"]
        items.append(("first/deep\nlist req/s", d["service"], d["target"], d["verdict"]))
    if "scaling" in derived:
        d = derived["scaling"]
        items.append(
            (
                f"GET {run.args.scale_workers}w/{run.args.workers}w",
                d["service"],
                d["target"],
                d["verdict"],
            )
        )
    if "rss_mb" in derived:
        d = derived["rss_mb"]
        value = (d["service"] or 0) / d["target"]
        items.append(("RSS / 150 MB", value, 1.0, d["verdict"]))
    if items:
        xs = range(len(items))
        right_bars = right.bar(
            xs, [v or 0.0 for _, v, _, _ in items], color=[colors[v] for *_, v in items]
        )
        for index, (_, _, target, _) in enumerate(items):
            right.hlines(target, index - 0.45, index + 0.45, colors="black", linestyles="--")
        right.bar_label(
            right_bars, labels=[f"{v or 0:.2f}" for _, v, _, _ in items], padding=2, fontsize=8
        )
        right.set_xticks(list(xs), [label for label, *_ in items], fontsize=8)
        right.set_ylim(0, max([2.0, *[(v or 0) for _, v, _, _ in items]]) * 1.15)
    right.set_title("Service: derived figures (dashed: target)")
    mach = meta["machine"]
    figure.suptitle(
        f"placement-manager vs floor, {meta['date']}; {mach['cores']} cores;"
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
