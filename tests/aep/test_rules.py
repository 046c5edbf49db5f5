"""Each AEP rule in .spectral.yaml catches the one mistake it is about.

Every case takes the real spec, breaks it in one way, lints it and asserts
that exactly the named rule (and no other of our aep-* rules) reports it. The
unbroken spec must produce no aep-* result at all and lint clean at warn. Each
CLEAN case adds what our spec does not use yet (Update, Apply, add/remove and
long-running methods, time and standard-code fields) in its well-formed shape,
which must produce no aep-* result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conftest import Spectral

Spec = dict[str, Any]
Mutation = Callable[[Spec], None]

LIST = ("/resources", "get")
CREATE = ("/resources", "post")
GET = ("/resources/{resource_id}", "get")
DELETE = ("/resources/{resource_id}", "delete")
HEALTH = ("/health", "get")
REHYDRATE_PATH = "/resources/{resource_id}:rehydrate"
REHYDRATE = (REHYDRATE_PATH, "post")
UPDATE = ("/resources/{resource_id}", "patch")
APPLY = ("/resources/{resource_id}", "put")
ADD_TAGS_PATH = "/resources/{resource_id}:add-tags"
ADD_TAGS = (ADD_TAGS_PATH, "post")
OPERATIONS_PATH = "/operations"
OPERATION_PATH = "/operations/{operation_id}"

RESOURCE_REF = {"$ref": "#/components/schemas/Resource"}
OPERATION_REF = {"$ref": "#/components/schemas/Operation"}
MERGE_PATCH = "application/merge-patch+json"


# --- helpers -----------------------------------------------------------------
def schema(spec: Spec, name: str) -> Any:
    return spec["components"]["schemas"][name]


def props(spec: Spec, name: str) -> Any:
    return schema(spec, name)["properties"]


def resource_ext(spec: Spec, name: str = "Resource") -> Any:
    return schema(spec, name)["x-aep-resource"]


def op(spec: Spec, where: tuple[str, str]) -> Any:
    path, method = where
    return spec["paths"][path][method]


def param(spec: Spec, where: tuple[str, str], name: str) -> Any:
    (found,) = [p for p in op(spec, where)["parameters"] if p.get("name") == name]
    return found


def drop_param(spec: Spec, where: tuple[str, str], name: str) -> None:
    operation = op(spec, where)
    operation["parameters"] = [p for p in operation["parameters"] if p.get("name") != name]


def add_param(
    spec: Spec, where: tuple[str, str], name: str, type_: str = "string", **extra: Any
) -> None:
    op(spec, where).setdefault("parameters", []).append(
        {
            "name": name,
            "in": "query",
            "description": f"The {name}.",
            "schema": {"type": type_},
            **extra,
        }
    )


def rename_key(mapping: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    assert old in mapping
    assert new not in mapping
    return {new if key == old else key: value for key, value in mapping.items()}


def rename_path(spec: Spec, old: str, new: str) -> None:
    spec["paths"] = rename_key(spec["paths"], old, new)


def rename_method(spec: Spec, path: str, old: str, new: str) -> None:
    spec["paths"][path] = rename_key(spec["paths"][path], old, new)


def json_body(schema_: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema_}}}


def set_responses(spec: Spec, where: tuple[str, str], responses: dict[str, Any]) -> None:
    op(spec, where)["responses"] = responses


OPERATION_SCHEMA = {
    "type": "object",
    "description": "A long-running operation (AEP-151).",
    "x-aep-resource": {
        "type": "placement.dcm.io/operation",
        "singular": "operation",
        "plural": "operations",
        "patterns": ["operations/{operation_id}"],
    },
    "properties": {
        "path": {"type": "string"},
        "done": {"type": "boolean"},
        "error": {"$ref": "#/components/schemas/Problem"},
        "response": {"type": "object"},
    },
}


# --- one mutation (or a few) per rule ------------------------------------------
def _m(code: str, name: str, mutate: Mutation) -> Any:
    return pytest.param(code, mutate, id=f"{code}[{name}]")


def _sets(target: Callable[[Spec], dict[str, Any]], key: str, value: Any) -> Mutation:
    def mutate(spec: Spec) -> None:
        target(spec)[key] = copy.deepcopy(value)

    return mutate


def _dels(target: Callable[[Spec], dict[str, Any]], key: str) -> Mutation:
    def mutate(spec: Spec) -> None:
        del target(spec)[key]

    return mutate


def _delete_204_has_content(spec: Spec) -> None:
    op(spec, DELETE)["responses"]["204"]["content"] = {"application/json": {"schema": RESOURCE_REF}}


def _delete_answers_200(spec: Spec) -> None:
    responses = op(spec, DELETE)["responses"]
    del responses["204"]
    responses["200"] = {
        "description": "The deleted resource.",
        "content": {"application/json": {"schema": RESOURCE_REF}},
    }


def _create_answers_204(spec: Spec) -> None:
    responses = op(spec, CREATE)["responses"]
    del responses["201"]
    responses["204"] = {"description": "Created."}


def _create_also_202(spec: Spec) -> None:
    op(spec, CREATE)["responses"]["202"] = {
        "description": "Accepted.",
        "content": {"application/json": {"schema": OPERATION_REF}},
    }


def _delete_answers_202(content: dict[str, Any] | None) -> Mutation:
    """Delete becomes long-running: 202 (with ``content``, when given) instead of 204."""

    def mutate(spec: Spec) -> None:
        responses = op(spec, DELETE)["responses"]
        del responses["204"]
        responses["202"] = {"description": "Accepted."}
        if content is not None:
            responses["202"]["content"] = content

    return mutate


def _custom_delete(spec: Spec) -> None:
    purge = copy.deepcopy(op(spec, DELETE))
    purge["operationId"] = ":PurgeResource"
    spec["paths"][REHYDRATE_PATH]["delete"] = purge


def _error_content(name: str, media_types: dict[str, Any]) -> Mutation:
    def mutate(spec: Spec) -> None:
        spec["components"]["responses"][name]["content"] = media_types

    return mutate


PROBLEM_REF = {"schema": {"$ref": "#/components/schemas/Problem"}}


def after(*steps: Mutation) -> Mutation:
    """One mutation made of ``steps`` in order (a well-formed addition, then the break)."""

    def mutate(spec: Spec) -> None:
        for step in steps:
            step(spec)

    return mutate


def _resource_method(operation_id: str, summary: str, body: dict[str, Any] | None) -> Spec:
    """A well-formed method on one resource that answers 200 with the resource."""
    method: Spec = {
        "tags": ["resource"],
        "operationId": operation_id,
        "summary": summary,
        "description": f"{summary}.",
        "parameters": [{"$ref": "#/components/parameters/ResourceIdPath"}],
        "responses": {
            "200": {
                "description": "The resource.",
                "content": {"application/json": {"schema": RESOURCE_REF}},
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "default": {"$ref": "#/components/responses/Unexpected"},
        },
    }
    if body is not None:
        method["requestBody"] = body
    return method


def add_update(spec: Spec) -> None:
    """A well-formed Update: PATCH with a merge-patch body (AEP-134)."""
    body = {"required": True, "content": {MERGE_PATCH: {"schema": RESOURCE_REF}}}
    path, method = UPDATE
    spec["paths"][path][method] = _resource_method("UpdateResource", "Update a resource", body)


def add_apply(spec: Spec) -> None:
    """A well-formed Apply: PUT with the whole resource (AEP-137)."""
    path, method = APPLY
    spec["paths"][path][method] = _resource_method(
        "ApplyResource", "Apply a resource", json_body(RESOURCE_REF)
    )


def add_add_tags(spec: Spec) -> None:
    """A well-formed AEP-144 array-field method: POST ...:add-tags named AddResourceTags."""
    tags = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    }
    path, method = ADD_TAGS
    spec["paths"][path] = {
        method: _resource_method("AddResourceTags", "Add tags to a resource", json_body(tags))
    }


def add_operations(spec: Spec) -> None:
    """The Operation resource and its collection (GET /operations, GET /operations/{id})."""
    spec["components"]["schemas"]["Operation"] = copy.deepcopy(OPERATION_SCHEMA)
    listing = copy.deepcopy(op(spec, LIST))
    listing["operationId"] = "ListOperations"
    listing["parameters"] = [p for p in listing["parameters"] if p["name"] != "provider"]
    listing["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "properties": {
            "operations": {"type": "array", "items": OPERATION_REF},
            "next_page_token": {"type": "string"},
        },
    }
    getting = copy.deepcopy(op(spec, GET))
    getting["operationId"] = "GetOperation"
    getting["parameters"] = [
        {
            "name": "operation_id",
            "in": "path",
            "required": True,
            "description": "Id of the operation.",
            "schema": {"$ref": "#/components/schemas/ResourceId"},
        }
    ]
    getting["responses"]["200"]["content"]["application/json"]["schema"] = OPERATION_REF
    spec["paths"][OPERATIONS_PATH] = {"get": listing}
    spec["paths"][OPERATION_PATH] = {"get": getting}


def _add_fields(schema_name: str, fields: dict[str, Any]) -> Mutation:
    def mutate(spec: Spec) -> None:
        props(spec, schema_name).update(copy.deepcopy(fields))

    return mutate


def _rename_field(schema_name: str, old: str, new: str) -> Mutation:
    def mutate(spec: Spec) -> None:
        schema(spec, schema_name)["properties"] = rename_key(props(spec, schema_name), old, new)

    return mutate


def _path_item_param(path: str, name: str, where: str, **extra: Any) -> Mutation:
    """A parameter declared on the path item (it applies to every operation there)."""

    def mutate(spec: Spec) -> None:
        spec["paths"][path].setdefault("parameters", []).append(
            {
                "name": name,
                "in": where,
                "description": f"The {name}.",
                "schema": {"type": "string"},
                **extra,
            }
        )

    return mutate


LONG_RUNNING_DELETE = _delete_answers_202({"application/json": {"schema": OPERATION_REF}})

CASES = [
    # AEP-4
    _m("aep-4-resource-required-keys", "no plural", lambda s: resource_ext(s).pop("plural")),
    _m(
        "aep-4-resource-required-keys",
        "no patterns",
        lambda s: resource_ext(s, "Health").pop("patterns"),
    ),
    _m("aep-4-resource-known-keys", "extra key", _sets(resource_ext, "style", "declarative")),
    _m(
        "aep-4-resource-known-keys",
        "parents not a list",
        _sets(resource_ext, "parents", "projects"),
    ),
    _m("aep-4-singular-format", "capitalised", _sets(resource_ext, "singular", "Resource")),
    _m("aep-4-singular-format", "snake_case", _sets(resource_ext, "singular", "placed_resource")),
    _m("aep-4-plural-format", "camelCase", _sets(resource_ext, "plural", "placedResources")),
    _m("aep-4-type-format", "no domain", _sets(resource_ext, "type", "resource")),
    _m(
        "aep-4-type-format", "domain without dot", _sets(resource_ext, "type", "placement/resource")
    ),
    _m(
        "aep-4-type-format",
        "capitalised name",
        _sets(resource_ext, "type", "placement.dcm.io/Resource"),
    ),
    _m(
        "aep-4-patterns-format",
        "leading slash",
        _sets(resource_ext, "patterns", ["/resources/{resource_id}"]),
    ),
    _m(
        "aep-4-patterns-format",
        "camelCase variable",
        _sets(resource_ext, "patterns", ["resources/{resourceId}"]),
    ),
    _m("aep-4-patterns-format", "empty", _sets(resource_ext, "patterns", [])),
    # AEP-122
    _m("aep-122-path-field", "no path", lambda s: props(s, "Resource").pop("path")),
    _m(
        "aep-122-path-field",
        "path not a string",
        _sets(lambda s: props(s, "Health"), "path", {"type": "integer"}),
    ),
    _m(
        "aep-122-path-key-format",
        "capitalised segment",
        lambda s: rename_path(s, "/resources", "/Resources"),
    ),
    _m(
        "aep-122-path-key-format",
        "snake_case segment",
        lambda s: rename_path(s, "/health", "/service_health"),
    ),
    _m(
        "aep-122-path-key-format",
        "capitalised verb",
        lambda s: rename_path(s, REHYDRATE_PATH, "/resources/{resource_id}:Rehydrate"),
    ),
    _m(
        "aep-122-path-key-format",
        "trailing slash",
        lambda s: rename_path(s, "/resources", "/resources/"),
    ),
    _m(
        "aep-122-id-type",
        "*_id not a string",
        _sets(lambda s: props(s, "Resource"), "catalog_item_instance_id", {"type": "integer"}),
    ),
    _m(
        "aep-122-id-type",
        "id not a string",
        _sets(lambda s: props(s, "Resource"), "id", {"type": "integer"}),
    ),
    _m(
        "aep-122-path-param-format",
        "no maxLength",
        lambda s: schema(s, "ResourceId").pop("maxLength"),
    ),
    _m("aep-122-path-param-format", "no pattern", lambda s: schema(s, "ResourceId").pop("pattern")),
    _m(
        "aep-122-path-param-format",
        "unanchored pattern",
        _sets(lambda s: schema(s, "ResourceId"), "pattern", "[a-z0-9-]+"),
    ),
    _m(
        "aep-122-path-param-format",
        "maxLength above 63",
        _sets(lambda s: schema(s, "ResourceId"), "maxLength", 255),
    ),
    _m(
        "aep-122-path-param-format",
        "integer",
        _sets(
            lambda s: s["components"]["parameters"]["ResourceIdPath"], "schema", {"type": "integer"}
        ),
    ),
    _m(
        "aep-122-no-path-suffix",
        "*_path property",
        _sets(lambda s: props(s, "Resource"), "provider_path", {"type": "string"}),
    ),
    _m(
        "aep-122-no-self-link",
        "self_link property",
        _sets(lambda s: props(s, "Resource"), "self_link", {"type": "string"}),
    ),
    _m("aep-122-parent-type", "integer parent", lambda s: add_param(s, LIST, "parent", "integer")),
    # AEP-131
    _m(
        "aep-131-operation-id", "Fetch", _sets(lambda s: op(s, GET), "operationId", "FetchResource")
    ),
    _m(
        "aep-131-operation-id",
        "singleton",
        _sets(lambda s: op(s, HEALTH), "operationId", "ReadHealth"),
    ),
    _m(
        "aep-131-no-body",
        "body",
        _sets(lambda s: op(s, GET), "requestBody", json_body(RESOURCE_REF)),
    ),
    _m(
        "aep-131-no-required-query",
        "required view",
        lambda s: add_param(s, GET, "view", required=True),
    ),
    _m(
        "aep-131-response-schema",
        "not a resource",
        lambda s: op(s, GET)["responses"]["200"]["content"]["application/json"].update(
            schema={"type": "object", "properties": {"path": {"type": "string"}}}
        ),
    ),
    _m("aep-131-response-schema", "no 200", lambda s: op(s, GET)["responses"].pop("200")),
    _m("aep-131-known-query-params", "unknown query", lambda s: add_param(s, GET, "expand")),
    # AEP-132
    _m(
        "aep-132-operation-id",
        "Get prefix",
        _sets(lambda s: op(s, LIST), "operationId", "GetResources"),
    ),
    _m(
        "aep-132-no-body",
        "body",
        _sets(lambda s: op(s, LIST), "requestBody", json_body({"type": "object"})),
    ),
    _m(
        "aep-132-no-required-query",
        "required provider",
        lambda s: param(s, LIST, "provider").update(required=True),
    ),
    _m("aep-132-param-types", "integer filter", lambda s: add_param(s, LIST, "filter", "integer")),
    _m(
        "aep-132-param-types",
        "string show_deleted",
        lambda s: add_param(s, LIST, "show_deleted", "string"),
    ),
    _m(
        "aep-132-param-types",
        "order_by in header",
        lambda s: add_param(s, LIST, "order_by", **{"in": "header"}),
    ),
    # AEP-158
    _m("aep-158-max-page-size", "missing", lambda s: drop_param(s, LIST, "max_page_size")),
    _m(
        "aep-158-max-page-size",
        "string",
        _sets(lambda s: param(s, LIST, "max_page_size"), "schema", {"type": "string"}),
    ),
    _m("aep-158-page-token", "missing", lambda s: drop_param(s, LIST, "page_token")),
    _m(
        "aep-158-page-token",
        "integer",
        _sets(lambda s: param(s, LIST, "page_token"), "schema", {"type": "integer"}),
    ),
    _m(
        "aep-158-page-token-optional",
        "required",
        lambda s: param(s, LIST, "page_token").update(required=True),
    ),
    _m("aep-158-skip-parameter", "string", lambda s: add_param(s, LIST, "skip", "string")),
    _m(
        "aep-158-skip-parameter",
        "header",
        lambda s: add_param(s, LIST, "skip", "integer", **{"in": "header"}),
    ),
    _m(
        "aep-158-response-array",
        "no array property",
        _sets(lambda s: props(s, "ResourceList"), "resources", {"type": "object"}),
    ),
    _m(
        "aep-158-response-next-page-token",
        "missing",
        lambda s: props(s, "ResourceList").pop("next_page_token"),
    ),
    _m(
        "aep-158-response-next-page-token",
        "integer",
        _sets(lambda s: props(s, "ResourceList"), "next_page_token", {"type": "integer"}),
    ),
    # AEP-133
    _m("aep-133-id-parameter", "missing", lambda s: drop_param(s, CREATE, "id")),
    _m(
        "aep-133-id-type",
        "integer",
        _sets(lambda s: param(s, CREATE, "id"), "schema", {"type": "integer"}),
    ),
    _m("aep-133-id-type", "header", lambda s: param(s, CREATE, "id").update({"in": "header"})),
    _m(
        "aep-133-operation-id",
        "Add prefix",
        _sets(lambda s: op(s, CREATE), "operationId", "AddResource"),
    ),
    _m(
        "aep-133-request-body",
        "not a resource",
        _sets(lambda s: op(s, CREATE), "requestBody", json_body({"type": "object"})),
    ),
    _m("aep-133-request-body", "missing", lambda s: op(s, CREATE).pop("requestBody")),
    _m(
        "aep-133-response",
        "not a resource",
        lambda s: op(s, CREATE)["responses"]["201"]["content"]["application/json"].update(
            schema={"type": "object"}
        ),
    ),
    _m("aep-133-response", "no 200/201", _create_answers_204),
    _m(
        "aep-133-no-required-query",
        "required id",
        lambda s: param(s, CREATE, "id").update(required=True),
    ),
    _m(
        "aep-133-known-query-params",
        "unknown query",
        lambda s: add_param(s, CREATE, "dry_run", "boolean"),
    ),
    _m(
        "aep-133-request-body-required",
        "optional body",
        lambda s: op(s, CREATE)["requestBody"].update(required=False),
    ),
    # AEP-134
    _m(
        "aep-134-operation-id",
        "Patch prefix",
        after(add_update, _sets(lambda s: op(s, UPDATE), "operationId", "PatchResource")),
    ),
    _m(
        "aep-134-content-type",
        "application/json body",
        after(add_update, _sets(lambda s: op(s, UPDATE), "requestBody", json_body(RESOURCE_REF))),
    ),
    _m(
        "aep-134-request-body",
        "not a resource",
        after(
            add_update,
            lambda s: op(s, UPDATE)["requestBody"]["content"][MERGE_PATCH].update(
                schema={"type": "object"}
            ),
        ),
    ),
    _m(
        "aep-134-request-body",
        "missing",
        after(add_update, lambda s: op(s, UPDATE).pop("requestBody")),
    ),
    _m(
        "aep-134-response-body",
        "not a resource",
        after(
            add_update,
            lambda s: op(s, UPDATE)["responses"]["200"]["content"]["application/json"].update(
                schema={"type": "object"}
            ),
        ),
    ),
    _m(
        "aep-134-response-body",
        "204 instead of 200",
        after(
            add_update,
            lambda s: op(s, UPDATE).update(
                responses=rename_key(op(s, UPDATE)["responses"], "200", "204")
            ),
            lambda s: op(s, UPDATE)["responses"]["204"].pop("content"),
        ),
    ),
    _m(
        "aep-134-required-params",
        "required header",
        after(
            add_update,
            lambda s: add_param(s, UPDATE, "if_match", required=True, **{"in": "header"}),
        ),
    ),
    _m(
        "aep-134-required-params",
        "required path-level header",
        after(add_update, _path_item_param(UPDATE[0], "if_match", "header", required=True)),
    ),
    _m(
        "aep-134-unknown-optional-params",
        "query parameter",
        after(add_update, lambda s: add_param(s, UPDATE, "force", "boolean")),
    ),
    _m(
        "aep-134-unknown-optional-params",
        "path-level query parameter",
        after(add_update, _path_item_param(UPDATE[0], "force", "query")),
    ),
    # AEP-135
    _m(
        "aep-135-operation-id",
        "Remove prefix",
        _sets(lambda s: op(s, DELETE), "operationId", "RemoveResource"),
    ),
    _m(
        "aep-135-no-body",
        "body",
        _sets(lambda s: op(s, DELETE), "requestBody", json_body({"type": "object"})),
    ),
    _m("aep-135-response-code", "200 instead of 204", _delete_answers_200),
    _m("aep-135-204-no-content", "204 with content", _delete_204_has_content),
    # AEP-136
    _m("aep-136-http-method", "PUT", lambda s: rename_method(s, REHYDRATE_PATH, "post", "put")),
    _m("aep-136-http-method", "DELETE", _custom_delete),
    _m(
        "aep-136-get-no-body",
        "GET with body",
        lambda s: rename_method(s, REHYDRATE_PATH, "post", "get"),
    ),
    _m(
        "aep-136-operation-id",
        "no colon",
        _sets(lambda s: op(s, REHYDRATE), "operationId", "RehydrateResource"),
    ),
    _m(
        "aep-136-operation-id",
        "lowercase verb",
        _sets(lambda s: op(s, REHYDRATE), "operationId", ":rehydrate"),
    ),
    # AEP-137
    _m(
        "aep-137-operation-id",
        "Replace prefix",
        after(add_apply, _sets(lambda s: op(s, APPLY), "operationId", "ReplaceResource")),
    ),
    _m(
        "aep-137-request-body",
        "not a resource",
        after(
            add_apply, _sets(lambda s: op(s, APPLY), "requestBody", json_body({"type": "object"}))
        ),
    ),
    _m(
        "aep-137-request-body",
        "missing",
        after(add_apply, lambda s: op(s, APPLY).pop("requestBody")),
    ),
    _m(
        "aep-137-response-body",
        "not a resource",
        after(
            add_apply,
            lambda s: op(s, APPLY)["responses"]["200"]["content"]["application/json"].update(
                schema={"type": "object"}
            ),
        ),
    ),
    _m(
        "aep-137-response-body",
        "204 instead of 200",
        after(
            add_apply,
            lambda s: op(s, APPLY).update(
                responses=rename_key(op(s, APPLY)["responses"], "200", "204")
            ),
            lambda s: op(s, APPLY)["responses"]["204"].pop("content"),
        ),
    ),
    _m(
        "aep-137-required-params",
        "required header",
        after(
            add_apply, lambda s: add_param(s, APPLY, "if_match", required=True, **{"in": "header"})
        ),
    ),
    _m(
        "aep-137-required-params",
        "required path-level header",
        after(add_apply, _path_item_param(APPLY[0], "if_match", "header", required=True)),
    ),
    _m(
        "aep-137-unknown-optional-params",
        "query parameter",
        after(add_apply, lambda s: add_param(s, APPLY, "force", "boolean")),
    ),
    _m(
        "aep-137-unknown-optional-params",
        "path-level query parameter",
        after(add_apply, _path_item_param(APPLY[0], "force", "query")),
    ),
    # AEP-140
    _m(
        "aep-140-boolean-no-is-prefix",
        "is_ field",
        _sets(lambda s: props(s, "Resource"), "is_ready", {"type": "boolean"}),
    ),
    _m(
        "aep-140-boolean-no-is-prefix",
        "is_ parameter",
        lambda s: add_param(s, LIST, "is_ready", "boolean"),
    ),
    _m(
        "aep-140-uri-not-url",
        "*_url field",
        _sets(lambda s: props(s, "Resource"), "console_url", {"type": "string"}),
    ),
    _m("aep-140-uri-not-url", "*_url parameter", lambda s: add_param(s, LIST, "callback_url")),
    _m("aep-140-parameter-names-unique", "case clash", lambda s: add_param(s, LIST, "Provider")),
    # AEP-142
    _m(
        "aep-142-time-type",
        "date",
        lambda s: props(s, "Resource")["create_time"].update(format="date"),
    ),
    _m(
        "aep-142-time-type",
        "integer",
        _sets(lambda s: props(s, "Resource"), "update_time", {"type": "integer"}),
    ),
    _m(
        "aep-142-time-type",
        "_times not an array",
        _add_fields("Resource", {"expire_times": {"type": "string"}}),
    ),
    _m(
        "aep-142-time-type",
        "_times items not date-time",
        _add_fields("Resource", {"expire_times": {"type": "array", "items": {"type": "string"}}}),
    ),
    _m(
        "aep-142-time-type",
        "_date without format",
        _add_fields("Resource", {"birth_date": {"type": "string"}}),
    ),
    _m(
        "aep-142-time-type",
        "_seconds string",
        _add_fields("Resource", {"ttl_seconds": {"type": "string"}}),
    ),
    _m(
        "aep-142-time-type",
        "_nanos boolean",
        _add_fields("Resource", {"latency_nanos": {"type": "boolean"}}),
    ),
    _m("aep-142-time-suffix", "created_at", _rename_field("Resource", "create_time", "created_at")),
    _m("aep-142-time-suffix", "timestamp", _rename_field("Resource", "update_time", "timestamp")),
    _m(
        "aep-142-time-name",
        "created_time",
        _rename_field("Resource", "create_time", "created_time"),
    ),
    _m(
        "aep-142-time-name",
        "published_times",
        _add_fields(
            "Resource",
            {
                "published_times": {
                    "type": "array",
                    "items": {"type": "string", "format": "date-time"},
                }
            },
        ),
    ),
    # AEP-143
    _m(
        "aep-143-standardized-codes",
        "language field",
        _add_fields("Resource", {"language": {"type": "string"}}),
    ),
    _m(
        "aep-143-standardized-codes",
        "mime_type field",
        _add_fields("Resource", {"mime_type": {"type": "string"}}),
    ),
    _m(
        "aep-143-standardized-codes", "timezone parameter", lambda s: add_param(s, LIST, "timezone")
    ),
    _m(
        "aep-143-standardized-codes-string-type",
        "integer region_code field",
        _add_fields("Resource", {"region_code": {"type": "integer"}}),
    ),
    _m(
        "aep-143-standardized-codes-string-type",
        "integer utc_offset parameter",
        lambda s: add_param(s, LIST, "utc_offset", "integer"),
    ),
    # AEP-144
    _m(
        "aep-144-operation-id",
        "custom-method style",
        after(add_add_tags, _sets(lambda s: op(s, ADD_TAGS), "operationId", ":AddResourceTags")),
    ),
    _m(
        "aep-144-operation-id",
        "Append prefix",
        after(add_add_tags, _sets(lambda s: op(s, ADD_TAGS), "operationId", "AppendResourceTags")),
    ),
    _m(
        "aep-144-http-method",
        "PUT",
        after(add_add_tags, lambda s: rename_method(s, ADD_TAGS_PATH, "post", "put")),
    ),
    _m(
        "aep-144-http-method",
        "PATCH on :remove-tags",
        after(
            add_add_tags,
            lambda s: rename_path(s, ADD_TAGS_PATH, "/resources/{resource_id}:remove-tags"),
            lambda s: rename_method(s, "/resources/{resource_id}:remove-tags", "post", "patch"),
            _sets(
                lambda s: op(s, ("/resources/{resource_id}:remove-tags", "patch")),
                "operationId",
                "RemoveResourceTags",
            ),
        ),
    ),
    # AEP-151
    _m("aep-151-only-success", "202 besides 201", after(add_operations, _create_also_202)),
    _m(
        "aep-151-202-schema-required",
        "no content",
        after(add_operations, _delete_answers_202(None)),
    ),
    _m(
        "aep-151-202-schema-required",
        "problem+json only",
        after(
            add_operations,
            _delete_answers_202({"application/problem+json": {"schema": OPERATION_REF}}),
        ),
    ),
    _m(
        "aep-151-operation-schema",
        "202 not an operation",
        after(add_operations, _delete_answers_202({"application/json": {"schema": RESOURCE_REF}})),
    ),
    _m(
        "aep-151-operation-schema",
        "done not a boolean",
        after(
            add_operations,
            LONG_RUNNING_DELETE,
            lambda s: props(s, "Operation")["done"].update(type="string"),
        ),
    ),
    _m(
        "aep-151-operations-endpoint",
        "no GET /operations",
        after(add_operations, LONG_RUNNING_DELETE, lambda s: s["paths"].pop(OPERATIONS_PATH)),
    ),
    _m(
        "aep-151-operations-endpoint",
        "no GET /operations/{operation_id}",
        after(add_operations, LONG_RUNNING_DELETE, lambda s: s["paths"].pop(OPERATION_PATH)),
    ),
    # AEP-193
    _m(
        "aep-193-problem-media-type",
        "404 as application/json",
        _error_content("NotFound", {"application/json": PROBLEM_REF}),
    ),
    _m(
        "aep-193-problem-media-type",
        "default as application/json",
        _error_content("Unexpected", {"application/json": PROBLEM_REF}),
    ),
    _m(
        "aep-193-problem-media-type",
        "extra media type",
        _error_content(
            "BadRequest", {"application/problem+json": PROBLEM_REF, "application/json": PROBLEM_REF}
        ),
    ),
    _m(
        "aep-193-problem-media-type",
        "no content",
        lambda s: s["components"]["responses"]["Conflict"].pop("content"),
    ),
    _m(
        "aep-193-problem-type",
        "format uri",
        lambda s: props(s, "Problem")["type"].update(format="uri"),
    ),
    _m("aep-193-problem-type", "no type", lambda s: props(s, "Problem").pop("type")),
    _m(
        "aep-193-problem-fields",
        "status above 599",
        lambda s: props(s, "Problem")["status"].update(maximum=999),
    ),
    _m(
        "aep-193-problem-fields",
        "string status",
        _sets(lambda s: props(s, "Problem"), "status", {"type": "string"}),
    ),
    _m(
        "aep-193-problem-fields",
        "integer detail",
        _sets(lambda s: props(s, "Problem"), "detail", {"type": "integer"}),
    ),
    _m(
        "aep-193-problem-fields",
        "instance not uri-reference",
        lambda s: props(s, "Problem")["instance"].pop("format"),
    ),
]

# Well-formed additions the new families must accept: no aep-* result at all.
CLEAN = [
    pytest.param(add_update, id="clean[update]"),
    pytest.param(add_apply, id="clean[apply]"),
    pytest.param(add_add_tags, id="clean[add method]"),
    pytest.param(
        after(
            add_add_tags,
            lambda s: rename_path(s, ADD_TAGS_PATH, "/resources/{resource_id}:remove-tags"),
            _sets(
                lambda s: op(s, ("/resources/{resource_id}:remove-tags", "post")),
                "operationId",
                "RemoveResourceTags",
            ),
        ),
        id="clean[remove method]",
    ),
    pytest.param(
        after(
            lambda s: rename_path(s, REHYDRATE_PATH, "/resources/{resource_id}:address"),
            _sets(
                lambda s: op(s, ("/resources/{resource_id}:address", "post")),
                "operationId",
                ":AddressResource",
            ),
        ),
        id="clean[custom verb starting with add]",
    ),
    pytest.param(after(add_operations, LONG_RUNNING_DELETE), id="clean[long-running delete]"),
    pytest.param(
        after(
            add_operations,
            add_update,
            lambda s: op(s, UPDATE).update(
                responses=rename_key(op(s, UPDATE)["responses"], "200", "202")
            ),
            lambda s: op(s, UPDATE)["responses"]["202"].update(
                content={"application/json": {"schema": OPERATION_REF}}
            ),
        ),
        id="clean[long-running update]",
    ),
    pytest.param(
        _add_fields(
            "Resource",
            {
                "expire_times": {
                    "type": "array",
                    "items": {"type": "string", "format": "date-time"},
                },
                "birth_date": {"type": "string", "format": "date"},
                "ttl_seconds": {"type": "integer"},
                "latency_millis": {"type": "number"},
                "latency_micros": {"type": "integer"},
                "latency_nanos": {"type": "integer"},
            },
        ),
        id="clean[time fields]",
    ),
    pytest.param(
        _add_fields(
            "Resource",
            {
                name: {"type": "string"}
                for name in (
                    "content_type",
                    "region_code",
                    "currency_code",
                    "language_code",
                    "time_zone",
                    "utc_offset",
                )
            },
        ),
        id="clean[standard code fields]",
    ),
    pytest.param(lambda s: add_param(s, LIST, "skip", "integer"), id="clean[integer skip]"),
]


def aep_codes(results: list[dict[str, Any]]) -> set[str]:
    return {r["code"] for r in results if r["code"].startswith("aep-")}


def describe(results: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {r['code']} at {'.'.join(map(str, r['path']))}: {r['message']}" for r in results
    )


# --- tests ---------------------------------------------------------------------
def test_every_rule_has_a_mutation(aep_rule_codes: set[str]) -> None:
    tested = {case.values[0] for case in CASES}
    assert tested == aep_rule_codes, (
        f"rules without a test: {sorted(aep_rule_codes - tested)}; "
        f"tests for unknown rules: {sorted(tested - aep_rule_codes)}"
    )


def test_spec_has_no_aep_results(
    spectral: Spectral, spec_path: Path, original_spec: Spec, tmp_path: Path
) -> None:
    """The spec as it is, and as re-dumped for the mutation tests, triggers none of our rules."""
    redumped = spectral.write(copy.deepcopy(original_spec), tmp_path)
    grouped = spectral.results_by_document([spec_path, redumped])
    for document, results in grouped.items():
        assert not aep_codes(results), f"{document}:\n{describe(results)}"


def test_spec_lints_clean_at_warn(spectral: Spectral, spec_path: Path) -> None:
    proc = spectral.run("--fail-severity", "warn", spec_path)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def mutation_results(
    spectral: Spectral, original_spec: Spec, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Results per case id (CASES and CLEAN): every mutated copy in its own file,
    all linted in one Spectral run (one run per case costs about a second each).
    A mutation that raises or changes nothing is recorded as that case's failure."""
    root = tmp_path_factory.mktemp("mutations")
    outcomes: dict[str, Any] = {}
    documents: dict[str, Path] = {}
    for index, case in enumerate([*CASES, *CLEAN]):
        mutate = case.values[-1]
        spec = copy.deepcopy(original_spec)
        try:
            mutate(spec)
        except Exception as exc:  # reported by the case's own test
            outcomes[case.id] = exc
            continue
        if spec == original_spec:
            outcomes[case.id] = AssertionError("the mutation changed nothing")
            continue
        documents[case.id] = spectral.write(spec, root / f"case-{index:03d}")
    grouped = spectral.results_by_document(list(documents.values()))
    for case_id, document in documents.items():
        outcomes[case_id] = grouped[document.resolve()]
    return outcomes


@pytest.mark.parametrize(("code", "mutate"), CASES)
def test_rule_catches_its_mutation(
    code: str, mutate: Mutation, request: pytest.FixtureRequest, mutation_results: dict[str, Any]
) -> None:
    outcome = mutation_results[request.node.callspec.id]
    if isinstance(outcome, BaseException):
        raise outcome
    assert aep_codes(outcome) == {code}, f"expected only {code}; got:\n{describe(outcome)}"


@pytest.mark.parametrize("mutate", CLEAN)
def test_well_formed_addition_is_clean(
    mutate: Mutation, request: pytest.FixtureRequest, mutation_results: dict[str, Any]
) -> None:
    outcome = mutation_results[request.node.callspec.id]
    if isinstance(outcome, BaseException):
        raise outcome
    assert not aep_codes(outcome), f"expected no aep-* result; got:\n{describe(outcome)}"
