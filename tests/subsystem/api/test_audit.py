"""The drift audit on a live stack: the real `serve` process made the records and their
instances; instances are then created and deleted behind its back in the SPRM (through
the SPRM's own API). `placement-manager audit` lists exactly that drift, repairs it,
and finds none afterwards; with AUDIT_INTERVAL the service publishes it as metrics."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from placement_manager_client import Client

from placement.config import Database
from placement.store import make_store
from tests.harness.calls import create, get, resource, resource_ids
from tests.harness.concurrency import wait_for
from tests.harness.databases import database_env, new_pg_database, sqlite_database
from tests.harness.processes import ENTRY, Service, launch, run
from tests.harness.records import put_record
from tests.harness.standins import INSTANCES_PATH, StandInUpstreams
from tests.subsystem.api.conftest import SERVICE_ENV

RESOURCES = 105  # more than one page of the SPRM's list (100)


def run_audit(
    service: Service, suite_standins: StandInUpstreams, *args: str
) -> subprocess.CompletedProcess[str]:
    assert ENTRY is not None
    env = SERVICE_ENV | database_env(service.database)
    env["SP_RESOURCE_MANAGER_URL"] = suite_standins.sprm_url
    return run([ENTRY, "audit", *args], env, timeout=120)


def behind_the_back(suite_standins: StandInUpstreams, orphans: list[str], lost: list[str]) -> None:
    """Create instances the service never asked for; delete some it did."""
    url = f"{suite_standins.sprm_url}{INSTANCES_PATH}"
    for rid in orphans:
        body = {"provider_name": "someone-else", "spec": {"cpu": 1}}
        assert requests.post(url, params={"id": rid}, json=body, timeout=10).status_code == 201
    for rid in lost:
        suite_standins.remove_instance(rid)


def test_audit_finds_exactly_the_drift_repairs_it_and_then_finds_none(
    service: Service, suite_standins: StandInUpstreams, service_client: Client
) -> None:
    made = [str(resource(create(service_client, f"res-{n:03d}")).id) for n in range(RESOURCES)]
    assert suite_standins.instance_ids() == set(made)
    orphans, lost = ["stray-b", "stray-a", "stray-c"], ["res-007", "res-101"]
    behind_the_back(suite_standins, orphans, lost)

    # Everything here is younger than the default grace (the operation lease): 0s.
    found = run_audit(service, suite_standins, "--json", "--grace", "0s")

    assert found.returncode == 1, found.stderr
    assert json.loads(found.stdout) == {
        "orphaned_instances": sorted(orphans),
        "missing_instances": lost,
        "stuck_operations": [],
        "deleted_by_provider": [],
        "invalid_ids": [],
        "checked": {"instances": RESOURCES - 2 + 3, "records": RESOURCES},
    }
    assert run_audit(service, suite_standins, "--json").returncode == 0  # default grace: too young

    repaired = run_audit(
        service, suite_standins, "--json", "--grace", "0s", "--delete-orphans", "--forget-missing"
    )

    assert repaired.returncode == 0, repaired.stderr
    assert len(repaired.stderr.splitlines()) == len(orphans) + len(lost)
    assert suite_standins.instance_ids() == set(made) - set(lost)
    assert get(service_client, "res-007").status_code == 404
    assert resource_ids(service_client) == [rid for rid in made if rid not in lost]
    again = run_audit(service, suite_standins, "--json", "--grace", "0s")
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
    if service.database.type == "sqlite":
        yield sqlite_database(tmp_path / "audited.db", connect_timeout=5.0)
        return
    with new_pg_database(request.getfixturevalue("postgresql_proc"), "audited_") as database:
        yield database


def test_the_service_publishes_drift_with_several_workers(
    own_database: Database, suite_standins: StandInUpstreams, tmp_path: Path
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
    suite_standins.sprm.put_instances(made_old + orphans)
    env = SERVICE_ENV | database_env(own_database) | suite_standins.env()
    env |= {"AUDIT_INTERVAL": "200ms", "SVC_WORKERS": "2"}

    with launch(env, tmp_path / "serve.log") as process:

        def counts() -> tuple[float | None, ...]:
            text = requests.get(f"{process.url}/metrics", timeout=10).text
            return tuple(
                metric(text, "placement_drift", f'kind="{kind}"')
                for kind in ("orphaned_instances", "missing_instances", "stuck_operations")
            )

        seen: list[tuple[float | None, ...]] = []

        def shows(expected: tuple[float, ...]) -> bool:
            seen.append(counts())
            return seen[-1] == expected

        def until(expected: tuple[float, ...], what: str) -> None:
            try:
                wait_for(lambda: shows(expected), timeout=60, what=what)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last seen {seen[-3:]}") from None

        until((2.0, 1.0, 0.0), "the drift gauges")
        text = requests.get(f"{process.url}/metrics", timeout=10).text
        assert metric(text, "placement_oldest_operation_age_seconds") == 0.0
        assert (metric(text, "placement_drift_audit_finish_time_seconds") or 0) > 0

        suite_standins.sprm.forget("odd-1")
        until((1.0, 1.0, 0.0), "the new counts")
