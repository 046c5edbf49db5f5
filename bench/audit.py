"""`python -m bench --audit`: the drift audit's peak memory (issue 14: it must grow by
less than 20 MB between 10,000 and 200,000 records and instances).

For each size N: N READY records (COPY into a fresh PostgreSQL database, and the same
rows into a SQLite file), N instances in the SPRM stand-in (through its admin endpoint),
of which a few records lack their instance and a few instances lack their record. Then
`placement-manager audit --json` runs once per database as a child process; its peak RSS
is the kernel's high-water mark for that process (`wait4`'s `ru_maxrss`). Its answer
must list exactly the drift put there, or the run stops.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.pg import USER, PrivatePostgres
from bench.procs import BenchError, Child
from bench.stack import REPO, StandIns, copy_rows, http_json, seeded_id, service_command

MAX_GROWTH_MB = 20.0
SIZES = (10_000, 200_000)
SMOKE_SIZES = (1_000, 3_000)
ORPHANS = 5
MISSING = 5
_OLD = "2025-01-01T00:00:00Z"
_BATCH = 10_000


def sizes(text: str) -> tuple[int, ...]:
    values = tuple(int(each) for each in text.split(",") if each.strip())
    if len(values) < 2 or any(each < 2 * (ORPHANS + MISSING) for each in values):
        raise ValueError("--audit-sizes: two or more sizes, each at least 20")
    return values


def _lines(rows: int) -> Iterator[bytes]:
    """The records: ids as the throughput benchmark's, READY, created in 2025."""
    for index in range(rows):
        rid = seeded_id(index)
        fields = (rid, "cat-audit", '{"n":1}', "local-kubevirt", "APPROVED", f"resources/{rid}")
        created = ("2025-01-01 00:00:00+00", "2025-01-01 00:00:00+00")
        no_status = ("\\N", "\\N", "\\N")  # no provider status reported yet
        yield ("\t".join((*fields, *created, *no_status)) + "\n").encode()


def _expected(rows: int) -> dict[str, Any]:
    return {
        "orphaned_instances": [f"orphan-{n:05d}" for n in range(ORPHANS)],
        "missing_instances": [seeded_id(rows - 1 - n) for n in reversed(range(MISSING))],
        "stuck_operations": [],
        "deleted_by_provider": [],
        "invalid_ids": [],
        "checked": {"instances": rows - MISSING + ORPHANS, "records": rows},
    }


def _seed_sprm(standins: StandIns, rows: int) -> None:
    url = f"{standins.urls['sprm']}/_standin/instances"
    status, body = http_json("DELETE", url)
    if status != 204:
        raise BenchError(f"SPRM stand-in refused to forget its instances: {status} {body}")
    ids = [seeded_id(index) for index in range(rows - MISSING)]
    ids += [f"orphan-{n:05d}" for n in range(ORPHANS)]
    for start in range(0, len(ids), _BATCH):
        batch = [{"id": rid, "create_time": _OLD} for rid in ids[start : start + _BATCH]]
        status, body = http_json("POST", url, {"instances": batch}, timeout=120)
        if status != 204:
            raise BenchError(f"SPRM stand-in refused instances: {status} {body}")


def _migrate(env: dict[str, str]) -> None:
    """The schema, by the service's own migrations (its store, in this process)."""
    from placement.config import Config
    from placement.store import make_store

    store = make_store(Config.from_env(env).database)
    store.open()
    store.close()


def _pg_env(pg: PrivatePostgres, database: str) -> dict[str, str]:
    env = {"DB_TYPE": "pgsql", "DB_HOST": "127.0.0.1", "DB_PORT": str(pg.port)}
    return env | {"DB_NAME": database, "DB_USER": USER}


def _seed_pg(pg: PrivatePostgres, rows: int) -> dict[str, str]:
    database = f"bench_audit_{rows}"
    pg.execute("postgres", f'DROP DATABASE IF EXISTS "{database}"', f'CREATE DATABASE "{database}"')
    env = _pg_env(pg, database)
    _migrate(env)
    copy_rows(pg.conninfo(database), _lines(rows))
    pg.execute(database, "VACUUM ANALYZE resources")
    return env


def _seed_sqlite(tmp: Path, rows: int) -> dict[str, str]:
    path = tmp / f"audit-{rows}.db"
    path.unlink(missing_ok=True)
    env = {"DB_TYPE": "sqlite", "DB_NAME": str(path)}
    _migrate(env)
    stamp = "2025-01-01 00:00:00+00:00"
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO resources (id, catalog_item_instance_id, original_spec,"
                " provider_name, approval_status, path, create_time, update_time)"
                " VALUES (?, 'cat-audit', '{\"n\":1}', 'local-kubevirt', 'APPROVED', ?, ?, ?)",
                ((seeded_id(i), f"resources/{seeded_id(i)}", stamp, stamp) for i in range(rows)),
            )
    finally:
        conn.close()
    return env


