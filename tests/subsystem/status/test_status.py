"""Status events through a real `serve` process and a real NATS server, seen only through
the public API (GET, list and its `status` filter) and `/metrics`: both subject forms and
both CloudEvents modes, the newest event winning over shuffled duplicates, stale and
unknown events, poison among good events. One service per database for the module; each
test uses ids of its own, and counts the consumer's outcomes as differences."""

from __future__ import annotations

import json
import os
import random
import uuid
from datetime import timedelta

import requests
from placement_manager_client import Client
from placement_manager_client.api.resource import list_resources
from placement_manager_client.types import UNSET, Unset

from tests.harness.calls import create, get, resource
from tests.harness.nats import Message, NatsServer, publish
from tests.harness.problems import parsed_problem
from tests.harness.processes import Service
from tests.harness.standins import StandInUpstreams
from tests.harness.status_events import (
    PROVIDER,
    Form,
    Mode,
    Shown,
    StatusEvent,
    each_applied_or_stale,
    event_counts,
    eventually,
    fields,
    list_page,
    long_subject,
    message,
    mismatches,
    shown,
    statuses,
    workload,
)
from tests.subsystem.status.conftest import create_all

HEALTHY = {"status": "healthy", "path": "health"}
MS = timedelta(milliseconds=1)


def unique() -> str:
    return uuid.uuid4().hex[:8]


def shows(client: Client, expected: dict[str, Shown], what: str) -> None:
    """Within the deadline, the list shows `expected`; then GET shows it too."""
    eventually(
        lambda: statuses(client, expected),
        lambda seen: not mismatches(seen, expected),
        f"{what}: the list shows every expected status (mismatches below)",
    )
    for rid, want in expected.items():
        assert fields(resource(get(client, rid), 200)) == want, rid


def counted(url: str, before: dict[str, int], **expected: int) -> dict[str, int]:
    """Within the deadline, the outcomes counted since `before` are `expected` (those
    named; the others unchanged): each event counted once, as what it was."""
    outcomes = set(before) | set(expected)

    def delta() -> dict[str, int]:
        now = event_counts(url)
        return {o: now.get(o, 0) - before.get(o, 0) for o in outcomes}

    want = {o: expected.get(o, 0) for o in outcomes}
    return eventually(delta, lambda d: d == want, f"the outcomes counted are {want}")


def test_both_subject_forms_and_both_modes_show_on_get_and_list(
    client: Client, service: Service, nats: NatsServer
) -> None:
    u = unique()
    ids = [f"{name}-{u}" for name in "abcdefg"]
    created = create_all(client, ids)
    base = max(created.values()) + timedelta(seconds=1)
    a, b, c, d, e, f, g = ids
    cases: list[tuple[StatusEvent, Form, Mode, bool]] = [
        # (event, form, mode, its time in the data's timestamp rather than the CloudEvent's)
        (StatusEvent(a, "RUNNING", "up", base), "short", "structured", False),
        (StatusEvent(b, "Running", "booted", base + MS), "short", "binary", False),
        (StatusEvent(c, "STOPPED", "halted", base + 2 * MS), "short", "structured", True),
        (StatusEvent(d, "running", None, base + 3 * MS), "long", "structured", False),
        (StatusEvent(e, "RUNNING", "long, binary", base + 4 * MS), "long", "binary", False),
        (StatusEvent(f, "FAILED", "oops", base + 5 * MS), "short", "binary", True),
    ]
    messages = [message(ev, form, mode, in_data) for ev, form, mode, in_data in cases]
    # A time as Go writes it: nanoseconds, another offset (shown in UTC, to the microsecond).
    local = (base + timedelta(hours=2)).replace(tzinfo=None).isoformat(timespec="microseconds")
    zoned = StatusEvent(g, "PAUSED", "zoned", base.replace(microsecond=123456))
    messages.append(message(zoned, "long", "binary", time_text=f"{local[:-6]}123456789+02:00"))
    publish(nats.url, messages)

    expected = {ev.instance: shown(ev) for ev, *_ in cases} | {g: shown(zoned)}
    shows(client, expected, "one event per form and mode")
    got_d = resource(get(client, d), 200)
    assert "status_message" not in got_d.to_dict()  # none sent: none shown
    assert got_d.status_time == base + 3 * MS  # the CloudEvent's time, to the microsecond

    # The status filter, compared without case; its page tokens belong to it.
    running = {a, b, d, e}
    first = list_page(client, size=2, status="running")
    assert len(first.resources) == 2
    assert isinstance(first.next_page_token, str)
    seen = [str(r.id) for r in first.resources]
    token = first.next_page_token
    for _ in range(100):  # pages
        listed = list_page(client, size=2, status="RUNNING", token=token)
        seen += [str(r.id) for r in listed.resources]
        if not isinstance(listed.next_page_token, str):
            break
        token = listed.next_page_token
    assert len(seen) == len(set(seen))  # no repeats across pages
    assert {rid for rid in seen if rid.endswith(u)} == running
    every = statuses(client, seen)
    assert all(str(s).upper() == "RUNNING" for s, _, _ in every.values())
    assert set(statuses(client, ids, status="Stopped")) == {c}
    assert set(statuses(client, ids, status="failed")) == {f}
    assert statuses(client, ids, status="PROVISIONED") == {}  # every one changed by an event

    other_filters: list[str | Unset] = ["stopped", UNSET]  # another status, or none
    for other in other_filters:
        refused = list_resources.sync_detailed(
            client=client, max_page_size=2, page_token=first.next_page_token, status=other
        )
        parsed_problem(refused, 400, "validation-error")


