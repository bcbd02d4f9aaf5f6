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


@dataclass
class Folded:
    counters: Counter = field(default_factory=Counter)  # CounterKey -> increment
    members: dict[MemberKey, MemberState] = field(default_factory=dict)  # every touched member's state
    active: dict[tuple[str, Day], set[str]] = field(default_factory=dict)  # (community, day) -> members
    cohorts: dict[MemberKey, tuple[Day | None, Day]] = field(default_factory=dict)  # moved: (from, to)


def _volume(fact: ActivityFact, day: Day, counters: Counter) -> None:
    names = [VOLUME_FIELDS[fact.kind]]
    if fact.kind == "message_posted":
        if fact.reply_to is not None:
            names.append("replies")
        if fact.question:
            names.append("questions")
    for name in names:
        counters[(fact.community_id, "day", day, None, name)] += 1
        if fact.channel_id is not None and name in CHANNEL_FIELDS:
            counters[(fact.community_id, "channel", day, fact.channel_id, name)] += 1


def fold_activity(
    facts: Iterable[ActivityFact],
    states: Mapping[MemberKey, MemberState],
    timezone_of: Callable[[str], str],
) -> Folded:
    """Counters and member states after ``facts``; ``states`` holds every member they
    touch (an empty state for one never seen) and is not modified."""
    out = Folded()
    for fact in facts:
        tz = timezone_of(fact.community_id)
        day = local_day(fact.at, tz)
        _volume(fact, day, out.counters)
        key = (fact.community_id, fact.member_id)
        state = out.members.get(key)
        if state is None:
            state = out.members[key] = states.get(key, MemberState()).copy()
        state.observe(fact.at, membership={"member_joined": JOIN, "member_left": LEAVE}.get(fact.kind))
        if fact.kind in ACTIVE_KINDS:
            out.active.setdefault((fact.community_id, day), set()).add(fact.member_id)
    for key, state in out.members.items():
        community = key[0]
        tz = timezone_of(community)
        before = states.get(key, MemberState())
        if before == state:
            continue
        for (metric, day), n in diff(contributions(before, tz), contributions(state, tz)).items():
            out.counters[(community, "day", day, None, metric)] += n
        if before.cohort(tz) != state.cohort(tz):
            out.cohorts[key] = (before.cohort(tz), state.cohort(tz))
    return out


def fold_verdicts(facts: Iterable[VerdictFact], timezone_of: Callable[[str], str]) -> Counter:
    counters: Counter = Counter()
    for fact in facts:
        day = local_day(fact.at, timezone_of(fact.community_id))
        names = ["classified", fact.sentiment] + (["flagged"] if fact.flagged else [])
        for name in names:
            counters[(fact.community_id, "day", day, None, name)] += 1
            if fact.channel_id is not None and name in ("classified", "flagged"):
                counters[(fact.community_id, "channel", day, fact.channel_id, name)] += 1
    return counters
