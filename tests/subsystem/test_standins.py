"""The local stand-ins for the Policy Engine and the SPRM, driven over real HTTP: their
contract answers, the policy rules, faults, recording, the background server and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
import requests
from placement_dev.standins import (
    BackgroundServer,
    PolicyStandIn,
    RulesError,
    ServerError,
    SprmStandIn,
    load_rules,
    parse_rules,
)
from placement_dev.standins import cli as standins_cli
from placement_dev.standins.recording import redact
from placement_dev.standins.server import exposure_warning

from placement.events.parse import StatusEvent, parse
from tests.harness import nats as nats_harness
from tests.harness.concurrency import wait_for
from tests.harness.nats import NatsServer
from tests.harness.processes import free_port

nats_server = nats_harness.nats_server  # the fixture

EVALUATE = "/api/v1alpha1/policies:evaluateRequest"
INSTANCES = "/api/v1alpha1/service-type-instances"
# As the upstream specs declare them: policy-engine.yaml says application/json.
ERROR_MEDIA_TYPES = {PolicyStandIn: "application/json", SprmStandIn: "application/problem+json"}
ROOT = Path(__file__).resolve().parents[2]


class Client:
    """A stand-in under test: the object (Python API) and its base URL (HTTP)."""

    def __init__(self, standin: Any, url: str) -> None:
        self.standin, self.url = standin, url
        self.session = requests.Session()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=5, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=5, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url + path, timeout=5, **kwargs)

    def evaluate(self, spec: Any) -> requests.Response:
        return self.post(EVALUATE, {"service_instance": {"spec": spec}})

    def create(
        self, instance_id: str | None = None, spec: Any = None, **kwargs: Any
    ) -> requests.Response:
        body = {"provider_name": "kv", "spec": spec or {"service_type": "vm"}}
        params = {} if instance_id is None else {"id": instance_id}
        return self.post(INSTANCES, body, params=params, **kwargs)

    def fault(self, **body: Any) -> requests.Response:
        return self.post("/_standin/faults", body)

    def problem(self, answer: requests.Response, status: int, detail: str | None = None) -> None:
        """Assert `answer` is problem details with `status`, in the upstream's media type."""
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == ERROR_MEDIA_TYPES[type(self.standin)]
        problem = answer.json()
        assert problem["status"] == status
        assert problem["type"]
        assert problem["title"]
        if detail is not None:
            assert detail in problem["detail"]


@pytest.fixture(scope="module")
def policy_server() -> Iterator[Client]:
    standin = PolicyStandIn()
    with standin.serve() as server:
        yield Client(standin, server.url)


@pytest.fixture(scope="module")
def sprm_server() -> Iterator[Client]:
    standin = SprmStandIn()
    with standin.serve() as server:
        yield Client(standin, server.url)


@pytest.fixture
def policy(policy_server: Client) -> Iterator[Client]:
    yield policy_server
    policy_server.standin.reset_faults()
    policy_server.standin.clear()
    policy_server.standin.rules = load_rules()


@pytest.fixture
def sprm(sprm_server: Client) -> Iterator[Client]:
    yield sprm_server
    sprm_server.standin.reset_faults()
    sprm_server.standin.clear()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def new_id() -> str:
    return f"i-{uuid.uuid4().hex[:12]}"


# The Policy Engine stand-in: contract and rules.


def test_evaluate_approves_on_the_default_provider(policy: Client) -> None:
    spec = {"service_type": "vm", "vm": {"cpu": 2}}
    answer = policy.evaluate(spec)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "status": "APPROVED",
        "selected_provider": "local-kubevirt",
        "evaluated_service_instance": {"spec": spec},
    }


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        [1, 2],
        {},
        {"service_instance": "vm"},
        {"service_instance": {}},
        {"service_instance": {"spec": ["vm"]}},
    ],
)
def test_evaluate_refuses_malformed_bodies(policy: Client, body: Any) -> None:
    if isinstance(body, str):
        answer = policy.session.post(policy.url + EVALUATE, data=body, timeout=5)
    else:
        answer = policy.post(EVALUATE, body)
    policy.problem(answer, 400)


# Each line of the table in default-rules.yaml.
DOCUMENTED = [
    ({"service_type": "vm"}, 200, "APPROVED", "local-kubevirt", None),
    ({"service_type": "cluster"}, 200, "APPROVED", "local-openshift", None),
    (
        {"service_type": "container", "container": {"image": "nginx"}},
        200,
        "MODIFIED",
        "local-kubevirt",
        {"service_type": "container", "container": {"image": "nginx", "restart_policy": "Always"}},
    ),
    ({"service_type": "vm", "environment": "forbidden"}, 406, None, None, None),
    ({"service_type": "vm", "environment": "contested"}, 409, None, None, None),
    ({"service_type": "vm", "provider_hint": "none"}, 200, "APPROVED", "", None),
]


