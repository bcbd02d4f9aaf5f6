"""Rule evaluation: scores in, a decision out. No I/O, no clock."""

from dataclasses import dataclass

from schemas import Severity
from services.moderation.policy.model import Policy


@dataclass(frozen=True)
class Decision:
    severity: Severity
    category: str
    categories: dict[str, float]
    rule: str


def evaluate(policy: Policy, scores: dict[str, float], channel_id: str | None = None) -> Decision | None:
    """The incident a text calls for, or None.

    Every category over its threshold is evidence; the most severe one names the rule
    (ties go to the higher score) and sets the severity.
    """
    fired = {
        category: (rule, scores[category])
        for category, rule in policy.rules_for(channel_id).items()
        if category in scores and scores[category] >= rule.threshold
    }
    if not fired:
        return None
    top = max(fired, key=lambda c: (fired[c][0].severity.rank, fired[c][1]))
    scope = f"channel:{channel_id}:" if channel_id in policy.channels and top in policy.channels[channel_id] else ""
    return Decision(
        severity=fired[top][0].severity,
        category=top,
        categories={c: round(score, 4) for c, (_, score) in fired.items()},
        rule=f"{scope}threshold:{top}",
    )
