"""POST /resources: evaluated by the Policy Engine, recorded, provisioned by the SPRM;
nothing left behind when a step fails."""

from __future__ import annotations

import uuid

import pytest
from placement_dev.standins import HANG
from placement_manager_client import Client

from tests.harness.calls import SPEC, create, get, resource, resource_ids, spec_of
from tests.harness.problems import SPRM_CREATE_REFUSALS, parsed_problem
from tests.harness.standins import GOLD, GOLD_EVALUATED, INSTANCES_PATH, StandInUpstreams


def test_create_is_approved_recorded_and_provisioned(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    created = resource(create(service_client, None, SPEC, "catalog-a1"))

    rid = str(created.id)
    assert str(uuid.UUID(rid)) == rid  # no id given: the service makes a UUID
    assert created.path == f"resources/{rid}"
    assert created.catalog_item_instance_id == "catalog-a1"
    assert created.approval_status == "APPROVED"
    assert created.provider_name == "test-provider"
    assert spec_of(created) == SPEC
    assert created.create_time == created.update_time
    # Each upstream was asked once, with the spec.
    assert suite_standins.evaluations() == [{"service_instance": {"spec": SPEC}}]
    [provision] = suite_standins.sprm_calls()
    assert (provision.operation, provision.path, provision.query) == (
        "create",
        INSTANCES_PATH,
        {"id": rid},
    )
    assert provision.body == {"provider_name": "test-provider", "spec": SPEC}
    assert suite_standins.instance_ids() == {rid}
    assert resource(get(service_client, rid), 200) == created


def test_create_with_a_client_given_id(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    created = resource(create(service_client, "web-1", {"cpu": 4}))

    assert created.id == "web-1"
    assert created.path == "resources/web-1"
    assert [c.query for c in suite_standins.sprm_calls("create")] == [{"id": "web-1"}]
    assert suite_standins.instance_ids() == {"web-1"}


def test_a_modified_spec_is_provisioned_but_the_original_is_kept(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    created = resource(create(service_client, "web-1", GOLD))

    assert created.approval_status == "MODIFIED"
    assert created.provider_name == "modified-provider"
    assert spec_of(created) == GOLD
    [provision] = suite_standins.sprm_calls("create")
    assert provision.body == {"provider_name": "modified-provider", "spec": GOLD_EVALUATED}
    assert suite_standins.sprm.instances["web-1"]["spec"] == GOLD_EVALUATED
    assert spec_of(resource(get(service_client, "web-1"), 200)) == GOLD


@pytest.mark.parametrize(
    ("tier", "status", "kind", "detail"),
    [
        ("forbidden", 406, "policy-rejected", "tier 'forbidden' is not allowed here"),
        ("contested", 409, "policy-conflict", "two policies disagree"),
        ("orphan", 424, "policy-dependency", "provider"),
    ],
)
def test_a_policy_refusal_stores_nothing_and_never_calls_the_sprm(
    service_client: Client,
    suite_standins: StandInUpstreams,
    tier: str,
    status: int,
    kind: str,
    detail: str,
) -> None:
    refused = parsed_problem(create(service_client, "web-1", {**SPEC, "tier": tier}), status, kind)

    assert detail in str(refused.detail)
    assert len(suite_standins.evaluations()) == 1
    assert suite_standins.sprm_calls() == []
    parsed_problem(get(service_client, "web-1"), 404, "not-found")
    assert resource_ids(service_client) == []


def test_a_failing_policy_engine_is_500_and_the_sprm_is_never_called(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    suite_standins.policy.fail("evaluate", 500, detail="policy engine stack trace")

    failed = parsed_problem(create(service_client, "web-1"), 500, "internal-error")

    assert "stack trace" not in str(failed.detail)  # upstream 5xx bodies are not passed on
    assert len(suite_standins.evaluations()) >= 1
    assert suite_standins.sprm_calls() == []
    assert resource_ids(service_client) == []


def test_a_policy_engine_failing_once_is_retried(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    suite_standins.policy.fail("evaluate", 503, times=1)

    assert resource(create(service_client, "web-1")).provider_name == "test-provider"
    assert len(suite_standins.evaluations()) >= 2
    assert suite_standins.instance_ids() == {"web-1"}


def test_a_failing_sprm_leaves_no_resource_behind(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    """As the Go service: after the 500, GET answers 404 and the list leaves it out. A 5xx
    may come after the SPRM acted: the service deletes whatever it made once it can no
    longer act (tests/subsystem/api/test_unknown_outcomes.py waits for that, with short
    leases); a retry of the same create provisions again."""
    suite_standins.sprm.fail("create", 500)

    failed = parsed_problem(create(service_client, "web-1"), 500, "internal-error")
    assert failed.detail == (
        "the SPRM did not confirm creating web-1 (HTTP 500); resource web-1 was not created,"
        " and anything the SPRM made of it is deleted"
    )

    assert len(suite_standins.evaluations()) == 1
    attempts = suite_standins.sprm_calls("create")
    assert len(attempts) >= 1
    assert all(a.query == {"id": "web-1"} for a in attempts)
    assert all(a.body == {"provider_name": "test-provider", "spec": SPEC} for a in attempts)
    # Whatever the service asked to learn the outcome, it only asked about this instance.
    assert all(c.path == f"{INSTANCES_PATH}/web-1" for c in suite_standins.sprm_calls("get"))
    assert suite_standins.sprm_calls("delete") == []
    assert suite_standins.instance_ids() == set()
    parsed_problem(get(service_client, "web-1"), 404, "not-found")
    assert resource_ids(service_client) == []
    suite_standins.sprm.reset_faults()
    assert resource(create(service_client, "web-1")).id == "web-1"  # the retry takes it over
    assert suite_standins.instance_ids() == {"web-1"}


@pytest.mark.parametrize("refusal", [429, 422])
def test_a_refusal_after_a_try_that_acted_is_not_taken_as_nothing_happened(
    service_client: Client, suite_standins: StandInUpstreams, refusal: int
) -> None:
    """The SPRM makes the instance and answers 503; the retries are refused; the look-up
    cannot answer: the outcome is unknown, so the client is told 500, the record is gone
    at once, and the instance is the undo's (never an orphan)."""
    suite_standins.sprm.after_acting("create", 503, times=1)
    suite_standins.sprm.fail("create", refusal, skip=1)
    suite_standins.sprm.fail("get", 503)

    failed = parsed_problem(create(service_client, "web-1"), 500, "internal-error")

    assert f"(HTTP {refusal} after a try that may have acted)" in str(failed.detail)
    assert len(suite_standins.sprm_calls("create")) >= 2
    parsed_problem(get(service_client, "web-1"), 404, "not-found")
    assert suite_standins.instance_ids() == {"web-1"}  # until the undo deletes it


@pytest.mark.parametrize(("sprm_status", "status", "kind"), SPRM_CREATE_REFUSALS)
def test_an_sprm_refusal_is_passed_on_once_and_rolls_back(
    service_client: Client,
    suite_standins: StandInUpstreams,
    sprm_status: int,
    status: int,
    kind: str,
) -> None:
    suite_standins.sprm.fail("create", sprm_status, detail="provider says no")

    refused = parsed_problem(create(service_client, "web-1"), status, kind)

    assert "provider says no" in str(refused.detail)  # 4xx explanations are passed on
    assert len(suite_standins.sprm_calls("create")) == 1  # a 4xx is never retried
    assert suite_standins.instance_ids() == set()
    assert resource_ids(service_client) == []


def test_an_sprm_failing_once_is_retried(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    suite_standins.sprm.fail("create", 503, times=1)

    resource(create(service_client, "web-1"))

    assert len(suite_standins.sprm_calls("create")) >= 2
    assert suite_standins.instance_ids() == {"web-1"}
    assert resource_ids(service_client) == ["web-1"]


@pytest.mark.parametrize("outcome", [500, HANG], ids=["answers-500", "times-out"])
def test_a_create_the_sprm_performed_but_failed_to_confirm_is_kept(
    service_client: Client, suite_standins: StandInUpstreams, outcome: int | str
) -> None:
    """The SPRM creates the instance, then answers 500 or never answers: the record and
    the instance must agree (the Go service removed the record, orphaning the instance)."""
    suite_standins.sprm.after_acting("create", 500 if outcome == 500 else HANG, times=1)

    created = resource(create(service_client, "web-1"))

    assert created.id == "web-1"
    assert suite_standins.instance_ids() == {"web-1"}
    assert resource_ids(service_client) == ["web-1"]
    assert len(suite_standins.evaluations()) == 1


def test_a_duplicate_id_is_409_and_changes_nothing(
    service_client: Client, suite_standins: StandInUpstreams
) -> None:
    first = resource(create(service_client, "web-1", SPEC, "catalog-1"))
    suite_standins.sprm.clear()

    parsed_problem(
        create(service_client, "web-1", {"cpu": 4}, "catalog-2"), 409, "resource-conflict"
    )

    assert suite_standins.sprm_calls() == []
    assert resource(get(service_client, "web-1"), 200) == first
    assert suite_standins.sprm.instances["web-1"]["spec"] == SPEC
