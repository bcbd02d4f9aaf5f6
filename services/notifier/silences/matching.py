"""Which silence, if any, mutes an incident's labels at a given time. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from services.notifier.silences.models import Silence

__all__ = ["matching_silences", "silencing"]


def matching_silences(
    labels: Mapping[str, str], silences: Iterable[Silence], now: datetime
) -> list[Silence]:
    """The silences active at ``now`` (``starts_at <= now < ends_at``) whose matchers all
    match ``labels``, in the order given. ``now`` must be timezone-aware."""
    return [s for s in silences if s.is_active(now) and s.matches(labels)]


def silencing(
    labels: Mapping[str, str], silences: Iterable[Silence], now: datetime
) -> Silence | None:
    """The active silence that mutes ``labels`` at ``now``, or ``None``.

    When several do, the one that ends last (then the lowest id), so a caller can say
    "silenced until ..." with the right time.
    """
    found = matching_silences(labels, silences, now)
    if not found:
        return None
    return min(found, key=lambda s: (-s.ends_at.timestamp(), s.id))
