"""The status events consumer: a daemon thread with its own asyncio loop that pulls from
one durable JetStream consumer and hands each valid event to `apply` (which writes it to
the database, in a worker thread: it blocks).

The durable consumer is shared by every process and replica, so each message is given to
one of them; JetStream keeps a message until it is acked, so nothing is lost while this
process, NATS or the database is down: an event is acked only after `apply` returned (it
committed), nak'ed with a delay when the database failed, and acked when it is invalid
(redelivering it could never help). Delivery is at least once: `apply` must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from placement.config import NatsSettings
from placement.events.metrics import CONNECTED, EVENTS, LAG, LAST_APPLIED
from placement.events.parse import Invalid, StatusEvent, parse
from placement.store import StoreError

log = logging.getLogger(__name__)

Apply = Callable[[StatusEvent], str]

STREAM_SUBJECTS = ["dcm.>"]  # the stream's subjects, when this service has to create it
_OUTCOMES = {"applied": "applied", "stale": "stale", "unknown": "unknown_instance"}
_MAX_LOGGED_SUBJECTS = 10_000  # invalid subjects remembered, to warn once for each


@dataclass(frozen=True)
class Tuning:
    """How the consumer pulls and retries; the defaults suit production."""

    batch: int = 100  # messages per fetch
    fetch_timeout: float = 1.0  # seconds a fetch waits when there is nothing to get
    # Seconds before JetStream redelivers an unacked message: what a crash or a stop with
    # a batch in hand delays its events by (a slow apply's event, delivered again, is
    # applied again: idempotent).
    ack_wait: float = 5.0
    max_ack_pending: int = 1000  # unacked messages in flight, across all processes
    retry_delay: float = 5.0  # nak delay after a failure of `apply`
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    lag_interval: float = 5.0  # seconds between refreshes of the lag gauge
    connect_timeout: float = 2.0


class _Failed:
    """`apply` did not commit this event (it raised, or an earlier one hit StoreError)."""


class Backoff:
    """Delays that double from `initial` up to `cap`, back to `initial` after a success."""

    def __init__(self, initial: float, cap: float) -> None:
        self._initial = initial
        self._cap = cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._initial


class StatusConsumer:
    """Consumes status events in the background: `start()` returns at once (NATS may be
    down: it connects when it can) and `stop()` within `stop_timeout` whatever NATS does."""

    def __init__(self, settings: NatsSettings, apply: Apply, tuning: Tuning | None = None) -> None:
        if not settings.url:
            raise ValueError("NatsSettings.url is not set: the consumer is off")
        self._settings = settings
        self._apply = apply
        self._tuning = tuning or Tuning()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-apply")
        self._logged_subjects: set[str] = set()
        self._connected = False
        self._next_lag = 0.0
        self._database_failed = False  # set by the worker thread, read after its batch

    @property
    def connected(self) -> bool:
        """Connected to NATS and bound to the durable consumer."""
        return self._connected

    @property
    def running(self) -> bool:
        """Its thread is alive (started and not yet stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("StatusConsumer already started")
        self._thread = threading.Thread(target=self._run, name="nats-status", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)  # the loop exists (nothing about NATS is waited for)

    def stop(self, stop_timeout: float = 2.0) -> None:
        """Cancel the loop and wait up to `stop_timeout` seconds for its thread; an `apply`
        in progress finishes in its worker thread (its event, unacked, comes back later)."""
        self._stopping = True
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(stop_timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._serve())
            self._ready.set()
            if not self._stopping:
                loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._ready.set()
            self._set_connected(False)
            loop.close()

    async def _serve(self) -> None:
        """Connect, bind and consume; on any failure, back off and start again, forever."""
        backoff = Backoff(self._tuning.backoff_initial, self._tuning.backoff_max)
        failures = 0
        while True:
            client: Client | None = None
            try:
                client = await nats.connect(**connect_options(self._settings, self._tuning))
                subscription = await self._bind(client.jetstream())
                self._set_connected(True)
                failures = 0
                backoff.reset()
                await self._consume(client, subscription)
            except (OSError, nats.errors.Error, TimeoutError) as error:
                failures += 1
                self._lost(error, failures)
            except Exception:
                failures += 1
                log.exception("status events: consumer failed; reconnecting")
            finally:
                self._set_connected(False)
                if client is not None:
                    await _close(client)
            await asyncio.sleep(backoff.next())

    def _lost(self, error: BaseException, failures: int) -> None:
        """Log the first failure after a change, then every 20th (some minutes apart at the
        capped backoff: a lasting misconfiguration stays visible without flooding)."""
        level = logging.WARNING if failures % 20 == 1 else logging.DEBUG
        log.log(
            level,
            "status events: NATS at %s unavailable (%s: %s); retrying with backoff",
            self._settings.safe_url(),
            type(error).__name__,
            error,
        )

    def _set_connected(self, connected: bool) -> None:
        if connected != self._connected:
            self._connected = connected
            if connected:
                log.info(
                    "status events: connected to NATS at %s, consuming %s from stream %s as %s",
                    self._settings.safe_url(),
                    self._settings.subject,
                    self._settings.stream,
                    self._settings.consumer,
                )
            elif self._stopping:
                log.info("status events: stopped; disconnected from NATS")
            else:
                log.warning("status events: disconnected from NATS")
        CONNECTED.set(1 if connected else 0)

    async def _bind(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        """Bind to the stream (creating it only if missing) and the durable consumer."""
        s = self._settings
        try:
            await js.stream_info(s.stream)
        except nats.js.errors.NotFoundError:
            await self._create_stream(js)
        try:
            info = await js.consumer_info(s.stream, s.consumer)
            if info.config.filter_subject != s.subject:
                log.warning(
                    "status events: consumer %s filters %s, not %s; used as it is",
                    s.consumer,
                    info.config.filter_subject,
                    s.subject,
                )
        except nats.js.errors.NotFoundError:
            await js.add_consumer(s.stream, self._consumer_config())
            log.info("status events: created durable consumer %s on %s", s.consumer, s.stream)
        return await js.pull_subscribe_bind(durable=s.consumer, stream=s.stream)

    async def _create_stream(self, js: JetStreamContext) -> None:
        s = self._settings
        try:
            await js.add_stream(
                name=s.stream, subjects=STREAM_SUBJECTS, storage=api.StorageType.FILE
            )
            log.info("status events: created stream %s (%s)", s.stream, STREAM_SUBJECTS)
        except nats.js.errors.BadRequestError:
            await js.stream_info(s.stream)  # another process made it meanwhile, else raise

    def _consumer_config(self) -> api.ConsumerConfig:
        t = self._tuning
        return api.ConsumerConfig(
            durable_name=self._settings.consumer,
            filter_subject=self._settings.subject,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=t.ack_wait,
            max_ack_pending=t.max_ack_pending,
            max_deliver=-1,
        )

    async def _consume(self, client: Client, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            if not client.is_connected:
                raise ConnectionError("connection lost")
            try:
                messages = await sub.fetch(self._tuning.batch, timeout=self._tuning.fetch_timeout)
            except nats.errors.TimeoutError:
                messages = []
            await self._refresh_lag(sub)
            if messages:
                await self._handle(messages)
            if self._database_failed:
                self._database_failed = False
                await asyncio.sleep(self._tuning.retry_delay)  # not the whole backlog nak'ed

    async def _handle(self, messages: Sequence[Msg]) -> None:
        """Parse a batch; ack the invalid; apply the rest in order in the worker thread,
        then ack or nak each by its result."""
        valid: list[tuple[Msg, StatusEvent]] = []
        for message in messages:
            EVENTS.labels("received").inc()
            parsed = self._parse(message)
            if isinstance(parsed, Invalid):
                self._invalid(message.subject, parsed.reason)
                await message.ack()
            else:
                valid.append((message, parsed))
        if not valid:
            return
        events = [event for _, event in valid]
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._pool, self._apply_all, events)
        for (message, event), result in zip(valid, results, strict=True):
            await self._settle(message, event, result)

    def _parse(self, message: Msg) -> StatusEvent | Invalid:
        try:
            meta = message.metadata
            return parse(
                message.subject,
                message.headers,
                message.data,
                meta.timestamp,
                meta.sequence.stream,
            )
        except Exception:  # a bug, not the message's fault: never loop on it
            log.exception("status events: parsing %s failed", message.subject)
            return Invalid("parser failed")

    def _invalid(self, subject: str, reason: str) -> None:
        EVENTS.labels("invalid").inc()
        if subject in self._logged_subjects or len(self._logged_subjects) >= _MAX_LOGGED_SUBJECTS:
            return
        self._logged_subjects.add(subject)
        log.warning(
            "status events: dropped an invalid event on %s: %s (further ones on this subject"
            " are counted, not logged)",
            subject,
            reason,
        )

    def _apply_all(self, events: list[StatusEvent]) -> list[str | _Failed]:
        """In the worker thread: apply each event; after a StoreError, the database is
        failing: the rest are not tried (they are nak'ed, to come back later)."""
        results: list[str | _Failed] = []
        for index, event in enumerate(events):
            try:
                results.append(self._apply(event))
            except StoreError as error:
                log.warning(
                    "status events: database failed on %s (sequence %d): %s; retrying in %ss",
                    event.instance_id,
                    event.sequence,
                    error,
                    self._tuning.retry_delay,
                )
                results.extend(_Failed() for _ in events[index:])
                self._database_failed = True
                return results
            except Exception:
                log.exception(
                    "status events: applying %s (sequence %d) failed; retrying in %ss",
                    event.instance_id,
                    event.sequence,
                    self._tuning.retry_delay,
                )
                results.append(_Failed())
        return results

    async def _settle(self, message: Msg, event: StatusEvent, result: str | _Failed) -> None:
        if isinstance(result, _Failed):
            EVENTS.labels("retried").inc()
            await message.nak(delay=self._tuning.retry_delay)
            return
        await message.ack()
        outcome = _OUTCOMES.get(result)
        if outcome is None:
            log.warning("status events: apply returned %r, counted as applied", result[:40])
            outcome = "applied"
        EVENTS.labels(outcome).inc()
        if outcome == "applied":
            LAST_APPLIED.set(time.time())

    async def _refresh_lag(self, sub: JetStreamContext.PullSubscription) -> None:
        now = time.monotonic()
        if now < self._next_lag:
            return
        self._next_lag = now + self._tuning.lag_interval
        try:
            info = await sub.consumer_info()
        except nats.errors.TimeoutError:
            return
        if info.num_pending is not None:
            LAG.set(info.num_pending)


def connect_options(settings: NatsSettings, tuning: Tuning) -> dict[str, Any]:
    """nats.connect's arguments. Its own reconnection is off: `StatusConsumer` reconnects,
    the same way at start and after a loss (binding again included)."""
    s = settings
    options: dict[str, Any] = {
        "servers": s.servers(),
        "name": s.consumer,
        "allow_reconnect": False,
        "connect_timeout": tuning.connect_timeout,
        # One try per server, then raise (nats-py reads 0 as "try forever", inside connect).
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "error_cb": _quiet,
        "disconnected_cb": _quiet_event,
        "closed_cb": _quiet_event,
    }
    for option, value in (("token", s.token), ("user", s.user), ("password", s.password)):
        if value:
            options[option] = value
    if s.creds_file:
        options["user_credentials"] = s.creds_file
    if s.nkey_seed:
        # A path to a seed file, or the seed itself.
        is_file = os.path.isfile(s.nkey_seed)
        options["nkeys_seed" if is_file else "nkeys_seed_str"] = s.nkey_seed
    if s.tls_ca_file or s.tls_cert_file:
        options["tls"] = _tls_context(s)
    return options


def _tls_context(settings: NatsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.tls_ca_file)
    if settings.tls_cert_file:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def _close(client: Client) -> None:
    """Close without waiting long on a server that does not answer."""
    with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
        await asyncio.wait_for(client.close(), 1.0)


async def _quiet(error: Exception) -> None:
    """nats-py's callbacks: `_serve` logs what matters, once per change."""
    log.debug("status events: NATS client error: %s", error)


async def _quiet_event() -> None:
    return None
