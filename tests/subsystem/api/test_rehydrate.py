"""POST /resources/{id}:rehydrate: the old record's original spec placed again under a
new id; the old instance is deleted (deferred) and the old record removed only once the
new one is provisioned. On failure the old resource stays as it was."""

from __future__ import annotations

import pytest
from placement_manager_client import Client

from tests.harness.calls import SPEC, create, get, rehydrate, resource, resource_ids, spec_of
from tests.harness.problems import parsed_problem
from tests.harness.standins import INSTANCES_PATH, StandInUpstreams, rules, suite_rules


def test_rehydrate_places_the_original_spec_again_and_retires_the_old_resource(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    suite_standins.policy.rules = rules("rehydrated-provider", {"cpu": 16})
    old = resource(get(service_client, web_1), 200)

    new = resource(rehydrate(service_client, web_1, "web-2"), 200)

    assert new.id == "web-2"
    assert new.path == "resources/web-2"
    assert new.catalog_item_instance_id == old.catalog_item_instance_id
    assert spec_of(new) == SPEC  # the original spec, not the evaluated one
    assert new.provider_name == "rehydrated-provider"
    assert new.approval_status == "MODIFIED"
    # The old record's original spec was evaluated, once.
    assert suite_standins.evaluations() == [{"service_instance": {"spec": SPEC}}]
    # The SPRM created the new instance with the evaluated spec, then deleted the old
    # one, deferred.
    calls = suite_standins.sprm_calls()
    assert [(c.operation, c.path, c.query) for c in calls] == [
        ("create", INSTANCES_PATH, {"id": "web-2"}),
        ("delete", f"{INSTANCES_PATH}/{web_1}", {"deferred": "true"}),
    ]
    assert calls[0].body == {"provider_name": "rehydrated-provider", "spec": {**SPEC, "cpu": 16}}
    assert suite_standins.instance_ids() == {"web-2"}
    parsed_problem(get(service_client, web_1), 404, "not-found")
    assert resource(get(service_client, "web-2"), 200) == new
    assert resource_ids(service_client) == ["web-2"]


def test_rehydrate_of_an_unknown_id_is_404_without_upstream_calls(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    parsed_problem(rehydrate(service_client, "non-existent-id", "web-2"), 404, "not-found")

    assert suite_standins.evaluations() == []
    assert suite_standins.sprm_calls() == []
    assert resource_ids(service_client) == [web_1]


@pytest.mark.parametrize(
    ("tier", "status", "kind"),
    [("forbidden", 406, "policy-rejected"), ("orphan", 424, "policy-dependency")],
)
def test_a_policy_refusal_keeps_the_old_resource(
    service_client: Client,
    suite_standins: StandInUpstreams,
    web_1: str,
    tier: str,
    status: int,
    kind: str,
) -> None:
    # The policies changed since web-1 was placed: now every spec is in `tier`.
    suite_standins.policy.rules = suite_rules({"set": {"tier": tier}})

    parsed_problem(rehydrate(service_client, web_1, "web-2"), status, kind)

    assert len(suite_standins.evaluations()) == 1
    assert suite_standins.sprm_calls() == []
    assert suite_standins.instance_ids() == {web_1}
    assert resource_ids(service_client) == [web_1]


def test_an_unknown_provisioning_keeps_the_old_resource_as_it_was(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    """As the Go service: the old resource is READY right after the 500 (DELETE and
    rehydrate are served at once) and the new id is 404. A 5xx may follow an act: what
    the SPRM made of the new one is deleted once it can no longer act."""
    old = resource(get(service_client, web_1), 200)
    suite_standins.sprm.fail("create", 500)

    failed = parsed_problem(rehydrate(service_client, web_1, "web-2"), 500, "internal-error")
    assert "did not confirm creating web-2" in str(failed.detail)
    assert resource(get(service_client, web_1), 200) == old
    parsed_problem(get(service_client, "web-2"), 404, "not-found")
    assert resource_ids(service_client) == [web_1]
    assert suite_standins.sprm_calls("delete") == []  # the old instance is left alone
    suite_standins.sprm.reset_faults()
    assert resource(rehydrate(service_client, web_1, "web-3"), 200).id == "web-3"


@pytest.mark.parametrize(("sprm_status", "kind"), [(422, "provider-error")])
def test_a_failed_provisioning_keeps_the_old_resource_and_removes_the_new(
    service_client: Client,
    suite_standins: StandInUpstreams,
    web_1: str,
    sprm_status: int,
    kind: str,
) -> None:
    old = resource(get(service_client, web_1), 200)
    suite_standins.sprm.fail("create", sprm_status)

    parsed_problem(rehydrate(service_client, web_1, "web-2"), sprm_status, kind)

    assert len(suite_standins.evaluations()) == 1
    creates = suite_standins.sprm_calls("create")
    assert len(creates) >= 1
    assert all(c.query == {"id": "web-2"} for c in creates)
    assert suite_standins.sprm_calls("delete") == []  # the old instance is left alone
    assert suite_standins.instance_ids() == {web_1}
    parsed_problem(get(service_client, "web-2"), 404, "not-found")
    assert resource(get(service_client, web_1), 200) == old
    assert resource_ids(service_client) == [web_1]


def test_a_failed_deferred_delete_of_the_old_instance_is_not_an_error(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str
) -> None:
    # The old instance's deferred delete gets an error answer, which is logged and kept
    # as a pending deletion for the reconciler (test_unknown_outcomes.py), not returned.
    suite_standins.remove_instance(web_1)
    suite_standins.sprm.clear()
    suite_standins.sprm.fail("delete", 500)

    new = resource(rehydrate(service_client, web_1, "web-2"), 200)

    assert new.id == "web-2"
    deletes = suite_standins.sprm_calls("delete")
    assert len(deletes) >= 1
    assert all(d.query == {"deferred": "true"} for d in deletes)
    assert suite_standins.instance_ids() == {"web-2"}
    parsed_problem(get(service_client, web_1), 404, "not-found")
    assert resource_ids(service_client) == ["web-2"]


@pytest.mark.parametrize("new_id", ["web-1", "web-3"])
def test_rehydrate_to_an_id_in_use_is_409_and_changes_nothing(
    service_client: Client, suite_standins: StandInUpstreams, web_1: str, new_id: str
) -> None:
    resource(create(service_client, "web-3"))
    suite_standins.sprm.clear()

    parsed_problem(rehydrate(service_client, web_1, new_id), 409, "resource-conflict")

    assert suite_standins.sprm_calls() == []
    assert suite_standins.instance_ids() == {web_1, "web-3"}
    assert resource_ids(service_client) == [web_1, "web-3"]
