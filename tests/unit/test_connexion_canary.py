"""A canary for the Connexion internals the service relies on (`placement/http/connexion.py`,
`app.py`, `auth.py`): Connexion is pinned to 3.3 (pyproject.toml), and this fails, naming
what changed, when a release moves one of them, so that an adaptation is looked at again
before it silently stops applying.

Three kinds of reliance: names (attributes and classes used or overridden), signatures
(parameters called or overridden), and behaviour imitated (the source of the Connexion
functions an adaptation replaces: a changed digest means re-reading the adaptation
against the new code, then updating the digest here)."""

from __future__ import annotations

import hashlib
import importlib
import inspect
from importlib.metadata import version
from typing import Any

import pytest
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.context import ContextMiddleware
from connexion.middleware.exceptions import ExceptionMiddleware
from connexion.middleware.lifespan import LifespanMiddleware
from connexion.middleware.request_validation import RequestValidationMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware

PINNED_MINOR = "3.3."


def _resolve(dotted: str) -> Any:
    """`module:Class.attribute` -> the object (a property's getter for a property)."""
    module_name, _, path = dotted.partition(":")
    found: Any = importlib.import_module(module_name)
    for name in path.split(".") if path else []:
        owner = found
        found = (
            inspect.getattr_static(owner, name) if inspect.isclass(owner) else getattr(owner, name)
        )
        if isinstance(found, property):
            found = found.fget
        elif isinstance(found, staticmethod | classmethod):
            found = found.__func__
    return found


# Called or overridden with these parameters (in this order).
SIGNATURES = {
    "connexion.apps.asynchronous:AsyncOperation.from_operation": [
        "cls",
        "operation",
        "pythonic_params",
        "jsonifier",
    ],
    "connexion.apps.asynchronous:AsyncApi.make_operation": ["self", "operation"],
    "connexion.decorators:StarletteDecorator.__init__": [
        "self",
        "pythonic_params",
        "uri_parser_class",
        "jsonifier",
    ],
    "connexion.decorators:StarletteDecorator.decorate": ["self", "function"],
    "connexion.decorators:StarletteDecorator.uri_parser": ["self"],
    "connexion.frameworks.starlette:Starlette.get_request": [
        "scope",
        "receive",
        "uri_parser",
        "kwargs",
    ],
    "connexion.middleware.request_validation:RequestValidationOperation.__init__": [
        "self",
        "next_app",
        "operation",
        "strict_validation",
        "validator_map",
    ],
    "connexion.middleware.request_validation:RequestValidationOperation.__call__": [
        "self",
        "scope",
        "receive",
        "send",
    ],
    "connexion.middleware.request_validation:RequestValidationOperation.extract_content_type": [
        "self",
        "headers",
    ],
    "connexion.middleware.request_validation:RequestValidationOperation.validate_mime_type": [
        "self",
        "mime_type",
    ],
    "connexion.middleware.request_validation:RequestValidationAPI.make_operation": [
        "self",
        "operation",
    ],
    "connexion.validators.parameter:ParameterValidator.__init__": [
        "self",
        "parameters",
        "uri_parser",
        "strict_validation",
        "security_query_params",
    ],
    "connexion.validators.parameter:ParameterValidator.validate_parameter": [
        "parameter_type",
        "value",
        "param",
        "param_name",
    ],
    "connexion.validators.json:JSONRequestBodyValidator.__init__": [
        "self",
        "schema",
        "required",
        "nullable",
        "encoding",
        "strict_validation",
        "kwargs",
    ],
    "connexion.validators.json:JSONRequestBodyValidator._parse": ["self", "stream", "scope"],
    "connexion.security:BearerSecurityHandler._resolve_func": ["self", "security_scheme"],
    "connexion.utils:is_nullable": ["param_def"],
    "connexion.utils:inspect_function_arguments": ["function"],
    "connexion.decorators.parameter:_get_path_arguments": ["path_params", "operation", "sanitize"],
    "connexion.decorators.parameter:_get_query_arguments": [
        "query_params",
        "operation",
        "arguments",
        "has_kwargs",
        "sanitize",
    ],
    "connexion.decorators.parameter:unwrap_decorators": ["function"],
    "connexion.decorators.parameter:BaseParameterDecorator.__init__": [
        "self",
        "framework",
        "pythonic_params",
    ],
    "connexion.operations:OpenAPIOperation.body_name": ["self", "_content_type"],
    "connexion.middleware.swagger_ui:SwaggerUIMiddleware.add_api": [
        "self",
        "specification",
        "base_path",
        "arguments",
        "kwargs",
    ],
    "connexion.lifecycle:ConnexionResponse.__init__": [
        "self",
        "status_code",
        "mimetype",
        "content_type",
        "body",
        "headers",
        "is_streamed",
    ],
}

