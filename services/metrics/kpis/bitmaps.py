"""Member KPIs from day bitmaps: who was active on each day, one bit per member.

Each partition's consumer numbers the members it owns (0, 1, 2, ...) and keeps, per local
day, a bitmap of those active that day (a Python int; a million members is 125 KB). Unions
over windows give WAU and MAU, intersections give retention, and setting a bit twice is
setting it once, so late and repeated events need no bookkeeping. Partitions own disjoint
members: a community's count is the sum of its partitions' counts.

- engaged(D): in MAU(D) and not left at D (everyone in MAU(D) was first seen by D);
- dormant(D): active in D-89..D-30 and not in D-29..D (the 60 days before the last 30);
- retention(W, k): members whose cohort is week W and who were active in week W+k.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.metrics.kpis.calendar import Day

WAU_DAYS, MAU_DAYS = 7, 30
DORMANT_FROM, DORMANT_TO = 30, 89  # days before D
LOOKBACK = DORMANT_TO  # the earliest day a day's KPIs read


def union(days: Mapping[Day, int], first: Day, last: Day) -> int:
    out = 0
    for day in range(first, last + 1):
        out |= days.get(day, 0)
    return out


def day_counts(days: Mapping[Day, int], day: Day, left: int = 0) -> dict[str, int]:
    """DAU, WAU, MAU, engaged and dormant of one partition on ``day``; ``left`` is the
    bitmap of its members counted as left at the end of that day."""
    monthly = union(days, day - MAU_DAYS + 1, day)
    before = union(days, day - DORMANT_TO, day - DORMANT_FROM)
    return {
        "dau": days.get(day, 0).bit_count(),
        "wau": union(days, day - WAU_DAYS + 1, day).bit_count(),
        "mau": monthly.bit_count(),
        "engaged": (monthly & ~left).bit_count(),
        "dormant": (before & ~monthly).bit_count(),
    }


def retained(cohort: int, days: Mapping[Day, int], week: Day) -> int:
    """How many of ``cohort`` were active in the week starting on ``week``."""
    return (cohort & union(days, week, week + 6)).bit_count()


def active_days_of(days: Mapping[Day, int], index: int) -> set[Day]:
    return {day for day, bitmap in days.items() if bitmap >> index & 1}


def to_bytes(bitmap: int) -> bytes:
    return bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "little")


def from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "little")
