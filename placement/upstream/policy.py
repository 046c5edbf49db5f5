"""The Policy Engine client: evaluate a spec, over the generated `policy_api` code."""

from __future__ import annotations

from placement.config import RetryPolicy, Upstream
from placement.errors import Kind
from placement.model import Evaluation, JSONObject
from placement.upstream.errors import Translation
from placement.upstream.policy_api.api.evaluation import evaluate_request
from placement.upstream.policy_api.client import Client
from placement.upstream.policy_api.models import EvaluateRequest, EvaluateResponse
from placement.upstream.retry import Retrier
from placement.upstream.transport import call_headers, failure, generated_client, send

# The Policy Engine's refusals a client can act on; any other failure is internal.
ERRORS = Translation(
    "policy",
    "the Policy Engine",
    {400: Kind.VALIDATION, 406: Kind.POLICY_REJECTED, 409: Kind.POLICY_CONFLICT},
)


class PolicyClient:
    def __init__(
        self, upstream: Upstream, retry: RetryPolicy, pool_size: int, forward_auth: bool = False
    ) -> None:
        self._forward_auth = forward_auth
        self._client = generated_client(Client, upstream, pool_size)
        self._retry = Retrier(retry, upstream.timeout)

    def evaluate(self, spec: JSONObject) -> Evaluation:
        return self._retry(lambda _tries: self._evaluate(spec))

    def close(self) -> None:
        self._client.close()

    def _evaluate(self, spec: JSONObject) -> Evaluation:
        body = EvaluateRequest.from_dict({"service_instance": {"spec": spec}})
        client = self._client.with_headers(call_headers(self._forward_auth))
        answer = send(
            ERRORS, "evaluate", lambda: evaluate_request.sync_detailed(client=client, body=body)
        )
        if answer.status_code != 200 or not isinstance(answer.parsed, EvaluateResponse):
            raise failure(ERRORS, "evaluate", answer)
        verdict = answer.parsed
        return Evaluation(
            status=verdict.status.value,
            provider=verdict.selected_provider,
            spec=verdict.evaluated_service_instance.spec.to_dict(),
        )
