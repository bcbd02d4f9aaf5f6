"""Replay and feedback on the real local stack: activity read back from Kafka, decided by a
strict and a lenient policy, scored against feedback stored in MongoDB."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from schemas import MemberActivity, topics
from schemas.feedback import ModeratorFeedback
from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.feedback import (
    ARCHIVE,
    FeedbackStore,
    IncidentArchive,
    export_training_rows,
    write_jsonl,
)
from services.moderation.model.labels import TextScores
from services.moderation.outcome import stable_id
from services.moderation.policy.engine import PolicyEngine
from services.moderation.policy.load import PolicyStore
from services.moderation.replay import archived_categories, read_activity, replay
from services.runtime.mongo import make_mongo
from services.runtime.settings import RuntimeSettings

pytestmark = pytest.mark.integration

KEYWORDS = {"idiot": ("insult", 0.65), "hurt": ("threat", 0.95), "pills": ("spam", 0.75)}
STRICT = """version: strict-1
categories:
  insult: {threshold: 0.5, severity: medium}
  threat: {threshold: 0.5, severity: high}
  spam:   {threshold: 0.5, severity: low}
"""
LENIENT = """version: lenient-1
categories:
  insult: {threshold: 0.8, severity: medium}
  threat: {threshold: 0.5, severity: high}
  spam:   {threshold: 0.9, severity: low}
