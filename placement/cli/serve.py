"""`placement-manager serve`: check the configuration and the database, then serve (and
what `dev`, in the dev distribution, shares with it)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from placement.config import Config, ConfigError
from placement.http.connections import protocol
from placement.store import StoreError, StoreUnavailable, make_store
from placement.telemetry import logs

log = logging.getLogger("placement")

# Seconds SIGTERM leaves requests in flight to finish. With bootstrap.STOP_DRAIN after it, a
# stop ends within 8 s: before the SIGKILL of `podman stop` and compose (10 s), systemd
# (TimeoutStopSec) and Kubernetes (30 s).
SHUTDOWN_GRACE = 5


def serve() -> int:
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        return fail(f"invalid configuration: {exc}")
    logs.configure(config.log_level, config.log_format)
    try:
        prepare_database(config)
    except StoreUnavailable as exc:
        return fail(f"database unavailable: {exc}")
    except StoreError as exc:
        return fail(f"database error: {exc}")
    log.info(
        "starting on http://%s:%d (database %s, policy engine %s, sprm %s, %d worker(s))",
        config.host,
        config.port,
        config.database.describe(),
        logs.mask_urls(config.policy.url),
        logs.mask_urls(config.sprm.url),
        config.workers,
    )
    exit_cleanly_on(signal.SIGTERM, signal.SIGINT)
    return_large_blocks_to_the_os()
    with _shared_metrics(config.workers):
        uvicorn.run(
            "placement.bootstrap:app_from_env",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            http=protocol(config.limits),
        )
    return 0


def exit_cleanly_on(*signals: signal.Signals) -> None:
    """uvicorn shuts down gracefully, then re-raises the signal it caught to the
    handler found before it started: make that an exit with status 0."""

    def leave(signum: int, _frame: object) -> None:
        log.info("stopped by %s", signal.Signals(signum).name)
        raise SystemExit(0)

    for signum in signals:
        signal.signal(signum, leave)


# glibc's threshold above which a block is its own mapping, given back to the system
# when freed (M_MMAP_THRESHOLD, and its environment tunable for worker processes).
_M_MMAP_THRESHOLD = -3
_LARGE_BLOCK = 128 * 1024


def return_large_blocks_to_the_os() -> None:
    """Keep glibc from raising its mmap threshold after large blocks are freed (its
    default): then every thread's arena would keep the largest answer it built (a list
    page of 1 MiB specs) long after. Nothing happens on other C libraries."""
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(_LARGE_BLOCK))  # spawned workers
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)


@contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, prometheus-client's multiprocess mode: each worker writes
    its samples under one directory, and /metrics merges them."""
    if workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="placement-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def prepare_database(config: Config) -> None:
    """Wait for the database and create the schema once, before any worker starts."""
    store = make_store(config.database)
    try:
        store.open()
    finally:
        store.close()


def fail(message: str) -> int:
    """One line on stderr (a message of several lines joined; URLs' user information
    masked), and exit status 1."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(f"placement-manager: {logs.mask_urls(line)}", file=sys.stderr)
    return 1