@pytest.mark.parametrize(("spec", "code", "status", "provider", "evaluated"), DOCUMENTED)
def test_default_rules_behave_as_documented(
    policy: Client,
    spec: dict[str, Any],
    code: int,
    status: str | None,
    provider: str | None,
    evaluated: dict[str, Any] | None,
) -> None:
    answer = policy.evaluate(spec)
    if code != 200:
        policy.problem(answer, code)
        return
    assert answer.json() == {
        "status": status,
        "selected_provider": provider,
        "evaluated_service_instance": {"spec": spec if evaluated is None else evaluated},
    }


def test_set_modifies_nested_paths_and_accumulates(policy: Client) -> None:
    policy.standin.rules = parse_rules(
        {
            "default_provider": "p0",
            "rules": [
                {"set": {"vm.cpu": 4, "labels.tier.name": "gold"}},
                {"match": {"vm.cpu": 4}, "set": {"vm.memory": "8GB"}},
                {"match": {"vm.cpu": 2}, "set": {"never": True}},
            ],
        }
    )
    answer = policy.evaluate({"vm": {"cpu": 2, "disk": 10}, "labels": "plain"})
    assert answer.json() == {
        "status": "MODIFIED",
        "selected_provider": "p0",
        "evaluated_service_instance": {
            "spec": {
                "vm": {"cpu": 4, "disk": 10, "memory": "8GB"},
                "labels": {"tier": {"name": "gold"}},
            }
        },
    }
    assert policy.standin.requests[0].body == {
        "service_instance": {"spec": {"vm": {"cpu": 2, "disk": 10}, "labels": "plain"}}
    }


def test_set_to_the_same_value_is_approved(policy: Client) -> None:
    policy.standin.rules = parse_rules({"rules": [{"set": {"vm.cpu": 2}, "provider": "p"}]})
    assert policy.evaluate({"vm": {"cpu": 2}}).json()["status"] == "APPROVED"


def test_reject_and_conflict_end_evaluation_with_their_reason(policy: Client) -> None:
    policy.standin.rules = parse_rules(
        {
            "rules": [
                {"set": {"seen": True}, "provider": "p"},
                {"match": {"env": "prod", "vm.cpu": 64}, "reject": "too big for prod"},
                {"match": {"env": "prod"}, "conflict": "prod quota overrides"},
                {"match": {"env": "prod"}, "reject": "never reached"},
            ]
        }
    )
    policy.problem(policy.evaluate({"env": "prod", "vm": {"cpu": 64}}), 406, "too big for prod")
    assert policy.evaluate({"env": "prod", "vm": {"cpu": 64}}).json()["detail"] == (
        "too big for prod"
    )
    policy.problem(policy.evaluate({"env": "prod", "vm": {"cpu": 2}}), 409, "prod quota")
    assert policy.evaluate({"env": "dev"}).status_code == 200


def test_provider_selection_by_match_last_wins(policy: Client) -> None:
    policy.standin.rules = parse_rules(
        {
            "default_provider": "fallback",
            "rules": [
                {"match": {"service_type": "vm"}, "provider": "kv"},
                {"match": {"service_type": "vm", "gpu": True}, "provider": "kv-gpu"},
                {"match": {"service_type": "db"}, "provider": ""},
            ],
        }
    )
    assert policy.evaluate({"service_type": "vm"}).json()["selected_provider"] == "kv"
    assert policy.evaluate({"service_type": "vm", "gpu": 1}).json()["selected_provider"] == "kv"
    vm_gpu = policy.evaluate({"service_type": "vm", "gpu": True})
    assert vm_gpu.json()["selected_provider"] == "kv-gpu"
    assert policy.evaluate({"service_type": "db"}).json()["selected_provider"] == ""
    assert policy.evaluate({"service_type": "x"}).json()["selected_provider"] == "fallback"


