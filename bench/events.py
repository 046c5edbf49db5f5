"""The `events` scenario: how fast the service applies a backlog of provider status
events, against the events floor (`events_floor.py`), on the same backlog.

Once a run: a private nats-server (JetStream, file storage, in the temporary folder, with
the load side's cores), the stream `dcm-status` (subjects `dcm.>`), and the backlog
published into it: `events` CloudEvents (structured JSON), `events / instances` for each
of `instances` seeded READY records, half on `dcm.vm` (the data names the instance), half
on `dcm.providers.local-kubevirt.vm.instances.{id}.status`, each with its own time
(milliseconds apart), shuffled (a fixed seed). Then, for each target in turn, on a fresh
copy of a database holding just those records:

- the service: `placement-manager serve` at its defaults with NATS_URL set (so it creates
  its durable consumer, `placement-manager`, and drains the backlog);
- the floor: `python -m bench.events_floor` (its own durable), pinned the same way.

Each repeat drains once per measured mode (pinned, unpinned: bench/pinning.py).

Each durable is deleted before its run, so every run reads the whole backlog. The bench
polls the durable's state every 20 ms (JetStream's consumer info: the ack floor, pending
and unacked counts; both ack an event only once its UPDATE committed): the rate is the
events acked between the first poll that saw progress and the one that saw them all, over
that time (start-up and connecting are left out; the seconds from launch are recorded
too). Then the honest check: every instance's status, message and time in the database
must be those of its newest event; each instance that differs counts as an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import psycopg
from nats.js import api

from bench.pg import PrivatePostgres
from bench.procs import (
    BenchError,
    Child,
    core_busy,
    core_ticks,
    cpu_seconds,
    free_port,
    machine_busy,
    rss_bytes,
    tree,
)
from bench.stack import REPO, Launch, StandIns, Target, copy_rows, seed_lines, service_launch

STREAM = "dcm-status"
SUBJECTS = ["dcm.>"]
SERVICE_DURABLE = "placement-manager"  # NATS_CONSUMER_NAME's default
FLOOR_DURABLE = "bench-events-floor"
EVENTS_TEMPLATE = "bench_events_template"
FLOOR_BATCH = 100  # the service's Tuning.batch default
_STATUSES = ("PROVISIONING", "RUNNING", "STOPPING", "STOPPED", "STARTING", "RUNNING", "FAILED")
_BASE = datetime(2026, 1, 1, tzinfo=UTC)  # after every seeded record's create and status time
_POLL = 0.02


def find_nats_server() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").is_file() else None
    )
    if found is None:
        raise BenchError(
            "the events scenario needs nats-server (Debian: apt-get install nats-server)"
        )
    return found


@dataclass(frozen=True)
class Backlog:
    """The events to publish, in stream order, and each instance's newest status."""

    messages: list[tuple[str, bytes]]  # (subject, body)
    newest: dict[str, tuple[str, str | None, datetime]]  # id: (status, message, time)


def make_backlog(ids: Sequence[str], events: int, seed: int = 15) -> Backlog:
    """`events` status events spread evenly over `ids`, each with a distinct time (the
    later event of an instance is the newer), both subject forms, shuffled."""
    messages: list[tuple[str, bytes]] = []
    newest: dict[str, tuple[str, str | None, datetime]] = {}
    for n in range(events):
        rid, step = ids[n % len(ids)], n // len(ids)
        moment = _BASE + timedelta(milliseconds=n)
        status = _STATUSES[step % len(_STATUSES)]
        message = None if step % 3 == 2 else f"{status.lower()}: step {step}"
        data: dict[str, Any] = {"status": status}
        if message is not None:
            data["message"] = message
        if n % 2 == 0:
            subject = "dcm.vm"
            data = {"id": rid, **data}
        else:
            subject = f"dcm.providers.local-kubevirt.vm.instances.{rid}.status"
        event = {
            "specversion": "1.0",
            "id": f"ev-{n}",
            "source": "/providers/local-kubevirt",
            "type": "dcm.status",
            "time": moment.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": data,
        }
        messages.append((subject, json.dumps(event, separators=(",", ":")).encode()))
        newest[rid] = (status, message, moment)
    random.Random(seed).shuffle(messages)  # noqa: S311 - a reproducible order
    return Backlog(messages, newest)


class NatsServer:
    """`nats-server -js` on a free loopback port, storing in `tmp/jetstream`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.child: Child | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_nats_server()
        store = self.tmp / "jetstream"
        store.mkdir(exist_ok=True)
        for attempt in range(3):
            self.port = free_port()
            argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)]
            self.child = Child("nats-server", argv, log=self.tmp / "nats-server.log")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.child.alive():
                if _greets(self.port):
                    return
                time.sleep(0.05)
            self.child.stop()
            if attempt == 2:
                raise BenchError(f"nats-server did not start (log {self.child.log})")

    def pids(self) -> list[int]:
        return [self.child.pid] if self.child else []

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


def _greets(port: int) -> bool:
    """It answers with INFO, JetStream on (before it does, clients fail to bind)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            line = sock.makefile("rb").readline(65536)
    except OSError:
        return False
    return line.startswith(b"INFO ") and bool(json.loads(line[5:]).get("jetstream"))


