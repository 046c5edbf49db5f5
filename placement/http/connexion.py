"""Every adaptation of Connexion 3, in one place: what it does is Connexion's own
(routing, request validation from the spec, parameter passing); how is changed.

1. Speed (`adapted=True`, the service's only mode; switched off only by the tests, to
   prove these change nothing but speed): Connexion rebuilds, on every request, a
   handler's whole decorator chain (signature inspection, URI parser, parameter and
   response wrappers) and the request validators of the operation; here each is built
   once per operation (per content type, for body validators; per schema, for schema
   validators), and layers that only pass requests through are left out. An operation
   whose only parameters are path strings (GET and DELETE by id) is validated by checks
   compiled from their schemas and its parameters passed as Starlette found them,
   instead of parsing the request twice more (`path_string_checks`); a value that fails
   a check goes through Connexion's validation, for its error.
2. Behaviour (always on): a body without Content-Type is 415 (Connexion would guess JSON,
   then hand the handler raw bytes); validation errors name the parameter; a spec
   `pattern` matches the whole value, as JSON Schema's ECMA-262 regular expressions do
   (`jsonschema` runs them with Python's `re.search`, whose `$` also matches before a
   final newline: "nl-1\n" would pass an id pattern); JSON bodies are refused when
   deeper than MAX_JSON_DEPTH, not UTF-8, holding NaN/Infinity (not JSON) or numbers
   beyond a float's range (1e999); and any string (parameter, body key or value) holding
   NUL or a lone surrogate (`\ud800`; a query parameter's percent-encoding that is not
   UTF-8), which PostgreSQL cannot store: refused here, the same on both databases.

Tied to Connexion 3.3's AsyncApp internals (pinned to 3.3 in pyproject.toml);
`tests/unit/test_connexion_canary.py` fails when one of the internals used here changes, and
the API tests and the fuzz run cover every operation through them, adapted and not
(`tox -e stock-connexion`)."""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl

import connexion
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.context import context, operation, receive, scope
from connexion.datastructures import MediaTypeDict
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import (
    CONTEXT_NAME,
    AsyncParameterDecorator,
    _get_path_arguments,
    _get_query_arguments,
    unwrap_decorators,
)
from connexion.exceptions import BadRequestProblem, UnsupportedMediaTypeProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.utils import inspect_function_arguments, is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError, validators
from starlette.types import ASGIApp, Receive, Scope, Send


class _Parameters(AsyncParameterDecorator):  # type: ignore[misc]
    """Connexion's parameter passing, with its own functions, the operation's facts looked
    up once. For an operation that takes no request body, a request without a
    Content-Type skips the search for a body, a form and files: Connexion would find
    none there, and pass none. Names are sanitised once each (Connexion runs three
    regular expressions per parameter per request)."""

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        stock: Callable[..., Any] = super().__call__(function)
        found = operation._get_current_object()  # decorated during its first request
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))
        sanitize = functools.lru_cache(maxsize=256)(self.sanitize_fn)
        body_name = sanitize(found.body_name(None))
        if found.is_request_body_defined or has_kwargs or body_name in arguments:
            return stock
        if path_string_checks(found.parameters) is not None:
            return _path_strings_only(function, stock, arguments, sanitize)

        @functools.wraps(function)
        async def wrapper(request: Any) -> Any:
            if _has_content_type(request.scope["headers"]):
                return await stock(request)
            kwargs = _get_path_arguments(request.path_params, operation=found, sanitize=sanitize)
            kwargs.update(
                _get_query_arguments(
                    request.query_params,
                    operation=found,
                    arguments=arguments,
                    has_kwargs=has_kwargs,
                    sanitize=sanitize,
                )
            )
            kwargs = {sanitize(k): v for k, v in kwargs.items()}
            return await function(**_with_context(kwargs, arguments))

        return wrapper


def _path_strings_only(
    function: Callable[..., Any],
    stock: Callable[..., Any],
    arguments: list[str],
    sanitize: Callable[[str], str],
) -> Callable[..., Any]:
    """Parameter passing for an operation whose only parameters are path strings
    (`path_string_checks`): Connexion would pass each as it is (a string's "coercion"
    is the identity) and no query parameter (none is declared)."""

    @functools.wraps(function)
    async def wrapper(request: Any) -> Any:
        if _has_content_type(request.scope["headers"]):
            return await stock(request)
        kwargs = {sanitize(k): v for k, v in request.scope.get("path_params", {}).items()}
        return await function(**_with_context(kwargs, arguments))

    return wrapper


