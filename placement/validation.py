"""Connexion's request validation, adapted: errors name the parameter, JSON bodies are
refused when deeper than MAX_JSON_DEPTH, not UTF-8, holding NaN/Infinity (not JSON) or
numbers beyond a float's range (1e999), and any string (parameter, body key or value)
holding NUL, which PostgreSQL cannot store: refused here, the same on both databases.
Schema validators are built once per schema instead of on every request (Connexion
makes new ones per request, which costs more than the validation itself)."""

from __future__ import annotations

import json
import math
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_nullable
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator, ParameterValidator
from jsonschema import Draft4Validator, ValidationError
from starlette.types import Scope

MAX_JSON_DEPTH = 64

# Validators by the identity of their schema (the spec's dicts live as long as the app).
_validators: dict[int, tuple[Any, Any]] = {}


def _cached(schema: dict[str, Any], build: Any) -> Any:
    entry = _validators.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, build(schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _validators[id(schema)] = entry
    return entry[1]


class NamedParameterValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter validation; errors name the parameter."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict[str, Any], param_name: str | None = None
    ) -> str | None:
        if is_nullable(param) and value is None:
            return None
        if value is None:
            if param.get("required"):
                return f"{parameter_type} parameter {param['name']} is required"
            return None
        if isinstance(value, str) and "\x00" in value:
            return f"{parameter_type} parameter {param['name']} must not contain NUL characters"
        try:
            _cached(param.get("schema", param), Draft4Validator).validate(value)
        except ValidationError as exc:
            return f"{parameter_type} parameter {param['name']}: {exc.message}"
        return None


class JsonBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body validation with stricter parsing (see the module doc)."""

    @property
    def _validator(self) -> Any:
        return _cached(self._schema, Draft4RequestValidator)

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
        if "\\u0000" in text:  # the only way JSON text can hold a NUL
            field = nul_field(body)
            if field is not None:
                raise BadRequestProblem(detail=f"{field} must not contain NUL characters")
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


def nul_field(document: Any) -> str | None:
    """Where the first string holding NUL is in a parsed JSON document (a key or a
    value), as a dotted path (`spec.vm.name`, `spec.disks[1]`); None if nowhere."""
    pending: list[tuple[Any, str]] = [(document, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str) and "\x00" in value:
            return path or "the request body"
        if isinstance(value, dict):
            for key, child in value.items():
                if "\x00" in key:
                    return f"a key of {path}" if path else "a key of the request body"
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


VALIDATORS = {
    "parameter": NamedParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": JsonBodyValidator}),
}
