"""The SPRM client: create, read and delete service instances, over the generated
`sprm_api` code."""

from __future__ import annotations

import logging

from placement.config import RetryPolicy, Upstream
from placement.model import JSONObject
from placement.upstream.errors import UpstreamError
from placement.upstream.retry import Retrier
from placement.upstream.sprm_api.api.default import create_instance, delete_instance, get_instance
from placement.upstream.sprm_api.client import Client
from placement.upstream.sprm_api.models import ServiceTypeInstance
from placement.upstream.sprm_api.types import UNSET
from placement.upstream.transport import API_PREFIX, call_headers, failure, pooled_session, send

log = logging.getLogger(__name__)

NAME = "sprm"


class SprmClient:
    def __init__(
        self, upstream: Upstream, retry: RetryPolicy, pool_size: int, forward_auth: bool = False
    ) -> None:
        self._forward_auth = forward_auth
        self._client = Client(
            base_url=upstream.url + API_PREFIX,
            timeout=upstream.timeout,
            session=pooled_session(upstream.url, pool_size),
        )
        self._retry = Retrier(retry)

    def close(self) -> None:
        self._client.close()

    def create_instance(self, instance_id: str, provider: str, spec: JSONObject) -> None:
        """Provision `spec` on `provider` under our resource id (201 is success). A
        retry meeting 409 after a try whose outcome is unknown means that try acted."""
        body = ServiceTypeInstance.from_dict({"provider_name": provider, "spec": spec})
        may_have_acted = False

        def attempt() -> None:
            nonlocal may_have_acted
            try:
                answer = send(
                    NAME,
                    "create",
                    lambda: create_instance.sync_detailed(
                        client=self._call_client(), body=body, id=instance_id
                    ),
                )
                if answer.status_code != 201 or not isinstance(answer.parsed, ServiceTypeInstance):
                    raise failure(NAME, "create", answer)
            except UpstreamError as exc:
                if exc.status == 409 and may_have_acted:
                    log.info("retried create of %s met 409: the earlier try acted", instance_id)
                    return
                may_have_acted = may_have_acted or exc.outcome_unknown
                raise

        self._retry(attempt)

    def get_instance(self, instance_id: str) -> JSONObject | None:
        """The instance as the SPRM knows it, or None if it does not exist."""

        def attempt() -> JSONObject | None:
            answer = send(
                NAME,
                "get",
                lambda: get_instance.sync_detailed(instance_id, client=self._call_client()),
            )
            if answer.status_code == 404:
                return None
            if answer.status_code != 200 or not isinstance(answer.parsed, ServiceTypeInstance):
                raise failure(NAME, "get", answer)
            return answer.parsed.to_dict()

        return self._retry(attempt)

    def delete_instance(self, instance_id: str, deferred: bool = False) -> bool:
        """Delete the instance: True on 204, False when the SPRM has none by this id (404:
        already gone)."""

        def attempt() -> bool:
            answer = send(
                NAME,
                "delete",
                lambda: delete_instance.sync_detailed(
                    instance_id, client=self._call_client(), deferred=True if deferred else UNSET
                ),
            )
            if answer.status_code in (204, 404):
                return answer.status_code == 204
            raise failure(NAME, "delete", answer)

        return self._retry(attempt)

    def _call_client(self) -> Client:
        return self._client.with_headers(call_headers(self._forward_auth))
