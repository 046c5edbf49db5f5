"""The service's app in this process, served by uvicorn in a thread on a real loopback
socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from placement_dev.standins import BackgroundServer

from placement.config import Config, Upstream
from placement.http.app import create_app
from tests.harness.mocked import POLICY_URL, SPRM_URL


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run the ASGI `app` on a free loopback port; yield its base URL."""
    with BackgroundServer(app) as server:
        yield server.url


@contextmanager
def serve_config(
    config: Config,
    policy_url: str = POLICY_URL,
    sprm_url: str = SPRM_URL,
    timeout: float = 5.0,
    **changes: Any,
) -> Iterator[str]:
    """Serve the service's app made from `config` with `changes`, its upstreams at
    `policy_url` and `sprm_url` (by default, where `MockedUpstreams` answers)."""
    config = replace(
        config,
        policy=Upstream(policy_url, timeout),
        sprm=Upstream(sprm_url, timeout),
        **changes,
    )
    with serve(create_app(config)) as url:
        yield url
