"""`placement-manager serve`: check the configuration and the database, then serve."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import uvicorn

from placement import logs
from placement.config import Config, ConfigError
from placement.store import StoreUnavailable, make_store

log = logging.getLogger("placement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="placement-manager", description="DCM placement service.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the API (configured by environment variables)")
    parser.parse_args(argv)
    return serve()


def serve() -> int:
    try:
        config = Config.from_env(os.environ)
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}")
    logs.configure(config.log_level)
    try:
        _prepare_database(config)
    except StoreUnavailable as exc:
        return _fail(f"database unavailable: {exc}")
    log.info(
        "starting on http://%s:%d (database %s, policy engine %s, sprm %s, %d worker(s))",
        config.host,
        config.port,
        config.database.describe(),
        config.policy.url,
        config.sprm.url,
        config.workers,
    )
    _exit_cleanly_on(signal.SIGTERM, signal.SIGINT)
    uvicorn.run(
        "placement.app:app_from_env",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def _exit_cleanly_on(*signals: signal.Signals) -> None:
    """uvicorn shuts down gracefully, then re-raises the signal it caught to the
    handler found before it started: make that an exit with status 0."""

    def leave(signum: int, _frame: object) -> None:
        log.info("stopped by %s", signal.Signals(signum).name)
        raise SystemExit(0)

    for signum in signals:
        signal.signal(signum, leave)


def _prepare_database(config: Config) -> None:
    """Wait for the database and create the schema once, before any worker starts."""
    store = make_store(config.database)
    try:
        store.open()
    finally:
        store.close()


def _fail(message: str) -> int:
    print(f"placement-manager: {message}", file=sys.stderr)
    return 1
