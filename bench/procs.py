"""Child processes the benchmark starts and always stops; process-tree figures from /proc.

Every child runs in a session of its own (so a Ctrl-C in the terminal reaches the
benchmark only, which then stops the children in order) and gets SIGTERM if the
benchmark dies without cleaning up (PR_SET_PDEATHSIG). Stopping signals the child's
process group (its id is the child's pid), waits, and SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A failure the benchmark reports as one line (and exits non-zero)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released: a tiny race, retried by callers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_setup(cpus: frozenset[int] | None = None) -> None:
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if cpus:
        os.sched_setaffinity(0, cpus)  # inherited by every process and thread it starts


class Child:
    """One started process, its output in `log`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        cpus: frozenset[int] | None = None,
    ) -> None:
        """`cpus`: the cores it (and all it starts) may run on; None: those we run on."""
        self.name, self.argv, self.log = name, list(argv), log
        self._stop_signal = stop_signal
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built by the benchmark
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=functools.partial(_child_setup, cpus),
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").rstrip().splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {line}" for line in text[-lines:])

    def ask_to_stop(self) -> None:
        """Signal the process group (so that several children stop at once)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, self._stop_signal)

    def stop(self, timeout: float = 15.0) -> None:
        """Signal the process group, wait, then SIGKILL whatever is left of it."""
        group = self.popen.pid
        if self.alive():
            self.ask_to_stop()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                self.popen.wait(5)
        # Members of the group that outlived the leader (e.g. server workers).
        deadline = time.monotonic() + 5
        while _group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.05)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(
    check: Callable[[], bool], child: Child, timeout: float, what: str, poll: float = 0.05
) -> None:
    """Poll `check` until it is true; a BenchError if `child` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if not child.alive():
            raise BenchError(
                f"{child.name} exited with status {child.popen.returncode} before {what}"
                f" (log {child.log}):\n{child.tail()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"{child.name}: no {what} within {timeout:g}s (log {child.log}):\n{child.tail()}"
            )
        time.sleep(poll)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


# Process trees, from /proc.


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return text[text.rfind(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pids: Iterable[int]) -> dict[int, int]:
    """VmRSS of each process (gone ones left out)."""
    sizes = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[pid] = int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return sizes


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) clock ticks since boot, from /proc/stat (busy: all but idle
    and iowait)."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            fields = [int(each) for each in rest.split()]
            idle = fields[3] + fields[4]
            ticks[int(name[3:])] = (sum(fields[:8]) - idle, sum(fields[:8]))
    return ticks


def core_busy(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    """Per core: the fraction of the time between two `core_ticks()` it was busy."""
    busy = {}
    for core, (used, total) in after.items():
        was_used, was_total = before.get(core, (0, 0))
        busy[core] = round((used - was_used) / max(1, total - was_total), 3)
    return busy


def cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU time of each process so far (gone ones left out)."""
    times = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            times[pid] = (int(fields[11]) + int(fields[12])) / _TICKS
    return times


def machine_busy() -> float:
    """CPU seconds the whole machine has spent in processes (all cores, all users) or
    stolen by the hypervisor; interrupts (mostly our own loopback traffic) left out."""
    fields = [int(each) for each in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, steal = fields[0], fields[1], fields[2], fields[7]
    return (user + nice + system + steal) / _TICKS


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def connected_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to 127.0.0.1:`port`."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in table:
        fields = line.split()
        remote, status, inode = fields[2], fields[3], fields[9]
        if status == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            return True
    return False
