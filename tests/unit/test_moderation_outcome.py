from datetime import UTC, datetime

from schemas import CATEGORIES, MemberActivity, Sentiment, Severity
from services.moderation.model.labels import TextScores
from services.moderation.outcome import outcome
from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import built_in_policy

EVENT = MemberActivity(
    event_id="slack:T1:Ev9", platform="slack", community_id="T1", channel_id="C1", member_id="U1",
    kind="message_posted", message_id="C1/1.0", text="I will hurt you", permalink="https://x/p1",
    occurred_at=datetime(2026, 5, 1, 9, tzinfo=UTC),
)


def reading(**scores: float) -> TextScores:
    return TextScores(
        scores={c: scores.get(c, 0.01) for c in CATEGORIES},
        sentiment=Sentiment.negative,
        sentiment_scores={Sentiment.negative: 0.9, Sentiment.neutral: 0.08, Sentiment.positive: 0.02},
    )


def run(text_scores: TextScores):
    policy = built_in_policy()
    return outcome(EVENT, text_scores, evaluate(policy, text_scores.scores, EVENT.channel_id),
                   policy_version=policy.version, model_name="m", model_version="7", latency_ms=12.34567)


def test_harmful_text_gives_a_flagged_verdict_and_an_incident_with_evidence():
    verdict, incident = run(reading(threat=0.93, toxicity=0.99))
    assert verdict.flagged and verdict.latency_ms == 12.346
    assert incident.severity is Severity.high and incident.rule == "threshold:threat"
    assert incident.category == "threat" and incident.labels()["category"] == "threat"
    assert incident.evidence.text == "I will hurt you" and incident.evidence.permalink == "https://x/p1"
    assert (incident.policy_version, incident.model_version) == (built_in_policy().version, "7")
    # Ids depend on the event only: a redelivery yields the same verdict and incident.
    again_verdict, again_incident = run(reading(threat=0.95))
    assert (again_verdict.verdict_id, again_incident.incident_id) == (verdict.verdict_id, incident.incident_id)


def test_benign_text_gives_an_unflagged_verdict_only():
    verdict, incident = run(reading())
    assert incident is None
    assert not verdict.flagged and verdict.sentiment is Sentiment.negative


def test_a_truncated_text_gets_a_verdict_that_says_so():
    truncated = TextScores(scores={c: 0.01 for c in CATEGORIES}, sentiment=Sentiment.neutral,
                           sentiment_scores={s: 1 / 3 for s in Sentiment}, truncated=True)
    verdict, incident = run(truncated)
    assert verdict.text_truncated and incident is None
    assert not run(reading())[0].text_truncated
