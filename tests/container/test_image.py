"""The image as DCM runs it: its own user, entrypoint and environment plus DCM's settings
(compose.yaml's, with this machine's ports), on PostgreSQL with a password, with the
stand-ins as its upstreams; DCM's health check; SIGTERM; a read-only root filesystem."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import requests

from placement.config import variables
from tests.container import images
from tests.container.conftest import Postgres, StandIns, Tree, compose
from tests.harness.concurrency import wait_for
from tests.harness.processes import free_port

DCM_HEALTH_CMD = "echo > /dev/tcp/localhost/{port}"
CREATE = {
    "catalog_item_instance_id": "cat-1",
    "spec": {"service_type": "vm", "vm": {"cpu": 2, "memory": "4Gi"}},
}


def dcm_environment(port: int, postgres: Postgres, standins: StandIns) -> dict[str, str]:
    """compose.yaml's settings for the service, with the ports of this test's processes."""
    env: dict[str, str] = dict(compose()["services"]["placement-manager-1"]["environment"])
    assert env["BIND_ADDRESS"] == ":8080"  # the default: the test moves it
    assert env["DB_HOST"] == "postgres"
    env |= {
        "BIND_ADDRESS": f"127.0.0.1:{port}",
        "DB_PORT": str(postgres.port),
        "DB_USER": postgres.user,
        "DB_PASS": postgres.password,
        "DB_PASSWORD": postgres.password,
        "POLICY_MANAGER_EVALUATION_URL": f"http://policy-manager:{standins.policy_port}",
        "SP_RESOURCE_MANAGER_URL": f"http://service-provider-manager:{standins.sprm_port}",
    }
    return env


class Container:
    """The image's entrypoint running in its exported tree (see images.py)."""

    def __init__(
        self,
        tree: Tree,
        env: dict[str, str],
        log: Path,
        *,
        read_only: bool = False,
        user: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.tree = tree
        self.read_only = read_only
        self.user = user
        self.log_path = log
        self.pidfile = log.with_suffix(".pid")
        self.port = int(env.get("BIND_ADDRESS", ":8080").rsplit(":", 1)[1])
        self.api = f"http://127.0.0.1:{self.port}/api/v1alpha1"
        command = images.in_tree(
            tree.path,
            tree.config,
            [*tree.config.entrypoint, *(tree.config.cmd if args is None else args)],
            env,
            read_only=read_only,
            user=user,
            pidfile=self.pidfile,
        )
        with log.open("w") as sink:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.api}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self) -> None:
        try:
            wait_for(lambda: self.process.poll() is not None or self.healthy(), 60, "the container")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; its log:\n{self.log()}") from None
        assert self.process.poll() is None, f"it exited; its log:\n{self.log()}"

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the same tree as the same user (as `podman exec` would)."""
        command = images.in_tree(
            self.tree.path, self.tree.config, argv, {}, read_only=self.read_only, user=self.user
        )
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    def stop(self, timeout: float = 10) -> tuple[int | None, float]:
        """SIGTERM to the entrypoint's process, as `podman stop` sends it; its exit status
        (None if it was still running after `timeout` s and had to be killed) and how long
        it took."""
        started = time.monotonic()
        os.kill(int(self.pidfile.read_text()), signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(int(self.pidfile.read_text()), signal.SIGKILL)
            self.process.wait(10)
            return None, time.monotonic() - started
        return self.process.returncode, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.stop()


@pytest.fixture
def container(
    tree: Tree, postgres: Postgres, standins: StandIns, tmp_path: Path
) -> Iterator[Container]:
    env = dcm_environment(free_port(), postgres, standins)
    with Container(tree, env, tmp_path / "serve.log") as running:
        running.wait_healthy()
        yield running


def test_the_image_bakes_no_setting_and_runs_as_a_non_root_user(tree: Tree) -> None:
    config = tree.config
    assert not set(config.env) & variables(), config.env  # a deployment's settings win
    uid = config.user.split(":")[0]
    assert uid.isdigit()  # numeric: runAsNonRoot can verify it
    assert int(uid) != 0
    assert config.entrypoint == ["placement-manager"]
    assert config.cmd == ["serve"]


def test_it_serves_with_dcm_settings_and_stops_on_sigterm(
    container: Container, standins: StandIns
) -> None:
    # BIND_ADDRESS (not the default port) is where it listens: nothing baked in overrides it.
    assert container.port != 8080
    created = requests.post(f"{container.api}/resources?id=vm-1", json=CREATE, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["provider_name"] == "local-kubevirt"
    assert set(standins.sprm.instances) == {"vm-1"}

    health = container.exec("bash", "-c", DCM_HEALTH_CMD.format(port=container.port))
    assert health.returncode == 0, health.stderr
    closed = container.exec("bash", "-c", DCM_HEALTH_CMD.format(port=free_port()))
    assert closed.returncode != 0  # the check can fail

    # A request in flight when SIGTERM comes is finished, and the stop takes under the
    # 10 s that `podman stop` waits before SIGKILL.
    standins.sprm.hold("create")
    answer: dict[str, Any] = {}

    def create() -> None:
        answer["response"] = requests.post(
            f"{container.api}/resources?id=vm-2", json=CREATE, timeout=30
        )

    creating = threading.Thread(target=create)
    creating.start()
    standins.sprm.wait_held("create", timeout=10)
    threading.Timer(1.0, standins.sprm.release, ("create",)).start()
    status, took = container.stop(timeout=10)
    creating.join(30)
    assert status == 0, container.log()
    assert took < 10
    assert answer["response"].status_code == 201
    log = container.log()
    assert "stopped by SIGTERM" in log
    assert "Traceback" not in log
    print(f"SIGTERM with a request in flight: stopped in {took:.1f} s")


def test_it_runs_on_a_read_only_root_filesystem_as_an_arbitrary_user(
    tree: Tree, postgres: Postgres, standins: StandIns, tmp_path: Path
) -> None:
    # As Kubernetes with readOnlyRootFilesystem and an emptyDir on /tmp, and as OpenShift
    # (a random UID in group 0); two workers, whose metrics need /tmp.
    env = dcm_environment(free_port(), postgres, standins) | {"SVC_WORKERS": "2"}
    log = tmp_path / "serve.log"
    with Container(tree, env, log, read_only=True, user="54321:0") as running:
        running.wait_healthy()
        writes = running.exec("bash", "-c", "touch /probe")
        assert "Read-only file system" in writes.stderr
        created = requests.post(f"{running.api}/resources?id=ro-1", json=CREATE, timeout=30)
        assert created.status_code == 201, created.text
        metrics = requests.get(f"http://127.0.0.1:{running.port}/metrics", timeout=10)
        assert metrics.status_code == 200
        assert "placement_http_requests_total" in metrics.text
        status, took = running.stop()
        assert status == 0, running.log()
        assert took < 10


def test_a_missing_database_stops_it_at_once(
    tree: Tree, postgres: Postgres, standins: StandIns, tmp_path: Path
) -> None:
    env = dcm_environment(free_port(), postgres, standins) | {"DB_NAME": "missing-db"}
    started = time.monotonic()
    with Container(tree, env, tmp_path / "serve.log") as running:
        running.process.wait(30)
    took = time.monotonic() - started
    assert running.process.returncode == 1
    [line] = running.log().splitlines()
    assert line.startswith("placement-manager: database unavailable: ")
    assert "postgresql://postgres:" in line
    assert "/missing-db refuses the connection (SQLSTATE 3D000" in line
    assert took < 2.0, f"{took:.2f} s"


def test_the_dev_target_runs_the_standins(dev_tree: Tree, tmp_path: Path) -> None:
    # What compose runs as policy-manager and service-provider-manager.
    assert dev_tree.config.entrypoint == ["python", "-m", "placement_dev.standins"]
    services = compose()["services"]
    for name, kind in (("policy-manager", "policy"), ("service-provider-manager", "sprm")):
        port = free_port()
        args = [*services[name]["command"]]
        assert args[0] == kind
        args[args.index("--port") + 1] = str(port)
        args[args.index("--host") + 1] = "127.0.0.1"
        log = tmp_path / f"{kind}.log"
        with Container(dev_tree, {}, log, read_only=True, args=args) as standin:
            url = f"http://127.0.0.1:{port}/_standin/requests"
            wait_for(lambda u=url: _answers(u), 30, f"the {kind} stand-in")
            status, _ = standin.stop()
            assert status == 0, standin.log()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
