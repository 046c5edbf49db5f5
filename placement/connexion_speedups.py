"""Connexion 3 rebuilds, on every request, a handler's whole decorator chain (signature
inspection, URI parser, parameter and response wrappers) and the request validators
of the operation (URI parser, parameter validator, body validator); here each is built
once per operation (per content type, for body validators). What they do is
Connexion's own: routing, validation, parameter passing. Tied to Connexion 3's
AsyncApp internals (pinned below 4 in pyproject.toml); the API tests and the fuzz run
cover every operation through it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import connexion
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.utils import is_nullable
from starlette.types import Receive, Scope, Send


class _DecorateOnce(StarletteDecorator):  # type: ignore[misc]
    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        decorated = self.decorate(function)
        parsers: list[Any] = []

        async def handle() -> Any:
            if not parsers:  # the operation is known (from the request context) only now
                parsers.append(self.uri_parser)
            request = self.framework.get_request(
                uri_parser=parsers[0], scope=scope, receive=receive
            )
            return await decorated(request)

        return handle


class _Operation(AsyncOperation):  # type: ignore[misc]
    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        return _DecorateOnce(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(
            self._fn
        )


class _Api(AsyncApi):  # type: ignore[misc]
    def make_operation(self, operation: Any) -> _Operation:
        made: _Operation = _Operation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        return made


class _Validation(RequestValidationOperation):  # type: ignore[misc]
    """Connexion's request validation with its validators kept between requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parameters: Any = None
        self._bodies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator().validate(scope)
        if self._operation.consumes and not _has_content_type(scope):
            # Connexion would guess JSON here, then hand the handler the raw bytes.
            raise UnsupportedMediaTypeProblem(
                detail=f"Content-Type is missing; expected {', '.join(self._operation.consumes)}"
            )
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        body = self._body_validator(mime_type, encoding)
        if body is not None:
            receive, scope = await body.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)

    def _parameter_validator(self) -> Any:
        if self._parameters is None:
            operation = self._operation
            self._parameters = self._validator_map["parameter"](
                operation.parameters,
                uri_parser=self._uri_parser(),
                strict_validation=self.strict_validation,
                security_query_params=self.security_query_params,
            )
        return self._parameters

    def _body_validator(self, mime_type: str, encoding: str) -> Any:
        key = (mime_type, encoding)
        if key not in self._bodies:
            self._bodies[key] = self._new_body_validator(mime_type, encoding)
        return self._bodies[key]

    def _new_body_validator(self, mime_type: str, encoding: str) -> Any:
        operation = self._operation
        schema = operation.body_schema(mime_type)
        if not schema:
            return None
        try:
            validator_class = self._validator_map["body"][mime_type]
        except KeyError:
            return None
        return validator_class(
            schema=schema,
            required=operation.request_body.get("required", False),
            nullable=is_nullable(operation.body_definition(mime_type)),
            encoding=encoding,
            strict_validation=self.strict_validation,
            uri_parser=self._uri_parser(),
        )

    def _uri_parser(self) -> Any:
        operation = self._operation
        return operation.uri_parser_class(operation.parameters, operation.body_definition())


def _has_content_type(scope: Scope) -> bool:
    return any(name == b"content-type" and value.strip() for name, value in scope["headers"])


class _ValidationApi(RequestValidationAPI):  # type: ignore[misc]
    def make_operation(self, operation: Any) -> _Validation:
        return _Validation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class _ValidationMiddleware(RequestValidationMiddleware):  # type: ignore[misc]
    api_cls = _ValidationApi


def middlewares(security: bool, before_validation: Sequence[Any] = ()) -> list[Any]:
    """Connexion's middleware stack with the faster request validation and without the
    layers that would only pass requests through: response validation (off), security
    (when authentication is off); `before_validation` go right before the validation
    (MiddlewarePosition.BEFORE_VALIDATION names Connexion's own, replaced here). A new
    list for each app (Connexion inserts added middlewares into it)."""
    unused = {ResponseValidationMiddleware} | (set() if security else {SecurityMiddleware})
    stack: list[Any] = []
    for m in ConnexionMiddleware.default_middlewares:
        if m is RequestValidationMiddleware:
            stack += [*before_validation, _ValidationMiddleware]
        elif m not in unused:
            stack.append(m)
    return stack


def speed_up(app: connexion.AsyncApp) -> None:
    """Call before `add_api`; create the app with `middlewares=middlewares()`."""
    app._middleware_app.api_cls = _Api
