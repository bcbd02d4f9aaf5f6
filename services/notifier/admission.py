"""Admission: what happens to a new incident, decided from its labels alone.

In Alertmanager's order: a silence holds the whole incident back; so does an active incident
that inhibits it; otherwise each route it reaches either notifies (it joins that route's
aggregation group) or is muted by its time intervals. The first notifying route that names
an escalation policy starts it. Pure: the caller fetches silences and active incidents and
acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.notifier.routing.config import RoutingConfig
from services.notifier.routing.inhibit import find_inhibition
from services.notifier.routing.intervals import mute_reason
from services.notifier.routing.tree import MatchedRoute, match_route
from services.notifier.silences.matching import silencing
from services.notifier.silences.models import Silence

__all__ = ["Admission", "admit"]


@dataclass(frozen=True)
class Admission:
    routes: tuple[MatchedRoute, ...] = ()
    """The routes that notify: the incident joins each one's group (one per receiver)."""
    held_back: str | None = None
    """Why the whole incident is held back, when it is: ``silenced`` or ``inhibited``."""
    detail: str = ""
    muted: tuple[tuple[str, str], ...] = field(default=())
    """``(receiver, reason)`` for each route muted by its time intervals."""
    escalation_policy: str | None = None


def admit(
    labels: Mapping[str, str],
    routing: RoutingConfig,
    now: datetime,
    *,
    silences: Sequence[Silence] = (),
    active: Iterable[Mapping[str, str]] = (),
) -> Admission:
    """Decide for an incident with ``labels``; ``active`` are the labels of the other
    incidents still active (the possible sources of an inhibition)."""
    silence = silencing(labels, silences, now)
    if silence is not None:
        return Admission(held_back="silenced", detail=f"silenced by {silence.id} until "
                         f"{silence.ends_at.isoformat()} ({silence.created_by}: {silence.comment})")
    inhibition = find_inhibition(labels, list(active), routing.inhibit_rules)
    if inhibition is not None:
        source = ", ".join(f"{k}={v}" for k, v in sorted(inhibition.source.items()))
        return Admission(held_back="inhibited", detail=f"inhibited by an active incident {{{source}}}")
    routes: list[MatchedRoute] = []
    muted: list[tuple[str, str]] = []
    receivers: set[str] = set()
    for matched in match_route(routing.route, labels):
        reason = mute_reason(matched, routing.time_intervals_by_name, now)
        if reason is not None:
            muted.append((matched.receiver, reason))
        elif matched.receiver not in receivers:  # two routes to one receiver notify it once
            receivers.add(matched.receiver)
            routes.append(matched)
    policy = next((r.escalation_policy for r in routes if r.escalation_policy), None)
    return Admission(routes=tuple(routes), muted=tuple(muted), escalation_policy=policy)
