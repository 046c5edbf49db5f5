"""The service's app in this process, served by uvicorn in a thread on a real loopback
socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from placement_dev.standins import BackgroundServer

from placement.bootstrap import create_app
from placement.config import Config, Upstream
from tests.harness.mocked import POLICY_URL, SPRM_URL

# Set to 1 (`tox -e stock-connexion`), the tests run the app on Connexion's own
# per-request machinery instead of the adaptations of `placement/http/connexion.py`: they
# must pass alike (the adaptations change nothing but speed). Read by the tests only.
STOCK_CONNEXION = "PLACEMENT_TEST_STOCK_CONNEXION"


def service_app(config: Config) -> Any:
    """The service's app as the tests serve it (see STOCK_CONNEXION)."""
    stock = os.environ.get(STOCK_CONNEXION) == "1"
    return create_app(config, connexion_adaptations=not stock)


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
    with serve(service_app(config)) as url:
        yield url
