"""The real `placement-manager serve` process on PostgreSQL, over a real socket, with the
Policy Engine and SPRM stand-ins as its upstreams."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from placement_manager_client import Client
from placement_manager_client.api.resource import (
    create_resource,
    delete_resource,
    get_resource,
    list_resources,
)
from placement_manager_client.models import Resource, ResourceSpec

from placement.config import Database
from placement.standins import PolicyStandIn, SprmStandIn
from tests.support import wait_for
from tests.test_cli import ENTRY, free_port


@pytest.fixture
def upstreams() -> Iterator[tuple[str, str, SprmStandIn]]:
    sprm = SprmStandIn()
    with PolicyStandIn().serve() as policy_server, sprm.serve() as sprm_server:
        yield policy_server.url, sprm_server.url, sprm


@pytest.fixture
def server(
    pg_db: Database, upstreams: tuple[str, str, SprmStandIn]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    policy_url, sprm_url, _ = upstreams
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SVC_"))},
        "SVC_ADDRESS": f"127.0.0.1:{port}",
        "DB_HOST": pg_db.host,
        "DB_PORT": str(pg_db.port),
        "DB_NAME": pg_db.name,
        "DB_USER": pg_db.user,
        "POLICY_MANAGER_EVALUATION_URL": policy_url,
        "SP_RESOURCE_MANAGER_URL": sprm_url,
    }
    process = subprocess.Popen(
        [str(ENTRY or Path(sys.executable).parent / "placement-manager"), "serve"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _healthy(url), timeout=30, what="serve")
        assert process.poll() is None, process.communicate()[1]
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/api/v1alpha1/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_serve_places_lists_and_deletes_then_stops_on_sigterm(
    server: tuple[str, subprocess.Popen[str]], upstreams: tuple[str, str, SprmStandIn]
) -> None:
    url, process = server
    sprm = upstreams[2]
    client = Client(base_url=f"{url}/api/v1alpha1", timeout=30)
    body = Resource(
        catalog_item_instance_id="cat-1",
        spec=ResourceSpec.from_dict({"service_type": "vm", "vm": {"cpu": 2}}),
    )

    created = create_resource.sync_detailed(client=client, body=body, id="web-1")
    assert created.status_code == 201, created.content
    assert set(sprm.instances) == {"web-1"}

    got = get_resource.sync(resource_id="web-1", client=client)
    assert isinstance(got, Resource)
    assert got.provider_name == "local-kubevirt"
    page = list_resources.sync(client=client)
    assert [r.id for r in page.resources] == ["web-1"]  # type: ignore[union-attr]

    assert delete_resource.sync_detailed("web-1", client=client).status_code == 204
    assert sprm.instances == {}
    assert get_resource.sync_detailed("web-1", client=client).status_code == 404

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert f"starting on {url}" in stderr
    assert "Application shutdown complete" in stderr
    assert "stopped by SIGTERM" in stderr


def test_several_workers_serve_and_merge_their_metrics(
    tmp_path: Path, upstreams: tuple[str, str, SprmStandIn]
) -> None:
    policy_url, sprm_url, _ = upstreams
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "SVC_", "PROMETHEUS"))},
        "SVC_ADDRESS": f"127.0.0.1:{port}",
        "SVC_WORKERS": "2",
        "DB_TYPE": "sqlite",
        "DB_NAME": str(tmp_path / "placement.db"),
        "POLICY_MANAGER_EVALUATION_URL": policy_url,
        "SP_RESOURCE_MANAGER_URL": sprm_url,
    }
    process = subprocess.Popen([str(ENTRY), "serve"], env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or _healthy(url), timeout=30, what="serve")
        session = requests.Session()
        for _ in range(20):
            assert session.get(f"{url}/api/v1alpha1/resources/nope", timeout=10).status_code == 404
            session.close()  # a new connection each time: spread over the workers

        page = requests.get(f"{url}/metrics", timeout=10).text
        line = 'placement_http_requests_total{method="GET",operation="GetResource",status="404"}'
        [sample] = [row for row in page.splitlines() if row.startswith(line)]
        assert float(sample.rsplit(" ", 1)[1]) == 20
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
