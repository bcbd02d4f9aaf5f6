"""Publishing accepted events: the HTTP answer waits for the broker's acks=all.

Records are handed to the producer together and their acknowledgements awaited together,
so concurrent webhooks share broker round trips. The W3C trace context of the webhook's
span travels in each record's headers.
"""

import asyncio
import logging

from opentelemetry import propagate

from schemas import MemberActivity, topics
from services.runtime.broker import make_producer
from services.runtime.settings import RuntimeSettings
from services.runtime.startup import start_producer

log = logging.getLogger("steward.ingest")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the platform must retry (503)."""


def trace_headers() -> list[tuple[str, bytes]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


class ActivityPublisher:
    """Owns a producer: ``start()`` (waits for the broker), ``publish()``, ``stop()``."""

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

    async def publish(self, events: list[MemberActivity]) -> None:
        """Return only once every event is acknowledged by the broker."""
        if self.producer is None:
            raise BrokerUnavailable("the producer has not started")
        headers = trace_headers()
        try:
            async with asyncio.timeout(self.timeout_s):
                acks = [
                    await self.producer.send(
                        topics.ACTIVITY, event.to_bytes(), key=event.partition_key(), headers=headers
                    )
                    for event in events
                ]
                await asyncio.gather(*acks)
        except Exception as error:  # a timeout, or the producer's own connection error
            # Some of a batch may have landed; the platform's retry is deduplicated
            # downstream by event_id, so at-least-once stays exact in effect.
            log.error("broker did not acknowledge %d event(s): %r", len(events), error)
            raise BrokerUnavailable(str(error) or type(error).__name__) from error
