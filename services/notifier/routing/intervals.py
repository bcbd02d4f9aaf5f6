"""Time intervals: when a route notifies, as Alertmanager's ``time_intervals``.

    time_intervals:
      - name: office-hours
        time_intervals:
          - times: [{start_time: "09:00", end_time: "17:00"}]
            weekdays: ["monday:friday"]
            location: Europe/Paris
      - name: month-end-freeze
        time_intervals:
          - days_of_month: ["-3:-1"]           # the last three days of every month
            months: ["january:march", "12"]
            years: ["2026:2027"]
    route:
      receiver: console
      routes:
        - matchers: ['severity="low"']
          receiver: moderators
          active_time_intervals: [office-hours]   # notify only then
          mute_time_intervals: [month-end-freeze] # and never then

Semantics (``timeinterval.go``):

* A ``TimeInterval`` holds when every field it gives holds; each field is a list of
  alternatives; an interval with no field at all always holds. The instant is first
  converted to ``location`` (IANA name, UTC by default; ``time_zone`` is the same key).
* ``times``: minutes of the local day, ``[start_time, end_time)`` (the end minute is
  excluded; ``24:00`` ends the day). On a DST day, local clock times that do not exist are
  never reached and repeated ones are matched twice.
* ``weekdays``: ``sunday`` .. ``saturday``, ranges inclusive and not wrapping (weeks run
  sunday to saturday). ``months``: names or 1..12, inclusive, not wrapping over the new
  year. ``years``: inclusive.
* ``days_of_month``: 1..31 or -1 (the last day) .. -31, inclusive, resolved against the
  length of the month of the instant: ``"28:31"`` is only the 28th in a 28-day February,
  ``"30:31"`` there is no day at all; a range never spills into the next month.
* A ``NamedTimeInterval`` is active when any of its intervals is (an empty list: never).

Routes: ``mute_time_intervals`` and ``active_time_intervals`` apply to the route that names
them only, not to its children (as in Alertmanager), and the root route may have neither.
A route is muted when one of its mute intervals is active, or when it has active intervals
and none of them is active.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import datetime

from services.notifier.routing.config import NamedTimeInterval, TimeInterval
from services.notifier.routing.tree import MatchedRoute

__all__ = ["NamedTimeInterval", "TimeInterval", "is_active", "mute_reason", "route_muted"]


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"a time interval needs a timezone-aware datetime, got {at!r}")
    return at


def _holds(spec: TimeInterval, at: datetime) -> bool:
    local = at.astimezone(spec.zone)
    if spec.times:
        minute = local.hour * 60 + local.minute
        if not any(minute in r for r in spec.times):
            return False
    if spec.days_of_month:
        days_in_month = calendar.monthrange(local.year, local.month)[1]
        spans = (r.resolve(days_in_month) for r in spec.days_of_month)
        if not any(begin <= local.day <= end for begin, end in spans):
            return False
    if spec.months and not any(local.month in r for r in spec.months):
        return False
    if spec.weekdays:
        weekday = local.isoweekday() % 7  # sunday = 0, as in Alertmanager (and Go)
        if not any(weekday in r for r in spec.weekdays):
            return False
    return not spec.years or any(local.year in r for r in spec.years)


def is_active(interval: TimeInterval | NamedTimeInterval, at: datetime) -> bool:
    """Whether ``at`` (timezone-aware) falls in ``interval``; a named interval is active
    when any of its ``time_intervals`` is."""
    at = _aware(at)
    if isinstance(interval, NamedTimeInterval):
        return any(_holds(spec, at) for spec in interval.time_intervals)
    return _holds(interval, at)


def mute_reason(
    matched: MatchedRoute,
    intervals_by_name: Mapping[str, NamedTimeInterval],
    at: datetime,
) -> str | None:
    """Why ``matched`` is muted at ``at`` (for logs), or ``None`` when it notifies.

    ``intervals_by_name``: ``RoutingConfig.time_intervals_by_name`` (validation guarantees
    every name a route uses is there; an unknown one raises ``KeyError``).
    """
    at = _aware(at)
    for name in matched.mute_time_intervals:
        if is_active(intervals_by_name[name], at):
            return f"mute time interval {name!r} is active"
    if matched.active_time_intervals and not any(
        is_active(intervals_by_name[name], at) for name in matched.active_time_intervals
    ):
        names = ", ".join(matched.active_time_intervals)
        return f"outside its active time intervals ({names})"
    return None


def route_muted(
    matched: MatchedRoute,
    intervals_by_name: Mapping[str, NamedTimeInterval],
    at: datetime,
) -> bool:
    """Muted when any mute interval is active, or active intervals are set and none is."""
    return mute_reason(matched, intervals_by_name, at) is not None
