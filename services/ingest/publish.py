"""Publishing accepted events: the HTTP answer waits for the broker's acks=all.

Concurrent webhooks share broker round trips (see :mod:`services.runtime.records`); the
W3C trace context of the webhook's span travels in each record's headers.
"""

from schemas import MemberActivity, topics
from services.runtime.records import BrokerUnavailable, OutgoingRecord, RecordPublisher, trace_headers

__all__ = ["ActivityPublisher", "BrokerUnavailable"]


class ActivityPublisher(RecordPublisher):
    async def publish(self, events: list[MemberActivity]) -> None:
        """Return only once every event is acknowledged by the broker."""
        headers = trace_headers()
        await self.send_all([
            OutgoingRecord(topics.ACTIVITY, event.to_bytes(), event.partition_key(), headers)
            for event in events
        ])
