"""The write-time fold: new (deduplicated) facts in; counter increments, member states,
active members per day and cohort moves out.

Pure: the consumer loads the member states a batch touches, calls :func:`fold_activity` and
:func:`fold_verdicts`, turns members into bits, and writes it all in one transaction.
Counters are keyed ``(community, scope, day, channel, field)``; scope ``day`` and
``channel`` hold a day's numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from services.metrics.kpis.calendar import Day, local_day
from services.metrics.kpis.facts import ACTIVE_KINDS, ActivityFact, VerdictFact
from services.metrics.kpis.members import JOIN, LEAVE, MemberState, contributions, diff

CounterKey = tuple[str, str, Day, str | None, str]
MemberKey = tuple[str, str]  # (community, member)

VOLUME_FIELDS = {
    "message_posted": "messages",
    "reaction_added": "reactions",
    "member_joined": "joins",
    "member_left": "leaves",
    "message_edited": "edits",
    "message_deleted": "deletes",
    "event_rsvp": "rsvps",
    "event_attended": "attended",
}
CHANNEL_FIELDS = frozenset({"messages", "replies", "reactions", "joins", "leaves"})
MEMBERSHIP = {"member_joined": JOIN, "member_left": LEAVE}


@dataclass
class Folded:
    counters: Counter = field(default_factory=Counter)  # CounterKey -> increment
    members: dict[MemberKey, MemberState] = field(default_factory=dict)  # every touched member's state
    active: dict[tuple[str, Day], set[str]] = field(default_factory=dict)  # (community, day) -> members
    cohorts: dict[MemberKey, tuple[Day | None, Day]] = field(default_factory=dict)  # moved: (from, to)


def _volume(scope: str, fact: ActivityFact, day: Day, counters: Counter) -> None:
    names = [VOLUME_FIELDS[fact.kind]]
    if fact.kind == "message_posted":
        if fact.reply_to is not None:
            names.append("replies")
        if fact.question:
            names.append("questions")
    for name in names:
        counters[(scope, "day", day, None, name)] += 1
        if fact.channel_id is not None and name in CHANNEL_FIELDS:
            counters[(scope, "channel", day, fact.channel_id, name)] += 1


def fold_activity(
    facts: Iterable[tuple[str, ActivityFact]],
    states: Mapping[MemberKey, MemberState],
    timezone_of: Callable[[str], str],
) -> Folded:
    """Counters and member states after ``facts``, each given with the scope (community, or
    community generation) it counts in; ``states`` holds the members they touch that were
    seen before, and is not modified."""
    out = Folded()
    zones: dict[str, str] = {}
    copied: set[MemberKey] = set()
    for scope, fact in facts:
        tz = zones.get(scope) or zones.setdefault(scope, timezone_of(scope))
        day = local_day(fact.at, tz)
        _volume(scope, fact, day, out.counters)
        key = (scope, fact.member_id)
        state = out.members.get(key)
        if state is None:
            state = states.get(key)
            if state is None:
                state = MemberState()
                copied.add(key)
            out.members[key] = state
        membership = MEMBERSHIP.get(fact.kind)
        if state.changed_by(fact.at, membership):
            if key not in copied:  # copy on write: the caller's states stay as they were
                state = out.members[key] = state.copy()
                copied.add(key)
            state.observe(fact.at, membership=membership)
        if fact.kind in ACTIVE_KINDS:
            out.active.setdefault((scope, day), set()).add(fact.member_id)
    for key in copied:
        scope, state = key[0], out.members[key]
        tz = zones[scope]
        before = states.get(key, MemberState())
        if before == state:
            continue
        for (metric, day), n in diff(contributions(before, tz), contributions(state, tz)).items():
            out.counters[(scope, "day", day, None, metric)] += n
        if before.cohort(tz) != state.cohort(tz):
            out.cohorts[key] = (before.cohort(tz), state.cohort(tz))
    return out


def fold_verdicts(facts: Iterable[tuple[str, VerdictFact]], timezone_of: Callable[[str], str]) -> Counter:
    counters: Counter = Counter()
    for scope, fact in facts:
        day = local_day(fact.at, timezone_of(scope))
        names = ["classified", fact.sentiment] + (["flagged"] if fact.flagged else [])
        for name in names:
            counters[(scope, "day", day, None, name)] += 1
            if fact.channel_id is not None and name in ("classified", "flagged"):
                counters[(scope, "channel", day, fact.channel_id, name)] += 1
    return counters
