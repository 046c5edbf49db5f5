"""The composition root: builds the whole service from its configuration (store,
upstream clients, flows, background threads, HTTP app) and ties their lifetimes to the
app's (`lifespan`). Nothing else constructs adapters; nothing here decides a request."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import connexion

from placement.config import Config
from placement.events import StatusConsumer
from placement.flows.changes import PlacementService
from placement.flows.drift_monitor import Auditor
from placement.flows.queries import ReadFlows
from placement.flows.reconciler import Reconciler
from placement.flows.status import StatusUpdates
from placement.http.app import build_app
from placement.http.auth import TokenVerifier
from placement.http.handlers import Handlers
from placement.http.threads import RequestThreads
from placement.store import make_store
from placement.telemetry import logs
from placement.upstream.policy import PolicyClient
from placement.upstream.sprm import SprmClient

# Seconds the process's shutdown may wait, after uvicorn's graceful period, for handler
# threads and the reconciler still waiting on an upstream (with retries, up to minutes).
# Their records hold leases, so the reconciler settles them later: `serve` leaves without
# them, so that a stop ends before the platform's SIGKILL (cli.SHUTDOWN_GRACE + this).
STOP_DRAIN = 3.0
log = logging.getLogger("placement")


def create_app(
    config: Config, *, stop_drain: float | None = None, connexion_adaptations: bool = True
) -> connexion.AsyncApp:
    """Build the whole service: store, upstream clients, flows, HTTP app. With
    `stop_drain` (seconds), the process exits at most that long after shutdown begins,
    even if a request or the reconciler is still waiting on an upstream.
    `connexion_adaptations=False` (tests only) serves with Connexion's own per-request
    machinery instead of the faster one of `http/connexion.py`: it must change nothing
    but speed."""
    store = make_store(config.database)
    policy = PolicyClient(config.policy, config.retry, config.threads, config.forward_auth)
    sprm = SprmClient(config.sprm, config.retry, config.threads, config.forward_auth)
    service = PlacementService(
        store, policy, sprm, config.operation_lease(), config.reconcile.interval
    )
    reads = store.reads()
    read_flows = ReadFlows(reads, page_max_bytes=config.limits.page_max_bytes)
    reconciler = Reconciler(
        store, sprm, config.operation_lease(), retry_seconds=config.reconcile.interval
    )
    auditor = (
        Auditor(store, sprm, config.audit_interval, config.operation_lease())
        if config.audit_interval > 0
        else None
    )
    verifier = TokenVerifier(config.auth) if config.auth.enabled else None
    events = StatusConsumer(config.nats, StatusUpdates(store).apply) if config.nats.url else None

    # The handlers run here; the number of threads caps the requests served at once.
    threads = RequestThreads(config.threads, config.limits.queue_wait)
    handlers = Handlers(service, read_flows, threads)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(threads.executor, store.open)
        await reads.open()
        reconciler.start(config.reconcile.interval)
        if auditor is not None:
            auditor.start()
        if events is not None:
            log.info("reading status events from %s", config.nats.safe_url())
            events.start()
        try:
            yield
        finally:
            if stop_drain is not None:
                _exit_after(stop_drain)
            await loop.run_in_executor(threads.executor, reconciler.stop)
            if auditor is not None:
                await loop.run_in_executor(threads.executor, auditor.stop)
            if events is not None:
                await loop.run_in_executor(threads.executor, events.stop)
            threads.shutdown()
            await reads.close()
            if verifier is not None:
                verifier.keys.close()
            store.close()
            policy.close()
            sprm.close()

    return build_app(
        config,
        handlers,
        lifespan,
        verifier=verifier,
        pool_stats=store.pool_stats,
        connexion_adaptations=connexion_adaptations,
    )


def app_from_env() -> connexion.AsyncApp:
    """Factory for uvicorn workers (`serve`): configuration from the environment."""
    config = Config.from_env(os.environ)
    logs.configure(config.log_level, config.log_format)
    if config.cpu_affinity == "auto":
        cpu = keep_to_one_cpu()
        if cpu is not None:
            log.info("server process %d keeps to CPU %d (SVC_CPU_AFFINITY=auto)", os.getpid(), cpu)
    return create_app(config, stop_drain=STOP_DRAIN)


def keep_to_one_cpu() -> int | None:
    """Keep this process's threads on one of the CPUs it may use: the least busy now (ties:
    by process id, so that sibling workers spread). Every write hands over from the event
    loop to a request thread and back; on one core that is a cheap switch, across cores
    it cost about 1.7x the CPU a request (the benchmark's unpinned deletes). One process
    uses about one core anyway (the GIL). None when there is no choice to make."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None
    if len(allowed) < 2:
        return None
    cpu = _least_busy(allowed)
    for task in os.listdir("/proc/self/task"):  # the threads started so far; later ones inherit
        try:
            os.sched_setaffinity(int(task), {cpu})
        except OSError:  # a thread that ended meanwhile
            continue
    return cpu


def _least_busy(cpus: list[int], window: float = 0.05) -> int:
    """The CPU of `cpus` idle the longest over `window` seconds (/proc/stat)."""
    before = _idle_ticks()
    time.sleep(window)
    after = _idle_ticks()
    pid = os.getpid()
    return min(
        cpus,
        key=lambda c: (-(after.get(c, 0) - before.get(c, 0)), (c - pid) % len(cpus)),
    )


def _idle_ticks() -> dict[int, int]:
    """Idle and iowait ticks of each CPU, from /proc/stat ({} if it cannot be read)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    ticks = {}
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 5:
            ticks[int(name[3:])] = int(fields[3]) + int(fields[4])
    return ticks


def _exit_after(seconds: float) -> None:
    """End this process in `seconds` unless it has ended by then (a daemon timer: it
    never delays a normal exit). Python would otherwise wait for every thread."""

    def leave() -> None:
        log.warning(
            "still waiting on an upstream %gs into the shutdown: leaving now "
            "(unfinished operations hold leases; the reconciler settles them)",
            seconds,
        )
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, leave)
    timer.daemon = True
    timer.start()