class JetStream:
    """The benchmark's own connection to the server (its own event loop): publishing the
    backlog, deleting durables, polling them."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = self._run(nats.connect(url, allow_reconnect=False, connect_timeout=5))
        # JetStream API requests wait up to 30 s (nats-py's default, 5 s, was once too
        # short for deleting a durable right after a drain of the whole backlog).
        self._js = self._client.jetstream(timeout=30)

    def _run(self, coroutine: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(coroutine, 60))

    def publish(self, backlog: Backlog) -> int:
        """The stream (as a provider side would have made it) and the backlog in it;
        its last sequence."""
        config = api.StreamConfig(
            name=STREAM, subjects=SUBJECTS, storage=api.StorageType.FILE, max_msgs=-1
        )
        self._run(self._js.add_stream(config))

        async def send() -> None:
            for subject, body in backlog.messages:
                await self._client.publish(subject, body)
            await self._client.flush(30)

        self._run(send())
        deadline = time.monotonic() + 60
        while True:
            state = self._run(self._js.stream_info(STREAM)).state
            if state.messages == len(backlog.messages):
                return int(state.last_seq)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the stream holds {state.messages} events of {len(backlog.messages)}"
                )
            time.sleep(0.05)

    def delete_durable(self, name: str) -> None:
        for attempt in range(3):
            try:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    self._run(self._js.delete_consumer(STREAM, name))
                return
            except nats.errors.TimeoutError:
                if attempt == 2:
                    raise

    def durable(self, name: str) -> api.ConsumerInfo | None:
        try:
            return self._run(self._js.consumer_info(STREAM, name))  # type: ignore[no-any-return]
        except nats.js.errors.NotFoundError:
            return None

    def close(self) -> None:
        try:
            self._run(self._client.close())
        finally:
            self._loop.close()


@dataclass
class Events:
    """What the scenario keeps for a whole run: the server, the backlog, the template."""

    nats: NatsServer
    js: JetStream
    backlog: Backlog
    last_seq: int
    ids: list[str]

    def stop(self) -> None:
        self.js.close()
        self.nats.stop()


def prepare(pg: PrivatePostgres, tmp: Path, instances: int, events: int) -> tuple[Events, dict]:
    """The events template database (just `instances` seeded records), the server, the
    stream and the backlog; seconds each took."""
    started = time.monotonic()
    pg.execute("postgres", f'CREATE DATABASE "{EVENTS_TEMPLATE}" TEMPLATE "bench_template"')
    pg.execute(EVENTS_TEMPLATE, "TRUNCATE resources")
    copy_rows(pg.conninfo(EVENTS_TEMPLATE), seed_lines(instances))
    pg.execute(EVENTS_TEMPLATE, "VACUUM ANALYZE resources")
    with psycopg.connect(pg.conninfo(EVENTS_TEMPLATE), autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM resources ORDER BY id")]
    seeded = time.monotonic()
    server = NatsServer(tmp)
    server.start()
    try:
        js = JetStream(server.url)
        backlog = make_backlog(ids, events)
        last_seq = js.publish(backlog)
    except BaseException:
        server.stop()
        raise
    timings = {
        "events_seed_s": round(seeded - started, 2),
        "events_publish_s": round(time.monotonic() - seeded, 2),
    }
    return Events(server, js, backlog, last_seq, ids), timings


def _floor_child(
    pg: PrivatePostgres, database: str, events: Events, tmp: Path, tag: str, cpus: Any
) -> Child:
    env = dict(os.environ)
    env.update(
        {
            "EVENTS_FLOOR_DSN": pg.conninfo(database),
            "EVENTS_FLOOR_NATS_URL": events.nats.url,
            "EVENTS_FLOOR_STREAM": STREAM,
            "EVENTS_FLOOR_DURABLE": FLOOR_DURABLE,
            "EVENTS_FLOOR_BATCH": str(FLOOR_BATCH),
        }
    )
    argv = [sys.executable, "-m", "bench.events_floor"]
    return Child(
        "events floor", argv, log=tmp / f"events-floor-{tag}.log", env=env, cwd=REPO, cpus=cpus
    )


def _sample(groups: Mapping[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: cpu_seconds(pids) for name, pids in groups.items()}


def _metrics(url: str) -> dict[str, float]:
    """The service's placement_status_events_total, by outcome."""
    counts: dict[str, float] = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:  # noqa: S310 - loopback
        for line in answer.read().decode().splitlines():
            if line.startswith("placement_status_events_total{"):
                labels, _, value = line.rpartition(" ")
                outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
                counts[outcome] = float(value)
    return counts


