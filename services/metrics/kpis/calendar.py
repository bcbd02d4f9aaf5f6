"""Community calendars: which local day and ISO week a moment falls on.

Days are day ordinals (``date.toordinal()``) in the community's time zone; a week is the
ordinal of its Monday. Plain integers keep the member arithmetic cheap and exact.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

Day = int


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


_UNIX_DAY0 = date(1970, 1, 1).toordinal()
_QUARTER_HOUR = 900  # every zone's UTC offset changes on a quarter hour of UTC
_offsets: dict[tuple[str, int], float] = {}


def local_day(epoch_s: float, tz: str = "UTC") -> Day:
    # Hot: every event. The zone's offset is looked up once per quarter hour of UTC.
    key = (tz, int(epoch_s // _QUARTER_HOUR))
    offset = _offsets.get(key)
    if offset is None:
        if len(_offsets) > 100_000:
            _offsets.clear()
        offset = _offsets[key] = datetime.fromtimestamp(epoch_s, zone(tz)).utcoffset().total_seconds()
    return int((epoch_s + offset) // 86_400) + _UNIX_DAY0


def week_of(day: Day) -> Day:
    """The Monday (ISO weeks) of the week holding ``day``."""
    return day - date.fromordinal(day).weekday()


def iso(day: Day) -> str:
    return date.fromordinal(day).isoformat()


def from_iso(text: str) -> Day:
    return date.fromisoformat(text).toordinal()


def iso_week(monday: Day) -> str:
    year, week, _ = date.fromordinal(monday).isocalendar()
    return f"{year}-W{week:02d}"


def day_end_utc(day: Day, tz: str = "UTC") -> datetime:
    """The first instant after ``day`` ends in the community's zone, in UTC."""
    following = date.fromordinal(day) + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=zone(tz)).astimezone(UTC)
