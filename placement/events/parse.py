"""A NATS message to a status event, or the reason it is not one. Pure and total: no I/O,
and garbage of any kind gives `Invalid` (the consumer acks it, so it is never redelivered).

Two subject forms carry status events (DCM's providers use both):
- `dcm.{serviceType}`: the data names the instance, `{"id", "status", "message", "timestamp"}`;
- `dcm.providers.{provider}.{serviceType}.instances.{instanceId}.status`: `{"status", "message"}`.

Both CloudEvents 1.0 content modes are accepted: structured (the body is the event as JSON)
and binary (the attributes are `ce-*` headers, the body is the data).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

MAX_BYTES = 64 * 1024  # the body, or the data in it, beyond which an event is refused
MAX_ID = 255
MAX_STATUS = 64
MAX_ATTRIBUTE = 1024  # a CloudEvent's id, source, type or time

STRUCTURED_TYPE = "application/cloudevents+json"
_REQUIRED = ("id", "source", "type")
# RFC 3339 date-time (its note allows a space or a lower-case t and z).
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StatusEvent:
    """One instance's status as a provider reported it; `status` exactly as sent."""

    instance_id: str
    status: str
    message: str | None
    time: datetime  # aware: the event's time, else the data's timestamp, else when received
    sequence: int  # the stream sequence: with `time`, what orders and dedupes events
    subject: str


@dataclass(frozen=True)
class Invalid:
    """Why a message is not a status event (logged, counted, acked)."""

    reason: str


class _Refused(Exception):
    """Raised inside this module only; `parse` turns it into `Invalid`."""


def parse(
    subject: str,
    headers: Mapping[str, str] | None,
    data: bytes,
    received: datetime,
    sequence: int,
) -> StatusEvent | Invalid:
    """The status event a JetStream message carries, or why it carries none."""
    try:
        subject_id = _subject_instance(subject)
        if len(data) > MAX_BYTES:
            raise _Refused(f"body over {MAX_BYTES} bytes")
        attributes, payload = _cloudevent(_lower(headers), data)
        return _event(subject, subject_id, attributes, payload, received, sequence)
    except _Refused as refused:
        return Invalid(str(refused))


def _subject_instance(subject: str) -> str | None:
    """The instance id the subject names (second form), None for `dcm.{serviceType}`."""
    tokens = subject.split(".")
    if any(not token or _CONTROL.search(token) or " " in token for token in tokens):
        raise _Refused("malformed subject")
    if len(tokens) == 2 and tokens[0] == "dcm" and tokens[1] != "providers":
        return None
    if (
        len(tokens) == 7
        and tokens[:2] == ["dcm", "providers"]
        and tokens[4] == "instances"
        and tokens[6] == "status"
    ):
        return _instance_id(tokens[5], "subject instance id")
    raise _Refused("subject is neither dcm.{type} nor dcm.providers.….instances.{id}.status")


def _lower(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Header names compared without case (producers differ on `ce-id` vs `Ce-Id`)."""
    if not headers:
        return {}
    return {str(name).lower(): value for name, value in headers.items()}


def _cloudevent(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], Any]:
    """The event's attributes and its data (decoded JSON), in either content mode."""
    if "ce-specversion" in headers:
        attributes = {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}
        return attributes, _json(body, "data")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("", STRUCTURED_TYPE, "application/json"):
        raise _Refused(f"content type {content_type[:64]!r} is not a structured CloudEvent")
    event = _json(body, "body")
    if not isinstance(event, dict) or "specversion" not in event:
        raise _Refused("not a CloudEvent (no ce-specversion header, no specversion in body)")
    return event, _structured_data(event)


def _structured_data(event: dict[str, Any]) -> Any:
    """A structured event's data: `data` as JSON, or `data_base64` holding JSON bytes."""
    if "data_base64" not in event:
        return event.get("data")
    if "data" in event:
        raise _Refused("both data and data_base64")
    encoded = event["data_base64"]
    if not isinstance(encoded, str) or len(encoded) > MAX_BYTES * 4 // 3 + 4:
        raise _Refused("data_base64 is not a string of at most 64 KiB")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _Refused("data_base64 is not base64") from error
    return _json(decoded, "data")


def _json(raw: bytes, what: str) -> Any:
    if len(raw) > MAX_BYTES:
        raise _Refused(f"{what} over {MAX_BYTES} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise _Refused(f"{what} is not JSON (UTF-8)") from error


def _event(
    subject: str,
    subject_id: str | None,
    attributes: dict[str, Any],
    data: Any,
    received: datetime,
    sequence: int,
) -> StatusEvent:
    if attributes.get("specversion") != "1.0":
        raise _Refused("specversion is not 1.0")
    for name in _REQUIRED:
        value = attributes.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_ATTRIBUTE:
            raise _Refused(f"CloudEvent {name} missing, empty or too long")
    if not isinstance(data, dict):
        raise _Refused("data is not a JSON object")
    return StatusEvent(
        instance_id=_data_instance(subject_id, data),
        status=_status(data.get("status")),
        message=_optional_string(data.get("message"), "message"),
        time=_time(attributes.get("time"), data.get("timestamp"), received),
        sequence=sequence,
        subject=subject,
    )


def _data_instance(subject_id: str | None, data: dict[str, Any]) -> str:
    """The subject's instance id, else the data's `id`; the two must agree if both given."""
    named = data.get("id")
    if subject_id is None:
        if named is None:
            raise _Refused("no instance id (neither in the subject nor the data)")
        return _instance_id(named, "data id")
    if named is not None and named != subject_id:
        raise _Refused("data id differs from the subject's instance id")
    return subject_id


def _instance_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise _Refused(f"{what} is not a non-empty string of at most {MAX_ID} characters")
    if _CONTROL.search(value) or value != value.strip():
        raise _Refused(f"{what} has control characters or surrounding spaces")
    return value


def _status(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_STATUS:
        raise _Refused(f"status is not a non-empty string of at most {MAX_STATUS} characters")
    if _CONTROL.search(value):
        raise _Refused("status has control characters")
    return value


def _optional_string(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _Refused(f"{what} is not a string")
    return value


def _time(event_time: Any, timestamp: Any, received: datetime) -> datetime:
    """The CloudEvent's time, else the data's timestamp, else when JetStream stored it."""
    if event_time is not None:
        return _rfc3339(event_time, "time")
    if timestamp is not None:
        return _rfc3339(timestamp, "timestamp")
    return received if received.tzinfo is not None else received.replace(tzinfo=UTC)


def _rfc3339(value: Any, what: str) -> datetime:
    match = _RFC3339.fullmatch(value) if isinstance(value, str) and len(value) < 64 else None
    if match is None:
        raise _Refused(f"{what} is not an RFC 3339 date-time")
    date, clock, fraction, offset = match.groups()
    micro = f".{(fraction or '0')[:6]:0<6}"  # nanoseconds (Go) truncated to microseconds
    zone = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(f"{date}T{clock}{micro}{zone}")
    except ValueError as error:
        raise _Refused(f"{what} is not a valid date-time") from error
