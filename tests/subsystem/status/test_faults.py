"""Status events when things fail: NATS killed and restarted mid-stream, the service
killed mid-batch and restarted, two replicas sharing one durable consumer. Each test has
a NATS server and serve processes of its own (they are killed, or counted from zero) on
the module's database, and checks the final statuses through the public API, the
consumer's counts on `/metrics` and the durable consumer's state in NATS."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from placement_manager_client import Client

from placement.config import Database
from tests.harness.calls import get, resource
from tests.harness.concurrency import in_background
from tests.harness.nats import NatsServer, consumer_info, publish, stream_info
from tests.harness.processes import ServeProcess
from tests.harness.standins import StandInUpstreams
from tests.harness.status_events import (
    Shown,
    each_applied_or_stale,
    event_counts,
    eventually,
    fields,
    mismatches,
    nats_connected,
    provision,
    shown,
    statuses,
    summed,
    workload,
)
from tests.subsystem.status.conftest import create_all, serve_env, start_serve

HEALTHY = {"status": "healthy", "path": "health"}
STREAM, DURABLE = "dcm-status", "placement-manager"  # the service's defaults


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server for this test alone."""
    server = NatsServer(tmp_path / "jetstream")
    server.start()
    yield server
    server.stop()


def unique() -> str:
    return uuid.uuid4().hex[:8]


def final(client: Client, expected: dict[str, Shown], what: str, timeout: float = 5.0) -> None:
    """Within `timeout` seconds, the list shows `expected`; then GET shows it too."""
    eventually(
        lambda: statuses(client, expected),
        lambda seen: not mismatches(seen, expected),
        f"{what}: the list shows every expected status (mismatches below)",
        timeout,
    )
    for rid, want in expected.items():
        assert fields(resource(get(client, rid), 200)) == want, rid


def settled(url: str, acked: bool = True) -> None:
    """Within the deadline, the durable consumer has delivered everything, and (`acked`)
    had every delivery acked."""
    eventually(
        lambda: consumer_info(url, STREAM, DURABLE),
        lambda info: info.num_pending == 0 and (info.num_ack_pending == 0 or not acked),
        "every message delivered" + (" and acked" if acked else ""),
    )


def health(api: str) -> tuple[int, object]:
    answer = requests.get(f"{api}/health", timeout=5)
    return answer.status_code, answer.json()


def test_nats_killed_and_restarted_mid_stream(
    database: Database, suite_standins: StandInUpstreams, own_nats: NatsServer, tmp_path: Path
) -> None:
    rng = random.Random(4222)
    process = start_serve(serve_env(database, suite_standins, own_nats.url), tmp_path / "s.log")
    try:
        with Client(base_url=process.api, timeout=30) as client:
            u = unique()
            ids = [f"k{n:02d}-{u}" for n in range(50)]
            created = create_all(client, ids)
            batch, newest = workload(rng, ids, max(created.values()) + timedelta(seconds=1))
            first, then = batch[:400], batch[400:]
            assert publish(own_nats.url, first)  # stored (acked by JetStream)
            eventually(
                lambda: event_counts(process.url)["applied"],
                bool,
                "the consumer under way",
            )

            own_nats.kill()
            eventually(lambda: nats_connected(process.url), lambda up: not up, "the loss seen")
            for _ in range(5):  # while NATS is down: healthy, as before; reads served
                assert health(process.api) == (200, HEALTHY)
                assert resource(get(client, ids[0]), 200).id == ids[0]
            own_nats.start()  # the same port and store: JetStream kept the messages
            assert stream_info(own_nats.url, STREAM).state.messages == len(first)
            publish(own_nats.url, then)

            final(client, {rid: shown(e) for rid, e in newest.items()}, "after NATS came back")
            assert nats_connected(process.url)
            assert health(process.api) == (200, HEALTHY)
            # Every message delivered; not necessarily every ack kept: acks a killed NATS
            # had not written yet are lost, and those messages come again after the ack
            # wait (applied already: then counted stale).
            settled(own_nats.url, acked=False)
    finally:
        process.stop()


