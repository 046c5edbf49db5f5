"""How fast StatusConsumer drains a backlog: a private nats-server, N status events
published first, then one consumer with a trivial `apply`; prints events per second.

    python -m bench.events_throughput [--events 20000] [--batch 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from placement.config import NatsSettings
from placement.events import StatusConsumer, StatusEvent
from placement.events.consumer import Tuning
from tests.harness.concurrency import wait_for
from tests.harness.nats import Message, NatsServer, consumer_info, publish


def event(n: int) -> Message:
    body = {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "/providers/bench",
        "type": "dcm.status",
        "data": {"id": f"vm-{n % 1000}", "status": "RUNNING", "message": "ok"},
    }
    return Message("dcm.vm", json.dumps(body).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    applied = set()
    lock = threading.Lock()

    def apply(e: StatusEvent) -> str:
        with lock:
            applied.add(e.sequence)
        return "applied"

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "js")
        server.start()
        try:
            settings = NatsSettings(url=server.url)
            tuning = Tuning(batch=args.batch)
            first = StatusConsumer(settings, apply, tuning)  # makes the stream and the durable
            first.start()
            wait_for(lambda: first.connected, what="the consumer to connect")
            first.stop()
            publish(server.url, [event(n) for n in range(args.events)], acked=False)
            wait_for(
                lambda: (
                    consumer_info(server.url, "dcm-status", "placement-manager").num_pending
                    == args.events
                ),
                timeout=60,
                what="the backlog stored",
            )
            consumer = StatusConsumer(settings, apply, tuning)
            started = time.perf_counter()
            consumer.start()
            wait_for(lambda: len(applied) == args.events, timeout=600, what="the backlog applied")
            seconds = time.perf_counter() - started
            consumer.stop()
        finally:
            server.stop()
    print(
        f"{args.events} events (batch {args.batch}) applied in {seconds:.2f} s:"
        f" {args.events / seconds:,.0f} events/s"
    )


if __name__ == "__main__":
    main()
