"""MemberActivity: one normalized thing a member did on a platform."""

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from schemas.base import Contract, UtcDatetime, utc_now


class Platform(StrEnum):
    slack = "slack"
    discord = "discord"
    discourse = "discourse"
    telegram = "telegram"
    github = "github"
    circle = "circle"
    reddit = "reddit"
    generic = "generic"


class ActivityKind(StrEnum):
    member_joined = "member_joined"
    member_left = "member_left"
    message_posted = "message_posted"
    message_edited = "message_edited"
    message_deleted = "message_deleted"
    reaction_added = "reaction_added"
    event_rsvp = "event_rsvp"
    event_attended = "event_attended"


MESSAGE_KINDS = frozenset(
    {ActivityKind.message_posted, ActivityKind.message_edited, ActivityKind.message_deleted}
)
"""Kinds that refer to a message and therefore carry a ``message_id``."""


class MemberActivity(Contract):
    """Topic ``community.activity.v1``, keyed by :meth:`partition_key`."""

    event_id: str = Field(
        min_length=1,
        max_length=256,
        description="Stable across platform retries: the idempotency key of every effect.",
    )
    platform: Platform
    community_id: str = Field(min_length=1, max_length=256)
    channel_id: str | None = Field(default=None, max_length=256)
    member_id: str = Field(min_length=1, max_length=256)
    kind: ActivityKind
    occurred_at: UtcDatetime = Field(description="When it happened on the platform (UTC).")
    received_at: UtcDatetime = Field(
        default_factory=utc_now, description="When ingest accepted it (UTC)."
    )
    message_id: str | None = Field(default=None, max_length=256)
    reply_to: str | None = Field(
        default=None, max_length=256, description="The message this one answers (threads, replies)."
    )
    text: str | None = Field(default=None, max_length=40_000)
    permalink: str | None = Field(default=None, max_length=2048)
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Platform-specific fields, kept as the platform sent them."
    )

    @model_validator(mode="after")
    def _message_kinds_name_their_message(self) -> "MemberActivity":
        if self.kind in MESSAGE_KINDS and not self.message_id:
            raise ValueError(f"kind {self.kind.value} needs a message_id")
        return self

    def partition_key(self) -> bytes:
        """All events of one member of one community land on one partition, in order."""
        return f"{self.community_id}\x1f{self.member_id}".encode()

    @property
    def has_text(self) -> bool:
        return bool(self.text and self.text.strip())
