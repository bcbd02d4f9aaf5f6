"""The metrics service against a plain reference computation, on the real stack.

Random streams of activity and verdicts, with duplicates (the same idempotency key
published again, at another offset) and out-of-order timestamps, go through a real broker
into the real metrics service and MongoDB-protocol store. Every KPI read back through the
API must equal what ``tests/metrics_reference.py`` computes from the same events, and a
consumer group rewound to the start, whose records are all delivered again, changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from schemas import MemberActivity, ModerationVerdict, topics
from services.metrics.app import GROUP_ID, create_service
from services.metrics.kpis.calendar import day_end_utc
from services.runtime.broker import ensure_topics
from services.runtime.positions import end_offsets
from services.runtime.settings import MetricsSettings
from tests.metrics_reference import Reference, monday

pytestmark = pytest.mark.integration

ZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Chatham"]
COMMUNITIES = (f"prop-{i}" for i in itertools.count())
# Recent enough that nothing is sealed (facts live 90 days), long enough for dormancy and exposure.
START = (datetime.now(UTC) - timedelta(days=75)).replace(hour=0, minute=0, second=0, microsecond=0)
SPAN_S = 64 * 86_400
KIND_WEIGHTS = (["message_posted"] * 8 + ["reaction_added"] * 3 + ["member_joined", "member_left",
                "message_edited", "message_deleted", "event_rsvp", "event_attended"])
SETTLE_S = 40


def zone_of(community: str) -> str:
    return ZONES[int(community.rsplit("-", 1)[1]) % len(ZONES)]


@st.composite
def streams(draw):
    """(activity, verdicts) in the order they are published, duplicates included."""
    community = next(COMMUNITIES)
    members = [f"m{i}" for i in range(draw(st.integers(2, 9)))]
    events: list[MemberActivity] = []
    verdicts: list[ModerationVerdict] = []
    for n in range(draw(st.integers(1, 70))):
        kind = draw(st.sampled_from(KIND_WEIGHTS))
        # Bursts: members often act within minutes of each other, which makes replies and questions meet.
        at = START + timedelta(seconds=draw(st.one_of(st.integers(0, SPAN_S), st.integers(0, 3 * 86_400))))
        message_ids = [e.message_id for e in events if e.kind == "message_posted"]
        reply_to = draw(st.one_of(st.none(), st.sampled_from(message_ids))) if message_ids and kind == "message_posted" else None
        event = MemberActivity(
            event_id=f"{community}-e{n}", platform="generic", community_id=community,
            channel_id=draw(st.sampled_from([None, "general", "help", "random"])),
            member_id=draw(st.sampled_from(members)), kind=kind, occurred_at=at,
            message_id=f"{community}-msg{n}" if kind.startswith("message_") else None,
            reply_to=reply_to, text=draw(st.sampled_from(["hello", "how do I deploy?", "thanks!", "ok ? "])),
            attributes={"is_question": True} if draw(st.integers(0, 9)) == 0 else {},
        )
        if kind in ("message_edited", "message_deleted") and message_ids:
            event = event.model_copy(update={"message_id": draw(st.sampled_from(message_ids))})
        events.append(event)
        if kind == "message_posted" and draw(st.booleans()):
            verdicts.append(ModerationVerdict(
                verdict_id=f"v-{event.event_id}", event_id=event.event_id, platform="generic",
                community_id=community, channel_id=event.channel_id, member_id=event.member_id,
                message_id=event.message_id, occurred_at=at, scores={"toxicity": 0.5},
                sentiment=draw(st.sampled_from(["positive", "negative", "neutral"])),
                sentiment_scores={"positive": 0.3, "negative": 0.3, "neutral": 0.4},
                flagged=draw(st.integers(0, 3)) == 0, model_name="m", model_version="1",
                policy_version="p", latency_ms=1.0,
            ))
    # Platform retries: some events and verdicts arrive again, anywhere later in the stream.
    events += draw(st.lists(st.sampled_from(events), max_size=len(events) // 2))
    if verdicts:
        verdicts += draw(st.lists(st.sampled_from(verdicts), max_size=len(verdicts) // 2))
    events = draw(st.permutations(events))
    verdicts = draw(st.permutations(verdicts))
    return community, events, verdicts


async def publish(bootstrap: str, events, verdicts) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topics.ACTIVITY, e.to_bytes(), key=e.partition_key()) for e in events]
        sent += [await producer.send(topics.VERDICTS, v.to_bytes(), key=v.community_id.encode()) for v in verdicts]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def expected_vs_actual(client: TestClient, community: str, events, verdicts) -> tuple[dict, dict]:
    tz = zone_of(community)
    first = START.date() - timedelta(days=1)
    last = first + timedelta(days=100)
    body = client.get(f"/communities/{community}/summary",
                      params={"from": first.isoformat(), "to": last.isoformat()}).json()
    reference = Reference.of(events, verdicts, tz, datetime.now(UTC))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    expected = {
        "days": [{"day": d.isoformat(), **reference.daily(d)} for d in days],
        "segments": {"as_of": last.isoformat(), **reference.segments(last)},
        "retention": reference.retention(monday(first) - timedelta(weeks=8), monday(last)),
        "channels": {c: {k: v for k, v in n.items() if v} for c, n in reference.channels(first, last).items()},
        "exposure": [expected_exposure(reference, date.fromisoformat(w["monday"]), tz) for w in body["exposure"]],
    }
    keep = set(expected["days"][0])
    actual = {
        "days": [{k: v for k, v in row.items() if k in keep} for row in body["days"]],
        "segments": body["segments"],
        "retention": [{k: c[k] for k in ("monday", "size", "weeks")} for c in body["retention"]],
        "channels": {c["channel_id"]: {k: v for k, v in c.items() if k != "channel_id" and v}
                     for c in body["channels"]},
        "exposure": [{k: v for k, v in w.items() if k not in ("week", "monday")} for w in body["exposure"]],
    }
    return expected, actual


async def wait_folded(settings_: MetricsSettings) -> None:
    """Until the service has stored the effects of every record now in both topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings_.kafka_bootstrap)
    await consumer.start()
    mongo = AsyncMongoClient(settings_.mongo_uri)
    try:
        await consumer.topics()
        wanted = {}
        for source, topic in (("activity", topics.ACTIVITY), ("verdicts", topics.VERDICTS)):
            ends = await end_offsets(settings_.kafka_bootstrap,
                                     [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
            wanted.update({f"{GROUP_ID}-{source}|{tp.topic}|{tp.partition}": end - 1 for tp, end in ends.items() if end})
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            stored = {d["_id"]: d.get("offset", -1) async for d in mongo[settings_.mongo_db]["metrics_offsets"].find()}
            if all(stored.get(key, -1) >= end for key, end in wanted.items()):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the service did not fold every record within {SETTLE_S} s")
    finally:
        await consumer.stop()
        await mongo.close()


def expected_exposure(reference: Reference, monday_: date, tz: str) -> dict:
    """The reference's figures, or unknown where the facts a week needs (from the week
    before it) are older than the facts' TTL: the service never had them, or lost them."""
    needed_from = day_end_utc(monday_.toordinal() - 8, tz)
    if needed_from < datetime.now(UTC) - timedelta(days=MetricsSettings().facts_ttl_days):
        return dict.fromkeys(("exposed", "exposed_retention", "unexposed", "unexposed_retention"))
    return reference.exposure(monday_)


def settled(client: TestClient, settings_: MetricsSettings, community: str, events, verdicts) -> tuple[dict, dict]:
    asyncio.run(wait_folded(settings_))
    return expected_vs_actual(client, community, events, verdicts)


@pytest.fixture(scope="module")
def metrics_settings(local_stack, tmp_path_factory) -> MetricsSettings:
    asyncio.run(ensure_topics(local_stack.endpoints.kafka))
    return MetricsSettings(
        kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
        mongo_db=f"metrics_prop_{int(time.time())}", batch_wait_ms=50, batch_max=500,
        timezones={f"prop-{i}": zone_of(f"prop-{i}") for i in range(400)},
    )


def test_random_streams_give_the_reference_kpis(metrics_settings):
    seen: list[tuple[str, list, list]] = []
    with TestClient(create_service(metrics_settings).app) as client:

        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(stream=streams())
        def same_as_reference(stream):
            community, events, verdicts = stream
            asyncio.run(publish(metrics_settings.kafka_bootstrap, events, verdicts))
            expected, actual = settled(client, metrics_settings, community, events, verdicts)
            assert actual == expected
            seen.append(stream)

        same_as_reference()

        # A rebuild from the topics gives the same numbers, even with records arriving while
        # it runs (the live path writes those to both generations).
        community, events, verdicts = max(seen, key=lambda stream: len(stream[1]))
        assert client.post(f"/communities/{community}/rebuild", json={"from_offset": 0}).status_code == 202
        while client.get(f"/communities/{community}/rebuild").json()["state"] == "starting":
            time.sleep(0.02)  # the fence is fixed: what follows is past it
        later = [e.model_copy(update={"event_id": f"{e.event_id}-late", "message_id": e.message_id and f"{e.message_id}-late",
                                      "reply_to": None, "occurred_at": e.occurred_at + timedelta(days=1)})
                 for e in events[:10]]
        asyncio.run(publish(metrics_settings.kafka_bootstrap, later, []))
        deadline = time.monotonic() + SETTLE_S
        while (job := client.get(f"/communities/{community}/rebuild").json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "done", job
        assert job["generation"] == 1
        expected, actual = settled(client, metrics_settings, community, events + later, verdicts)
        assert actual == expected
        seen.append((community, events + later, verdicts))

    # Every record delivered again, as after a crash between storing the effects and
    # committing the offsets: the stored offsets recognise them, nothing changes.
    asyncio.run(rewind(metrics_settings.kafka_bootstrap))
    with TestClient(create_service(metrics_settings).app) as client:
        asyncio.run(wait_committed_again(metrics_settings.kafka_bootstrap))
        for community, events, verdicts in seen[-3:]:
            expected, actual = expected_vs_actual(client, community, events, verdicts)
            assert actual == expected


async def wait_committed_again(bootstrap: str) -> None:
    """Until the restarted service has consumed, and committed, every record once more."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + SETTLE_S
        for source, topic in (("activity", topics.ACTIVITY), ("verdicts", topics.VERDICTS)):
            partitions = [TopicPartition(topic, p) for p in range(6)]
            ends = await end_offsets(bootstrap, partitions)
            while True:
                committed = await admin.list_consumer_group_offsets(f"{GROUP_ID}-{source}", partitions=partitions)
                if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end):
                    break
                assert time.monotonic() < deadline, f"the restarted service did not consume {topic} again"
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def rewind(bootstrap: str) -> None:
    """Commit offset 0 for the service's groups, as a member of each (tansu refuses commits
    from outside a group that has members)."""
    for source, topic in (("activity", topics.ACTIVITY), ("verdicts", topics.VERDICTS)):
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{GROUP_ID}-{source}",
                                    enable_auto_commit=False, session_timeout_ms=6000)
        await consumer.start()
        try:
            deadline = time.monotonic() + 60
            while len(consumer.assignment()) < len(consumer.partitions_for_topic(topic) or {None}):
                assert time.monotonic() < deadline, "never given every partition of the group"
                await consumer.getmany(timeout_ms=500)
            await consumer.commit({tp: 0 for tp in consumer.assignment()})
        finally:
            await consumer.stop()
