"""A local stand-in for the DCM Policy Engine, for development, demos and tests; not a
replacement for the real one. It serves `api/upstream/policy-engine.yaml`:

    POST /api/v1alpha1/policies:evaluateRequest  {"service_instance": {"spec": {...}}}
      200 {"status": "APPROVED" | "MODIFIED", "selected_provider": "...",
           "evaluated_service_instance": {"spec": {...}}}
      400 malformed body; 406 a rule rejected it; 409 a rule reports a policy conflict
      (errors are problem details {type, title, status, detail} served as
      application/json, as that spec declares)

What it decides comes from a rules file (see `rules.py`; default: `default-rules.yaml`).
Faults apply to the operation "evaluate". Besides the shared admin endpoints (`base.py`):
    PUT /_standin/rules   a rules document (YAML or JSON) replaces the rules; 400 if invalid
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from placement_dev.standins.base import ADMIN, StandIn
from placement_dev.standins.problems import API_PREFIX, Problem, bad_request, json_object
from placement_dev.standins.rules import (
    Refusal,
    Rules,
    RulesError,
    evaluate,
    load_rules,
    parse_rules,
)

EVALUATE_PATH = f"{API_PREFIX}/policies:evaluateRequest"


class PolicyStandIn(StandIn):
    """Evaluates specs against `rules`; assign `.rules` to change them at any time."""

    name: ClassVar[str] = "policy"
    operations: ClassVar[tuple[str, ...]] = ("evaluate",)
    # policy-engine.yaml declares its problem bodies as application/json.
    error_media_type: ClassVar[str] = "application/json"

    def __init__(self, rules: Rules | None = None, *, max_recorded: int | None = 10_000) -> None:
        self.rules = load_rules() if rules is None else rules
        super().__init__(max_recorded=max_recorded)

    def _api_routes(self) -> list[BaseRoute]:
        return [Route(EVALUATE_PATH, self._evaluate, methods=["POST"])]

    def _extra_admin_routes(self) -> list[BaseRoute]:
        return [Route(f"{ADMIN}/rules", self._put_rules, methods=["PUT"])]

    async def _evaluate(self, request: Request) -> Response:
        return await self._call(request, "evaluate", self._verdict)

    def _verdict(self, request: Request, body: Any) -> Response:
        instance = json_object(body).get("service_instance")
        spec = json_object(instance, "service_instance").get("spec")
        outcome = evaluate(self.rules, json_object(spec, "service_instance.spec"))
        if isinstance(outcome, Refusal):
            raise _refusal(outcome)
        return JSONResponse(
            {
                "status": "MODIFIED" if outcome.modified else "APPROVED",
                "selected_provider": outcome.provider,
                "evaluated_service_instance": {"spec": outcome.spec},
            }
        )

    async def _put_rules(self, request: Request) -> Response:
        try:
            document = yaml.safe_load(await request.body())
            self.rules = parse_rules(document, "rules")
        except yaml.YAMLError as exc:
            raise bad_request(f"rules: not valid YAML or JSON: {exc}".replace("\n", " ")) from None
        except RulesError as exc:
            raise bad_request(str(exc)) from None
        return Response(status_code=204)


def _refusal(refusal: Refusal) -> Problem:
    if refusal.kind == "reject":
        return Problem(406, "REJECTED", refusal.reason, "Policy rejected")
    return Problem(409, "POLICY_CONFLICT", refusal.reason, "Policy conflict")
