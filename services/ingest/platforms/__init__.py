"""One small module per platform: how its payloads map onto MemberActivity."""

from dataclasses import dataclass, field

from schemas import MemberActivity


class MalformedPayload(ValueError):
    """The body is signed but is not a payload this platform sends (answered with 400)."""


@dataclass(frozen=True)
class Normalized:
    """What a webhook body turned into: events to publish, and an optional direct answer."""

    events: list[MemberActivity] = field(default_factory=list)
    reply: dict | None = None
    ignored: str | None = None
