"""Concurrent requests for one id end in one consistent outcome, and the SPRM is asked
once. The app runs on a real socket; the upstreams are the stand-in servers."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from placement_dev.standins import SprmStandIn
from placement_manager_client import Client
from placement_manager_client.api.resource import delete_resource, rehydrate_resource
from placement_manager_client.models import RehydrateRequest

from placement.config import Config
from tests.harness.app import serve_config
from tests.harness.calls import create, resource_ids
from tests.harness.concurrency import in_background
from tests.harness.standins import StandInUpstreams


@dataclass
class Stack:
    client: Client
    sprm: SprmStandIn

    def sprm_calls(self, method: str) -> int:
        return sum(1 for r in self.sprm.requests if r.method == method)


@pytest.fixture
def stack(config: Config, standin_upstreams: StandInUpstreams) -> Iterator[Stack]:
    standins = standin_upstreams
    with (
        serve_config(config, standins.policy_url, standins.sprm_url, 10.0) as url,
        Client(f"{url}/api/v1alpha1", timeout=30) as client,
    ):
        yield Stack(client, standins.sprm)
    standins.sprm.reset_faults()


def together(*calls: Callable[[], int]) -> list[int]:
    """Run the calls in threads released at the same moment; their status codes."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = [0] * len(calls)

    def run(index: int, call: Callable[[], int]) -> None:
        barrier.wait()
        statuses[index] = call()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


def test_many_creates_of_one_id_have_one_winner(stack: Stack) -> None:
    statuses = together(*[lambda: create(stack.client, "web-1").status_code] * 16)

    assert Counter(statuses) == Counter({201: 1, 409: 15})
    assert stack.sprm_calls("POST") == 1
    assert list(stack.sprm.instances) == ["web-1"]
    assert resource_ids(stack.client) == ["web-1"]


def test_create_and_delete_of_one_id(stack: Stack) -> None:
    stack.sprm.hold("create")
    creating = in_background(lambda: create(stack.client, "web-1").status_code)
    stack.sprm.wait_held("create", timeout=10)

    assert delete_resource.sync_detailed("web-1", client=stack.client).status_code == 409

    stack.sprm.release("create")
    assert creating.result(timeout=30) == 201
    assert stack.sprm_calls("DELETE") == 0
    assert list(stack.sprm.instances) == ["web-1"]


def test_two_deletes_of_one_resource(stack: Stack) -> None:
    assert create(stack.client, "web-1").status_code == 201
    stack.sprm.hold("delete")
    first = in_background(
        lambda: delete_resource.sync_detailed("web-1", client=stack.client).status_code
    )
    stack.sprm.wait_held("delete", timeout=10)

    assert delete_resource.sync_detailed("web-1", client=stack.client).status_code == 409

    stack.sprm.release("delete")
    assert first.result(timeout=30) == 204
    assert stack.sprm_calls("DELETE") == 1
    assert resource_ids(stack.client) == []


def test_many_deletes_at_once(stack: Stack) -> None:
    assert create(stack.client, "web-1").status_code == 201

    statuses = together(
        *[lambda: delete_resource.sync_detailed("web-1", client=stack.client).status_code] * 8
    )

    assert statuses.count(204) == 1
    assert set(statuses) <= {204, 404, 409}
    assert stack.sprm_calls("DELETE") == 1
    assert stack.sprm.instances == {}


def test_rehydrate_and_delete_of_one_resource(stack: Stack) -> None:
    assert create(stack.client, "web-1").status_code == 201
    stack.sprm.clear()
    stack.sprm.hold("create")

    def rehydrate() -> int:
        body = RehydrateRequest(new_resource_id="web-2")
        answer: Any = rehydrate_resource.sync_detailed("web-1", client=stack.client, body=body)
        return int(answer.status_code)

    rehydrating = in_background(rehydrate)
    stack.sprm.wait_held("create", timeout=10)

    assert delete_resource.sync_detailed("web-1", client=stack.client).status_code == 409

    stack.sprm.release("create")
    assert rehydrating.result(timeout=30) == 200
    assert resource_ids(stack.client) == ["web-2"]
    deletes = [r for r in stack.sprm.requests if r.method == "DELETE"]
    assert [(r.path.rsplit("/", 1)[-1], r.query) for r in deletes] == [
        ("web-1", {"deferred": "true"})
    ]
