"""The drift audit on a live stack: the real `serve` process made the records and their
instances; instances are then created and deleted behind its back in the SPRM (through
the SPRM's own API). `placement-manager audit` lists exactly that drift, repairs it,
and finds none afterwards; with AUDIT_INTERVAL the service publishes it as metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from placement_manager_client import Client
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from placement.config import Database
from placement.store import make_store
from tests.conftest import pg_database
from tests.processes import CONFIG_PREFIXES, ENTRY, ServeProcess
from tests.records import put_record
from tests.subsystem.conftest import SERVICE_ENV, Service
from tests.subsystem.support import INSTANCES_PATH, Upstreams, all_ids, create, get, resource
from tests.support import wait_for

RESOURCES = 105  # more than one page of the SPRM's list (100)


def run_audit(
    service: Service, upstreams: Upstreams, *args: str
) -> subprocess.CompletedProcess[str]:
    assert ENTRY is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith(CONFIG_PREFIXES)}
    env = clean | SERVICE_ENV | service.backend.env
    env["SP_RESOURCE_MANAGER_URL"] = upstreams.sprm_server.url
    return subprocess.run(
        [ENTRY, "audit", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def behind_the_back(upstreams: Upstreams, orphans: list[str], lost: list[str]) -> None:
    """Create instances the service never asked for; delete some it did."""
    url = f"{upstreams.sprm_server.url}{INSTANCES_PATH}"
    for rid in orphans:
        body = {"provider_name": "someone-else", "spec": {"cpu": 1}}
        assert requests.post(url, params={"id": rid}, json=body, timeout=10).status_code == 201
    for rid in lost:
        upstreams.remove_instance(rid)


def test_audit_finds_exactly_the_drift_repairs_it_and_then_finds_none(
    service: Service, upstreams: Upstreams, client: Client
) -> None:
    made = [str(resource(create(client, f"res-{n:03d}")).id) for n in range(RESOURCES)]
    assert upstreams.instance_ids() == set(made)
    orphans, lost = ["stray-b", "stray-a", "stray-c"], ["res-007", "res-101"]
    behind_the_back(upstreams, orphans, lost)

    # Everything here is younger than the default grace (the operation lease): 0s.
    found = run_audit(service, upstreams, "--json", "--grace", "0s")

    assert found.returncode == 1, found.stderr
    assert json.loads(found.stdout) == {
        "orphaned_instances": sorted(orphans),
        "missing_instances": lost,
        "stuck_operations": [],
        "checked": {"instances": RESOURCES - 2 + 3, "records": RESOURCES},
    }
    assert run_audit(service, upstreams, "--json").returncode == 0  # default grace: too young

    repaired = run_audit(
        service, upstreams, "--json", "--grace", "0s", "--delete-orphans", "--forget-missing"
    )

    assert repaired.returncode == 0, repaired.stderr
    assert len(repaired.stderr.splitlines()) == len(orphans) + len(lost)
    assert upstreams.instance_ids() == set(made) - set(lost)
    assert get(client, "res-007").status_code == 404
    assert all_ids(client) == [rid for rid in made if rid not in lost]
    again = run_audit(service, upstreams, "--json", "--grace", "0s")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["checked"] == {"instances": 103, "records": 103}


def metric(text: str, name: str, labels: str = "") -> float | None:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.fixture
def own_database(
    service: Service, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Database]:
    """A database of its own, on the module's backend."""
    if service.backend.kind == "sqlite":
        yield Database("sqlite", "", 0, str(tmp_path / "audited.db"), "", "", 5.0, 1)
        return
    proc: PostgreSQLExecutor = request.getfixturevalue("postgresql_proc")
    name = f"audited_{uuid.uuid4().hex[:12]}"
    with DatabaseJanitor(
        user=proc.user, host=proc.host, port=proc.port, dbname=name, password=proc.password
    ):
        yield pg_database(proc, name)


def test_the_service_publishes_drift_with_several_workers(
    own_database: Database, upstreams: Upstreams, tmp_path: Path
) -> None:
    """Two workers: one process audits, /metrics (merged across the workers) shows the
    counts, and the new ones once the drift changes."""
    old = datetime.now(UTC) - timedelta(hours=1)
    store = make_store(own_database)
    store.open()
    try:
        for rid in ("kept-1", "kept-2", "lost-1"):
            put_record(store, rid, old)
    finally:
        store.close()
    made_old = [{"id": rid, "create_time": old.isoformat()} for rid in ("kept-1", "kept-2")]
    orphans = [{"id": rid, "create_time": old.isoformat()} for rid in ("odd-1", "odd-2")]
    upstreams.sprm.put_instances(made_old + orphans)
    env = SERVICE_ENV | database_env(own_database)
    env |= {
        "AUDIT_INTERVAL": "200ms",
        "SVC_WORKERS": "2",
        "SP_RESOURCE_MANAGER_URL": upstreams.sprm_server.url,
        "POLICY_MANAGER_EVALUATION_URL": upstreams.policy_server.url,
    }

    with ServeProcess(env, tmp_path / "serve.log") as process:
        process.wait_healthy()

        def counts() -> tuple[float | None, ...]:
            text = requests.get(f"{process.url}/metrics", timeout=10).text
            return tuple(
                metric(text, "placement_drift", f'kind="{kind}"')
                for kind in ("orphaned_instances", "missing_instances", "stuck_operations")
            )

        wait_for(lambda: counts() == (2.0, 1.0, 0.0), timeout=60, what="the drift gauges")
        text = requests.get(f"{process.url}/metrics", timeout=10).text
        assert metric(text, "placement_oldest_operation_age_seconds") == 0.0
        assert (metric(text, "placement_drift_audit_finish_time_seconds") or 0) > 0

        upstreams.sprm.forget("odd-1")
        wait_for(lambda: counts() == (1.0, 1.0, 0.0), timeout=60, what="the new counts")


def database_env(db: Database) -> dict[str, str]:
    env = {"DB_TYPE": db.type, "DB_NAME": db.name}
    if db.type == "pgsql":
        env |= {"DB_HOST": db.host, "DB_PORT": str(db.port), "DB_USER": db.user}
        if db.password:
            env["DB_PASSWORD"] = db.password
    return env
