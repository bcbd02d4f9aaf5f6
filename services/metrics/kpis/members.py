"""What one member contributes to the member KPIs that are counts, as a pure function of
the member's state, and the difference one batch of events makes to it.

Who was active when lives in day bitmaps (``kpis/bitmaps.py``): DAU, WAU, MAU, engaged,
dormant and retention are unions and intersections of them, read at query time. What is
left per member changes rarely: when it was first seen and its membership events. New,
total and left members are sums over members of what each contributes, so a batch changes
them by ``diff(contributions(old), contributions(new))`` of the members whose state changed.
Late or out-of-order events only change a state, and the diff is exact in any order;
duplicates never reach here.

Definitions (SPEC, with the choices it leaves open):
- total(D): first seen on or before D, and the latest membership event on or before D,
  if any, is not ``member_left``; a leave and a join at the same instant: the leave wins;
- left(D): the latest membership event on or before D is ``member_left``;
- the cohort of a member is the ISO week it was first seen in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.metrics.kpis.calendar import Day, local_day, week_of

MAX_MEMBERSHIP_EVENTS = 200  # a member who joins and leaves more often keeps the latest

JOIN, LEAVE = 1, -1


@dataclass
class MemberState:
    first_seen: float | None = None  # epoch seconds of the earliest event of any kind
    membership: list[tuple[float, int]] = field(default_factory=list)  # (epoch s, JOIN | LEAVE)
    index: int | None = None  # the member's bit in its partition's bitmaps
    # Filled only where one member's activity is read back (identity); never stored here.
    active: set[Day] = field(default_factory=set, compare=False)

    def copy(self) -> MemberState:
        return MemberState(self.first_seen, list(self.membership), self.index)

    def cohort(self, tz: str) -> Day | None:
        return None if self.first_seen is None else week_of(local_day(self.first_seen, tz))

    def changed_by(self, epoch_s: float, membership: int | None) -> bool:
        return membership is not None or self.first_seen is None or epoch_s < self.first_seen

    def observe(self, epoch_s: float, *, membership: int | None = None) -> None:
        if self.first_seen is None or epoch_s < self.first_seen:
            self.first_seen = epoch_s
        if membership is not None:
            self.membership.append((epoch_s, membership))
            # Leave sorts after join at the same instant, so it wins the tie.
            self.membership.sort(key=lambda event: (event[0], event[1] == LEAVE))
            del self.membership[:-MAX_MEMBERSHIP_EVENTS]


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
            into[(metric, day)] += 1 if status else -1
            current = status


def contributions(state: MemberState, tz: str = "UTC") -> Counter:
    """What this member adds to the community's member counts, keyed (metric, day).

    ``total_delta`` and ``left_delta`` are changes on a day (totals are their running
    sums); ``new`` counts the member on its first day."""
    out: Counter = Counter()
    if state.first_seen is None:
        return out
    first = local_day(state.first_seen, tz)
    total, left = _status_changes(state, tz)
    _deltas(total, out, "total_delta")
    _deltas(left, out, "left_delta")
    out[("new", first)] += 1
    return out


def left_on(state: MemberState, day: Day, tz: str) -> bool:
    """Whether the member counts as left at the end of ``day``."""
    latest = None
    for epoch_s, kind in state.membership:
        if local_day(epoch_s, tz) > day:
            break
        latest = kind
    return latest == LEAVE


def diff(before: Counter, after: Counter) -> Counter:
    """after - before, keeping negative and dropping zero entries."""
    change = Counter(after)
    change.subtract(before)
    return Counter({key: n for key, n in change.items() if n})
