"""The metrics store on a real MongoDB-protocol server: facts are recorded once per event."""

from datetime import UTC, date, datetime

import pytest

from schemas import MemberActivity, ModerationVerdict
from services.metrics.kpis.daily import daily_kpis
from services.metrics.store import MetricsStore
from services.runtime.mongo import make_mongo
from services.runtime.settings import RuntimeSettings

pytestmark = pytest.mark.integration
DAY = date(2026, 2, 9)


def posted(event_id: str, member: str, community: str, reply_to: str | None = None) -> MemberActivity:
    return MemberActivity(
        event_id=event_id, platform="generic", community_id=community, member_id=member,
        kind="message_posted", message_id=f"m-{event_id}", reply_to=reply_to, text="hi",
        occurred_at=datetime(2026, 2, 9, 23, 59, tzinfo=UTC),
    )


async def test_redelivered_events_count_once(backend, unique):
    client = make_mongo(RuntimeSettings(mongo_uri=backend.mongo_uri))
    try:
        store = MetricsStore(client[f"test_{unique}"])
        await store.create_indexes()
        community = f"c-{unique}"
        events = [posted("e1", "a", community), posted("e2", "b", community, reply_to="m-e1")]
        assert [await store.record_activity(e) for e in events] == [True, True]
        assert await store.record_activity(events[0]) is False  # a redelivery
        verdict = ModerationVerdict(
            verdict_id="v1", event_id="e1", platform="generic", community_id=community, member_id="a",
            occurred_at=events[0].occurred_at, scores={"toxicity": 0.9}, sentiment="negative",
            sentiment_scores={"negative": 0.8, "neutral": 0.1, "positive": 0.1}, flagged=True,
            model_name="m", model_version="1", policy_version="p", latency_ms=3.0,
        )
        assert await store.record_verdict(verdict) is True
        assert await store.record_verdict(verdict) is False

        activity = await store.activity_facts(community, DAY, DAY)
        verdicts = await store.verdict_facts(community, DAY, DAY)
        [row] = daily_kpis(DAY, DAY, activity, verdicts)
        assert (row.dau, row.messages, row.replies, row.classified, row.flagged) == (2, 2, 1, 1, 1)
        assert await store.activity_facts(community, date(2026, 2, 10), date(2026, 2, 10)) == []
    finally:
        await client.close()
