"""Connexion stays the binder and the source of validation, with every adaptation of
`placement/http/connexion.py` on: a constraint edited in the spec changes what the
running service accepts, and no operation is reached around the validation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from placement.bootstrap import create_app
from placement.config import Config, Database
from placement.http import app as app_module
from placement.model import RESOURCE_ID_PATTERN as ID_PATTERN
from tests.harness.app import serve


@pytest.fixture
def serve_spec(
    base_config: Config, sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Callable[[dict[str, Any]], None]], Any]:
    """Serve the service (adaptations on) on the spec as `edit` changes it."""
    config = replace(base_config, database=sqlite_db)

    def start(edit: Callable[[dict[str, Any]], None]) -> Any:
        spec = yaml.safe_load(app_module.SPEC.read_text())
        edit(spec)
        edited = tmp_path / "openapi.yaml"
        edited.write_text(yaml.safe_dump(spec, sort_keys=False))
        monkeypatch.setattr(app_module, "SPEC", edited)
        return serve(create_app(config, connexion_adaptations=True))

    return start


def _unchanged(spec: dict[str, Any]) -> None:
    assert spec["components"]["schemas"]["ResourceId"]["pattern"] == ID_PATTERN


def _page_size(spec: dict[str, Any]) -> dict[str, Any]:
    parameters = spec["paths"]["/resources"]["get"]["parameters"]
    found: dict[str, Any] = next(p for p in parameters if p["name"] == "max_page_size")
    return found


def _loosened(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["ResourceId"]["pattern"] = "^[A-Za-z0-9-]+$"
    _page_size(spec)["schema"].update(maximum=5, default=5)


def _tightened(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["ResourceId"]["pattern"] = "^x"


def _status(url: str, path: str) -> int:
    return requests.get(f"{url}/api/v1alpha1{path}", timeout=10).status_code


def test_the_spec_as_shipped(serve_spec: Any) -> None:
    with serve_spec(_unchanged) as url:
        assert _status(url, "/resources/Upper-Case") == 400
        assert _status(url, "/resources/abc") == 404
        assert _status(url, "/resources?max_page_size=100") == 200
        assert _status(url, "/resources?max_page_size=101") == 400


def test_an_edited_id_pattern_and_page_maximum_change_what_is_accepted(serve_spec: Any) -> None:
    with serve_spec(_loosened) as url:
        assert _status(url, "/resources/Upper-Case") == 404  # valid now: looked up
        assert _status(url, "/resources?max_page_size=5") == 200
        assert _status(url, "/resources?max_page_size=6") == 400
    with serve_spec(_tightened) as url:
        assert _status(url, "/resources/abc") == 400
        assert _status(url, "/resources/xyz") == 404


def test_every_operation_with_parameters_is_validated(serve_spec: Any) -> None:
    """Each operation of the spec given an id its pattern refuses answers 400 from the
    validation, before any handler runs (no upstream is reachable here: a handler
    reached would answer otherwise)."""
    spec = yaml.safe_load(app_module.SPEC.read_text())
    body = {"catalog_item_instance_id": "c", "spec": {}, "new_resource_id": "n"}
    checked = []
    with serve_spec(_unchanged) as url:
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if method not in ("get", "post", "delete", "put", "patch"):
                    continue
                names = [
                    p.get("name") or p["$ref"].rsplit("/", 1)[-1]
                    for p in operation.get("parameters", [])
                ]
                query = {"id": "BAD_ID"} if "id" in names else {}
                if "{resource_id}" not in path and not query:
                    continue
                target = path.replace("{resource_id}", "BAD_ID")
                answer = requests.request(
                    method,
                    f"{url}/api/v1alpha1{target}",
                    params=query,
                    json=body if method == "post" else None,
                    timeout=10,
                )
                assert answer.status_code == 400, (method, path, answer.text)
                assert answer.json()["type"] == "validation-error"
                checked.append(operation["operationId"])
    assert len(checked) == 4, checked  # create, get, delete, rehydrate


def test_a_read_sent_with_a_body_is_answered_alike(serve_spec: Any) -> None:
    """A GET carrying a Content-Type and a body takes Connexion's whole parameter path
    (the adapted one skips the search for a body only when there can be none)."""
    with serve_spec(_unchanged) as url:
        for headers, data in (({}, None), ({"Content-Type": "application/json"}, b"{}")):
            answer = requests.get(
                f"{url}/api/v1alpha1/resources/abc", headers=headers, data=data, timeout=10
            )
            assert answer.status_code == 404
            assert answer.json()["detail"] == "resource abc not found"


def test_the_code_checks_ids_with_the_spec_pattern() -> None:
    """Every id pattern of the shipped spec is the one the code checks ids with
    (`placement.model.RESOURCE_ID_PATTERN`)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == "pattern" and isinstance(v, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(app_module.SPEC.read_text()))
    assert found
    assert set(found) == {ID_PATTERN}