def test_the_service_killed_mid_batch_and_restarted(
    database: Database, suite_standins: StandInUpstreams, own_nats: NatsServer, tmp_path: Path
) -> None:
    """What the killed process had fetched and not acked is delivered again (to the new
    process, after the durable's ack wait: provisioned at 2 s here, as an operator may;
    the service's own default is 5 s) and applied idempotently."""
    provision(own_nats.url, STREAM, DURABLE, ack_wait=2.0)
    env = serve_env(database, suite_standins, own_nats.url)
    rng = random.Random(9)
    u = unique()
    ids = [f"c{n:02d}-{u}" for n in range(100)]
    first = start_serve(env, tmp_path / "first.log")
    try:
        with Client(base_url=first.api, timeout=30) as client:
            created = create_all(client, ids)
        batch, newest = workload(rng, ids, max(created.values()) + timedelta(seconds=1))
        publish(own_nats.url, batch, acked=False)
        eventually(
            lambda: stream_info(own_nats.url, STREAM).state.messages, lambda n: n == 1200, "stored"
        )
        seen = eventually(
            lambda: event_counts(first.url), lambda c: c["applied"] > 0, "the first batch", 5, 0.01
        )
        first.kill()
    finally:
        first.stop()
    assert seen["received"] < len(batch)  # killed with work left

    second = start_serve(env, tmp_path / "second.log")
    try:
        with Client(base_url=second.api, timeout=30) as client:
            final(client, {rid: shown(e) for rid, e in newest.items()}, "after the restart")
        settled(own_nats.url)
        counts = event_counts(second.url)
        assert counts["received"] > 0  # the rest, and what the first had not acked
        assert counts["applied"] + counts["stale"] == counts["received"]
        assert counts["invalid"] == counts["unknown_instance"] == counts["retried"] == 0
    finally:
        second.stop()


def test_two_replicas_share_the_events_and_count_each_once(
    database: Database, suite_standins: StandInUpstreams, own_nats: NatsServer, tmp_path: Path
) -> None:
    """Both replicas start together (both may make the stream and the durable); every
    message is delivered once in all, to one of them, and counted once by it."""
    env = serve_env(database, suite_standins, own_nats.url)

    def replica(n: int) -> Callable[[], ServeProcess]:
        return lambda: start_serve(env, tmp_path / f"r{n}.log")

    starting = [in_background(replica(n)) for n in (1, 2)]
    replicas = [s.result(timeout=60) for s in starting]
    try:
        rng = random.Random(2)
        u = unique()
        ids = [f"r{n:03d}-{u}" for n in range(100)]
        with (
            Client(base_url=replicas[0].api, timeout=30) as one,
            Client(base_url=replicas[1].api, timeout=30) as two,
        ):
            created = create_all(one, ids[:50]) | create_all(two, ids[50:])
            batch, newest = workload(rng, ids, max(created.values()) + timedelta(seconds=1))
            publish(own_nats.url, batch, acked=False)

            expected = {rid: shown(e) for rid, e in newest.items()}
            final(one, expected, "two replicas")
            final(two, expected, "two replicas (the other one's view)")

        urls = [r.url for r in replicas]
        total = each_applied_or_stale(urls, len(batch))
        assert total["applied"] >= len(ids)  # at least each instance's newest
        settled(own_nats.url)
        info = consumer_info(own_nats.url, STREAM, DURABLE)
        assert info.delivered is not None
        assert info.delivered.consumer_seq == len(batch)  # each delivered once: no redelivery
        assert info.num_redelivered == 0
        shares = [event_counts(url) for url in urls]
        assert summed(shares)["received"] == len(batch)
        for share in shares:
            assert share["applied"] + share["stale"] == share["received"]
        assert all(share["received"] > 0 for share in shares), shares  # both took a share
    finally:
        for r in replicas:
            r.stop()
