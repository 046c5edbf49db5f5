"""What one GET by id costs in this process through the whole app (the service's ASGI
app, middlewares and Connexion, its handler and JSON answer, one access line to
/dev/null), without a socket or a database: a fixed record is read. Prints microseconds
a request (best and median of the rounds), and the objects a request leaves for the
cyclic garbage collector. A diagnostic for the app's own per-request cost; the figures to
quote come from `python -m bench`.

    python -m bench.in_process [--requests 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvloop

from placement.config import Config
from placement.flows.queries import ReadFlows
from placement.http.app import build_app
from placement.http.handlers import Handlers
from placement.http.threads import RequestThreads
from placement.model import ProviderStatus, ResourceView
from placement.telemetry import logs

PATH = "/api/v1alpha1/resources/r0000001"
_NOW = datetime.now(UTC)
RECORD = ResourceView(
    "r0000001",
    "catalog-1",
    '{"vm": {"cpu": 2, "memory": "4Gi"}}',
    "provider-1",
    "APPROVED",
    _NOW,
    _NOW,
    ProviderStatus("RUNNING", "ok", _NOW),
)


class FixedReads:
    """The reads' interface (`store.ResourceReads`), answering one record."""

    async def get(self, resource_id: str) -> ResourceView:
        return RECORD

    async def ping(self) -> None:
        return None


@asynccontextmanager
async def _no_lifespan(_app: Any) -> AsyncIterator[None]:
    yield


def app() -> Any:
    """The service's app at its defaults, on the fixed reads."""
    env = {
        "POLICY_ENGINE_URL": "http://127.0.0.1:9",
        "SP_RESOURCE_MANAGER_URL": "http://127.0.0.1:9",
    }
    config = Config.from_env(env)
    logs.configure("INFO", config.log_format)
    sink = open("/dev/null", "w")  # noqa: SIM115 - open for the process's life
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)
    threads = RequestThreads(config.threads, config.limits.queue_wait)
    handlers = Handlers(None, ReadFlows(FixedReads()), threads)  # type: ignore[arg-type]
    return build_app(config, handlers, _no_lifespan, verifier=None, pool_stats=dict)


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def measure(requests: int, rounds: int) -> tuple[list[float], float]:
    """Microseconds a GET in each round, and the objects a request leaves to the cyclic
    collector."""
    served = app()
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def get(count: int) -> None:
        for _ in range(count):
            await served(_scope(), _receive, send)

    await get(500)  # warm-up: each operation's machinery is built on its first request
    if set(statuses) != {200}:
        raise SystemExit(f"bench.in_process: the app answered {sorted(set(statuses))}, not 200")
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        await get(requests)
        per_round.append((time.perf_counter() - started) / requests * 1e6)
    gc.collect()
    gc.disable()
    try:
        await get(1000)
        garbage = gc.collect() / 1000
    finally:
        gc.enable()
    return per_round, garbage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="GETs a round (5000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    args = parser.parse_args(argv)
    per_round, garbage = uvloop.run(measure(args.requests, args.rounds))
    print(
        f"GET by id in process: best {min(per_round):.1f} us, median"
        f" {statistics.median(per_round):.1f} us a request ({args.rounds} rounds of"
        f" {args.requests}); {garbage:.2f} objects a request left to the cyclic collector"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
