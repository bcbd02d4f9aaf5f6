"""ModeratorFeedback: what a human decided about an incident."""

from enum import StrEnum

from pydantic import Field

from schemas.base import Contract, UtcDatetime, utc_now


class FeedbackAction(StrEnum):
    acknowledged = "acknowledged"
    resolved = "resolved"
    false_positive = "false_positive"
    escalated = "escalated"


class FeedbackSource(StrEnum):
    slack = "slack"
    email = "email"
    api = "api"


class ModeratorFeedback(Contract):
    """Topic ``moderation.feedback.v1``, keyed by ``incident_id``."""

    feedback_id: str = Field(description="Idempotency key of this decision.")
    incident_id: str
    community_id: str
    action: FeedbackAction
    moderator: str = Field(min_length=1, description="Who decided, as the source names them.")
    source: FeedbackSource
    note: str | None = Field(default=None, max_length=4000)
    decided_at: UtcDatetime = Field(default_factory=utc_now)
