"""Running wrk: one scenario against one base URL, its figures parsed from the line the
Lua scripts print at the end (`lua/common.lua`)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import BenchError

LUA = Path(__file__).with_name("lua")
_MARK = "BENCH_RESULT "


def find_wrk(explicit: str | None) -> str:
    wrk = explicit or shutil.which("wrk")
    if not wrk or not os.access(wrk, os.X_OK):
        raise BenchError(
            "wrk not found: install it (Debian/Ubuntu: apt-get install wrk;"
            " Fedora: dnf install wrk) or pass --wrk PATH"
        )
    return wrk


def wrk_version(wrk: str) -> str:
    found = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    return (found.stdout or found.stderr).strip().splitlines()[0] if found else ""


@dataclass(frozen=True)
class Load:
    """What wrk sends: `script` (a file in lua/) with its arguments, to `url`."""

    script: str
    url: str
    args: tuple[str, ...] = ()
    connections: int = 64


def script_file(workdir: Path, name: str) -> Path:
    """The scenario script with the shared prelude in front, written into `workdir`."""
    target = workdir / f"{name}.lua"
    if not target.exists():
        common = (LUA / "common.lua").read_text()
        target.write_text(common + "\n" + (LUA / f"{name}.lua").read_text())
    return target


def run_wrk(
    wrk: str,
    load: Load,
    *,
    seconds: int,
    threads: int,
    timeout: str,
    workdir: Path,
) -> dict[str, Any]:
    """Run wrk for `seconds`; its figures (requests, duration, errors, latencies) and the
    CPU time wrk itself used."""
    threads = max(1, min(threads, load.connections))
    argv = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(load.connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        timeout,
        "-s",
        str(script_file(workdir, load.script)),
        load.url,
    ]
    if load.args:
        argv += ["--", *load.args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(  # noqa: S603 - argv built here
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir
    )
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((each for each in out.splitlines() if each.startswith(_MARK)), None)
    if proc.returncode != 0 or line is None:
        detail = (err or out).strip().splitlines()[-3:]
        raise BenchError(f"wrk failed (status {proc.returncode}): {' | '.join(detail)}")
    result: dict[str, Any] = json.loads(line[len(_MARK) :])
    result["threads"], result["connections"], result["seconds"] = threads, load.connections, seconds
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["error_count"] = sum(result["errors"].values())
    result["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result