def _wrong_statuses(pg: PrivatePostgres, database: str, backlog: Backlog) -> list[str]:
    """Instances whose recorded status is not their newest event's."""
    with psycopg.connect(pg.conninfo(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, status, status_message, status_time FROM resources"
        ).fetchall()
    found = {rid: (status, message, moment) for rid, status, message, moment in rows}
    return [rid for rid, want in backlog.newest.items() if found.get(rid) != want]


def measure(
    target: Target,
    repeat: int,
    mode: str,
    events: Events,
    pg: PrivatePostgres,
    standins: StandIns,
    tmp: Path,
    overrides: Mapping[str, str],
    cpus: frozenset[int] | None,
    load_cores: frozenset[int] | None,
) -> dict[str, Any]:
    """Drain the backlog with the service or the floor, pinned or unpinned (`mode`: the
    caller placed the load side; the drainer starts on `cpus`, None: on ours); its record
    (rps: events/s)."""
    database = f"bench_events_{target.tag}{repeat}{mode[0]}"
    pg.execute("postgres", f'CREATE DATABASE "{database}" TEMPLATE "{EVENTS_TEMPLATE}"')
    durable = SERVICE_DURABLE if target.name == "service" else FLOOR_DURABLE
    events.js.delete_durable(durable)
    total = len(events.backlog.messages)
    timeout = 120.0 + total / 50
    url = ""
    started = time.monotonic()
    if target.name == "service":
        # A target of its own: `target` keeps its database for the other scenarios.
        drainer = Target(target.name, target.tag, database)
        launch: Launch = service_launch(
            drainer, pg, standins, tmp, 1, {**overrides, "NATS_URL": events.nats.url}, cpus
        )
        launch.launch()
        assert launch.child is not None
        child, url = launch.child, launch.url
    else:
        child = _floor_child(pg, database, events, tmp, f"{repeat}{mode[0]}", cpus)
    groups = {"target": [child.pid], "postgres": tree(pg.child.pid) if pg.child else []}
    groups["nats-server"] = events.nats.pids()
    first: tuple[float, int, dict[str, dict[int, float]], Any, float] | None = None
    try:
        while True:
            info = events.js.durable(durable)
            now = time.monotonic()
            acked = info.ack_floor.stream_seq if info and info.ack_floor else 0
            if first is None and acked > 0:
                groups["target"] = tree(child.pid)
                if pg.child:  # with the backends the target opened meanwhile
                    groups["postgres"] = tree(pg.child.pid)
                first = (now, acked, _sample(groups), core_ticks(), machine_busy())
            if (
                info is not None
                and acked >= events.last_seq
                and not info.num_pending
                and not info.num_ack_pending
            ):
                break
            if not child.alive():
                raise BenchError(
                    f"{target.name} exited with status {child.popen.returncode} while draining"
                    f" the events (log {child.log}):\n{child.tail()}"
                )
            if now - started > timeout:
                raise BenchError(
                    f"{target.name}: {acked} of {total} events acked after {timeout:g} s"
                    f" (log {child.log}):\n{child.tail()}"
                )
            time.sleep(_POLL)
        done = time.monotonic()
        assert first is not None
        groups["target"] = tree(child.pid)
        after, ticks_after, busy_after = _sample(groups), core_ticks(), machine_busy()
        pids = tree(child.pid)
        sizes = rss_bytes(pids)
        counters = {}
        if target.name == "service":
            launch.wait()  # serving (a small backlog may be drained before it is)
            counters = _metrics(url)
    finally:
        child.stop(timeout=35)
    first_at, first_acked, before, ticks_before, busy_before = first
    drained, wall = total - first_acked, done - first_at
    if drained <= 0 or wall <= 0:  # all acked before the first poll saw any: from launch
        drained, wall = total, done - started
    used = {
        name: round(sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in times.items()), 3)
        for name, times in after.items()
    }
    used["others"] = round(max(0.0, busy_after - busy_before - sum(used.values())), 3)
    wrong = _wrong_statuses(pg, database, events.backlog)
    errors = len(wrong) + int(counters.get("invalid", 0)) + int(counters.get("unknown_instance", 0))
    record: dict[str, Any] = {
        "scenario": "events",
        "target": target.name,
        "repeat": repeat,
        "pinning": mode,
        "workers": 1,
        "events": total,
        "instances": len(events.backlog.newest),
        "rps": drained / wall,
        "requests": drained,
        "drain_s": round(wall, 3),
        "launch_to_done_s": round(done - started, 3),
        "launch_to_first_s": round(first_at - started, 3),
        "events_per_s_from_launch": total / (done - started),
        "error_count": errors,
        "errors": {"wrong_status": len(wrong), "wrong_ids": wrong[:5]},
        "counters": counters,
        "cpu_s": used,
        "cpu_cores": {name: round(seconds / wall, 2) for name, seconds in used.items()},
        "core_busy": {str(k): v for k, v in core_busy(ticks_before, ticks_after).items()},
        "cpu_ms_per_request": used["target"] * 1000 / max(1, drained),
        "target_cores": sorted(cpus) if cpus else None,
        "load_cores": sorted(load_cores) if load_cores else None,
        "rss_bytes": sum(sizes.values()),
        "rss_workers_bytes": sum(sizes.values()),
        "processes": len(pids),
    }
    pg.execute("postgres", f'DROP DATABASE "{database}"')
    return record
