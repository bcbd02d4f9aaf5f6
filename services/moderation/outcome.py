"""From one text's reading and policy decision to the messages moderation emits. Pure."""

import hashlib

from schemas import Evidence, Incident, MemberActivity, ModerationVerdict
from services.moderation.model.labels import TextScores
from services.moderation.policy.evaluate import Decision


def stable_id(prefix: str, event_id: str) -> str:
    """An id derived from the event alone, so a redelivered event yields the same one."""
    return f"{prefix}-{hashlib.sha256(event_id.encode()).hexdigest()[:32]}"


def outcome(
    event: MemberActivity,
    reading: TextScores,
    decision: Decision | None,
    *,
    policy_version: str,
    model_name: str,
    model_version: str,
    latency_ms: float,
) -> tuple[ModerationVerdict, Incident | None]:
    """The verdict for ``event``, and the incident when the policy decided one is needed.

    A decision made only by rules in shadow mode is recorded on the verdict and raises no
    incident."""
    shadow_rules = list(decision.shadow_rules) if decision else []
    if decision is not None and decision.shadow:
        shadow_rules = shadow_rules or [decision.rule]
        decision = None
    provenance = {
        "platform": event.platform,
        "community_id": event.community_id,
        "channel_id": event.channel_id,
        "policy_version": policy_version,
        "model_name": model_name,
        "model_version": model_version,
    }
    verdict = ModerationVerdict(
        verdict_id=stable_id("ver", event.event_id),
        event_id=event.event_id,
        member_id=event.member_id,
        message_id=event.message_id,
        occurred_at=event.occurred_at,
        scores={c: round(s, 4) for c, s in reading.scores.items()},
        sentiment=reading.sentiment,
        sentiment_scores={k: round(v, 4) for k, v in reading.sentiment_scores.items()},
        text_truncated=reading.truncated,
        flagged=decision is not None,
        shadow_rules=shadow_rules,
        latency_ms=round(latency_ms, 3),
        **provenance,
    )
    if decision is None:
        return verdict, None
    incident = Incident(
        incident_id=stable_id("inc", event.event_id),
        severity=decision.severity,
        category=decision.category,
        categories=decision.categories,
        rule=decision.rule,
        evidence=Evidence(
            event_id=event.event_id,
            message_id=event.message_id,
            member_id=event.member_id,
            channel_id=event.channel_id,
            text=event.text,
            permalink=event.permalink,
            occurred_at=event.occurred_at,
        ),
        **provenance,
    )
    return verdict, incident
