"""One small module per platform: how its payloads map onto MemberActivity.

Each module exposes ``SOURCE``, a :class:`WebhookSource`: the data ingest needs to serve it
(its route, signature scheme and headers, and its normalize function). Adding a platform is
adding a module and listing it in :data:`SOURCES`; the HTTP code stays as it is.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas import MemberActivity


class MalformedPayload(ValueError):
    """The body is signed but is not a payload this platform sends (answered with 400)."""


@dataclass(frozen=True)
class Normalized:
    """What a webhook body turned into: events to publish, and an optional direct answer."""

    events: list[MemberActivity] = field(default_factory=list)
    reply: dict | None = None
    ignored: str | None = None


@dataclass(frozen=True)
class WebhookSource:
    name: str
    summary: str
    verify: Callable[..., None]
    timestamp_header: str
    signature_header: str
    secret_setting: str
    normalize: Callable[[Any], Normalized]
    accepted_status: int = 202


def sources() -> tuple[WebhookSource, ...]:
    from services.ingest.platforms import generic, slack

    return (slack.SOURCE, generic.SOURCE)