# Connexion code an adaptation re-implements, by the sha256 of its source (first 12 hex).
IMITATED = {
    # _Validation.__call__ (validators built once per operation)
    "connexion.middleware.request_validation:RequestValidationOperation.__call__": "af4727162119",
    # _DecorateOnce.__call__ (the decorator chain built once per operation)
    "connexion.decorators.main:ASGIDecorator.__call__": "7397ac94437e",
    # _Operation.fn
    "connexion.apps.asynchronous:AsyncOperation.fn": "9cad70e32840",
    # NamedParameterValidator.validate_parameter
    "connexion.validators.parameter:ParameterValidator.validate_parameter": "2d9293659a1c",
    # _Parameters (no body, no form, no files for an operation without a request body)
    "connexion.decorators.parameter:AsyncParameterDecorator.__call__": "c3223e31eb92",
    "connexion.decorators.parameter:prep_kwargs": "46eb57dd9685",
    "connexion.decorators.parameter:get_arguments": "b2912a96f010",
    "connexion.decorators.parameter:BaseParameterDecorator._maybe_get_body": "181830672481",
    # _Validation: no Content-Type parsing for an operation without a request body
    "connexion.middleware.request_validation:RequestValidationOperation.validate_mime_type": (
        "cdb95c7df215"
    ),
    "connexion.operations:OpenAPIOperation.consumes": "715cbbe402f7",
    "connexion.operations:OpenAPIOperation.body_schema": "89f917e679d6",
    # NamedParameterValidator's and _Parameters' path-string operations (`path_string_checks`):
    # a declared string path parameter is found as Starlette holds it and passed unchanged
    # (coerce_type: a string's "type" is no cast), query parameters only when declared.
    "connexion.validators.parameter:ParameterValidator.validate_request": "e3d4a4e16aae",
    "connexion.validators.parameter:ParameterValidator.validate_path_parameter": "5f0668de581b",
    "connexion.uri_parsing:AbstractURIParser.resolve_params": "cd5c04e13032",
    "connexion.utils:coerce_type": "802d7bd3ca28",
    "connexion.lifecycle:ConnexionRequest.path_params": "546382a52e95",
    "connexion.decorators.parameter:_get_path_arguments": "dce2f42b8282",
    "connexion.decorators.parameter:_get_val_from_param": "23ae7326c64a",
    "connexion.decorators.parameter:_get_query_arguments": "77f3e0a63d78",
    "connexion.decorators.parameter:_query_args_helper": "272f1cd04f9d",
    # _DecorateOnce: the request built on the scope and channel the context proxies name
    "connexion.middleware.context:ContextOperation.__call__": "3d58a914f557",
    # _SwaggerUIOnItsPaths
    "connexion.middleware.swagger_ui:SwaggerUIMiddleware.__call__": "63d1a07033fd",
    "connexion.middleware.swagger_ui:SwaggerUIAPI.__init__": "7a6906ffd8a0",
    # JsonBodyValidator._validator and _parse
    "connexion.validators.json:JSONRequestBodyValidator._validator": "3b8e1028fc2d",
    "connexion.validators.json:JSONRequestBodyValidator._parse": "653b0d4025a2",
}

# Attributes read or set on Connexion's objects (beyond the methods above).
NAMES = [
    "connexion.decorators.parameter:CONTEXT_NAME",
    "connexion.context:operation",
    "connexion.context:context",
    "connexion.operations:OpenAPIOperation.is_request_body_defined",
    "connexion.operations:OpenAPIOperation.consumes",
    "connexion.decorators.main:BaseDecorator._parameter_decorator_cls",
    "connexion:AsyncApp.add_api",
    "connexion:AsyncApp.add_middleware",
    "connexion:AsyncApp.add_error_handler",
    "connexion.apps.asynchronous:AsyncASGIApp.api_cls",
    "connexion.middleware.request_validation:RequestValidationMiddleware.api_cls",
    "connexion.middleware.request_validation:RequestValidationOperation.security_query_params",
    "connexion.validators:VALIDATOR_MAP",
    "connexion.datastructures:MediaTypeDict",
    "connexion.json_schema:Draft4RequestValidator",
    "connexion.context:scope",
    "connexion.context:receive",
    "connexion.context:scope._get_current_object",
    "connexion.context:receive._get_current_object",
    "connexion.context:context._get_current_object",
    "connexion.operations:AbstractOperation.parameters",
    "connexion.exceptions:BadRequestProblem",
    "connexion.exceptions:UnsupportedMediaTypeProblem",
    "connexion.exceptions:ProblemException",
    "connexion.resolver:Resolver",
]


def _digest(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:12]


def test_connexion_is_the_pinned_minor() -> None:
    assert version("connexion").startswith(PINNED_MINOR), (
        f"Connexion {version('connexion')}: the adaptations were written for {PINNED_MINOR}x;"
        " re-read placement/http/connexion.py against it, then move the pin and this canary"
    )


@pytest.mark.parametrize("dotted", sorted(SIGNATURES))
def test_signatures_the_adaptations_use(dotted: str) -> None:
    found = list(inspect.signature(_resolve(dotted)).parameters)
    assert found == SIGNATURES[dotted], f"{dotted} now takes {found}"


@pytest.mark.parametrize("dotted", sorted(IMITATED))
def test_code_the_adaptations_imitate_is_unchanged(dotted: str) -> None:
    assert _digest(_resolve(dotted)) == IMITATED[dotted], (
        f"{dotted} changed: re-read its adaptation in placement/http/connexion.py"
        " against the new code, then update the digest here"
    )


@pytest.mark.parametrize("dotted", NAMES)
def test_names_the_adaptations_use(dotted: str) -> None:
    assert _resolve(dotted) is not None


def test_the_middleware_stack_the_adaptations_edit() -> None:
    """`connexion.middlewares` replaces the request validation and leaves out response
    validation and security by identity; the positions name where ours go."""
    assert ConnexionMiddleware.default_middlewares == [
        ServerErrorMiddleware,
        ExceptionMiddleware,
        SwaggerUIMiddleware,
        RoutingMiddleware,
        SecurityMiddleware,
        RequestValidationMiddleware,
        ResponseValidationMiddleware,
        LifespanMiddleware,
        ContextMiddleware,
    ]
    assert {p.name for p in MiddlewarePosition} >= {"BEFORE_EXCEPTION", "BEFORE_ROUTING"}
