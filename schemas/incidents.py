"""Incident: a policy decision that needs a human."""

from enum import StrEnum

from pydantic import Field

from schemas.activity import Platform
from schemas.base import Contract, UtcDatetime, utc_now
from schemas.moderation import Category


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.low: 0, Severity.medium: 1, Severity.high: 2, Severity.critical: 3}


class Evidence(Contract):
    event_id: str
    message_id: str | None = None
    member_id: str
    channel_id: str | None = None
    text: str | None = None
    permalink: str | None = None
    occurred_at: UtcDatetime


class Incident(Contract):
    """Topic ``moderation.incidents.v1``, keyed by ``incident_id``."""

    incident_id: str = Field(
        description="Derived from the message and the rule: a retry yields the same id."
    )
    platform: Platform
    community_id: str
    channel_id: str | None = None
    severity: Severity
    category: Category = Field(description="The category whose rule set the severity.")
    categories: dict[Category, float] = Field(description="Every category that fired, with its score.")
    rule: str = Field(description="The policy rule that fired.")
    policy_version: str
    model_name: str
    model_version: str
    evidence: Evidence
    created_at: UtcDatetime = Field(default_factory=utc_now)

    def labels(self) -> dict[str, str]:
        """The labels a notifier routes on."""
        return {
            "community": self.community_id,
            "severity": self.severity.value,
            "category": self.category,
            "channel": self.channel_id or "",
            "platform": self.platform.value,
            "rule": self.rule,
            "member": self.evidence.member_id,
        }