def test_the_newest_of_shuffled_duplicated_events_wins(
    client: Client, service: Service, nats: NatsServer
) -> None:
    rng = random.Random(1009)
    u = unique()
    ids = [f"n{n:03d}-{u}" for n in range(100)]
    created = create_all(client, ids)
    base = max(created.values()) + timedelta(seconds=1)
    batch, newest = workload(rng, ids, base)  # 1,000 events and 200 duplicates
    before = event_counts(service.process.url)
    publish(nats.url, batch, acked=False)

    assert len(batch) == 1200
    shows(client, {rid: shown(e) for rid, e in newest.items()}, "the newest event of each")
    # Each message counted once, as applied or stale (a duplicate is stale, or applied
    # again if it comes after its twin: same time, later stream sequence).
    counts = each_applied_or_stale([service.process.url], len(batch), before)
    assert counts["applied"] >= 100  # at least each instance's newest


def test_an_event_older_than_the_records_create_time_changes_nothing(
    client: Client, service: Service, nats: NatsServer, suite_standins: StandInUpstreams
) -> None:
    """Stale for a record with the SPRM's status as of its creation, and for records the
    SPRM's create answer gave no status (a garbled body): only the create time guards
    those. An event at the create time itself applies."""
    u = unique()
    plain, bare, edge = f"plain-{u}", f"bare-{u}", f"edge-{u}"
    created = create_all(client, [plain])
    suite_standins.sprm.after_acting("create", "garble", times=2)  # no status in the answer
    try:
        for rid in (bare, edge):
            created[rid] = resource(create(client, rid)).create_time  # type: ignore[assignment]
    finally:
        suite_standins.sprm.reset_faults()
    before_events = {rid: fields(resource(get(client, rid), 200)) for rid in created}
    assert before_events == {
        plain: ("PROVISIONED", None, created[plain]),  # the SPRM's create answer
        bare: (None, None, None),
        edge: (None, None, None),
    }
    old = [
        StatusEvent(plain, "ANCIENT", "just before the record", created[plain] - MS),
        StatusEvent(bare, "ANCIENT", "just before the record", created[bare] - MS),
        StatusEvent(bare, "ANCIENT", "a day before", created[bare] - timedelta(days=1)),
    ]
    at_creation = StatusEvent(edge, "BORN", "at the create time", created[edge])
    before = event_counts(service.process.url)
    publish(
        nats.url,
        [
            message(old[0], "long", "binary"),
            message(old[1], "short", "structured"),
            message(old[2], "short", "binary", time_in_data=True),
            message(at_creation, "long", "structured"),
        ],
    )

    shows(client, {edge: shown(at_creation)}, "the event at the create time")
    counted(service.process.url, before, received=4, stale=3, applied=1)
    unchanged = {rid: before_events[rid] for rid in (plain, bare)}
    assert statuses(client, unchanged) == unchanged
    for rid, want in unchanged.items():
        assert fields(resource(get(client, rid), 200)) == want


