"""What one member contributes to the community's member KPIs, as a pure function of the
member's state, and the difference one batch of events makes to it.

The store keeps a small state per member (first seen, membership events, active days).
Every member KPI of a day (DAU, WAU, MAU, engaged, dormant, new, total, left) and every
retention cell is a sum over members of what each contributes, so a batch changes the
sums by ``diff(contributions(old), contributions(new))`` of the members it touched. Events
arriving late or out of order only change a member's state, and the diff of the whole
contribution is exact whatever the order; duplicates never reach here.

Definitions (SPEC, with the choices it leaves open):
- active on D: a ``message_posted``, ``reaction_added`` or ``event_attended`` on D;
- WAU(D) over D-6..D, MAU(D) over D-29..D;
- engaged(D): in MAU(D) and counted in total members(D);
- dormant(D): active in D-89..D-30 and not in D-29..D (the 60 days before the last 30);
- total(D): first seen on or before D, and the latest membership event on or before D,
  if any, is not ``member_left``; a leave and a join at the same instant: the leave wins;
- left(D): the latest membership event on or before D is ``member_left``;
- retention cell (W, k): first seen in ISO week W and active in week W+k.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.metrics.kpis.calendar import Day, local_day, week_of

WAU_DAYS, MAU_DAYS = 7, 30
DORMANT_FROM, DORMANT_TO = 30, 89  # days before D
MAX_MEMBERSHIP_EVENTS = 200  # a member who joins and leaves more often keeps the latest

JOIN, LEAVE = 1, -1

Key = tuple[str, Day, int | None]  # (metric, day or cohort week, week offset for retention)


@dataclass
class MemberState:
    first_seen: float | None = None  # epoch seconds of the earliest event of any kind
    membership: list[tuple[float, int]] = field(default_factory=list)  # (epoch s, JOIN | LEAVE)
    active: set[Day] = field(default_factory=set)

    def copy(self) -> MemberState:
        return MemberState(self.first_seen, list(self.membership), set(self.active))

    def observe(self, epoch_s: float, *, active_day: Day | None = None, membership: int | None = None) -> None:
        if self.first_seen is None or epoch_s < self.first_seen:
            self.first_seen = epoch_s
        if active_day is not None:
            self.active.add(active_day)
        if membership is not None:
            self.membership.append((epoch_s, membership))
            # Leave sorts after join at the same instant, so it wins the tie.
            self.membership.sort(key=lambda event: (event[0], event[1] == LEAVE))
            del self.membership[:-MAX_MEMBERSHIP_EVENTS]


def _spread(days: set[Day], start: int, length: int) -> set[Day]:
    return {day + offset for day in days for offset in range(start, start + length)}


def _status_changes(state: MemberState, tz: str) -> tuple[list[tuple[Day, bool]], list[tuple[Day, bool]]]:
    """(day, counted in total) and (day, counted as left) at the end of each day where either changes."""
    assert state.first_seen is not None
    first = local_day(state.first_seen, tz)
    end_of_day: dict[Day, int] = {}
    for epoch_s, kind in state.membership:  # sorted: the last one of a day decides that day
        end_of_day[local_day(epoch_s, tz)] = kind
    total, left = [(first, True)], [(first, False)]
    for day in sorted(end_of_day):
        joined = end_of_day[day] == JOIN
        total.append((max(day, first), joined))
        left.append((max(day, first), not joined))
    return total, left


def _deltas(changes: list[tuple[Day, bool]], into: Counter, metric: str) -> None:
    current = False
    for day, status in changes:
        if status != current:
            into[(metric, day, None)] += 1 if status else -1
            current = status


def _counted(changes: list[tuple[Day, bool]], day: Day) -> bool:
    status = False
    for change_day, change in changes:
        if change_day > day:
            break
        status = change
    return status


def contributions(state: MemberState, tz: str = "UTC") -> Counter:
    """Everything this member adds to the community's KPIs, keyed (metric, day, k).

    ``total_delta`` and ``left_delta`` are changes on a day (totals are their running
    sums); every other metric counts the member once on each day it names."""
    out: Counter = Counter()
    if state.first_seen is None:
        return out
    first = local_day(state.first_seen, tz)
    total, left = _status_changes(state, tz)
    _deltas(total, out, "total_delta")
    _deltas(left, out, "left_delta")
    out[("new", first, None)] += 1
    cohort = week_of(first)
    out[("cohort_size", cohort, None)] += 1
    for day in state.active:
        out[("dau", day, None)] += 1
    for week in {week_of(day) for day in state.active if day >= first}:
        out[("retained", cohort, (week - cohort) // 7)] += 1
    for day in _spread(state.active, 0, WAU_DAYS):
        out[("wau", day, None)] += 1
    monthly = _spread(state.active, 0, MAU_DAYS)
    for day in monthly:
        out[("mau", day, None)] += 1
        if _counted(total, day):
            out[("engaged", day, None)] += 1
    for day in _spread(state.active, DORMANT_FROM, DORMANT_TO - DORMANT_FROM + 1) - monthly:
        out[("dormant", day, None)] += 1
    return out


def diff(before: Counter, after: Counter) -> Counter:
    """after - before, keeping negative and dropping zero entries."""
    change = Counter(after)
    change.subtract(before)
    return Counter({key: n for key, n in change.items() if n})
