"""The real `placement-manager serve` process on PostgreSQL, over a real socket, with the
Policy Engine and SPRM stand-ins as its upstreams."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from placement_manager_client.api.resource import (
    create_resource,
    delete_resource,
    get_resource,
    list_resources,
)
from placement_manager_client.models import Resource, ResourceSpec

from placement.bootstrap import STOP_DRAIN
from placement.cli.serve import SHUTDOWN_GRACE
from placement.config import Database
from tests.harness.concurrency import wait_for
from tests.harness.databases import database_env
from tests.harness.oidc import AUDIENCE, Issuer
from tests.harness.processes import ENTRY, ServeProcess, free_port, launch, run
from tests.harness.standins import StandInUpstreams


@pytest.fixture
def server(
    pg_db: Database, standin_upstreams: StandInUpstreams, tmp_path: Path
) -> Iterator[ServeProcess]:
    env = database_env(pg_db) | standin_upstreams.env()
    with launch(env, tmp_path / "serve.log") as server:
        yield server


def test_serve_places_lists_and_deletes_then_stops_on_sigterm(
    server: ServeProcess, standin_upstreams: StandInUpstreams
) -> None:
    sprm = standin_upstreams.sprm
    client = server.client
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

    assert server.stop() == 0
    log = server.log()
    assert f"starting on {server.url}" in log
    assert "Application shutdown complete" in log
    assert "stopped by SIGTERM" in log


def test_several_workers_serve_and_merge_their_metrics(
    tmp_path: Path, sqlite_db: Database, standin_upstreams: StandInUpstreams
) -> None:
    env = database_env(sqlite_db) | standin_upstreams.env() | {"SVC_WORKERS": "2"}
    with launch(env, tmp_path / "serve.log") as server:
        session = requests.Session()
        for _ in range(20):
            response = session.get(f"{server.api}/resources/nope", timeout=10)
            assert response.status_code == 404
            session.close()  # a new connection each time: spread over the workers

        page = requests.get(f"{server.url}/metrics", timeout=10).text
        line = 'placement_http_requests_total{method="GET",operation="GetResource",status="404"}'
        [sample] = [row for row in page.splitlines() if row.startswith(line)]
        assert float(sample.rsplit(" ", 1)[1]) == 20
        assert server.stop() == 0


def test_a_request_stuck_on_an_upstream_does_not_hold_the_stop(
    server: ServeProcess, standin_upstreams: StandInUpstreams
) -> None:
    # `podman stop` and compose send SIGKILL 10 s after SIGTERM.
    assert SHUTDOWN_GRACE + STOP_DRAIN < 10
    sprm = standin_upstreams.sprm
    sprm.hold("create")  # the SPRM never answers (until the test ends)
    body = {"catalog_item_instance_id": "cat-1", "spec": {"service_type": "vm"}}

    def create() -> None:
        with contextlib.suppress(requests.RequestException):  # the stop is under test
            requests.post(f"{server.api}/resources?id=stuck-1", json=body, timeout=60)

    creating = threading.Thread(target=create, daemon=True)
    creating.start()
    sprm.wait_held("create", timeout=10)

    started = time.monotonic()
    status = server.stop(timeout=30)
    took = time.monotonic() - started

    assert status == 0, server.log()
    assert took < 10, f"took {took:.1f} s"
    assert "still waiting on an upstream" in server.log()


def test_no_line_shows_a_urls_password(
    tmp_path: Path, sqlite_db: Database, standin_upstreams: StandInUpstreams
) -> None:
    """Credentials in the upstreams' and the issuer's URLs (a start-up line, a failed
    fetch of the issuer's keys, an invalid setting) are masked wherever they are shown."""
    issuer = Issuer()
    issuer.url = f"http://iss-user:iss-secret@127.0.0.1:{free_port()}"  # nobody answers
    env = database_env(sqlite_db) | {
        "POLICY_MANAGER_EVALUATION_URL": standin_upstreams.policy_url.replace(
            "http://", "http://pe-user:pe-secret@"
        ),
        "SP_RESOURCE_MANAGER_URL": standin_upstreams.sprm_url.replace(
            "http://", "http://sprm-user:sprm-secret@"
        ),
        "AUTH_DISABLED": "false",
        "AUTH_ISSUER_URL": issuer.issuer,
        "AUTH_JWT_AUDIENCE": AUDIENCE,
    }
    with launch(env, tmp_path / "serve.log") as server:
        token = {"Authorization": f"Bearer {issuer.token()}"}
        refused = requests.get(f"{server.api}/resources", headers=token, timeout=30)
        assert refused.status_code == 503
        wait_for(lambda: "fetching the issuer's keys failed" in server.log(), what="the warning")
        assert server.stop() == 0
    log = server.log()
    assert "http://***@127.0.0.1:" in log
    assert "secret" not in log

    invalid = env | {"SP_RESOURCE_MANAGER_URL": "http://u:cfg-secret@sprm:port"}
    result = run([str(ENTRY), "serve"], invalid)
    assert result.returncode == 1
    assert "SP_RESOURCE_MANAGER_URL='http://***@sprm:port'" in result.stderr
    assert "secret" not in result.stderr
