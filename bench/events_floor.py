"""The events floor: the barest reasonable Python consumer of the providers' status
events, for the `events` scenario to report the service's rate as a ratio to it.

A nats-py pull consumer on the same stream with a durable of its own (created here, at
start, as the service creates its own: deliver all, explicit acks), fetching `batch`
messages at a time; for each message, in order: the CloudEvent (structured JSON) decoded
with orjson, the instance id from the subject (`dcm.providers.….instances.{id}.status`)
or the data (`dcm.{serviceType}`), one `UPDATE` with psycopg 3 on an autocommit
connection, then the ack. The UPDATE keeps the newest status (its time against the
recorded one: the backlog is shuffled, so without that condition the last event read,
not the newest, would win, and the final statuses would be wrong). No validation, no
metrics, no logs, no reconnection, no retries: an error ends the process.

Configured by environment variables (set by the benchmark):

    EVENTS_FLOOR_DSN        libpq connection string of its database
    EVENTS_FLOOR_NATS_URL   the NATS server
    EVENTS_FLOOR_STREAM     the stream (dcm-status)
    EVENTS_FLOOR_DURABLE    its durable consumer's name
    EVENTS_FLOOR_BATCH      messages per fetch (default 100, the service's)

Run: python -m bench.events_floor
"""

from __future__ import annotations

import asyncio
import os

import nats
import nats.errors
import orjson
import psycopg
from nats.js import api

SQL_STATUS = (
    "UPDATE resources SET status = %s, status_message = %s, status_time = %s"
    " WHERE id = %s AND (status_time IS NULL OR status_time < %s)"
)


async def consume() -> None:
    env = os.environ
    stream, durable = env["EVENTS_FLOOR_STREAM"], env["EVENTS_FLOOR_DURABLE"]
    batch = int(env.get("EVENTS_FLOOR_BATCH", "100"))
    conn = await psycopg.AsyncConnection.connect(env["EVENTS_FLOOR_DSN"], autocommit=True)
    client = await nats.connect(env["EVENTS_FLOOR_NATS_URL"], allow_reconnect=False)
    js = client.jetstream()
    config = api.ConsumerConfig(
        durable_name=durable,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=30,
        max_ack_pending=1000,
    )
    await js.add_consumer(stream, config)
    subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
    while True:
        try:
            messages = await subscription.fetch(batch, timeout=1.0)
        except nats.errors.TimeoutError:
            continue
        for message in messages:
            event = orjson.loads(message.data)
            data = event["data"]
            tokens = message.subject.split(".")
            rid = tokens[5] if len(tokens) == 7 else data["id"]
            moment = event["time"]
            await conn.execute(
                SQL_STATUS, (data["status"], data.get("message"), moment, rid, moment)
            )
            await message.ack()


if __name__ == "__main__":
    asyncio.run(consume())
