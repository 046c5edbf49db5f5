"""The upstreams as the stand-in servers of `placement_dev` (real HTTP servers in this
process, programmed through their Python API): `StandInUpstreams`, and the Policy Engine
rules of the subsystem suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from placement_dev.standins import (
    BackgroundServer,
    PolicyStandIn,
    RecordedRequest,
    Rules,
    SprmStandIn,
    parse_rules,
)

INSTANCES_PATH = "/api/v1alpha1/service-type-instances"

# The Policy Engine stand-in's rules in this suite (see dev/placement_dev/standins/rules.py).
RULES: dict[str, Any] = {
    "default_provider": "test-provider",
    "rules": [
        {"match": {"tier": "forbidden"}, "reject": "tier 'forbidden' is not allowed here"},
        {"match": {"tier": "contested"}, "conflict": "two policies disagree on this spec"},
        {
            "match": {"tier": "gold"},
            "set": {"cpu": 8, "memory": "16Gi"},
            "provider": "modified-provider",
        },
        {"match": {"tier": "orphan"}, "provider": ""},
    ],
}
GOLD: dict[str, Any] = {"tier": "gold", "cpu": 2, "memory": "4Gi"}
GOLD_EVALUATED: dict[str, Any] = {"tier": "gold", "cpu": 8, "memory": "16Gi"}


def suite_rules(*first: dict[str, Any]) -> Rules:
    """The suite's rules, after the rules `first`."""
    return parse_rules({**RULES, "rules": [*first, *RULES["rules"]]}, "subsystem rules")


def rules(provider: str = "test-provider", set_fields: dict[str, Any] | None = None) -> Rules:
    """Rules that approve every spec on `provider`, modifying it by `set_fields`."""
    rule: dict[str, Any] = {"provider": provider}
    if set_fields:
        rule["set"] = set_fields
    return parse_rules({"rules": [rule]}, "test rules")


@dataclass(frozen=True)
class StandInUpstreams:
    """The two stand-ins, serving in this process, programmed through their Python API."""

    policy: PolicyStandIn
    sprm: SprmStandIn
    policy_server: BackgroundServer
    sprm_server: BackgroundServer

    @classmethod
    @contextmanager
    def serving(cls) -> Iterator[StandInUpstreams]:
        """New stand-ins (their default rules, no instances), serving until the end."""
        policy, sprm = PolicyStandIn(), SprmStandIn()
        with policy.serve() as policy_server, sprm.serve() as sprm_server:
            yield cls(policy, sprm, policy_server, sprm_server)

    @property
    def policy_url(self) -> str:
        return self.policy_server.url

    @property
    def sprm_url(self) -> str:
        return self.sprm_server.url

    def env(self) -> dict[str, str]:
        """The service's settings that make the stand-ins its upstreams."""
        return {
            "POLICY_MANAGER_EVALUATION_URL": self.policy_url,
            "SP_RESOURCE_MANAGER_URL": self.sprm_url,
        }

    def reset(self) -> None:
        """No faults, the suite's rules, no instances, nothing recorded."""
        for standin in (self.policy, self.sprm):
            standin.reset_faults()
        self.sprm.speak_newer(False)
        self.policy.rules = suite_rules()
        for instance_id in self.sprm.instances:
            self.remove_instance(instance_id)
        for standin in (self.policy, self.sprm):
            standin.clear()

    def remove_instance(self, instance_id: str) -> None:
        """Delete an instance behind the service's back, through the SPRM's own API."""
        url = f"{self.sprm_url}{INSTANCES_PATH}/{instance_id}"
        assert requests.delete(url, timeout=10).status_code == 204

    def evaluations(self) -> list[Any]:
        """The bodies the Policy Engine was sent, in order."""
        return [r.body for r in self.policy.requests if r.operation == "evaluate"]

    def sprm_calls(self, operation: str | None = None) -> list[RecordedRequest]:
        """The SPRM API requests ("create", "get", "delete"), in order."""
        return [r for r in self.sprm.requests if operation in (None, r.operation)]

    def instance_ids(self) -> set[str]:
        return set(self.sprm.instances)

    def creates(self) -> list[str]:
        """The id of every create the SPRM received, in order."""
        return [r.query.get("id", "") for r in self.sprm_calls("create")]

    def held(self, operation: str) -> int:
        """SPRM calls of `operation` waiting at a hold right now (the admin endpoint)."""
        faults = requests.get(f"{self.sprm_url}/_standin/faults", timeout=5).json()["faults"]
        held: int = faults[operation]["held"]
        return held
