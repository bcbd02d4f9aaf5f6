"""Publishing accepted events: the HTTP answer waits for the broker's acks=all."""

import asyncio
import logging

from faststream.kafka import KafkaBroker

from schemas import MemberActivity, topics

log = logging.getLogger("steward.ingest")


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the platform must retry (503)."""


class ActivityPublisher:
    def __init__(self, broker: KafkaBroker, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._publisher = broker.publisher(
            topics.ACTIVITY,
            title=topics.ACTIVITY,
            description="Normalized member activity, keyed by community and member.",
            schema=MemberActivity,
        )

    async def publish(self, events: list[MemberActivity]) -> None:
        """Return only once every event is acknowledged by the broker."""
        sends = [
            self._publisher.publish(event.model_dump(mode="json"), key=event.partition_key())
            for event in events
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), self.timeout_s)
        except Exception as error:  # a timeout, or the producer's own connection error
            # Some of a batch may have landed; the platform's retry is deduplicated
            # downstream by event_id, so at-least-once stays exact in effect.
            log.error("broker did not acknowledge %d event(s): %r", len(events), error)
            raise BrokerUnavailable(str(error) or type(error).__name__) from error
