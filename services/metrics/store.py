"""The only module that talks to MongoDB for metrics.

Each event is stored once as a fact keyed by its idempotency key, so a redelivered event
is a duplicate-key no-op and counting facts is exact under at-least-once delivery.
"""

from datetime import UTC, date, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas import ActivityKind, MemberActivity, ModerationVerdict
from services.metrics.kpis.daily import ActivityFact, VerdictFact


def utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


class MetricsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.activity = db["metrics_activity"]
        self.verdicts = db["metrics_verdicts"]

    async def create_indexes(self) -> None:
        await self.activity.create_index([("community_id", 1), ("day", 1)])
        await self.verdicts.create_index([("community_id", 1), ("day", 1)])

    async def record_activity(self, event: MemberActivity) -> bool:
        """Store the fact; False when this event_id was already recorded."""
        return await self._insert_once(
            self.activity,
            {
                "_id": event.event_id,
                "community_id": event.community_id,
                "channel_id": event.channel_id,
                "member_id": event.member_id,
                "kind": event.kind.value,
                "day": utc_day(event.occurred_at),
                "occurred_at": event.occurred_at.timestamp(),
                "message_id": event.message_id,
                "reply_to": event.reply_to,
            },
        )

    async def record_verdict(self, verdict: ModerationVerdict) -> bool:
        return await self._insert_once(
            self.verdicts,
            {
                "_id": verdict.verdict_id,
                "community_id": verdict.community_id,
                "day": utc_day(verdict.occurred_at),
                "flagged": verdict.flagged,
                "sentiment": verdict.sentiment.value,
            },
        )

    @staticmethod
    async def _insert_once(collection, document: dict) -> bool:
        try:
            await collection.insert_one(document)
            return True
        except DuplicateKeyError:
            return False

    async def activity_facts(self, community_id: str, first: date, last: date) -> list[ActivityFact]:
        cursor = self.activity.find(
            {"community_id": community_id, "day": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
            {"day": 1, "member_id": 1, "kind": 1, "reply_to": 1},
        )
        return [
            ActivityFact(date.fromisoformat(d["day"]), d["member_id"], ActivityKind(d["kind"]), d.get("reply_to"))
            async for d in cursor
        ]

    async def verdict_facts(self, community_id: str, first: date, last: date) -> list[VerdictFact]:
        cursor = self.verdicts.find(
            {"community_id": community_id, "day": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
            {"day": 1, "flagged": 1, "sentiment": 1},
        )
        return [VerdictFact(date.fromisoformat(d["day"]), bool(d["flagged"]), d["sentiment"]) async for d in cursor]
