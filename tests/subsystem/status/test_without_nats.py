"""With NATS_URL unset the service reads no status events: it starts and serves as before,
and a resource's status is what the SPRM's create answer said (the stand-in says
"PROVISIONED", or "pending" as DCM's newer SPRM), as of its creation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests
from placement_manager_client import Client

from placement.config import Database
from tests.harness.calls import create, delete, get, resource
from tests.harness.processes import Service
from tests.harness.standins import StandInUpstreams
from tests.harness.status_events import (
    event_counts,
    fields,
    metric_samples,
    statuses,
)
from tests.subsystem.status.conftest import serve_env, start_serve

HEALTHY = {"status": "healthy", "path": "health"}


@pytest.fixture(scope="module")
def service(
    database: Database, suite_standins: StandInUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """`placement-manager serve` without NATS_URL (overrides the suite's `service`)."""
    env = serve_env(database, suite_standins, None)
    assert not any(name.startswith("NATS_") for name in env)
    process = start_serve(env, tmp_path_factory.mktemp("serve") / "serve.log")
    yield Service(process, database)
    process.stop()


def unique(name: str) -> str:
    """An id of its own (the stand-ins serve every module, and both databases)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_it_starts_and_a_new_resource_has_the_sprms_status(
    client: Client, service: Service
) -> None:
    rid = unique("quiet")
    created = resource(create(client, rid))
    assert isinstance(created.create_time, datetime)
    expected = ("PROVISIONED", None, created.create_time)
    assert fields(created) == expected
    assert fields(resource(get(client, rid), 200)) == expected
    assert statuses(client, [rid]) == {rid: expected}
    assert statuses(client, [rid], status="provisioned") == {rid: expected}
    assert statuses(client, [rid], status="running") == {}
    assert delete(client, rid).status_code == 204

    health = requests.get(f"{service.process.api}/health", timeout=5)
    assert (health.status_code, health.json()) == (200, HEALTHY)
    counts = event_counts(service.process.url)
    assert set(counts.values()) == {0}  # exported, at zero
    assert metric_samples(service.process.url)[("placement_nats_connected", ())] == 0
    assert "status events" not in service.process.log()


def test_the_newer_sprms_status_as_it_answers(
    client: Client, service: Service, suite_standins: StandInUpstreams
) -> None:
    rid = unique("newer")
    suite_standins.sprm.speak_newer(True)
    try:
        created = resource(create(client, rid))
    finally:
        suite_standins.sprm.speak_newer(False)
    expected = ("pending", None, created.create_time)
    assert fields(resource(get(client, rid), 200)) == expected
    assert statuses(client, [rid], status="PENDING") == {rid: expected}