def test_rules_files_load_from_yaml_and_json(tmp_path: Path) -> None:
    document = {"default_provider": "p", "rules": [{"match": {"a.b": 1}, "reject": "no"}]}
    (tmp_path / "rules.json").write_text(json.dumps(document))
    (tmp_path / "rules.yaml").write_text(
        "default_provider: p\nrules:\n  - match: {a.b: 1}\n    reject: 'no'\n"
    )
    assert load_rules(tmp_path / "rules.json") == load_rules(tmp_path / "rules.yaml")
    assert load_rules(tmp_path / "rules.yaml").default_provider == "p"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("[]", "must be a mapping"),
        ("rules: {}", "rules: must be a list"),
        ("default_provider: 3", "default_provider: must be a string"),
        ("rulez: []", "unknown field 'rulez'"),
        ("rules: [{provider: a}, {sett: {a: 1}}]", "rules[1]: unknown field 'sett'"),
        ("rules: [{provider: a}, {match: {a: 1}}]", "rules[1]: needs one of"),
        ("rules: [{reject: 3}]", "rules[0].reject: must be a non-empty reason"),
        (
            "rules: [{reject: nope, provider: a}]",
            "rules[0]: reject cannot be combined with provider",
        ),
        ("rules: [{reject: a, conflict: b}]", "rules[0]: reject cannot be combined with conflict"),
        ("rules: [{provider: 7}]", "rules[0].provider: must be a string"),
        ("rules: [{provider: a}, {match: [a], provider: b}]", "rules[1].match: must be a mapping"),
        ("rules: [{set: {vm..cpu: 1}}]", "rules[0].set: 'vm..cpu' is not a dotted field path"),
        ("rules: [{set: {day: 2024-01-01}}]", "rules[0].set.day: date is not a JSON value"),
        ("rules: [{provider: a\n", "not valid YAML or JSON at line 2"),
    ],
)
def test_invalid_rules_files_name_the_rule_and_field(
    tmp_path: Path, document: str, message: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(document)
    with pytest.raises(RulesError) as error:
        load_rules(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_rules_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_rules_can_be_replaced_over_http(policy: Client) -> None:
    rules = "default_provider: swapped\nrules: [{match: {x: 1}, reject: go away}]\n"
    answer = policy.session.put(policy.url + "/_standin/rules", data=rules, timeout=5)
    assert answer.status_code == 204
    assert policy.evaluate({"x": 2}).json()["selected_provider"] == "swapped"
    policy.problem(policy.evaluate({"x": 1}), 406, "go away")
    bad = policy.session.put(policy.url + "/_standin/rules", json={"rules": [{}]}, timeout=5)
    policy.problem(bad, 400, "rules[0]: needs one of")


# The SPRM stand-in: contract.


def test_create_get_delete(sprm: Client) -> None:
    instance_id = new_id()
    created = sprm.create(instance_id, {"service_type": "vm", "vm": {"cpu": 2}})
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json"
    instance = created.json()
    assert instance == {
        "id": instance_id,
        "path": f"service-type-instances/{instance_id}",
        "provider_name": "kv",
        "spec": {"service_type": "vm", "vm": {"cpu": 2}},
        "status": "PROVISIONED",
        "create_time": instance["create_time"],
        "update_time": instance["create_time"],
    }
    assert datetime.fromisoformat(instance["create_time"]).utcoffset() is not None
    assert sprm.standin.instances[instance_id] == instance
    assert sprm.get(f"{INSTANCES}/{instance_id}").json() == instance
    assert sprm.delete(f"{INSTANCES}/{instance_id}").status_code == 204
    assert instance_id not in sprm.standin.instances
    sprm.problem(sprm.get(f"{INSTANCES}/{instance_id}"), 404, instance_id)


def test_create_without_id_makes_a_uuid(sprm: Client) -> None:
    instance = sprm.create().json()
    assert str(uuid.UUID(instance["id"])) == instance["id"]
    assert sprm.get(f"{INSTANCES}/{instance['id']}").status_code == 200


def test_create_with_a_used_id_is_409(sprm: Client) -> None:
    instance_id = new_id()
    assert sprm.create(instance_id).status_code == 201
    sprm.problem(sprm.create(instance_id, {"other": 1}), 409, instance_id)
    assert sprm.standin.instances[instance_id]["spec"] == {"service_type": "vm"}


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"id": "Not_A_Label"}, {"provider_name": "kv", "spec": {}}),
        ({"id": "x" * 64}, {"provider_name": "kv", "spec": {}}),
        ({}, {"spec": {}}),
        ({}, {"provider_name": 3, "spec": {}}),
        ({}, {"provider_name": "kv"}),
        ({}, {"provider_name": "kv", "spec": "vm"}),
        ({}, ["not", "an", "object"]),
    ],
)
def test_create_refuses_malformed_requests(sprm: Client, params: dict[str, str], body: Any) -> None:
    before = sprm.standin.instances
    sprm.problem(sprm.post(INSTANCES, body, params=params), 400)
    assert sprm.standin.instances == before


