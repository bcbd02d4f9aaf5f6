"""ModerationVerdict: the model's reading of one text."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.activity import Platform
from schemas.base import Contract, UtcDatetime, utc_now

Category = Literal[
    "toxicity", "severe_toxicity", "insult", "threat", "identity_attack", "sexual", "spam"
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]


class Sentiment(StrEnum):
    negative = "negative"
    neutral = "neutral"
    positive = "positive"


class ModerationVerdict(Contract):
    """Topic ``moderation.verdicts.v1``: one per classified text, keyed by community."""

    verdict_id: str = Field(description="Derived from event_id: a retry gives the same id.")
    event_id: str
    platform: Platform
    community_id: str
    channel_id: str | None = None
    member_id: str
    message_id: str | None = None
    occurred_at: UtcDatetime
    scores: dict[Category, float] = Field(description="Probability per category, 0..1.")
    sentiment: Sentiment
    sentiment_scores: dict[Sentiment, float]
    flagged: bool = Field(description="True when the community's policy raised an incident.")
    shadow_rules: list[str] = Field(
        default_factory=list,
        description="Rules running in shadow mode that fired: recorded here, no incident emitted.",
    )
    text_truncated: bool = Field(
        default=False,
        description="The text was longer than the model reads (128 tokens): only its start was scored.",
    )
    model_name: str
    model_version: str
    policy_version: str
    latency_ms: float = Field(ge=0, description="Model time spent on this text.")
    classified_at: UtcDatetime = Field(default_factory=utc_now)
