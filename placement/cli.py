"""`placement-manager serve`: check the configuration and the database, then serve.
`placement-manager dev`: the service and both upstream stand-ins in one process, to try
it locally (see `devstack.py`)."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from placement import logs
from placement.config import Config, ConfigError
from placement.connections import protocol
from placement.store import StoreUnavailable, make_store

log = logging.getLogger("placement")

# Seconds SIGTERM leaves requests in flight to finish. With app.STOP_DRAIN after it, a
# stop ends within 8 s: before the SIGKILL of `podman stop` and compose (10 s), systemd
# (TimeoutStopSec) and Kubernetes (30 s).
SHUTDOWN_GRACE = 5


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["audit"]:  # its own parser: bad flags are one line, exit status 2
        from placement import audit_command

        return audit_command.main(given[1:])
    parser = argparse.ArgumentParser(prog="placement-manager", description="DCM placement service.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (configured by environment variables)")
    _add_dev_arguments(commands.add_parser("dev", help=_DEV_HELP, description=_DEV_DESCRIPTION))
    commands.add_parser("audit", help="report (and repair) drift between records and the SPRM")
    args = parser.parse_args(given)
    if args.command == "dev":
        from placement import devstack  # only `dev` needs the stand-ins: imported on demand

        return devstack.run(devstack.Options.from_args(args), os.environ)
    return serve()


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
    log.info(
        "starting on http://%s:%d (database %s, policy engine %s, sprm %s, %d worker(s))",
        config.host,
        config.port,
        config.database.describe(),
        config.policy.url,
        config.sprm.url,
        config.workers,
    )
    exit_cleanly_on(signal.SIGTERM, signal.SIGINT)
    return_large_blocks_to_the_os()
    with _shared_metrics(config.workers):
        uvicorn.run(
            "placement.app:app_from_env",
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


_DEV_HELP = "try it locally: the service on SQLite with both upstream stand-ins, one process"
_DEV_DESCRIPTION = (
    "Run the placement service on a SQLite file kept between runs, with the Policy Engine "
    "and SPRM stand-ins as its upstreams, each on its own port, until Ctrl-C. Other "
    "settings come from the environment as for `serve` (SVC_LOG_LEVEL, UPSTREAM_RETRY_*...)."
)


def _add_dev_arguments(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("--host", default="127.0.0.1", help="listen host of all three (127.0.0.1)")
    for flag, port, what in (
        ("--port", 8080, "the placement API"),
        ("--policy-port", 8081, "the Policy Engine stand-in"),
        ("--sprm-port", 8082, "the SPRM stand-in"),
    ):
        dev.add_argument(
            flag, type=_port, default=port, metavar="N", help=f"port of {what} ({port}; 0: any)"
        )
    dev.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="directory of the SQLite database, kept between runs "
        "($XDG_DATA_HOME/placement-manager or ~/.local/share/placement-manager)",
    )
    dev.add_argument("--fresh", action="store_true", help="delete the database first")
    dev.add_argument(
        "--rules",
        type=Path,
        metavar="FILE",
        help="Policy Engine stand-in rules (default: packaged)",
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return int(text)


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
    print(f"placement-manager: {message}", file=sys.stderr)
    return 1