def test_unknown_or_malformed_ids_on_get_and_delete(sprm: Client) -> None:
    sprm.problem(sprm.get(f"{INSTANCES}/{new_id()}"), 404)
    sprm.problem(sprm.delete(f"{INSTANCES}/{new_id()}"), 404)
    sprm.problem(sprm.delete(f"{INSTANCES}/{new_id()}", params={"deferred": "true"}), 404)
    sprm.problem(sprm.get(f"{INSTANCES}/Bad_Id"), 400)
    sprm.problem(sprm.delete(f"{INSTANCES}/{new_id()}", params={"deferred": "maybe"}), 400)


def test_unknown_paths_and_methods_are_problems(sprm: Client) -> None:
    sprm.problem(sprm.get("/api/v1alpha1/nothing"), 404)
    answer = sprm.session.put(f"{sprm.url}{INSTANCES}/{new_id()}", timeout=5)
    sprm.problem(answer, 405)
    assert "GET" in answer.headers["allow"]


def test_deferred_delete_succeeds_or_queues_a_failure(sprm: Client) -> None:
    gone, stuck = new_id(), new_id()
    sprm.create(gone)
    sprm.create(stuck)
    assert sprm.delete(f"{INSTANCES}/{gone}", params={"deferred": "true"}).status_code == 204
    assert gone not in sprm.standin.instances

    sprm.standin.fail("delete", 422)
    sprm.problem(sprm.delete(f"{INSTANCES}/{stuck}"), 422)
    assert sprm.delete(f"{INSTANCES}/{stuck}", params={"deferred": "true"}).status_code == 204
    assert sprm.standin.instances[stuck]["deletion_status"] == "FAILED"
    assert sprm.get(f"{INSTANCES}/{stuck}").json()["deletion_status"] == "FAILED"

    sprm.standin.fail("delete", 503)  # the request never reached the queue
    sprm.problem(sprm.delete(f"{INSTANCES}/{gone}x", params={"deferred": "true"}), 503)


@pytest.fixture
def fresh_sprm() -> Iterator[Client]:
    """An SPRM stand-in of its own (the module's one keeps other tests' instances)."""
    standin = SprmStandIn(max_deleted=3)
    with standin.serve() as server:
        yield Client(standin, server.url)


def list_all(sprm: Client, size: int, **params: str) -> tuple[list[str], int]:
    """Every id the list gives, following its page tokens, and the number of pages."""
    listed: list[str] = []
    token, pages = None, 0
    while True:
        query = {"max_page_size": str(size), **params} | ({"page_token": token} if token else {})
        answer = sprm.get(INSTANCES, params=query)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        listed += [each["id"] for each in body["instances"]]
        pages += 1
        token = body.get("next_page_token")
        if not token:
            return listed, pages


def test_list_pages_in_id_order_until_a_page_without_token(fresh_sprm: Client) -> None:
    ids = [f"i-{n:02d}" for n in range(7)]
    for instance_id in reversed(ids):
        assert fresh_sprm.create(instance_id).status_code == 201

    assert list_all(fresh_sprm, 3) == (ids, 3)
    assert list_all(fresh_sprm, 7) == (ids, 1)
    assert list_all(fresh_sprm, 100) == (ids, 1)
    first = fresh_sprm.get(INSTANCES, params={"max_page_size": "3"}).json()
    assert first["instances"][0] == fresh_sprm.get(f"{INSTANCES}/i-00").json()
    empty = SprmStandIn()
    with empty.serve() as server:
        assert requests.get(server.url + INSTANCES, timeout=5).json() == {"instances": []}


def test_deleted_instances_show_only_with_show_deleted(fresh_sprm: Client) -> None:
    for instance_id in ("a", "b", "c"):
        fresh_sprm.create(instance_id)
    assert fresh_sprm.delete(f"{INSTANCES}/b").status_code == 204

    assert list_all(fresh_sprm, 1) == (["a", "c"], 2)
    assert list_all(fresh_sprm, 1, show_deleted="true") == (["a", "b", "c"], 3)
    fresh_sprm.problem(fresh_sprm.get(f"{INSTANCES}/b"), 404)
    deleted = fresh_sprm.get(f"{INSTANCES}/b", params={"show_deleted": "true"}).json()
    assert deleted["delete_time"] == deleted["update_time"]
    assert "b" not in fresh_sprm.standin.instances
    fresh_sprm.problem(fresh_sprm.delete(f"{INSTANCES}/b"), 404)
    assert fresh_sprm.create("b").status_code == 201  # the id can be used again
    assert "delete_time" not in fresh_sprm.get(f"{INSTANCES}/b").json()