def test_poison_among_good_events_is_dropped_and_the_service_stays_healthy(
    client: Client, service: Service, nats: NatsServer
) -> None:
    u = unique()
    ids = [f"p{n}-{u}" for n in range(12)]
    created = create_all(client, ids)
    base = max(created.values()) + timedelta(seconds=1)
    good = [StatusEvent(rid, "GOOD", f"good {n}", base + n * MS) for n, rid in enumerate(ids)]
    bad = StatusEvent(ids[0], "POISON", "must not show", base + timedelta(hours=1))

    def structured(subject: str, data: object, **attributes: object) -> Message:
        event: dict[str, object] = {"specversion": "1.0", "id": unique(), "source": "/p"}
        event["type"] = "t"
        event |= {"time": "2099-01-01T00:00:00Z", "data": data, **attributes}
        return Message(
            subject, json.dumps({k: v for k, v in event.items() if v is not None}).encode()
        )

    ce_headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/p", "ce-type": "t"}
    no_id = json.loads(message(bad).data)
    del no_id["id"]
    poison = [
        # Not CloudEvents: the bare data, or plain text.
        Message("dcm.vm", json.dumps({"id": ids[1], "status": "POISON"}).encode()),
        Message(long_subject(ids[2]), b"POISON"),
        # A CloudEvent without an id (structured, binary).
        Message("dcm.vm", json.dumps(no_id).encode()),
        Message(
            long_subject(ids[3]),
            b'{"status": "POISON"}',
            {k: v for k, v in ce_headers.items() if k != "ce-id"},
        ),
        # Subjects of other shapes.
        structured(f"dcm.providers.{PROVIDER}.vm.instances.{ids[4]}", {"status": "POISON"}),
        structured(f"dcm.providers.{PROVIDER}.vm.instances.{ids[4]}.state", {"status": "P"}),
        structured(f"dcm.vm.{ids[4]}", {"id": ids[4], "status": "POISON"}),
        structured("dcm.providers", {"id": ids[4], "status": "POISON"}),
        # Data without a status, or with no usable one.
        structured("dcm.vm", {"id": ids[5], "message": "no status"}),
        structured(long_subject(ids[5]), {"status": ""}),
        structured(long_subject(ids[5]), {"status": 42}),
        # Over 64 KiB: the data, and a whole binary-mode body.
        structured("dcm.vm", {"id": ids[6], "status": "POISON", "message": "x" * 70_000}),
        Message(
            long_subject(ids[6]),
            b'{"status":"POISON","message":"' + b"y" * 66_000 + b'"}',
            ce_headers,
        ),
        # Binary garbage, with and without CloudEvents headers.
        Message("dcm.vm", os.urandom(2048)),
        Message(long_subject(ids[7]), os.urandom(512), ce_headers),
        Message(long_subject(ids[7]), b"\xff\xfe\x00garbage", {"content-type": "text/plain"}),
        # The wrong spec version, a time that is none, ids that disagree.
        structured("dcm.vm", {"id": ids[8], "status": "POISON"}, specversion="0.3"),
        structured("dcm.vm", {"id": ids[8], "status": "POISON"}, time="yesterday"),
        structured(long_subject(ids[9]), {"id": ids[10], "status": "POISON"}),
    ]
    interleaved: list[Message] = []
    for n, event in enumerate(good):
        interleaved.append(
            message(event, "short" if n % 2 else "long", "binary" if n % 3 else "structured")
        )
        interleaved += poison[2 * n : 2 * n + 2]
    interleaved += poison[2 * len(good) :]
    before = event_counts(service.process.url)
    publish(nats.url, interleaved)

    shows(client, {e.instance: shown(e) for e in good}, "the good events among poison")
    counted(
        service.process.url,
        before,
        received=len(interleaved),
        applied=len(good),
        invalid=len(poison),
    )
    health = requests.get(f"{service.process.api}/health", timeout=5)
    assert (health.status_code, health.json()) == (200, HEALTHY)
    assert service.process.process.poll() is None


def test_an_event_for_an_id_without_a_record_is_unknown_and_creates_nothing(
    client: Client, service: Service, nats: NatsServer
) -> None:
    u = unique()
    ghost, known = f"ghost-{u}", f"known-{u}"
    created = create_all(client, [known])
    base = created[known] + timedelta(seconds=1)
    marker = StatusEvent(known, "MARKER", None, base + MS)
    before = event_counts(service.process.url)
    publish(
        nats.url,
        [
            message(StatusEvent(ghost, "RUNNING", "who?", base), "short", "structured"),
            message(StatusEvent(ghost, "RUNNING", "who?", base), "long", "binary"),
            message(marker),
        ],
    )

    shows(client, {known: shown(marker)}, "the marker after the unknown ones")
    counted(service.process.url, before, received=3, unknown_instance=2, applied=1)
    parsed_problem(get(client, ghost), 404, "not-found")
    assert statuses(client, [ghost]) == {}


def test_the_status_filter_finds_a_status_by_its_exact_value_whatever_its_letters(
    client: Client, service: Service, nats: NatsServer
) -> None:
    """Non-ASCII statuses: the exact value always finds them (it did not: Python's
    upper-casing of the value differs from the database's of the column beyond ASCII);
    their ASCII letters match without case."""
    u = unique()
    ids = [f"{name}-{u}" for name in ("fr", "de", "mix")]
    created = create_all(client, ids)
    base = max(created.values()) + timedelta(seconds=1)
    events = [
        StatusEvent(ids[0], f"échoué-{u}", None, base),
        StatusEvent(ids[1], f"Straße-{u}", None, base),
        StatusEvent(ids[2], f"Ünter-Wartung-{u}", None, base),
    ]
    publish(nats.url, [message(e) for e in events])
    shows(client, {e.instance: shown(e) for e in events}, "non-ASCII statuses")

    for event in events:
        assert set(statuses(client, ids, status=event.status)) == {event.instance}, event
    assert set(statuses(client, ids, status=f"ÜNTER-wartung-{u}".upper())) == {ids[2]}
    assert set(statuses(client, ids, status=f"ünter-wartung-{u}".replace("ü", "Ü"))) == {ids[2]}