def _run_audit(env: dict[str, str], standins: StandIns, tmp: Path, name: str) -> dict[str, Any]:
    """One `placement-manager audit --json` (its stdout and stderr in one log): exit
    status, output, peak RSS, seconds."""
    argv = [*service_command()[:-1], "audit", "--json"]
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    full = inherited | env | {"SP_RESOURCE_MANAGER_URL": standins.urls["sprm"]}
    log = tmp / f"{name}.log"
    started = time.monotonic()
    child = Child(name, argv, log=log, env=full, cwd=REPO)
    # wait4, not Popen.wait: the child's own resource usage, peak RSS included.
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    child.popen.returncode = os.waitstatus_to_exitcode(status)
    return {
        "exit_status": child.popen.returncode,
        "output": log.read_text(errors="replace"),
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux: kilobytes
        "seconds": round(seconds, 2),
    }


def measure(
    pg: PrivatePostgres, standins: StandIns, tmp: Path, all_sizes: Sequence[int]
) -> list[dict[str, Any]]:
    results = []
    for rows in all_sizes:
        started = time.monotonic()
        _seed_sprm(standins, rows)
        seeded = {"pgsql": _seed_pg(pg, rows), "sqlite": _seed_sqlite(tmp, rows)}
        seed_s = round(time.monotonic() - started, 2)
        for backend, env in seeded.items():
            run = _run_audit(env, standins, tmp, f"audit-{backend}-{rows}")
            answer = run["output"].strip().splitlines()
            try:
                found = json.loads(answer[-1]) if answer else None
            except ValueError:
                found = None
            if run["exit_status"] != 1 or found != _expected(rows):
                raise BenchError(
                    f"audit on {backend} with {rows} rows: exit status {run['exit_status']},"
                    f" answered {run['output'][-2000:]!r}; expected exit status 1 and"
                    f" {_expected(rows)}"
                )
            record = {
                "backend": backend,
                "rows": rows,
                "peak_rss_bytes": run["peak_rss_bytes"],
                "seconds": run["seconds"],
                "seed_s": seed_s,
            }
            results.append(record)
            print(
                f"  audit {backend:<6} {rows:>8} records+instances:"
                f" peak RSS {record['peak_rss_bytes'] / 2**20:6.1f} MB in {run['seconds']:6.1f} s",
                flush=True,
            )
    return results


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth of the peak RSS from the smallest to the largest size, per database."""
    growth = {}
    for backend in ("pgsql", "sqlite"):
        mine = sorted((r for r in results if r["backend"] == backend), key=lambda r: r["rows"])
        grown = (mine[-1]["peak_rss_bytes"] - mine[0]["peak_rss_bytes"]) / 2**20
        growth[backend] = {
            "from_rows": mine[0]["rows"],
            "to_rows": mine[-1]["rows"],
            "growth_mb": round(grown, 1),
            "verdict": "PASS" if grown < MAX_GROWTH_MB else "MISS",
        }
    return growth


def markdown(results: list[dict[str, Any]], growth: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Drift audit: peak memory",
        "",
        f"{meta['date']}, {meta['machine']}, Python {meta['python']},"
        f" `{meta['command']}`. Each row: one `placement-manager audit --json` against N"
        f" READY records and N SPRM instances (the SPRM stand-in, 100 a page), with"
        f" {ORPHANS} orphaned and {MISSING} missing instances among them.",
        "",
        "| database | records + instances | peak RSS MB | seconds |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['rows']:,} | {r['peak_rss_bytes'] / 2**20:.1f} |"
            f" {r['seconds']:.1f} |"
        )
    lines += ["", "| figure | value | target |", "|---|---:|---:|"]
    for backend, g in growth.items():
        lines.append(
            f"| {backend}: peak RSS at {g['to_rows']:,} less at {g['from_rows']:,}, MB |"
            f" {g['growth_mb']:.1f} | < {MAX_GROWTH_MB:g} {g['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def write(
    out: Path, results: list[dict[str, Any]], started: datetime, command: str
) -> dict[str, Any]:
    growth = summary(results)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    folder = out / f"audit-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores",
        "python": sys.version.split()[0],
        "interpreter": sys.executable,
        "command": command,
    }
    (folder / "results.json").write_text(
        json.dumps({"meta": meta, "results": results, "growth": growth}, indent=2) + "\n"
    )
    table = markdown(results, growth, meta)
    (folder / "results.md").write_text(table)
    (out / "audit-latest.md").write_text(
        table.replace("\n", f"\n\nFrom [`audit-{stamp}/`](audit-{stamp}/).\n", 1)
    )
    print("\n" + table)
    print(f"results: {folder}/; {out / 'audit-latest.md'}")
    return growth