def test_only_the_last_deleted_instances_are_kept(fresh_sprm: Client) -> None:
    for n in range(5):
        fresh_sprm.create(f"d-{n}")
        fresh_sprm.delete(f"{INSTANCES}/d-{n}")
    assert list_all(fresh_sprm, 100, show_deleted="true")[0] == ["d-2", "d-3", "d-4"]


@pytest.mark.parametrize(
    "params",
    [
        {"max_page_size": "0"},
        {"max_page_size": "101"},
        {"max_page_size": "ten"},
        {"show_deleted": "maybe"},
        {"page_token": "not a token"},
        {"page_token": "MTpi"},  # "1:b", issued for show_deleted=true
    ],
)
def test_list_refuses_bad_parameters(fresh_sprm: Client, params: dict[str, str]) -> None:
    fresh_sprm.problem(fresh_sprm.get(INSTANCES, params=params), 400)


def test_list_takes_faults(fresh_sprm: Client) -> None:
    fresh_sprm.standin.fail("list", 503, times=1, detail="try later")
    fresh_sprm.problem(fresh_sprm.get(INSTANCES), 503, "try later")
    assert fresh_sprm.get(INSTANCES).status_code == 200


def test_instances_are_put_and_forgotten_behind_the_services_back(fresh_sprm: Client) -> None:
    admin = "/_standin/instances"
    put = [
        {"id": "x-1", "create_time": "2025-01-01T00:00:00Z", "deletion_status": "SCHEDULED"},
        {"id": "x-2", "create_time": None, "spec": {"cpu": 1}},
    ]
    assert fresh_sprm.post(admin, {"instances": put}).status_code == 204

    one = fresh_sprm.get(f"{INSTANCES}/x-1").json()
    assert one["create_time"] == "2025-01-01T00:00:00Z"
    assert one["deletion_status"] == "SCHEDULED"
    two = fresh_sprm.get(f"{INSTANCES}/x-2").json()
    assert "create_time" not in two
    assert two["spec"] == {"cpu": 1}
    assert [r.operation for r in fresh_sprm.standin.requests] == ["get", "get"]  # admin: not
    assert fresh_sprm.get(admin).json()["instances"] == [one, two]

    assert fresh_sprm.delete(f"{admin}/x-1").status_code == 204
    fresh_sprm.problem(fresh_sprm.get(f"{INSTANCES}/x-1", params={"show_deleted": "true"}), 404)
    fresh_sprm.problem(fresh_sprm.delete(f"{admin}/x-1"), 404)
    assert fresh_sprm.delete(admin).status_code == 204
    assert fresh_sprm.standin.instances == {}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": "x"},
        {"instances": [{"spec": {}}]},
        {"instances": [{"id": "y", "create_time": "yesterday"}]},
        {"instances": [{"id": "y", "deletion_status": "GONE"}]},
    ],
)
def test_bad_admin_instances_are_400(fresh_sprm: Client, body: dict[str, Any]) -> None:
    fresh_sprm.problem(fresh_sprm.post("/_standin/instances", body), 400)
    assert fresh_sprm.standin.instances == {}


# Faults, from Python and over the admin endpoints.


def test_fail_n_times_then_succeed(sprm: Client) -> None:
    instance_id = new_id()
    sprm.standin.fail("create", 503, times=2, detail="busy")
    sprm.problem(sprm.create(instance_id), 503, "busy")
    sprm.problem(sprm.create(instance_id), 503, "busy")
    assert instance_id not in sprm.standin.instances
    assert sprm.create(instance_id).status_code == 201


