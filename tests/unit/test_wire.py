"""The resource's wire form: times as Go's RFC3339Nano wrote them, and stored specs
embedded as the JSON text the database holds (never decoded and encoded again)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from placement.http.encoding import embedded, json_bytes
from placement.model import Resource, ResourceView, rfc3339

T = datetime(2026, 3, 30, 9, 15, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (T, "2026-03-30T09:15:01Z"),
        (T.replace(second=0), "2026-03-30T09:15:00Z"),
        (T.replace(microsecond=120000), "2026-03-30T09:15:01.12Z"),
        (T.replace(microsecond=1), "2026-03-30T09:15:01.000001Z"),
        (T.replace(microsecond=100), "2026-03-30T09:15:01.0001Z"),
        (T.astimezone(timezone(timedelta(hours=2))), "2026-03-30T09:15:01Z"),
    ],
)
def test_times_are_written_as_go_wrote_them(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


def test_a_view_embeds_its_spec_text_as_it_is() -> None:
    stored = '{"b": 1, "a": [1.5, null, "é"], "big": 123456789012345678901234567890}'
    view = ResourceView("web-1", "cat", stored, "p", "APPROVED", T, T)
    body = json_bytes(view.to_json(embedded))
    assert stored.encode() in body  # not re-encoded: the stored text, key order kept
    decoded = json.loads(body)
    assert decoded["spec"] == json.loads(stored)
    resource = Resource("web-1", "cat", json.loads(stored), "p", "APPROVED", T, T)
    assert decoded == json.loads(json.dumps(resource.to_json()))
    assert orjson.loads(body)["create_time"] == "2026-03-30T09:15:01Z"
