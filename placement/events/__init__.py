"""Provider status events: instance status changes that service providers publish as
CloudEvents 1.0 to NATS JetStream, consumed by one durable pull consumer shared by every
process and replica, and handed one by one to an `apply` callback (the database).
Where and how to connect is `placement.config.NatsSettings`.

- `parse`: a message to a `StatusEvent` or an `Invalid` reason (pure, total).
- `consumer`: `StatusConsumer`, the background thread that fetches, applies and acks.
- `metrics`: what it counts.
"""

from placement.events.consumer import StatusConsumer
from placement.events.parse import Invalid, StatusEvent, parse

__all__ = ["Invalid", "StatusConsumer", "StatusEvent", "parse"]
