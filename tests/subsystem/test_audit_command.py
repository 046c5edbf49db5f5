"""`placement-manager audit`, the real command, on PostgreSQL and SQLite against the SPRM
stand-in: more instances and records than one SPRM page (100), exact output, exit
status, repairs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from placement_dev.standins import SprmStandIn

from placement.cli import audit as audit_command
from placement.config import Database
from placement.store import ResourceStore
from tests.harness.databases import database_env
from tests.harness.processes import ENTRY, free_port, run
from tests.harness.records import put_record

ROOT = Path(__file__).resolve().parents[2]
OLD = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
IN_STEP = [f"ok-{n:03d}" for n in range(130)]
ORPHANS = ["orphan-2", "orphan-1", "orphan-3"]
MISSING = ["missing-1", "missing-2"]


def audit(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    assert ENTRY is not None
    no_waits = {"UPSTREAM_RETRY_INITIAL_INTERVAL": "0", "UPSTREAM_RETRY_MAX_INTERVAL": "0"}
    return run([ENTRY, "audit", *args], no_waits | env, timeout=timeout)


@pytest.fixture
def drifted(
    store: ResourceStore, sprm_standin: SprmStandIn, sprm_url: str, db: Database
) -> dict[str, str]:
    """A stack where the SPRM holds 3 instances without records and lacks 2 that READY
    records name, among 130 that agree; the command's environment."""
    moment = datetime.fromisoformat(OLD)
    for rid in IN_STEP + MISSING:
        put_record(store, rid, moment)
    sprm_standin.put_instances([{"id": rid, "create_time": OLD} for rid in IN_STEP + ORPHANS])
    return database_env(db) | {"SP_RESOURCE_MANAGER_URL": sprm_url}


def test_json_lists_exactly_the_drift_and_exits_1(drifted: dict[str, str]) -> None:
    result = audit(drifted, "--json")

    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "orphaned_instances": sorted(ORPHANS),
        "missing_instances": MISSING,
        "stuck_operations": [],
        "deleted_by_provider": [],
        "invalid_ids": [],
        "checked": {"instances": 133, "records": 132},
    }
    assert result.stdout.count("\n") == 1  # one object, one line


def test_repair_then_a_second_audit_finds_nothing(
    drifted: dict[str, str], sprm_standin: SprmStandIn, store: ResourceStore
) -> None:
    repaired = audit(drifted, "--json", "--delete-orphans", "--forget-missing")

    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["orphaned_instances"] == sorted(ORPHANS)
    assert repaired.stderr.splitlines() == [
        "deleted orphaned instance orphan-1",
        "deleted orphaned instance orphan-2",
        "deleted orphaned instance orphan-3",
        "forgot record missing-1: its instance is gone",
        "forgot record missing-2: its instance is gone",
    ]
    assert set(sprm_standin.instances) == set(IN_STEP)
    assert all(store.get(rid) is None for rid in MISSING)

    again = audit(drifted, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["checked"] == {"instances": 130, "records": 130}


def test_a_capped_repair_exits_1_while_drift_remains(
    drifted: dict[str, str], sprm_standin: SprmStandIn
) -> None:
    result = audit(drifted, "--delete-orphans", "--max-deletes", "1")

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "deleted orphaned instance orphan-1",
        "kept orphaned instance orphan-2: --max-deletes 1",
        "kept orphaned instance orphan-3: --max-deletes 1",
    ]
    assert "orphan-1" not in sprm_standin.instances


def test_the_table_names_counts_and_ids(drifted: dict[str, str]) -> None:
    result = audit(drifted)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "drift                count",
        "orphaned_instances       3",
        "missing_instances        2",
        "stuck_operations         0",
        "deleted_by_provider      0",
        "invalid_ids              0",
        "checked 133 instances and 132 records",
    ]
    assert "\norphaned_instances:\n  orphan-1\n  orphan-2\n  orphan-3\n" in result.stdout
    assert "\nmissing_instances:\n  missing-1\n  missing-2\n" in result.stdout


