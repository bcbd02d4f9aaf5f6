"""Publishing on hot paths with a plain producer: records handed to it together and their
acknowledgements awaited together, so that a batch shares broker round trips.

FastStream's per-message publish pipeline (middlewares, serialization, a span each) costs
more than the send itself; ingest (per webhook) and moderation (per micro-batch) publish
through this instead. Consumers stay FastStream subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import propagate

from services.runtime.broker import make_producer
from services.runtime.deadletter import Outage
from services.runtime.settings import RuntimeSettings
from services.runtime.startup import start_producer

log = logging.getLogger("steward.records")

Headers = list[tuple[str, bytes]]


class BrokerUnavailable(Outage):
    """The broker did not acknowledge in time; the caller must retry (or answer 503)."""


def trace_headers() -> Headers:
    """The current span's W3C trace context, as record headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


class RecordPublisher:
    """Owns a producer: ``start()`` (waits for the broker), ``send_all()``, ``stop()``."""

    def __init__(self, settings: RuntimeSettings, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.producer = None  # aiokafka binds to the running loop, so it is made in start()

    async def start(self) -> None:
        self.producer = make_producer(self.settings)
        await start_producer(self.producer)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send_all(self, records: Sequence[OutgoingRecord]) -> None:
        """Return only once every record is acknowledged (acks=all)."""
        if self.producer is None:
            raise BrokerUnavailable("the producer has not started")
        try:
            async with asyncio.timeout(self.timeout_s):
                acks = [
                    await self.producer.send(r.topic, r.value, key=r.key, headers=r.headers or None)
                    for r in records
                ]
                await asyncio.gather(*acks)
        except Exception as error:  # a timeout, or the producer's own connection error
            # Some of a batch may have landed; every consumer deduplicates by id, so a
            # retry of the whole batch stays exact in effect.
            log.error("broker did not acknowledge %d record(s): %r", len(records), error)
            raise BrokerUnavailable(str(error) or type(error).__name__) from error