"""


class KeywordClassifier:
    """A stand-in for the model: fixed scores by keyword."""

    name = "keywords"
    version = "0"

    def classify(self, texts):
        out = []
        for text in texts:
            scores = dict.fromkeys(CATEGORIES, 0.01)
            for word, (category, value) in KEYWORDS.items():
                if word in text:
                    scores[category] = value
            out.append(TextScores(scores, Sentiment.neutral,
                                  {s: 1 / 3 for s in Sentiment}))
        return out


def engine_for(tmp_path, name: str, text: str) -> PolicyEngine:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "default.yaml").write_text(text)
    return PolicyEngine(PolicyStore(folder))


def posted(unique: str, n: int, text: str, community: str) -> MemberActivity:
    return MemberActivity(
        event_id=f"{unique}-e{n}", platform="generic", community_id=community, member_id=f"m{n}",
        kind="message_posted", message_id=f"msg-{n}", text=text,
        occurred_at=datetime(2026, 2, 9, 12, n, tzinfo=UTC),
    )


async def publish(bootstrap: str, events: list[MemberActivity]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topics.ACTIVITY, event.to_bytes(), key=event.partition_key())
    finally:
        await producer.stop()


def feedback(unique: str, n: int, action: str, community: str, minute: int = 0) -> ModeratorFeedback:
    return ModeratorFeedback(
        feedback_id=f"{unique}-f{n}-{action}", incident_id=stable_id("inc", f"{unique}-e{n}"),
        community_id=community, action=action, moderator="mod", source="api",
        decided_at=datetime(2026, 2, 9, 13, minute, tzinfo=UTC),
    )


async def test_replay_compares_strict_and_lenient_policies_against_feedback(
    local_stack, unique, tmp_path, make_incident
):
    bootstrap = local_stack.endpoints.kafka
    community = f"replay-{unique}"
    events = [
        posted(unique, 1, "you idiot", community),           # feedback: resolved (harmful)
        posted(unique, 2, "I will hurt you", community),     # feedback: resolved (harmful)
        posted(unique, 3, "hello friends", community),
        posted(unique, 4, "what an idiot move, lol", community),  # feedback: false positive
        posted(unique, 5, "buy cheap pills", community),
        posted(unique, 6, "you idiot", f"other-{unique}"),   # another community: not replayed
        MemberActivity(event_id=f"{unique}-j", platform="generic", community_id=community,
                       member_id="m9", kind="member_joined",
                       occurred_at=datetime(2026, 2, 9, 11, tzinfo=UTC)),
    ]
    await publish(bootstrap, events)

    client = make_mongo(RuntimeSettings(mongo_uri=local_stack.endpoints.mongo_uri))
    try:
        db = client[f"replay_{unique}"]
        store, archive = FeedbackStore(db), IncidentArchive(db)
        await store.create_indexes()
        await archive.create_indexes()
        incidents = {
            n: make_incident(
                incident_id=stable_id("inc", events[n - 1].event_id), community_id=community,
                category=category, categories={category: 0.9},
                evidence={"event_id": events[n - 1].event_id, "text": events[n - 1].text},
            )
            for n, category in ((1, "insult"), (2, "threat"), (4, "insult"))
        }
        assert await archive.remember(incidents[1]) is True
        assert await archive.remember(incidents[1]) is False  # redelivery
        # A batch that is partly a redelivery stores only what is new, and does not fail.
        assert await archive.remember_all([incidents[1], incidents[2]]) == 1
        assert await archive.remember_all([incidents[2], incidents[4], incidents[1]]) == 1
        assert await archive.remember_all([]) == 0
        assert await db[ARCHIVE].count_documents({"community_id": community}) == 3
        assert await store.record(feedback(unique, 1, "resolved", community)) is True
        assert await store.record(feedback(unique, 1, "resolved", community)) is False
        assert await store.record(feedback(unique, 2, "escalated", community)) is True
        assert await store.record(feedback(unique, 4, "false_positive", community, minute=5)) is True
        # an older decision arriving late does not override the newer false positive
        assert await store.record(feedback(unique, 4, "acknowledged", community, minute=1)) is True

        labels = await store.labels_for(community)
        assert labels == {stable_id("inc", f"{unique}-e{n}"): harmful
                          for n, harmful in ((1, True), (2, True), (4, False))}

        categories = await archived_categories(db, community)
        assert categories == {incidents[n].incident_id: [incidents[n].category] for n in incidents}

        report = await replay(
            bootstrap, community_id=community, since=None, from_offset=None,
            classifier=KeywordClassifier(), engine=engine_for(tmp_path, "strict", STRICT),
            feedback_labels=labels, candidate_engine=engine_for(tmp_path, "lenient", LENIENT),
            feedback_categories=categories, min_support=1,
        )
        assert (report.events, report.labelled) == (5, 3)
        assert (report.before_policy, report.after_policy) == ("strict-1", "lenient-1")
        # strict flags 1, 2, 4, 5: 2 of the 3 labelled flags are right, both harmful ones caught
        assert report.before["incidents"] == 4
        assert report.before["precision"] == pytest.approx(2 / 3)
        assert report.before["recall"] == 1.0
        # lenient flags only the threat: precise, but misses the confirmed insult
        assert report.after["incidents"] == 1
        assert (report.after["precision"], report.after["recall"]) == (1.0, 0.5)
        assert report.delta["incidents"] == -3

        # Thresholds from feedback, on the strict ("before") run's scores.
        thresholds = report.thresholds
        assert (thresholds.target_precision, thresholds.min_support) == (0.9, 1)
        assert thresholds.attributed == {"archive": 3, "replay": 0, "unknown": 0}
        assert thresholds.span_days == pytest.approx(4 / (24 * 60))  # 12:01 to 12:05
        insult, threat, spam = (thresholds.suggestions[c] for c in ("insult", "threat", "spam"))
        # the two insults score the same (0.65): one confirmed, one false positive; no threshold
        # separates them, so 0.9 is not reachable
        assert insult.threshold is None and "best 0.50, at 0.65" in insult.reason
        assert (insult.labelled, insult.current_threshold, insult.current_volume) == (2, 0.5, 2)
        assert insult.current_precision == 0.5
        # the confirmed threat alone: 0.95 reaches it, with the alert volume strict has now
        assert (threat.threshold, threat.precision, threat.recall, threat.support) == (0.95, 1.0, 1.0, 1)
        assert (threat.volume, threat.current_volume) == (1, 1)
        assert threat.volume_per_day is None  # four minutes of activity: no per-day rate
        assert (spam.threshold, spam.reason, spam.current_volume) == (None, "no feedback", 1)
        assert thresholds.suggestions["toxicity"].current_threshold is None  # no rule in strict

        # Without the archive, labels take the categories the production policy fires on replay.
        unarchived = await replay(
            bootstrap, community_id=community, classifier=KeywordClassifier(),
            engine=engine_for(tmp_path, "strict-again", STRICT), feedback_labels=labels,
            candidate_engine=engine_for(tmp_path, "lenient-again", LENIENT), min_support=1,
        )
        assert unarchived.thresholds.attributed == {"archive": 0, "replay": 3, "unknown": 0}
        assert unarchived.thresholds.suggestions == thresholds.suggestions

        rows = await export_training_rows(db, community)
        by_text = {row["text"]: row for row in rows}
        assert set(by_text) == {"you idiot", "I will hurt you", "what an idiot move, lol"}
        assert by_text["you idiot"]["labels"] == ["insult"]
        assert by_text["I will hurt you"]["labels"] == ["threat"]
        assert by_text["I will hurt you"]["action"] == "escalated"
        assert by_text["what an idiot move, lol"]["labels"] == []
        assert by_text["what an idiot move, lol"]["action"] == "false_positive"
        assert all(row["community_id"] == community for row in rows)
        assert write_jsonl(rows, tmp_path / "out.jsonl") == 3
        assert await export_training_rows(db, f"nobody-{unique}") == []
    finally:
        await client.close()


async def test_replay_reads_from_a_time_or_an_offset(local_stack, unique):
    bootstrap = local_stack.endpoints.kafka
    community = f"since-{unique}"
    await publish(bootstrap, [posted(unique, 1, "hello", community)])
    assert len(await read_activity(bootstrap, community)) == 1
    past = datetime.now(UTC) - timedelta(hours=1)
    assert len(await read_activity(bootstrap, community, since=past)) == 1
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await read_activity(bootstrap, community, since=future) == []
    assert await read_activity(bootstrap, community, from_offset=10**9) == []
