"""Facts: the compact records metrics keeps of each event, once per idempotency key.

They are the raw material of every KPI: the fold turns them into counters at write time,
and the few KPIs that join facts (response times, exposure, power users) read them back.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import ActivityKind, MemberActivity, ModerationVerdict

ACTIVE_KINDS = frozenset({"message_posted", "reaction_added", "event_attended"})
MEMBERSHIP_KINDS = frozenset({"member_joined", "member_left"})


def is_question(event: MemberActivity) -> bool:
    """A top-level message ending in '?', or one the platform marks as a question (SPEC)."""
    if event.kind is not ActivityKind.message_posted or event.reply_to is not None:
        return False
    return bool(event.attributes.get("is_question")) or (event.text or "").strip().endswith("?")


@dataclass(frozen=True, slots=True)
class ActivityFact:
    event_id: str
    community_id: str
    member_id: str
    kind: str
    at: float  # epoch seconds, UTC
    channel_id: str | None = None
    message_id: str | None = None
    reply_to: str | None = None
    question: bool = False

    @classmethod
    def of(cls, event: MemberActivity) -> ActivityFact:
        return cls(
            event.event_id, event.community_id, event.member_id, event.kind.value,
            event.occurred_at.timestamp(), event.channel_id, event.message_id, event.reply_to,
            is_question(event),
        )

    def row(self) -> list:
        return [self.event_id, self.community_id, self.member_id, self.kind, self.at,
                self.channel_id, self.message_id, self.reply_to, self.question]


@dataclass(frozen=True, slots=True)
class VerdictFact:
    event_id: str  # the verdict_id: one per classified text
    community_id: str
    member_id: str
    at: float
    channel_id: str | None
    message_id: str | None
    flagged: bool
    sentiment: str

    @classmethod
    def of(cls, verdict: ModerationVerdict) -> VerdictFact:
        return cls(
            verdict.verdict_id, verdict.community_id, verdict.member_id,
            verdict.occurred_at.timestamp(), verdict.channel_id, verdict.message_id,
            verdict.flagged, verdict.sentiment.value,
        )

    def row(self) -> list:
        return [self.event_id, self.community_id, self.member_id, self.at, self.channel_id,
                self.message_id, self.flagged, self.sentiment]