def test_faults_over_http(policy: Client) -> None:
    assert policy.fault(action="fail", operation="evaluate", status=500, times=1).status_code == 204
    faults = policy.get("/_standin/faults").json()["faults"]["evaluate"]
    assert faults["fail"] == {
        "status": 500,
        "times": 1,
        "skip": 0,
        "detail": faults["fail"]["detail"],
    }
    policy.problem(policy.evaluate({"a": 1}), 500)
    assert policy.evaluate({"a": 1}).status_code == 200

    assert policy.fault(action="fail", operation="evaluate", status=401).status_code == 204
    policy.problem(policy.evaluate({"a": 1}), 401)
    policy.problem(policy.evaluate({"a": 1}), 401)
    assert policy.delete("/_standin/faults").status_code == 204
    assert policy.evaluate({"a": 1}).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode", "operation": "evaluate"}, "action must be one of"),
        ({"action": "fail", "operation": "create", "status": 500}, "unknown operation 'create'"),
        ({"action": "fail", "operation": "evaluate", "status": 200}, "status must be"),
        ({"action": "fail", "operation": "evaluate", "status": 500, "times": 0}, "times must"),
        ({"action": "fail", "operation": "evaluate"}, "missing a required argument"),
        ({"action": "delay", "operation": "evaluate", "seconds": -1}, "must not be negative"),
        ({"action": "hold", "operation": "evaluate", "extra": 1}, "unexpected keyword"),
        ({"action": "after_acting", "operation": "evaluate", "status": "later"}, "status"),
    ],
)
def test_bad_fault_requests_are_400(policy: Client, body: dict[str, Any], message: str) -> None:
    policy.problem(policy.post("/_standin/faults", body), 400, message)


def test_bad_faults_from_python_raise(sprm: Client) -> None:
    with pytest.raises(ValueError, match="unknown operation 'evaluate'"):
        sprm.standin.fail("evaluate", 500)
    with pytest.raises(ValueError, match="status must be"):
        sprm.standin.after_acting("create", 302)


def test_delay_does_not_block_other_calls(sprm: Client, pool: ThreadPoolExecutor) -> None:
    instance_id = new_id()
    sprm.standin.delay("create", 0.3)
    started = time.monotonic()
    slow = pool.submit(sprm.create, instance_id)
    assert sprm.get(f"{INSTANCES}/{new_id()}").status_code == 404
    assert not slow.done()
    assert slow.result().status_code == 201
    assert time.monotonic() - started >= 0.3


def test_hold_wait_held_release_from_python(sprm: Client, pool: ThreadPoolExecutor) -> None:
    instance_id = new_id()
    sprm.standin.hold("create")
    held = pool.submit(sprm.create, instance_id)
    sprm.standin.wait_held("create", timeout=5)
    assert instance_id not in sprm.standin.instances  # held before acting
    assert sprm.get(f"{INSTANCES}/{instance_id}").status_code == 404  # the loop still serves
    assert not held.done()
    sprm.standin.release("create")
    assert held.result().status_code == 201
    assert sprm.create(new_id()).status_code == 201  # no longer holding


def test_hold_wait_held_release_over_http(sprm: Client, pool: ThreadPoolExecutor) -> None:
    assert sprm.fault(action="hold", operation="delete").status_code == 204
    instance_id = new_id()
    sprm.create(instance_id)
    held = [pool.submit(sprm.delete, f"{INSTANCES}/{instance_id}") for _ in range(2)]
    waited = sprm.fault(action="wait_held", operation="delete", timeout=5, count=2)
    assert waited.status_code == 204
    assert sprm.get("/_standin/faults").json()["faults"]["delete"]["held"] == 2
    assert sprm.fault(action="release", operation="delete").status_code == 204
    assert sorted(each.result().status_code for each in held) == [204, 404]


def test_wait_held_times_out(sprm: Client) -> None:
    with pytest.raises(TimeoutError):
        sprm.standin.wait_held("get", timeout=0.05)
    answer = sprm.fault(action="wait_held", operation="get", timeout=0.05)
    sprm.problem(answer, 504)


def test_act_then_fail_leaves_the_instance_created(sprm: Client) -> None:
    instance_id = new_id()
    sprm.standin.after_acting("create", 500, times=1)
    sprm.problem(sprm.create(instance_id), 500)
    assert instance_id in sprm.standin.instances
    sprm.problem(sprm.create(instance_id), 409)  # a retry meets its own instance

    sprm.fault(action="after_acting", operation="delete", status=502)
    sprm.problem(sprm.delete(f"{INSTANCES}/{instance_id}"), 502)
    assert instance_id not in sprm.standin.instances


def test_act_then_hang_until_the_client_gives_up(sprm: Client) -> None:
    instance_id = new_id()
    sprm.standin.after_acting("create", "hang")
    with pytest.raises(requests.Timeout):
        sprm.session.post(
            f"{sprm.url}{INSTANCES}",
            json={"provider_name": "kv", "spec": {"a": 1}},
            params={"id": instance_id},
            timeout=0.2,
        )
    assert instance_id in sprm.standin.instances

    def held() -> int:
        return int(sprm.get("/_standin/faults").json()["faults"]["create"]["held"])

    wait_for(lambda: held() == 0, what="the hung call to end when its client left")


