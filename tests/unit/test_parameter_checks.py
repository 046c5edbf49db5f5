"""The compiled string checks that decide path parameters without Connexion's parsing
(`placement/http/connexion.py`: `string_check`, `path_string_checks`) decide exactly as
the schema validation they stand in for: same verdict for any value and any schema they
accept, and no compiled check for a schema they do not know whole."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import ValidationError

from placement.http.app import SPEC
from placement.http.connexion import (
    ParameterSchemaValidator,
    path_string_checks,
    string_check,
)

RESOURCE_ID = yaml.safe_load(SPEC.read_text())["components"]["schemas"]["ResourceId"]

PATTERNS = [
    RESOURCE_ID["pattern"],
    "^[a-z]+$",
    "[0-9]",
    "^a|b$",
    r"^\$[a-z]*$",
    "^[$a]+$",
    "x$",
]


def _schema_says(schema: dict[str, Any], value: str) -> bool:
    try:
        ParameterSchemaValidator(schema).validate(value)
    except ValidationError:
        return False
    return True


# Values near what the patterns accept: ids, their edges, newlines, dollars, non-ASCII.
values = st.one_of(
    st.text(),
    st.text(alphabet="abz09-$\n\r ._é", max_size=70),
    st.from_regex(RESOURCE_ID["pattern"], fullmatch=True).map(lambda v: v + "\n"),
)

schemas = st.fixed_dictionaries(
    {"type": st.just("string")},
    optional={
        "pattern": st.sampled_from(PATTERNS),
        "minLength": st.integers(0, 5),
        "maxLength": st.integers(0, 70),
        "enum": st.lists(st.text(alphabet="abz09-\n", max_size=4), max_size=3),
        "description": st.text(max_size=5),
        "example": st.text(max_size=5),
    },
)


@given(schema=schemas, value=values)
def test_a_compiled_check_decides_as_the_schema_does(schema: dict[str, Any], value: str) -> None:
    check = string_check(schema)
    assert check is not None
    assert check(value) is _schema_says(schema, value)


@given(value=values)
def test_the_resource_id_check_decides_as_the_spec_does(value: str) -> None:
    check = string_check(RESOURCE_ID)
    assert check is not None
    assert check(value) is _schema_says(RESOURCE_ID, value)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer"},
        {"type": "string", "format": "date"},
        {"type": "string", "nullable": True},
        {"type": "string", "const": "a"},
        {"pattern": "^a$"},
        {"type": ["string", "null"]},
    ],
)
def test_no_compiled_check_for_what_it_does_not_know(schema: dict[str, Any]) -> None:
    assert string_check(schema) is None


def test_only_operations_with_path_strings_alone_get_checks() -> None:
    path = {"name": "resource-id", "in": "path", "required": True, "schema": RESOURCE_ID}
    query = {"name": "provider", "in": "query", "schema": {"type": "string"}}
    header = {"name": "x-thing", "in": "header", "schema": {"type": "string"}}
    checks = path_string_checks([path])
    assert checks is not None
    assert list(checks) == ["resource_id"]  # as Starlette names it
    assert path_string_checks([]) == {}
    assert path_string_checks([path, query]) is None
    assert path_string_checks([header]) is None
    assert path_string_checks([{**path, "schema": {"type": "integer"}}]) is None
    assert path_string_checks([{**path, "style": "label"}]) is None