def test_records_whose_id_the_api_refuses_are_reported_then_removed(
    db: Database, store: ResourceStore, sprm_standin: SprmStandIn, sprm_url: str
) -> None:
    """Ids stored before patterns matched the whole value ("nl-1\n"): no API call can
    read or delete them, so the audit reports them, and removes them on request."""
    moment = datetime.fromisoformat(OLD)
    for rid in ("nl-1\n", "gone-2\n", "ok-1"):
        put_record(store, rid, moment)
    sprm_standin.put_instances([{"id": rid, "create_time": OLD} for rid in ("nl-1\n", "ok-1")])
    env = database_env(db) | {"SP_RESOURCE_MANAGER_URL": sprm_url}

    found = audit(env, "--json")
    assert found.returncode == 1, found.stderr
    report = json.loads(found.stdout)
    assert report["invalid_ids"] == ["gone-2\n", "nl-1\n"]
    assert report["missing_instances"] == ["gone-2\n"]
    table = audit(env)
    assert "\ninvalid_ids:\n  'gone-2\\n'\n  'nl-1\\n'\n" in table.stdout

    removed = audit(env, "--remove-invalid-ids")
    assert removed.returncode == 0, removed.stderr
    assert removed.stderr.splitlines() == [
        "removed record 'gone-2\\n' and no instance (already gone): the API refuses its id",
        "removed record 'nl-1\\n' and its instance: the API refuses its id",
    ]
    assert set(sprm_standin.instances) == {"ok-1"}
    assert store.get("ok-1") is not None
    assert (store.get("nl-1\n"), store.get("gone-2\n")) == (None, None)
    again = audit(env, "--json")
    assert (again.returncode, json.loads(again.stdout)["invalid_ids"]) == (0, [])


def test_a_grace_period_hides_young_drift(
    drifted: dict[str, str], sprm_standin: SprmStandIn
) -> None:
    sprm_standin.put_instances([{"id": "just-made"}])  # created now
    assert "just-made" not in audit(drifted, "--json").stdout
    assert "just-made" in audit(drifted, "--json", "--grace", "0s").stdout
    assert "orphan-1" not in audit(drifted, "--json", "--grace", "2h").stdout


def test_no_drift_exits_0(db: Database, store: ResourceStore, sprm_url: str) -> None:
    env = database_env(db) | {"SP_RESOURCE_MANAGER_URL": sprm_url}
    result = audit(env, "--json")
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout)["checked"] == {"instances": 0, "records": 0}


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("placement-manager audit: ")
    for part in parts:
        assert part in line


def test_an_unreachable_sprm_is_one_line_and_exit_2(db: Database, store: ResourceStore) -> None:
    env = database_env(db) | {"SP_RESOURCE_MANAGER_URL": f"http://127.0.0.1:{free_port()}"}
    one_line_error(audit(env, "--json"), "sprm list", "no answer")


def test_an_sprm_error_is_one_line_and_exit_2(
    drifted: dict[str, str], sprm_standin: SprmStandIn
) -> None:
    sprm_standin.fail("list", 503, detail="overloaded")
    one_line_error(audit(drifted), "sprm list: 503: overloaded")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--grace", "soon"], "--grace: 'soon': not a duration"),
        (["--max-deletes", "0"], "--max-deletes: '0' is not a whole number"),
        (["--max-deletes"], "--max-deletes: expected one argument"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    one_line_error(audit({}, *args), message)


def test_bad_configuration_and_an_unreachable_database_are_one_line(tmp_path: Path) -> None:
    one_line_error(audit({"DB_TYPE": "mysql"}), "invalid configuration", "DB_TYPE='mysql'")
    nowhere = str(tmp_path / "typo.db")
    one_line_error(
        audit({"DB_TYPE": "sqlite", "DB_NAME": nowhere}), f"no database at sqlite:{nowhere}"
    )
    assert not Path(nowhere).exists()
    closed = {"DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "1s"}
    one_line_error(audit(closed), "cannot reach postgresql://127.0.0.1:")


def test_the_kubernetes_cronjob_runs_the_audit_dry() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "audit-cronjob.yaml").read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "CronJob")
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[0] == "audit"
    parsed = audit_command.parser().parse_args(args[1:])
    assert not parsed.delete_orphans
    assert not parsed.forget_missing
    assert pod["restartPolicy"] == "Never"
    assert manifest["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
