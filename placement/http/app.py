"""The Connexion app and the composition root that builds the service from config.

The spec (`openapi.yaml`, shipped inside the package) is the routing table: each
operationId is bound to the `Handlers` method of the same name in snake case.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import connexion
import yaml
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver
from starlette.exceptions import HTTPException

from placement import logs, metrics
from placement.auditor import Auditor
from placement.config import Auth, Config
from placement.http import problems
from placement.http.auth import OneAuthorization, TokenVerifier, bearer_handler
from placement.http.connexion import middlewares, speed_up, validator_map
from placement.http.handlers import Handlers
from placement.http.middleware import (
    AccessLog,
    BodyLimit,
    MethodCheck,
    MetricsPage,
    RequestContext,
    SpecRoutes,
)
from placement.http.threads import RequestThreads
from placement.reads import ReadFlows
from placement.reconciler import Reconciler
from placement.service import PlacementService
from placement.store import make_store
from placement.upstream.policy import PolicyClient
from placement.upstream.sprm import SprmClient

SPEC = Path(__file__).parent.parent / "openapi.yaml"
# Seconds the process's shutdown may wait, after uvicorn's graceful period, for handler
# threads and the reconciler still waiting on an upstream (with retries, up to minutes).
# Their records hold leases, so the reconciler settles them later: `serve` leaves without
# them, so that a stop ends before the platform's SIGKILL (cli.SHUTDOWN_GRACE + this).
STOP_DRAIN = 3.0
log = logging.getLogger("placement")


def create_app(
    config: Config, *, stop_drain: float | None = None, connexion_adaptations: bool = True
) -> connexion.AsyncApp:
    """Build the whole service: store, upstream clients, flows, HTTP app. With
    `stop_drain` (seconds), the process exits at most that long after shutdown begins,
    even if a request or the reconciler is still waiting on an upstream.
    `connexion_adaptations=False` (tests only) serves with Connexion's own per-request
    machinery instead of the faster one of `http/connexion.py`: it must change nothing
    but speed."""
    store = make_store(config.database)
    policy = PolicyClient(config.policy, config.retry, config.threads, config.forward_auth)
    sprm = SprmClient(config.sprm, config.retry, config.threads, config.forward_auth)
    service = PlacementService(
        store, policy, sprm, config.operation_lease(), config.reconcile.interval
    )
    reads = store.reads()
    read_flows = ReadFlows(reads, page_max_bytes=config.limits.page_max_bytes)
    reconciler = Reconciler(
        store, sprm, config.operation_lease(), retry_seconds=config.reconcile.interval
    )
    auditor = (
        Auditor(store, sprm, config.audit_interval, config.operation_lease())
        if config.audit_interval > 0
        else None
    )
    verifier = TokenVerifier(config.auth) if config.auth.enabled else None

    # The handlers run here; the number of threads caps the requests served at once.
    threads = RequestThreads(config.threads, config.limits.queue_wait)
    handlers = Handlers(service, read_flows, threads)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(threads.executor, store.open)
        await reads.open()
        reconciler.start(config.reconcile.interval)
        if auditor is not None:
            auditor.start()
        try:
            yield
        finally:
            if stop_drain is not None:
                _exit_after(stop_drain)
            await loop.run_in_executor(threads.executor, reconciler.stop)
            if auditor is not None:
                await loop.run_in_executor(threads.executor, auditor.stop)
            threads.shutdown()
            await reads.close()
            if verifier is not None:
                verifier.keys.close()
            store.close()
            policy.close()
            sprm.close()

    # After authentication: no body is read for a request refused anyway.
    body_limit = functools.partial(
        BodyLimit, limit=config.max_body_bytes, timeout=config.limits.body_timeout
    )
    app = connexion.AsyncApp(
        __name__,
        lifespan=lifespan,
        middlewares=middlewares(
            config.auth.enabled, before_validation=[body_limit], adapted=connexion_adaptations
        ),
    )
    if connexion_adaptations:
        speed_up(app)
    app.add_api(
        _spec(config.auth),
        resolver=resolver(handlers),
        security_map=_security(verifier),
        pythonic_params=False,
        validator_map=validator_map(connexion_adaptations),
    )
    # Outermost first (each goes in before Connexion's exception handling).
    outer = MiddlewarePosition.BEFORE_EXCEPTION
    app.add_middleware(MetricsPage, position=outer)
    app.add_middleware(RequestContext, position=outer)
    app.add_middleware(AccessLog, position=outer, pool_gauge=metrics.PoolGauge(store.pool_stats))
    routes = SpecRoutes(SPEC)
    app.add_middleware(MethodCheck, position=MiddlewarePosition.BEFORE_ROUTING, routes=routes)
    app.add_middleware(
        OneAuthorization,
        position=MiddlewarePosition.BEFORE_ROUTING,
        keep_token=not config.auth.enabled,
    )
    handle = problems.handler(routes.allow_header)
    for exc_class in (Exception, HTTPException, ProblemException):
        app.add_error_handler(exc_class, handle)
    return app


def _spec(auth: Auth) -> dict[str, Any]:
    """The spec; without authentication, the bearer requirement is dropped from it."""
    spec: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    if not auth.enabled:
        spec.pop("security", None)
    return spec


def _security(verifier: TokenVerifier | None) -> dict[str, Any] | None:
    if verifier is None:
        return None
    return {"bearer": bearer_handler(verifier)}


def resolver(handlers: Handlers) -> Resolver:
    """Bind AEP-style operationIds (`GetResource`, `:RehydrateResource`) to methods."""

    def resolve(operation_id: str) -> Callable[..., Any]:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id.lstrip(":")).lower()
        method: Callable[..., Any] = getattr(handlers, name)
        return method

    return Resolver(function_resolver=resolve)


def app_from_env() -> connexion.AsyncApp:
    """Factory for uvicorn workers (`serve`): configuration from the environment."""
    config = Config.from_env(os.environ)
    logs.configure(config.log_level, config.log_format)
    return create_app(config, stop_drain=STOP_DRAIN)


def _exit_after(seconds: float) -> None:
    """End this process in `seconds` unless it has ended by then (a daemon timer: it
    never delays a normal exit). Python would otherwise wait for every thread."""

    def leave() -> None:
        log.warning(
            "still waiting on an upstream %gs into the shutdown: leaving now "
            "(unfinished operations hold leases; the reconciler settles them)",
            seconds,
        )
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True
    timer.start()
