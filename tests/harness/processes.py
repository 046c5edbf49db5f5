"""The real `placement-manager serve` process, started one way for every test that needs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest
import requests
from placement_manager_client import Client

from placement.config import Database
from tests.harness.concurrency import wait_for

# The console script installed next to this interpreter: what an operator runs.
ENTRY = shutil.which("placement-manager", path=str(Path(sys.executable).parent))
API = "/api/v1alpha1"
# The prefixes of what the service reads from its environment (aliases included): one set
# in the shell that runs the tests must not leak into the service a test configures.
CONFIG_PREFIXES = (
    *("DB_", "SVC_", "POLICY_", "SP_", "UPSTREAM_", "RECONCILE_", "AUTH_", "LOG_"),
    *("PROMETHEUS_", "BIND_", "WEB_", "NATS_"),
)


# Set on a test's node when one of its phases failed (tests/subsystem/conftest.py): the
# suites' fixtures then show what the serve processes logged during it.
FAILED = pytest.StashKey[bool]()


def clean_env() -> dict[str, str]:
    """The tests' environment without the service's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}


def run(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end, configured by `env` alone (on top of `clean_env()`)."""
    return subprocess.run(
        args, env=clean_env() | env, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`placement-manager serve` on a free loopback port, configured by `env` alone (on top
    of the tests' environment without its service settings). Its output goes to `log`, a
    file: a pipe that nobody reads would block a chatty service."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        assert ENTRY is not None, "no placement-manager console script next to sys.executable"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = f"{self.url}{API}"
        self.log_path = log
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                [str(ENTRY), "serve"],
                env=clean_env() | env | {"SVC_ADDRESS": f"127.0.0.1:{port}"},
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.client = Client(base_url=self.api, timeout=30)

    def healthy(self) -> bool:
        """Whether it answers its health check with 200 right now."""
        try:
            return requests.get(f"{self.api}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float = 30) -> None:
        """Wait until it is healthy; fail with its log if it exits or never gets there."""
        try:
            wait_for(
                lambda: self.process.poll() is not None or self.healthy(),
                timeout=timeout,
                what=f"`placement-manager serve` to answer on {self.url}",
            )
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; its log:\n{self.log()}") from None
        assert self.process.poll() is None, f"it exited; its log:\n{self.log()}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` (unless it has exited already) and wait for it, killing it if it
        takes longer than `timeout`; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.client.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, connections dropped mid-request (a crash)."""
        self.process.kill()
        self.process.wait(10)

    def log(self) -> str:
        """All it has written so far, stdout and stderr."""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def launch(env: dict[str, str], log: Path) -> ServeProcess:
    """`placement-manager serve` configured by `env`, once it answers its health check
    (stopped again if it never does). Stop it with `stop()` or a `with` block."""
    process = ServeProcess(env, log)
    try:
        process.wait_healthy()
    except BaseException:
        process.stop()
        raise
    return process


@dataclass(frozen=True)
class Service:
    """A `serve` process and the database it runs on."""

    process: ServeProcess
    database: Database
