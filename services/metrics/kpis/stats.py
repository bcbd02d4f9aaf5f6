"""The two order statistics SPEC fixes: nearest-rank percentiles and the usual median."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(values: Sequence[float], fraction: float) -> float | None:
    """The ceil(fraction * n)-th smallest value (p90 of n values: the ceil(0.9 n)-th)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def median(values: Sequence[float]) -> float | None:
    """The middle value; an even count averages the two middle values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def share(part: int, whole: int, digits: int = 4) -> float | None:
    return round(part / whole, digits) if whole else None
