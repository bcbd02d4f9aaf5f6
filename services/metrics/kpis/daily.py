"""Per-day KPIs: DAU, message volume, moderation counts.

Active on day D means at least one ``message_posted``, ``reaction_added`` or
``event_attended`` on D; edits, deletes, joins and leaves do not count.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

from schemas import ActivityKind

ACTIVE_KINDS = frozenset(
    {ActivityKind.message_posted, ActivityKind.reaction_added, ActivityKind.event_attended}
)


@dataclass(frozen=True)
class ActivityFact:
    day: date
    member_id: str
    kind: ActivityKind
    reply_to: str | None = None


@dataclass(frozen=True)
class VerdictFact:
    day: date
    flagged: bool
    sentiment: str


@dataclass
class DailyKpis:
    day: date
    dau: int = 0
    messages: int = 0
    replies: int = 0
    reactions: int = 0
    joins: int = 0
    leaves: int = 0
    classified: int = 0
    flagged: int = 0
    flagged_share: float | None = None
    _active: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("_active")
        out["day"] = self.day.isoformat()
        return out


_VOLUME = {
    ActivityKind.reaction_added: "reactions",
    ActivityKind.member_joined: "joins",
    ActivityKind.member_left: "leaves",
}


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def daily_kpis(
    first: date, last: date, activity: Iterable[ActivityFact], verdicts: Iterable[VerdictFact] = ()
) -> list[DailyKpis]:
    """One row per day from ``first`` to ``last`` inclusive, zeros where nothing happened.

    Facts are unique per event (the store guarantees it), so plain counting is exact.
    """
    rows = {day: DailyKpis(day) for day in days_between(first, last)}
    for fact in activity:
        row = rows.get(fact.day)
        if row is None:
            continue
        if fact.kind in ACTIVE_KINDS:
            row._active.add(fact.member_id)
        if fact.kind is ActivityKind.message_posted:
            row.messages += 1
            row.replies += fact.reply_to is not None
        elif fact.kind in _VOLUME:
            setattr(row, _VOLUME[fact.kind], getattr(row, _VOLUME[fact.kind]) + 1)
    for fact in verdicts:
        row = rows.get(fact.day)
        if row is not None:
            row.classified += 1
            row.flagged += fact.flagged
    for row in rows.values():
        row.dau = len(row._active)
        row.flagged_share = round(row.flagged / row.classified, 4) if row.classified else None
    return [rows[day] for day in sorted(rows)]
