"""The Connexion app: the spec as routing table and the middleware pipeline, in order.
The composition root that builds what it serves is `placement/bootstrap.py`.

The spec (`openapi.yaml`, shipped inside the package) is the routing table: each
operationId is bound to the `Handlers` method of the same name in snake case.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import connexion
import yaml
from connexion.exceptions import ProblemException
from connexion.middleware import MiddlewarePosition
from connexion.resolver import Resolver
from starlette.exceptions import HTTPException

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
from placement.telemetry import metrics

SPEC = Path(__file__).parent.parent / "openapi.yaml"


def build_app(
    config: Config,
    handlers: Handlers,
    lifespan: Callable[[Any], AbstractAsyncContextManager[None]],
    *,
    verifier: TokenVerifier | None,
    pool_stats: Callable[[], Any],
    connexion_adaptations: bool = True,
) -> connexion.AsyncApp:
    """The Connexion app over `handlers`, with the middleware pipeline in its order:
    metrics page, request context and access log outermost (every request is counted and
    logged, refusals included); then the method check and the one-Authorization rule
    before routing; then authentication, the body limit (after it: no body is read for a
    request refused anyway) and validation from the spec; the problem handler turns every
    error into problem details."""
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
    app.add_middleware(AccessLog, position=outer, pool_gauge=metrics.PoolGauge(pool_stats))
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
