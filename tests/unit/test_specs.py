"""Every spec in api/ is a valid OpenAPI document, and the package ships ours."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from placement.http.app import SPEC

API = Path(__file__).resolve().parents[2] / "api"


@pytest.mark.parametrize("spec", sorted(API.rglob("*.yaml")), ids=lambda p: p.name)
def test_spec_is_valid_openapi(spec: Path) -> None:
    validate(yaml.safe_load(spec.read_text()))


def test_all_specs_are_checked() -> None:
    assert len(list(API.rglob("*.yaml"))) == 3


def test_the_package_serves_the_spec_in_api() -> None:
    assert SPEC.read_text() == (API / "v1alpha1" / "openapi.yaml").read_text()
