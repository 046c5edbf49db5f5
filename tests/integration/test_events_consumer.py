"""StatusConsumer against a real nats-server with JetStream (tests/harness/nats.py): what
reaches `apply`, acks and redeliveries, a shared durable, NATS going away and coming back.
Delivery is at least once, so the tests check each event's last outcome."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.js import api
from prometheus_client import REGISTRY

from placement.config import NatsSettings
from placement.events import StatusConsumer, StatusEvent
from placement.events.consumer import Tuning
from placement.events.metrics import LAG
from placement.store import StoreError
from tests.harness import nats as harness
from tests.harness.concurrency import wait_for
from tests.harness.nats import Message, NatsServer, publish

nats_server = harness.nats_server  # the fixture

FAST = Tuning(
    fetch_timeout=0.5,
    ack_wait=2.0,
    retry_delay=0.2,
    backoff_initial=0.05,
    backoff_max=0.5,
    lag_interval=0.1,
)
STREAM = "dcm-status"
DURABLE = "placement-manager"


class Recorder:
    """An `apply` that records what it saw; it can fail its first calls or wait for a gate."""

    def __init__(
        self, failures: int = 0, error: Exception | None = None, delay: float = 0.0
    ) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.calls: list[StatusEvent] = []
        self.applied: dict[int, StatusEvent] = {}  # stream sequence → the event, once applied
        self.failures = failures
        self.error = error or StoreError("database unavailable")
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, event: StatusEvent) -> str:
        self.gate.wait(10)
        time.sleep(self.delay)
        with self.lock:
            self.calls.append(event)
            if self.failures > 0:
                self.failures -= 1
                raise self.error
            self.applied[event.sequence] = event
        return "applied"

    def count(self) -> int:
        with self.lock:
            return len(self.applied)


@contextmanager
def consuming(
    server: NatsServer, apply: Recorder, tuning: Tuning = FAST, **settings: str
) -> Iterator[StatusConsumer]:
    consumer = StatusConsumer(NatsSettings(url=server.url, **settings), apply, tuning)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()


def connected(consumer: StatusConsumer) -> None:
    wait_for(lambda: consumer.connected, what="the consumer to connect")


def vm_event(instance: str, status: str = "RUNNING", n: int = 0) -> Message:
    """Structured mode on dcm.vm, the instance id in the data."""
    event = {
        "specversion": "1.0",
        "id": f"{instance}-{n}",
        "source": "/providers/kubevirt",
        "type": "dcm.status",
        "data": {"id": instance, "status": status, "message": f"n={n}"},
    }
    return Message("dcm.vm", json.dumps(event).encode())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def events(outcome: str) -> float:
    return metric("placement_status_events_total", outcome=outcome)


def test_both_modes_and_subject_forms_reach_apply(nats_server: NatsServer) -> None:
    apply = Recorder()
    long_subject = "dcm.providers.kubevirt.vm.instances.{}.status"
    binary = {"ce-specversion": "1.0", "ce-id": "b", "ce-source": "/p", "ce-type": "t"}
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        sequences = publish(
            nats_server.url,
            [
                vm_event("vm-1", "PROVISIONING"),
                Message(
                    long_subject.format("vm-2"),
                    json.dumps({"status": "Running", "message": "ok"}).encode(),
                    binary | {"ce-time": "2026-03-30T10:00:00Z"},
                ),
                Message(
                    "dcm.cluster",
                    json.dumps({"id": "c-1", "status": "READY"}).encode(),
                    binary,
                ),
                Message(
                    long_subject.format("vm-3"),
                    json.dumps(
                        {
                            "specversion": "1.0",
                            "id": "s",
                            "source": "/p",
                            "type": "t",
                            "data": {"status": "FAILED"},
                        }
                    ).encode(),
                    {"Content-Type": "application/cloudevents+json"},
                ),
            ],
        )
        wait_for(lambda: apply.count() == 4, what="four events applied")
    got = {seq: (e.instance_id, e.status, e.message, e.subject) for seq, e in apply.applied.items()}
    assert got == {
        sequences[0]: ("vm-1", "PROVISIONING", "n=0", "dcm.vm"),
        sequences[1]: ("vm-2", "Running", "ok", long_subject.format("vm-2")),
        sequences[2]: ("c-1", "READY", None, "dcm.cluster"),
        sequences[3]: ("vm-3", "FAILED", None, long_subject.format("vm-3")),
    }
    assert apply.applied[sequences[1]].time == datetime(2026, 3, 30, 10, tzinfo=UTC)
    assert apply.applied[sequences[2]].time.tzinfo is not None  # JetStream's time


def test_the_stream_and_the_durable_are_created_when_missing(nats_server: NatsServer) -> None:
    with consuming(nats_server, Recorder()) as consumer:
        connected(consumer)
    stream = harness.stream_info(nats_server.url, STREAM).config
    assert (stream.subjects, stream.storage) == (["dcm.>"], api.StorageType.FILE)
    durable = harness.consumer_info(nats_server.url, STREAM, DURABLE).config
    assert durable.filter_subject == "dcm.>"
    assert durable.ack_policy == api.AckPolicy.EXPLICIT
    assert durable.deliver_policy == api.DeliverPolicy.ALL
    assert (durable.ack_wait, durable.max_ack_pending) == (FAST.ack_wait, FAST.max_ack_pending)


def test_poison_messages_are_acked_counted_and_logged_once_per_subject(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    apply = Recorder()
    invalid_before = events("invalid")
    caplog.set_level(logging.WARNING, logger="placement.events")
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        good = publish(
            nats_server.url,
            [
                vm_event("a", n=1),
                Message("dcm.vm", b"\xff not json"),
                Message("dcm.vm", b'{"specversion": "1.0"}'),
                vm_event("b", n=2),
                Message("dcm.vm.extra", json.dumps({"status": "x"}).encode()),
                vm_event("c", n=3),
            ],
        )
        wait_for(lambda: apply.count() == 3, what="the good events applied")
        wait_for(lambda: events("invalid") - invalid_before == 3, what="3 invalid counted")
        wait_for(
            lambda: harness.consumer_info(nats_server.url, STREAM, DURABLE).num_ack_pending == 0,
            what="every message acked",
        )
    assert set(apply.applied) == {good[0], good[3], good[5]}
    warnings = [r.getMessage() for r in caplog.records if "invalid event" in r.getMessage()]
    assert len(warnings) == 2  # dcm.vm twice (logged once), dcm.vm.extra once
    assert any("dcm.vm.extra" in w for w in warnings)
    info = harness.consumer_info(nats_server.url, STREAM, DURABLE)
    assert (info.num_pending, info.num_redelivered) == (0, 0)


def test_a_store_error_naks_and_the_event_is_applied_when_the_database_is_back(
    nats_server: NatsServer,
) -> None:
    apply = Recorder(failures=2)
    retried_before = events("retried")
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        sequences = publish(nats_server.url, [vm_event("a", n=1), vm_event("b", n=2)])
        wait_for(lambda: apply.count() == 2, what="both applied after the failures")
    assert set(apply.applied) == set(sequences)
    assert len(apply.calls) >= 4  # two failures, then each applied
    assert events("retried") - retried_before >= 2


def test_an_unexpected_error_from_apply_is_logged_and_retried(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    apply = Recorder(failures=1, error=RuntimeError("bug"))
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        sequences = publish(nats_server.url, [vm_event("a", n=1), vm_event("b", n=2)])
        wait_for(lambda: apply.count() == 2, what="both applied")
        assert consumer.connected  # the loop went on
    assert set(apply.applied) == set(sequences)
    failures = [r for r in caplog.records if r.exc_info and "applying a" in r.getMessage()]
    assert len(failures) == 1


def test_nats_killed_and_restarted_mid_stream_loses_nothing(nats_server: NatsServer) -> None:
    apply = Recorder(delay=0.002)
    first = [vm_event(f"vm-{n}", n=n) for n in range(300)]
    then = [vm_event(f"vm-{n}", n=n) for n in range(300, 400)]
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        apply.gate.clear()  # hold apply while the backlog builds up
        sequences = publish(nats_server.url, first)
        apply.gate.set()
        wait_for(lambda: apply.count() >= 50, what="part of the backlog applied")
        nats_server.kill()
        wait_for(lambda: not consumer.connected, what="the loss noticed")
        nats_server.start()
        wait_for(lambda: consumer.connected, what="a reconnection")
        sequences += publish(nats_server.url, then)
        wait_for(lambda: apply.count() == 400, timeout=30, what="every event applied")
    assert set(apply.applied) == set(sequences)
    assert {e.instance_id for e in apply.applied.values()} == {f"vm-{n}" for n in range(400)}


def test_two_consumers_on_one_durable_each_take_a_share_once(nats_server: NatsServer) -> None:
    apply_a, apply_b = Recorder(), Recorder()
    small = replace(FAST, batch=10)
    with consuming(nats_server, apply_a, small) as a, consuming(nats_server, apply_b, small) as b:
        connected(a)
        connected(b)
        sequences = publish(nats_server.url, [vm_event(f"i{n}", n=n) for n in range(500)])
        wait_for(lambda: apply_a.count() + apply_b.count() >= 500, what="every event applied")
    seen = [e.sequence for e in apply_a.calls + apply_b.calls]
    assert sorted(seen) == sorted(sequences)  # each exactly once
    assert apply_a.calls
    assert apply_b.calls


def test_an_existing_stream_is_bound_not_changed(nats_server: NatsServer) -> None:
    config = api.StreamConfig(
        name=STREAM,
        subjects=["dcm.>", "other.>"],
        storage=api.StorageType.MEMORY,
        max_msgs=10_000,
        max_age=3600.0,
    )
    harness.add_stream(nats_server.url, config)
    before = harness.stream_info(nats_server.url, STREAM).config
    apply = Recorder()
    with consuming(nats_server, apply) as consumer:
        connected(consumer)
        publish(nats_server.url, [vm_event("a"), Message("other.thing", b"not ours")])
        wait_for(lambda: apply.count() == 1, what="our event applied")
    after = harness.stream_info(nats_server.url, STREAM).config
    assert after == before
    assert (after.subjects, after.storage, after.max_msgs) == (
        ["dcm.>", "other.>"],
        api.StorageType.MEMORY,
        10_000,
    )


def test_start_with_nats_down_connects_when_it_comes_up(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "js")  # a free port, nothing listening yet
    apply = Recorder()
    try:
        with consuming(server, apply) as consumer:
            assert not consumer.connected  # start() returned without NATS
            assert metric("placement_nats_connected") == 0
            server.start()
            connected(consumer)
            assert metric("placement_nats_connected") == 1
            publish(server.url, [vm_event("a")])
            wait_for(lambda: apply.count() == 1, what="the event applied")
    finally:
        server.stop()


def test_stop_returns_while_nats_is_down(nats_server: NatsServer) -> None:
    consumer = StatusConsumer(NatsSettings(url=nats_server.url), Recorder(), FAST)
    consumer.start()
    connected(consumer)
    nats_server.kill()
    wait_for(lambda: not consumer.connected, what="the loss noticed")
    consumer.stop()
    assert not consumer.running


def test_lag_and_last_applied_metrics(nats_server: NatsServer) -> None:
    apply = Recorder()
    started = time.time()
    with consuming(nats_server, apply) as consumer:
        connected(consumer)  # the stream and the durable made
    publish(nats_server.url, [vm_event(f"i{n}", n=n) for n in range(300)])
    apply.gate.clear()  # the first batch held: the rest is the lag
    LAG.set(-1)  # whatever an earlier test left
    with consuming(nats_server, apply) as consumer:
        wait_for(lambda: metric("placement_status_consumer_lag") > 0, what="a lag")
        apply.gate.set()
        wait_for(lambda: apply.count() == 300, what="the backlog applied")
        wait_for(lambda: metric("placement_status_consumer_lag") == 0, what="no lag")
    assert metric("placement_status_last_applied_time_seconds") >= started