def test_act_then_hang_until_released(sprm: Client, pool: ThreadPoolExecutor) -> None:
    instance_id = new_id()
    sprm.standin.after_acting("create", "hang")
    hung = pool.submit(sprm.create, instance_id)
    sprm.standin.wait_held("create")
    assert instance_id in sprm.standin.instances
    sprm.standin.release("create")
    assert hung.result().status_code == 201


# Recording.


def test_requests_are_recorded_in_order(sprm: Client) -> None:
    instance_id = new_id()
    headers = {"X-Request-ID": "req-1", "Authorization": "Bearer t", "X-Other": "no"}
    sprm.create(instance_id, {"a": 1}, headers=headers)
    sprm.get(f"{INSTANCES}/{instance_id}")
    sprm.get("/_standin/faults")  # admin calls are not recorded
    sprm.delete(f"{INSTANCES}/{instance_id}", params={"deferred": "true"})
    sprm.session.post(f"{sprm.url}{INSTANCES}", data="{broken", timeout=5)

    recorded = sprm.standin.requests
    assert [(r.operation, r.method) for r in recorded] == [
        ("create", "POST"),
        ("get", "GET"),
        ("delete", "DELETE"),
        ("create", "POST"),
    ]
    first = recorded[0]
    assert first.path == INSTANCES
    assert first.query == {"id": instance_id}
    assert first.body == {"provider_name": "kv", "spec": {"a": 1}}
    assert first.headers == {
        "x-request-id": "req-1",
        "authorization": redact("Bearer t"),
        "content-type": "application/json",
    }
    assert "Bearer t" not in json.dumps(sprm.get("/_standin/requests").json())
    assert recorded[1].body is None
    assert recorded[2].query == {"deferred": "true"}
    assert recorded[3].body is None

    over_http = sprm.get("/_standin/requests").json()["requests"]
    assert over_http == [r.to_json() for r in recorded]
    assert sprm.delete("/_standin/requests").status_code == 204
    assert sprm.standin.requests == []


def test_clear_from_python(policy: Client) -> None:
    policy.evaluate({"a": 1})
    assert len(policy.standin.requests) == 1
    policy.standin.clear()
    assert policy.get("/_standin/requests").json() == {"requests": []}


# The background server.


def test_background_server_on_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"cannot listen on 127.0.0.1:{port}"):
            BackgroundServer(SprmStandIn(), port).start()


def test_background_server_stops_even_with_a_held_call(pool: ThreadPoolExecutor) -> None:
    standin = SprmStandIn()
    server = standin.serve().start()
    url = server.url
    assert url == f"http://127.0.0.1:{server.port}"
    standin.hold("create")
    held: Future[requests.Response] = pool.submit(
        requests.post, f"{url}{INSTANCES}", json={"provider_name": "p", "spec": {}}, timeout=5
    )
    standin.wait_held("create")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5  # well under the 2 s grace: the hold was reset
    assert held.result().status_code == 201
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_standin/requests", timeout=5)


# The command line.


def run_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "placement_dev.standins", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(("kind", "stop"), [("policy", signal.SIGTERM), ("sprm", signal.SIGINT)])
def test_cli_serves_until_signalled(kind: str, stop: signal.Signals) -> None:
    port = free_port()
    process = run_cli(kind, "--port", str(port))
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, process.communicate()[1]
        try:
            return requests.get(f"{url}/_standin/requests", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, what=f"the {kind} stand-in to answer")
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert f"{kind} stand-in listening on {url}" in stderr


def test_cli_fails_in_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{provider: a}, {match: {x: 1}}]\n")
    process = run_cli("policy", "--port", "0", "--rules", str(rules))
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 1
    assert stderr.splitlines() == [
        f"python -m placement_dev.standins: error: {rules}: rules[1]: needs one of reject, "
        "conflict, set, provider"
    ]


def test_recorded_credentials_are_redacted_to_a_fingerprint() -> None:
    assert redact("Bearer secret-token") == redact("Bearer secret-token")
    assert redact("Bearer secret-token") != redact("Bearer other-token")
    assert "secret-token" not in redact("Bearer secret-token")
    assert redact("Bearer secret-token").startswith("Bearer <redacted sha256:")


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("127.0.0.1", False),
        ("::1", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.0.2.7", True),
        ("stand-ins.example", True),
    ],
)
def test_listening_beyond_loopback_is_warned_about(host: str, warned: bool) -> None:
    warning = exposure_warning(host)
    assert (warning is not None) is warned
    if warning:
        assert "no authentication" in warning