def _with_context(kwargs: dict[str, Any], arguments: list[str]) -> dict[str, Any]:
    """`kwargs` and what the handler takes of Connexion's request context, as Connexion
    passes them."""
    for key, value in context._get_current_object().items():
        if key in arguments:
            kwargs[key] = value
    if CONTEXT_NAME in arguments:
        kwargs[CONTEXT_NAME] = context
    return kwargs


class _DecorateOnce(StarletteDecorator):  # type: ignore[misc]
    @property
    def _parameter_decorator_cls(self) -> type[_Parameters]:
        return _Parameters

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        decorated = self.decorate(function)
        parsers: list[Any] = []

        async def handle() -> Any:
            if not parsers:  # the operation is known (from the request context) only now
                parsers.append(self.uri_parser)
            # The request's own scope and channel, not Connexion's context proxies (each
            # use of a proxy looks its value up again).
            request = self.framework.get_request(
                uri_parser=parsers[0],
                scope=scope._get_current_object(),
                receive=receive._get_current_object(),
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


class _CheckedValidation(RequestValidationOperation):  # type: ignore[misc]
    """Connexion's request validation, refusing a body without Content-Type (415)."""

    def extract_content_type(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
        if self._operation.consumes and not _has_content_type(headers):
            # Connexion would guess JSON here, then hand the handler the raw bytes.
            raise UnsupportedMediaTypeProblem(
                detail=f"Content-Type is missing; expected {', '.join(self._operation.consumes)}"
            )
        found: tuple[str, str] = super().extract_content_type(headers)
        return found


class _Validation(_CheckedValidation):
    """The same, with its validators kept between requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parameters: Any = None
        self._bodies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator().validate(scope)
        if not self._operation.consumes:
            # No request body in the spec: Connexion would parse the Content-Type, then
            # find no media type to check it against and no body schema.
            await self.next_app(scope, receive, send)
            return
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


def _has_content_type(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-type" and value.strip() for name, value in headers)


class _SwaggerUIOnItsPaths(SwaggerUIMiddleware):  # type: ignore[misc]
    """Connexion's Swagger UI middleware, asked only about the paths its router can
    match (the spec as JSON and YAML, the UI): every other request skips its router (a
    copy of the scope and a match of the API's mount each time), which would pass it on
    unchanged anyway."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._prefixes: tuple[str, ...] = ()

    def add_api(self, *args: Any, **kwargs: Any) -> None:
        super().add_api(*args, **kwargs)
        # Each route matches only paths that start with its own (Route: the whole path,
        # Mount: the path and "/..."); the routes are the mount's, under its path.
        self._prefixes = tuple(
            mount.path + route.path
            for mount in self.router.routes
            for route in getattr(mount, "routes", ())
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self._prefixes):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _CheckedValidationApi(RequestValidationAPI):  # type: ignore[misc]
    operation_cls: type[_CheckedValidation] = _CheckedValidation

    def make_operation(self, operation: Any) -> _CheckedValidation:
        return self.operation_cls(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class _ValidationApi(_CheckedValidationApi):
    operation_cls = _Validation


class _CheckedValidationMiddleware(RequestValidationMiddleware):  # type: ignore[misc]
    api_cls = _CheckedValidationApi


class _ValidationMiddleware(RequestValidationMiddleware):  # type: ignore[misc]
    api_cls = _ValidationApi


def middlewares(
    security: bool, before_validation: Sequence[Any] = (), adapted: bool = True
) -> list[Any]:
    """Connexion's middleware stack; `before_validation` go right before the request
    validation (MiddlewarePosition.BEFORE_VALIDATION names Connexion's own, replaced
    here). Adapted: the faster request validation, the Swagger UI's router asked only
    about its own paths, and without the layers that would only pass requests through:
    response validation (off), security (when authentication is off). A new list for
    each app (Connexion inserts added middlewares into it)."""
    unused = {ResponseValidationMiddleware} | (set() if security else {SecurityMiddleware})
    validation = _ValidationMiddleware if adapted else _CheckedValidationMiddleware
    stack: list[Any] = []
    for m in ConnexionMiddleware.default_middlewares:
        if m is RequestValidationMiddleware:
            stack += [*before_validation, validation]
        elif adapted and m is SwaggerUIMiddleware:
            stack.append(_SwaggerUIOnItsPaths)
        elif not adapted or m not in unused:
            stack.append(m)
    return stack


def speed_up(app: connexion.AsyncApp) -> None:
    """Call before `add_api`; create the app with `middlewares=middlewares()` and
    `validator_map=validator_map()`."""
    app._middleware_app.api_cls = _Api


MAX_JSON_DEPTH = 64

# Validators by the identity of their schema (the spec's dicts live as long as the app).
_validators: dict[int, tuple[Any, Any]] = {}


def _cached(schema: dict[str, Any], build: Any) -> Any:
    entry = _validators.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, _fresh(schema, build))
        _validators[id(schema)] = entry
    return entry[1]


def _fresh(schema: dict[str, Any], build: Any) -> Any:
    """A new validator, as Connexion makes one for each request."""
    return build(copy.deepcopy(schema), format_checker=Draft4Validator.FORMAT_CHECKER)


@functools.lru_cache(maxsize=64)
def whole_value_pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` as ECMA-262 reads it: `$` (outside a character class, unescaped) matches
    only at the very end of the value, as Python's `\\Z` does."""
    translated, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        translated.append(char)
    return re.compile("".join(translated))


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[Any]:
    """jsonschema's `pattern` keyword, matching the whole value (`whole_value_pattern`)."""
    if validator.is_type(instance, "string") and not whole_value_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


ParameterSchemaValidator = validators.extend(Draft4Validator, {"pattern": _pattern})
BodySchemaValidator = validators.extend(Draft4RequestValidator, {"pattern": _pattern})

# Characters PostgreSQL cannot store in text or jsonb (SQLite would): NUL, lone surrogates.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable(text: str) -> str | None:
    """What `text` holds that cannot be stored, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "NUL characters" if found.group() == "\x00" else "lone surrogates (\\ud800-\\udfff)"


def _query_text(query_string: bytes) -> None:
    """Refuse a query parameter whose percent-encoding is not UTF-8 text (an encoded
    surrogate, `%ED%A0%80`, or any invalid sequence): Connexion would read it with
    replacement characters, silently another value."""
    if b"%" not in query_string:
        return
    query = query_string.decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
        if _SURROGATE.search(name + value):
            shown = _SURROGATE.sub("\ufffd", name)
            raise BadRequestProblem(
                detail=f"query parameter {shown} must be UTF-8 text without lone surrogates"
            )


# What a string parameter's schema may hold for `string_check` to decide it alone.
_STRING_KEYWORDS = frozenset(
    {"type", "pattern", "minLength", "maxLength", "enum", "description", "example", "title"}
)
_PATH_PARAMETER_KEYS = frozenset({"name", "in", "required", "description", "schema", "example"})


def string_check(schema: dict[str, Any]) -> Callable[[str], bool] | None:
    """Whether a string passes `schema` as the parameter validation decides it (Draft 4,
    a pattern matching the whole value), compiled once: for a schema holding only a
    string's type, pattern, length bounds and enum; None for any other (jsonschema
    decides those)."""
    if schema.get("type") != "string" or not schema.keys() <= _STRING_KEYWORDS:
        return None
    regex = whole_value_pattern(schema["pattern"]) if "pattern" in schema else None
    shortest, longest = schema.get("minLength", 0), schema.get("maxLength")
    allowed = schema.get("enum")

    def check(value: str) -> bool:
        return (
            shortest <= len(value)
            and (longest is None or len(value) <= longest)
            and (regex is None or regex.search(value) is not None)
            and (allowed is None or value in allowed)
        )

    return check


def path_string_checks(
    parameters: Sequence[dict[str, Any]],
) -> dict[str, Callable[[str], bool]] | None:
    """Each parameter's `string_check` by its name as Starlette's path parameters hold
    it, for an operation whose parameters are all path strings; else None."""
    checks = {}
    for parameter in parameters:
        if parameter.get("in") != "path" or not parameter.keys() <= _PATH_PARAMETER_KEYS:
            return None
        check = string_check(parameter.get("schema", {}))
        if check is None:
            return None
        checks[parameter["name"].replace("-", "_")] = check
    return checks


def _path_strings_pass(checks: dict[str, Callable[[str], bool]], scope: Scope) -> bool:
    found = scope.get("path_params", {})
    for name, check in checks.items():
        value = found.get(name)
        if not isinstance(value, str) or _unstorable(value) is not None or not check(value):
            return False
    return True


class NamedParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter validation; errors name the parameter. An operation whose
    parameters are all path strings is decided by `string_check` when its values pass
    (Connexion's validation would parse the request again to find them): any that does
    not goes through Connexion's validation, for its error."""

    schema_validator = staticmethod(_cached)
    quick = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        declared = [p for found in self.parameters.values() for p in found]
        quick = self.quick and not self.strict_validation
        self._path_checks = path_string_checks(declared) if quick else None

    def validate(self, scope: Scope) -> None:
        _query_text(scope.get("query_string", b""))
        if self._path_checks is not None and _path_strings_pass(self._path_checks, scope):
            return
        super().validate(scope)

    @classmethod
    def validate_parameter(
        cls, parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if is_nullable(param) and value is None:
            return None
        if value is None:
            if param.get("required"):
                return f"{parameter_type} parameter {param['name']} is required"
            return None
        what = _unstorable(value) if isinstance(value, str) else None
        if what is not None:
            return f"{parameter_type} parameter {param['name']} must not contain {what}"
        try:
            schema = param.get("schema", param)
            cls.schema_validator(schema, ParameterSchemaValidator).validate(value)
        except ValidationError as exc:
            return f"{parameter_type} parameter {param['name']}: {exc.message}"
        return None


class JsonBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body validation with stricter parsing (see the module doc)."""

    schema_validator = staticmethod(_cached)

    @property
    def _validator(self) -> Any:
        return self.schema_validator(self._schema, BodySchemaValidator)

    async def _parse(self, stream: Any, scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        try:
            text = raw.decode(self._encoding)
            body = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        except UnicodeDecodeError:
            raise BadRequestProblem(detail="request body is not valid UTF-8") from None
        except RecursionError:
            raise _too_deep() from None
        except _OutOfRange as exc:
            raise BadRequestProblem(detail=str(exc)) from None
        except ValueError as exc:
            raise BadRequestProblem(detail=f"request body is not JSON: {exc}") from None
        if json_depth(body) > MAX_JSON_DEPTH:
            raise _too_deep()
        if "\\u" in text:  # the only way JSON text can hold a NUL or a lone surrogate
            found = unstorable_field(body)
            if found is not None:
                raise BadRequestProblem(detail=f"{found[0]} must not contain {found[1]}")
        return body


class _OutOfRange(ValueError):
    pass


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(f"request body holds a number out of range: {text}")
    return value


def unstorable_field(document: Any) -> tuple[str, str] | None:
    """Where the first string holding NUL or a lone surrogate is in a parsed JSON document
    (a key or a value), as a dotted path (`spec.vm.name`, `spec.disks[1]`), and what it
    holds; None if nowhere."""
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, path = pending.pop()
        what = _unstorable(value) if isinstance(value, str) else None
        if what is not None:
            return path or "the request body", what
        if isinstance(value, dict):
            for key, child in value.items():
                what = _unstorable(key)
                if what is not None:
                    return (f"a key of {path}" if path else "a key of the request body"), what
                pending.append((child, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            pending.extend((child, f"{path}[{n}]") for n, child in enumerate(value))
    return None


def _too_deep() -> BadRequestProblem:
    return BadRequestProblem(detail=f"request body is nested deeper than {MAX_JSON_DEPTH} levels")


def json_depth(document: Any) -> int:
    """Nesting depth of a parsed JSON document, without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
    return deepest


class _FreshParameterValidator(NamedParameterValidator):
    schema_validator = staticmethod(_fresh)
    quick = False


class _FreshJsonBodyValidator(JsonBodyValidator):
    schema_validator = staticmethod(_fresh)


def validator_map(adapted: bool = True) -> dict[str, Any]:
    """Connexion's `validator_map`: ours (see the module doc); adapted, each schema
    validator is built once, else for each request as Connexion does."""
    parameter, body = (
        (NamedParameterValidator, JsonBodyValidator)
        if adapted
        else (_FreshParameterValidator, _FreshJsonBodyValidator)
    )
    return {
        "parameter": parameter,
        "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": body}),
    }
