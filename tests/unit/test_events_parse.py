"""placement.events.parse: NATS messages to status events, both CloudEvents content modes
and both subject forms; strict and total (garbage gives Invalid, never an exception)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placement.events.parse import MAX_BYTES, Invalid, StatusEvent, parse

RECEIVED = datetime(2026, 3, 30, 9, 0, 0, tzinfo=UTC)
SHORT = "dcm.vm"
LONG = "dcm.providers.kubevirt.vm.instances.{id}.status"
INSTANCE = "6f1c2a0e-8d0b-4b51-9a39-4d1e0b2c7f11"


def structured(data: Any = None, **attributes: Any) -> bytes:
    event = {"specversion": "1.0", "id": "e-1", "source": "/providers/kubevirt", "type": "vm"}
    event.update(attributes)
    if data is not None:
        event["data"] = data
    return json.dumps(event).encode()


def binary_headers(**attributes: str) -> dict[str, str]:
    headers = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/p", "ce-type": "vm"}
    headers.update({f"ce-{name}": value for name, value in attributes.items()})
    return headers


def ok(subject: str, headers: dict[str, str] | None, body: bytes) -> StatusEvent:
    result = parse(subject, headers, body, RECEIVED, 7)
    assert isinstance(result, StatusEvent), result
    return result


def refused(subject: str, headers: dict[str, str] | None, body: bytes) -> str:
    result = parse(subject, headers, body, RECEIVED, 7)
    assert isinstance(result, Invalid), result
    return result.reason


# Both modes, both subject forms


def test_structured_short_subject_takes_the_id_from_the_data() -> None:
    data = {
        "id": INSTANCE,
        "status": "RUNNING",
        "message": "up",
        "timestamp": "2026-03-30T08:00:00Z",
    }
    event = ok(SHORT, None, structured(data))
    assert event == StatusEvent(
        instance_id=INSTANCE,
        status="RUNNING",
        message="up",
        time=datetime(2026, 3, 30, 8, tzinfo=UTC),
        sequence=7,
        subject=SHORT,
    )


def test_structured_long_subject_takes_the_id_from_the_subject() -> None:
    subject = LONG.format(id=INSTANCE)
    event = ok(
        subject, {"Content-Type": "application/cloudevents+json"}, structured({"status": "Ready"})
    )
    assert (event.instance_id, event.status, event.message) == (INSTANCE, "Ready", None)
    assert event.time == RECEIVED  # neither time nor timestamp: when JetStream stored it


def test_binary_long_subject() -> None:
    subject = LONG.format(id="abc")
    headers = binary_headers(time="2026-03-30T10:11:12.123456789+02:00")
    event = ok(subject, headers, json.dumps({"status": "FAILED", "message": "oom"}).encode())
    assert (event.instance_id, event.status, event.message) == ("abc", "FAILED", "oom")
    assert event.time == datetime(2026, 3, 30, 8, 11, 12, 123456, tzinfo=UTC)


def test_binary_short_subject_and_header_names_in_any_case() -> None:
    headers = {"Ce-Specversion": "1.0", "CE-ID": "x", "ce-Source": "/p", "ce-type": "container"}
    event = ok("dcm.container", headers, json.dumps({"id": "c1", "status": "PENDING"}).encode())
    assert (event.instance_id, event.status) == ("c1", "PENDING")


def test_status_is_kept_as_sent() -> None:
    event = ok(SHORT, None, structured({"id": "i", "status": "Provisioning"}))
    assert event.status == "Provisioning"


def test_data_base64_in_structured_mode() -> None:
    raw = json.dumps({"id": "i", "status": "RUNNING"}).encode()
    body = structured(data_base64=base64.b64encode(raw).decode())
    assert ok(SHORT, None, body).instance_id == "i"


# Time


def test_event_time_wins_over_the_data_timestamp() -> None:
    body = structured(
        {"id": "i", "status": "S", "timestamp": "2020-01-01T00:00:00Z"}, time="2021-01-01T00:00:00Z"
    )
    assert ok(SHORT, None, body).time == datetime(2021, 1, 1, tzinfo=UTC)


def test_time_offsets_are_kept_as_instants() -> None:
    event = ok(
        SHORT, None, structured({"id": "i", "status": "S"}, time="2026-03-30T10:00:00.5-01:30")
    )
    assert event.time == datetime(2026, 3, 30, 11, 30, 0, 500000, tzinfo=UTC)
    assert event.time.utcoffset() == -timedelta(hours=1, minutes=30)


def test_a_naive_received_time_is_taken_as_utc() -> None:
    result = parse(SHORT, None, structured({"id": "i", "status": "S"}), datetime(2026, 1, 1), 1)
    assert isinstance(result, StatusEvent)
    assert result.time == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-03-30",
        "2026-03-30T10:00:00",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-03-30T25:00:00Z",
        "2026-03-30T10:00:00+2400",
        1743325200,
        "",
    ],
)
def test_unparseable_times_are_invalid(value: Any) -> None:
    assert "time" in refused(SHORT, None, structured({"id": "i", "status": "S"}, time=value))
    assert "timestamp" in refused(
        SHORT, None, structured({"id": "i", "status": "S", "timestamp": value})
    )


def test_unparseable_binary_time_is_invalid() -> None:
    body = json.dumps({"id": "i", "status": "S"}).encode()
    assert "time" in refused(SHORT, binary_headers(time="now"), body)


# Subjects and ids


@pytest.mark.parametrize(
    "subject",
    [
        "dcm",
        "dcm.",
        "dcm..vm",
        "other.vm",
        "dcm.vm.extra",
        "dcm.providers",
        "dcm.providers.p.vm.instances.i",
        "dcm.providers.p.vm.instances.i.state",
        "dcm.providers.p.vm.things.i.status",
        "dcm.providers.p.vm.instances..status",
        "dcm.v m",
        "",
        "dcm.providers.p.vm.instances.i.status.more",
    ],
)
def test_subjects_of_another_shape_are_invalid(subject: str) -> None:
    assert refused(subject, None, structured({"id": "i", "status": "S"}))


def test_the_id_is_never_taken_from_the_type() -> None:
    body = structured({"status": "RUNNING"}, type=INSTANCE)
    assert "instance id" in refused(SHORT, None, body)


def test_a_data_id_that_contradicts_the_subject_is_invalid() -> None:
    assert refused(LONG.format(id="a"), None, structured({"id": "b", "status": "S"}))
    assert ok(LONG.format(id="a"), None, structured({"id": "a", "status": "S"})).instance_id == "a"


@pytest.mark.parametrize("bad_id", ["", " ", 5, None, ["x"], {"x": 1}, "a\nb", " a", "x" * 256])
def test_bad_data_ids_are_invalid(bad_id: Any) -> None:
    assert refused(SHORT, None, structured({"id": bad_id, "status": "S"}))


# The envelope


@pytest.mark.parametrize("missing", ["specversion", "id", "source", "type"])
def test_required_attributes(missing: str) -> None:
    event = json.loads(structured({"id": "i", "status": "S"}))
    del event[missing]
    assert refused(SHORT, None, json.dumps(event).encode())
    headers = binary_headers()
    del headers[f"ce-{missing}"]
    assert refused(SHORT, headers, json.dumps({"id": "i", "status": "S"}).encode())


@pytest.mark.parametrize("name", ["id", "source", "type"])
@pytest.mark.parametrize("value", ["", 1, None, {"a": 1}])
def test_attributes_must_be_non_empty_strings(name: str, value: Any) -> None:
    assert refused(SHORT, None, structured({"id": "i", "status": "S"}, **{name: value}))


@pytest.mark.parametrize("version", ["0.3", "1", 1.0, "2.0", None])
def test_specversion_must_be_1_0(version: Any) -> None:
    assert refused(SHORT, None, structured({"id": "i", "status": "S"}, specversion=version))
    if not isinstance(version, str):
        return  # header values are strings
    headers = binary_headers(specversion=version)
    assert refused(SHORT, headers, json.dumps({"id": "i", "status": "S"}).encode())


def test_plain_json_without_an_envelope_is_invalid() -> None:
    assert "CloudEvent" in refused(SHORT, None, json.dumps({"id": "i", "status": "S"}).encode())


def test_an_other_content_type_is_invalid() -> None:
    assert refused(SHORT, {"Content-Type": "text/plain"}, structured({"id": "i", "status": "S"}))


def test_data_and_data_base64_together_are_invalid() -> None:
    assert refused(SHORT, None, structured({"id": "i", "status": "S"}, data_base64="e30="))


@pytest.mark.parametrize(
    "encoded", ["***", 5, base64.b64encode(b"[1]").decode(), base64.b64encode(b"\xff").decode()]
)
def test_bad_data_base64_is_invalid(encoded: Any) -> None:
    assert refused(SHORT, None, structured(data_base64=encoded))


# The data


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        [{"id": "i", "status": "S"}],
        "RUNNING",
        5,
        True,
        {"id": "i"},
        {"id": "i", "status": ""},
        {"id": "i", "status": "  "},
        {"id": "i", "status": 5},
        {"id": "i", "status": ["S"]},
        {"id": "i", "status": {"phase": "S"}},
        {"id": "i", "status": "x" * 65},
        {"id": "i", "status": "A\u0000B"},
        {"id": "i", "status": "S", "message": 5},
        {"id": "i", "status": "S", "message": {"a": 1}},
    ],
)
def test_bad_data_is_invalid(data: Any) -> None:
    assert refused(SHORT, None, structured(data))
    if data is not None:
        assert refused(SHORT, binary_headers(), json.dumps(data).encode())


def test_null_message_and_timestamp_are_absent() -> None:
    event = ok(
        SHORT, None, structured({"id": "i", "status": "S", "message": None, "timestamp": None})
    )
    assert (event.message, event.time) == (None, RECEIVED)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"\xc3\x28",
        b"[]",
        b"42",
        b'"s"',
        b"null",
        b"{",
        b"{}",
        b"[" * 100_000,
        '{"specversion":"1.0","x":"\ud800"}'.encode("utf-8", "surrogatepass"),
        b"NaN",
        b'{"a":1}{"b":2}',
    ],
)
def test_garbage_bodies_are_invalid(body: bytes) -> None:
    assert refused(SHORT, None, body)
    assert refused(SHORT, binary_headers(), body)


def test_bodies_over_64_kib_are_invalid() -> None:
    big = structured({"id": "i", "status": "S", "message": "m" * MAX_BYTES})
    assert "64" in refused(SHORT, None, big) or "bytes" in refused(SHORT, None, big)
    headers = binary_headers()
    assert refused(
        SHORT, headers, json.dumps({"id": "i", "status": "S", "message": "m" * MAX_BYTES}).encode()
    )


def test_a_long_message_within_the_limit_is_kept() -> None:
    message = "m" * (MAX_BYTES - 200)
    assert (
        ok(
            SHORT,
            binary_headers(),
            json.dumps({"id": "i", "status": "S", "message": message}).encode(),
        ).message
        == message
    )


def test_deep_nesting_is_invalid_not_a_crash() -> None:
    nested = "[" * 5000 + "]" * 5000
    body = (
        '{"specversion":"1.0","id":"e","source":"s","type":"t","data":{"id":"i","status":"S","x":'
        + nested
        + "}}"
    ).encode()
    assert refused(SHORT, None, body)
    deeper = "[" * 30_000 + "]" * 30_000
    assert refused(SHORT, None, deeper.encode())


# Properties


texts = st.text(max_size=40)
header_maps = st.none() | st.dictionaries(
    st.sampled_from(
        ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "Content-Type", "x"]
    )
    | texts,
    st.sampled_from(["1.0", "", "application/cloudevents+json", "2026-03-30T10:00:00Z"]) | texts,
    max_size=6,
)
subjects = (
    st.sampled_from([SHORT, LONG.format(id="i"), "dcm.providers.p.vm.instances.i.status"]) | texts
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "0.3", 1]),
        "id": texts,
        "source": texts,
        "type": texts,
    },
    optional={"time": texts, "data": json_values, "data_base64": texts},
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | envelopes.map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=400, deadline=None)
@given(subjects, header_maps, bodies, st.integers(min_value=0, max_value=2**63))
def test_parse_never_raises(
    subject: str, headers: dict[str, str] | None, body: bytes, sequence: int
) -> None:
    result = parse(subject, headers, body, RECEIVED, sequence)
    assert isinstance(result, (StatusEvent, Invalid))
    if isinstance(result, StatusEvent):
        assert result.time.tzinfo is not None
        assert result.status.strip()
        assert result.instance_id


ids = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x10FFFF, exclude_characters=".*>"),
    min_size=1,
    max_size=40,
).filter(lambda s: s.isprintable())
statuses = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x10FFFF, exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=64,
).filter(lambda s: s.strip() != "")
times = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9998, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    instance=ids,
    status=statuses,
    message=st.none() | st.text(max_size=200),
    time=st.none() | times,
    binary=st.booleans(),
    in_subject=st.booleans(),
    sequence=st.integers(min_value=1, max_value=2**63),
)
def test_well_formed_events_round_trip(
    instance: str,
    status: str,
    message: str | None,
    time: datetime | None,
    binary: bool,
    in_subject: bool,
    sequence: int,
) -> None:
    subject = LONG.format(id=instance) if in_subject else SHORT
    data: dict[str, Any] = {"status": status}
    if message is not None:
        data["message"] = message
    if not in_subject:
        data["id"] = instance
    stamp = time.isoformat() if time else None
    if binary:
        headers = binary_headers(**({"time": stamp} if stamp else {}))
        body = json.dumps(data).encode()
    else:
        headers = None
        body = structured(data, **({"time": stamp} if stamp else {}))
    result = parse(subject, headers, body, RECEIVED, sequence)
    assert result == StatusEvent(instance, status, message, time or RECEIVED, sequence, subject)
