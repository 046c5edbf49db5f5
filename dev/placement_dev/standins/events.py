"""The SPRM stand-in's status events: what a provider reports about its instances, published
to NATS JetStream as DCM's providers do, for the placement service to consume.

Each event is a structured CloudEvent 1.0 (`application/cloudevents+json`) on the subject
`dcm.providers.{provider}.{serviceType}.instances.{instanceId}.status`, its data
`{"status", "message"}`: PROVISIONING when an instance is created, RUNNING `running_after`
seconds later (unless it was deleted meanwhile), DELETED when it is deleted.

Publishing never blocks or fails the caller: events are queued to a daemon thread with its
own asyncio loop, which connects when it first has something to send (NATS may start after
the stand-in), creates the stream if it is missing (as the placement service does: the one
that starts first makes it), and publishes in order. An event that cannot be published is
dropped, logged once until publishing works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api

log = logging.getLogger("placement_dev.standins.events")

SOURCE = "placement-dev/sprm-standin"
TYPE = "dcm.status"
STREAM = "dcm-status"
# The placement service creates the stream with these subjects when it is missing; the
# same configuration here, so that whichever comes first, the other finds it as it wants.
STREAM_SUBJECTS = ["dcm.>"]
CLOUDEVENTS_JSON = "application/cloudevents+json"
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # not in a subject token: . * > spaces
_TIMEOUT = 2.0  # seconds for a connection, a stream request or a publish


@dataclass(frozen=True)
class Where:
    """An instance as its subject names it."""

    instance_id: str
    provider: str
    service_type: str

    @property
    def subject(self) -> str:
        provider, kind = _token(self.provider), _token(self.service_type)
        return f"dcm.providers.{provider}.{kind}.instances.{self.instance_id}.status"


@dataclass(frozen=True)
class _Event:
    subject: str
    body: bytes


class StatusEvents:
    """Publishes instances' status events to the NATS server(s) at `url` (comma-separated)
    in the background. Safe to call from any thread; `close()` stops it (a later event
    starts it again)."""

    def __init__(
        self,
        url: str,
        *,
        running_after: float = 1.0,
        source: str = SOURCE,
        stream: str = STREAM,
    ) -> None:
        self.url = url
        self.running_after = running_after
        self._source, self._stream = source, stream
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._queue: asyncio.Queue[_Event | None] | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._failing = False
        self.published = 0  # events NATS has stored (for tests and logs)

    # From any thread.

    def created(self, where: Where) -> None:
        """PROVISIONING now, RUNNING `running_after` seconds later."""
        event = self._event(where, "PROVISIONING", "the instance is being provisioned")
        self._submit(self._created, where, event)

    def deleted(self, where: Where) -> None:
        """DELETED now (a RUNNING still to come is not sent)."""
        event = self._event(where, "DELETED", "the instance was deleted")
        self._submit(self._deleted, where, event)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then stop."""
        with self._lock:
            loop, thread, queue = self._loop, self._thread, self._queue
            self._loop = self._thread = self._queue = None
        if loop is None or thread is None or queue is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has already stopped
            loop.call_soon_threadsafe(queue.put_nowait, None)
        thread.join(timeout)
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_cancel_all, loop)
            thread.join(timeout)

    # Building events (in the caller's thread: the time is when the status changed).

    def _event(self, where: Where, status: str, message: str) -> _Event:
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": self._source,
            "type": TYPE,
            "subject": where.instance_id,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": {"status": status, "message": message},
        }
        return _Event(where.subject, json.dumps(event).encode())

    def _submit(self, action: Callable[[Where, _Event], None], where: Where, event: _Event) -> None:
        loop = self._running_loop()
        with contextlib.suppress(RuntimeError):  # closed meanwhile: the event is dropped
            loop.call_soon_threadsafe(action, where, event)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(ready,), name="sprm-status-events", daemon=True
                )
                self._thread.start()
                ready.wait()
            if self._loop is None:  # never: `_run` sets it before `ready`
                raise RuntimeError("the status events' loop did not start")
            return self._loop

    # On the publishing thread.

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        queue: asyncio.Queue[_Event | None] = asyncio.Queue()
        self._loop, self._queue = loop, queue
        ready.set()
        try:
            loop.run_until_complete(self._publish_all(queue))
        except asyncio.CancelledError:
            pass
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            loop.close()

    def _created(self, where: Where, event: _Event) -> None:
        queue = self._queue
        if queue is None:
            return
        queue.put_nowait(event)
        loop = asyncio.get_running_loop()
        self._timers[where.instance_id] = loop.call_later(
            self.running_after, self._running, where, queue
        )

    def _running(self, where: Where, queue: asyncio.Queue[_Event | None]) -> None:
        self._timers.pop(where.instance_id, None)
        queue.put_nowait(self._event(where, "RUNNING", "the instance is running"))

    def _deleted(self, where: Where, event: _Event) -> None:
        timer = self._timers.pop(where.instance_id, None)
        if timer is not None:
            timer.cancel()
        if self._queue is not None:
            self._queue.put_nowait(event)

    async def _publish_all(self, queue: asyncio.Queue[_Event | None]) -> None:
        client: Client | None = None
        try:
            while (event := await queue.get()) is not None:
                try:
                    client = client if client is not None and client.is_connected else None
                    if client is None:
                        client = await self._connect()
                    await client.jetstream().publish(
                        event.subject,
                        event.body,
                        timeout=_TIMEOUT,
                        headers={"Content-Type": CLOUDEVENTS_JSON},
                    )
                except Exception as error:  # never let one event end the publishing
                    self._failed(event, error)
                    if client is not None:
                        await _close(client)
                        client = None
                else:
                    self.published += 1
                    if self._failing:
                        self._failing = False
                        log.info("sprm stand-in: publishing status events again")
        finally:
            if client is not None:
                await _close(client)

    async def _connect(self) -> Client:
        client = await nats.connect(
            servers=[part.strip() for part in self.url.split(",") if part.strip()],
            name="placement-dev-sprm-standin",
            connect_timeout=_TIMEOUT,
            allow_reconnect=False,
            # nats-py tries each server until it has failed more often than this (0 would
            # mean forever), `reconnect_time_wait` apart: here, twice, quickly.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=_quiet,
        )
        try:
            await self._ensure_stream(client)
        except BaseException:
            await _close(client)
            raise
        return client

    async def _ensure_stream(self, client: Client) -> None:
        js = client.jetstream(timeout=_TIMEOUT)
        try:
            await js.stream_info(self._stream)
            return
        except nats.js.errors.NotFoundError:
            pass
        try:
            await js.add_stream(
                name=self._stream, subjects=STREAM_SUBJECTS, storage=api.StorageType.FILE
            )
            log.info("sprm stand-in: created stream %s (%s)", self._stream, STREAM_SUBJECTS)
        except nats.js.errors.BadRequestError:
            await js.stream_info(self._stream)  # another process made it meanwhile, else raise

    def _failed(self, event: _Event, error: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "sprm stand-in: cannot publish status events to NATS at %s (%s: %s); "
                "dropping them until it works (e.g. %s)",
                safe_url(self.url),
                type(error).__name__,
                error,
                event.subject,
            )


def _token(text: str) -> str:
    """`text` as one subject token (a dot or a wildcard would change the subject's shape)."""
    return _TOKEN_UNSAFE.sub("_", text) or "_"


def safe_url(url: str) -> str:
    """The URL(s) without user information."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


async def _close(client: Client) -> None:
    with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
        await asyncio.wait_for(client.close(), 1.0)


async def _quiet(error: Exception) -> None:
    log.debug("sprm stand-in: NATS client error: %s", error)
