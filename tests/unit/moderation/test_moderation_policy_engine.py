from datetime import UTC, datetime, timedelta

from schemas import CATEGORIES, MemberActivity, Sentiment, Severity
from services.moderation.model.labels import TextScores
from services.moderation.outcome import outcome
from services.moderation.policy.engine import PolicyEngine
from services.moderation.policy.load import PolicyStore

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
POLICY = """
version: acme-2
categories:
  insult: {threshold: 0.6, severity: medium}
  spam: {threshold: 0.7, severity: low, shadow: true}
repeat_offenders: {flags: 3, window_s: 3600, escalate_to: high}
raid: {joins: 3, join_window_s: 60, message_window_s: 600, severity: critical}
"""


def event(n: int, member: str, kind: str = "message_posted", at: datetime = T0, text: str = "you idiot") -> MemberActivity:
    extra = {"message_id": f"m{n}", "text": text} if kind == "message_posted" else {}
    return MemberActivity(event_id=f"e{n}", platform="generic", community_id="acme", channel_id="c",
                          member_id=member, kind=kind, occurred_at=at, **extra)


def scores(**values: float) -> dict[str, float]:
    return {c: values.get(c, 0.01) for c in CATEGORIES}


def engine(tmp_path) -> PolicyEngine:
    (tmp_path / "acme.yaml").write_text(POLICY)
    return PolicyEngine(PolicyStore(tmp_path))


def test_repeat_offenders_escalate_on_the_third_flag_in_the_window(tmp_path):
    policies = engine(tmp_path)
    policy = policies.policy_for("acme")
    severities = [policies.decide(policy, event(n, "troll", at=T0 + timedelta(minutes=n)), scores(insult=0.9)).severity
                  for n in range(3)]
    assert severities == [Severity.medium, Severity.medium, Severity.high]
    later = policies.decide(policy, event(9, "troll", at=T0 + timedelta(hours=3)), scores(insult=0.9))
    assert later.severity is Severity.medium  # the window has passed


def test_a_flagged_message_from_a_member_of_a_join_burst_is_a_raid(tmp_path):
    policies = engine(tmp_path)
    policy = policies.policy_for("acme")
    for n, member in enumerate(["r1", "r2", "r3"]):
        policies.observe(event(n, member, kind="member_joined", at=T0 + timedelta(seconds=10 * n)))
    raid = policies.decide(policy, event(5, "r2", at=T0 + timedelta(minutes=2)), scores(insult=0.9))
    assert (raid.rule, raid.severity) == ("raid", Severity.critical)
    regular = policies.decide(policy, event(6, "old-timer", at=T0 + timedelta(minutes=2)), scores(insult=0.9))
    assert regular.severity is Severity.medium


def test_a_shadow_rule_is_recorded_on_the_verdict_without_an_incident(tmp_path):
    policies = engine(tmp_path)
    policy = policies.policy_for("acme")
    message = event(1, "seller", text="buy followers")
    reading = TextScores(scores=scores(spam=0.95), sentiment=Sentiment.neutral,
                         sentiment_scores={Sentiment.negative: 0.1, Sentiment.neutral: 0.8, Sentiment.positive: 0.1})
    verdict, incident = outcome(message, reading, policies.decide(policy, message, reading.scores),
                                policy_version=policy.version, model_name="m", model_version="1", latency_ms=1)
    assert incident is None
    assert not verdict.flagged and verdict.shadow_rules == ["threshold:spam"]


def test_an_edited_policy_is_picked_up_and_a_broken_edit_keeps_the_last_good(tmp_path):
    clock = [0.0]
    (tmp_path / "acme.yaml").write_text(POLICY)
    policies = PolicyEngine(PolicyStore(tmp_path), clock=lambda: clock[0])
    assert policies.policy_for("acme").version == "acme-2"
    (tmp_path / "acme.yaml").write_text(POLICY.replace("acme-2", "acme-3"))
    clock[0] += 5
    assert policies.policy_for("acme").version == "acme-3"
    (tmp_path / "acme.yaml").write_text("version: acme-4\ncategories: [not, a, mapping]\n")
    clock[0] += 5
    assert policies.policy_for("acme").version == "acme-3"
    assert any("acme.yaml" in path for path in policies.store.errors())