# The SPRM stand-in's status events (NATS JetStream).


def stored_events(url: str, expect: int, timeout: float = 10.0) -> list[Any]:
    """The messages of the stream dcm-status, read with a consumer of our own, once there
    are `expect` of them (or `timeout` has passed)."""

    async def go() -> list[Any]:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            deadline = time.monotonic() + timeout
            while True:  # the stand-in makes the stream when it first publishes
                try:
                    js = nc.jetstream()
                    subscription = await js.pull_subscribe("dcm.>", stream="dcm-status")
                    break
                except nats.js.errors.NotFoundError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            got: list[Any] = []
            while len(got) < expect and time.monotonic() < deadline:
                with contextlib.suppress(nats.errors.TimeoutError):
                    got += await subscription.fetch(expect - len(got), timeout=0.5)
            return got
        finally:
            await nc.close()

    return nats_harness.run(go())


def statuses(messages: list[Any]) -> list[tuple[str, str]]:
    """(instance id, status) of each message, as the placement service parses it."""
    events = [
        parse(m.subject, m.headers, m.data, datetime.now(UTC), m.metadata.sequence.stream)
        for m in messages
    ]
    assert all(isinstance(event, StatusEvent) for event in events), events
    return [(event.instance_id, event.status) for event in events]  # type: ignore[union-attr]


def test_sprm_publishes_provisioning_running_and_deleted(nats_server: NatsServer) -> None:
    standin = SprmStandIn(nats_url=nats_server.url, running_after=0.3)
    with standin.serve() as server:
        sprm = Client(standin, server.url)
        assert sprm.create("vm-1", {"service_type": "vm", "cpu": 1}).status_code == 201
        assert statuses(stored_events(nats_server.url, 2)) == [
            ("vm-1", "PROVISIONING"),
            ("vm-1", "RUNNING"),
        ]
        assert sprm.delete(f"{INSTANCES}/vm-1").status_code == 204
        # Deleted before it runs: no RUNNING after DELETED.
        assert sprm.create("vm-2", {"service_type": "container"}).status_code == 201
        assert sprm.delete(f"{INSTANCES}/vm-2").status_code == 204
        time.sleep(0.6)

    messages = stored_events(nats_server.url, 6, timeout=1.0)
    assert statuses(messages) == [
        ("vm-1", "PROVISIONING"),
        ("vm-1", "RUNNING"),
        ("vm-1", "DELETED"),
        ("vm-2", "PROVISIONING"),
        ("vm-2", "DELETED"),
    ]
    assert messages[0].subject == "dcm.providers.kv.vm.instances.vm-1.status"
    assert messages[3].subject == "dcm.providers.kv.container.instances.vm-2.status"
    event = json.loads(messages[1].data)
    assert messages[1].headers == {"Content-Type": "application/cloudevents+json"}
    assert event["specversion"] == "1.0"
    assert event["source"] == "placement-dev/sprm-standin"
    assert event["type"] == "dcm.status"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert event["data"] == {"status": "RUNNING", "message": "the instance is running"}
    assert len({json.loads(m.data)["id"] for m in messages}) == 5
    # The stand-in made the stream as the service would have.
    assert nats_harness.stream_info(nats_server.url, "dcm-status").config.subjects == ["dcm.>"]


def test_sprm_answers_as_before_when_nats_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "placement_dev.standins.events")
    standin = SprmStandIn(nats_url=f"nats://127.0.0.1:{free_port()}", running_after=0.1)
    with standin.serve() as server:
        sprm = Client(standin, server.url)
        for instance_id in ("vm-1", "vm-2"):
            started = time.monotonic()
            assert sprm.create(instance_id).status_code == 201
            assert sprm.delete(f"{INSTANCES}/{instance_id}").status_code == 204
            assert time.monotonic() - started < 1.0
        assert standin.events is not None
        wait_for(lambda: caplog.records, what="the warning")
        time.sleep(0.5)  # the other events fail too, quietly

    [warning] = caplog.records
    assert "cannot publish status events to NATS" in warning.getMessage()
    assert standin.events.published == 0


def test_sprm_without_a_nats_url_publishes_nothing() -> None:
    assert SprmStandIn().events is None
    args = standins_cli._parser().parse_args(["sprm", "--nats-url", "nats://nats:4222"])
    assert args.nats_url == "nats://nats:4222"
    assert args.running_after == 1.0
