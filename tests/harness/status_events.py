"""Provider status events as DCM's providers publish them (CloudEvents 1.0 on NATS, both
subject forms, both content modes), and what the service shows of them through its public
API and its `/metrics`: for the black-box tests of tests/subsystem/status.

- `StatusEvent` and `message()`: one event as a NATS message, in any form and mode.
- `statuses()`: what GET/list show for a set of ids (status, message, time), by listing.
- `eventually()`: poll a probe until it is right, bounded in time and in count.
- `workload()`: many events for many instances, shuffled and duplicated, and the newest.
- `event_counts()`, `nats_connected()`: the consumer's counters and gauge on /metrics.
- `provision()`: the stream and the durable consumer made beforehand, as an operator may.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import nats
import requests
from nats.js import api
from placement_manager_client import Client
from placement_manager_client.api.resource import list_resources
from placement_manager_client.models import Resource, ResourceList
from placement_manager_client.types import UNSET, Unset
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.nats import Message, run

T = TypeVar("T")

PROVIDER = "test-provider"  # the stand-ins' default provider in the subsystem suites
SERVICE_TYPE = "vm"
DEADLINE = 5.0  # seconds from publishing within which GET and list must show an event

Form = Literal["short", "long"]  # dcm.{serviceType} / dcm.providers.….instances.{id}.status
Mode = Literal["structured", "binary"]


@dataclass(frozen=True)
class StatusEvent:
    """One status change of one instance, as a provider reports it."""

    instance: str
    status: str
    message: str | None
    time: datetime


Shown = tuple[str | None, str | None, datetime | None]  # status, status_message, status_time


def shown(event: StatusEvent) -> Shown:
    """What GET and list show once `event` is the newest applied."""
    return (event.status, event.message, event.time)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def long_subject(instance: str, provider: str = PROVIDER) -> str:
    return f"dcm.providers.{provider}.{SERVICE_TYPE}.instances.{instance}.status"


def message(
    event: StatusEvent,
    form: Form = "short",
    mode: Mode = "structured",
    time_in_data: bool = False,
    event_id: str | None = None,
    time_text: str | None = None,
) -> Message:
    """`event` as a NATS message. Its time is the CloudEvent's `time` attribute, or with
    `time_in_data` (the short form only) the data's `timestamp`; written as `time_text`
    if given (else in UTC, to the microsecond)."""
    when = time_text or rfc3339(event.time)
    data: dict[str, Any] = {"status": event.status}
    if event.message is not None:
        data["message"] = event.message
    if form == "short":
        subject = f"dcm.{SERVICE_TYPE}"
        data["id"] = event.instance
        if time_in_data:
            data["timestamp"] = when
    else:
        assert not time_in_data, "the long form's data has no timestamp"
        subject = long_subject(event.instance)
    attributes = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": f"/providers/{PROVIDER}",
        "type": "dcm.instance.status",
    }
    if not time_in_data:
        attributes["time"] = when
    if mode == "structured":
        body = {**attributes, "datacontenttype": "application/json", "data": data}
        headers = {"content-type": "application/cloudevents+json"}
        return Message(subject, json.dumps(body).encode(), headers)
    headers = {f"ce-{name}": value for name, value in attributes.items()}
    headers["content-type"] = "application/json"
    return Message(subject, json.dumps(data).encode(), headers)


# Every form and mode (the short form's time in the CloudEvent or in the data's timestamp).
FORMS: list[tuple[Form, Mode, bool]] = [
    ("short", "structured", False),
    ("short", "binary", False),
    ("short", "structured", True),
    ("short", "binary", True),
    ("long", "structured", False),
    ("long", "binary", False),
]


def workload(
    rng: random.Random,
    ids: Sequence[str],
    base: datetime,
    per_instance: int = 10,
    duplicates: int = 200,
) -> tuple[list[Message], dict[str, StatusEvent]]:
    """`per_instance` events for each of `ids`, each at its own time after `base` (whole
    milliseconds, none equal) in a random form and mode, plus `duplicates` copies of some
    (the same message again: a tenth of them the newest of an instance), all shuffled;
    and each instance's newest event."""
    count = len(ids) * per_instance
    offsets = rng.sample(range(100 * count), count)
    events = [
        StatusEvent(ids[k % len(ids)], f"S{k}", f"event {k}", base + timedelta(milliseconds=ms))
        for k, ms in enumerate(offsets)
    ]
    newest: dict[str, int] = {}  # instance → the index of its newest event
    for k, event in enumerate(events):
        if event.instance not in newest or event.time > events[newest[event.instance]].time:
            newest[event.instance] = k
    messages = [message(event, *rng.choice(FORMS)) for event in events]
    copies = [messages[newest[rid]] for rid in ids[: duplicates // 10]]
    copies += [rng.choice(messages) for _ in range(duplicates - len(copies))]
    batch = messages + copies
    rng.shuffle(batch)
    return batch, {rid: events[k] for rid, k in newest.items()}


def statuses(client: Client, ids: Collection[str], status: str | Unset = UNSET) -> dict[str, Shown]:
    """The status fields of the resources `ids` as the list shows them (every page
    followed, `status` the list filter): a listed id → (status, message, time)."""
    found: dict[str, Shown] = {}
    wanted = set(ids)
    token: str | Unset = UNSET
    for _ in range(1000):  # pages; far more than any test lists
        listed = list_page(client, token=token, status=status)
        for r in listed.resources:
            if r.id in wanted:
                found[str(r.id)] = fields(r)
        if isinstance(listed.next_page_token, Unset) or not listed.next_page_token:
            return found
        token = listed.next_page_token
    raise AssertionError("the list never ended")


def list_page(
    client: Client, size: int = 100, token: str | Unset = UNSET, status: str | Unset = UNSET
) -> ResourceList:
    response = list_resources.sync_detailed(
        client=client, max_page_size=size, page_token=token, status=status
    )
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed, ResourceList)
    return response.parsed


def fields(r: Resource) -> Shown:
    """A resource's status fields (None where absent)."""

    def present(value: Any) -> Any:
        return None if isinstance(value, Unset) else value

    return (present(r.status), present(r.status_message), present(r.status_time))


def eventually(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.05,
) -> T:
    """Call `probe` until `done(its result)`, for at most `timeout` seconds (and as many
    rounds as that allows at `interval`); its last result. Fails with the last result
    (abridged) if it never gets there."""
    deadline = time.monotonic() + timeout
    rounds = int(timeout / interval) + 2
    result = probe()
    for _ in range(rounds):
        if done(result):
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
        result = probe()
    if done(result):
        return result
    raise AssertionError(f"not within {timeout}s: {what}; last seen: {str(result)[:2000]}")


def mismatches(seen: dict[str, Shown], expected: dict[str, Shown]) -> dict[str, Any]:
    """Each id whose shown status differs from the expected: (seen, expected)."""
    return {rid: (seen.get(rid), want) for rid, want in expected.items() if seen.get(rid) != want}


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample `url`/metrics shows: (name, sorted labels) → value."""
    answer = requests.get(f"{url}/metrics", timeout=5)
    assert answer.status_code == 200, answer.text[:500]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def event_counts(url: str) -> dict[str, int]:
    """`placement_status_events_total` by outcome, as the process at `url` counts them."""
    counts: dict[str, int] = {}
    for (name, labels), value in metric_samples(url).items():
        if name == "placement_status_events_total":
            counts[dict(labels)["outcome"]] = int(value)
    return counts


def summed(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for outcome, n in c.items():
            total[outcome] = total.get(outcome, 0) + n
    return total


def each_applied_or_stale(
    urls: Sequence[str], total: int, before: dict[str, int] | None = None
) -> dict[str, int]:
    """Within the deadline, the processes at `urls` together received `total` messages
    since they counted `before` (summed; None: since they started), and counted each once,
    as applied or stale, and nothing as anything else; the (summed) differences."""
    start = before or {}

    def delta() -> dict[str, int]:
        now = summed(event_counts(url) for url in urls)
        return {o: now.get(o, 0) - start.get(o, 0) for o in set(now) | set(start)}

    def done(d: dict[str, int]) -> bool:
        others = [n for o, n in d.items() if o not in ("received", "applied", "stale")]
        return (
            d.get("received") == total
            and d.get("applied", 0) + d.get("stale", 0) == total
            and not any(others)
        )

    return eventually(delta, done, f"{total} received, each counted once as applied or stale")


def provision(url: str, stream: str, durable: str, ack_wait: float) -> None:
    """The stream (`dcm.>`, on file) and the durable pull consumer the service would make,
    made beforehand with an `ack_wait` of our choosing (the service binds them as they are)."""

    async def go() -> None:
        nc = await nats.connect(url, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=["dcm.>"], storage=api.StorageType.FILE)
            config = api.ConsumerConfig(
                durable_name=durable,
                filter_subject="dcm.>",
                deliver_policy=api.DeliverPolicy.ALL,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=ack_wait,
                max_ack_pending=1000,
                max_deliver=-1,
            )
            await js.add_consumer(stream, config)
        finally:
            await nc.close()

    run(go())


def nats_connected(url: str) -> bool:
    """Whether the process at `url` says its status consumer is connected and bound."""
    return metric_samples(url).get(("placement_nats_connected", ())) == 1.0
