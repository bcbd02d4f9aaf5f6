"""Power users (SPEC: the top 10% by activity over 30 days), from a window's facts.

Activity is the count of a member's active events (messages, reactions, attendances) in
D-29..D. The segment is every member at least as active as the ceil(0.1 n)-th most active
of the n members active in the window, so members tied at the boundary are all in it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from services.metrics.kpis.facts import ACTIVE_KINDS, ActivityFact

TOP_SHARE = 0.10


@dataclass(frozen=True)
class PowerUsers:
    members: int
    threshold: int | None  # the least activity that makes a power user
    activity_share: float | None  # their share of all active events in the window

    def as_dict(self) -> dict:
        return {"power_users": self.members, "power_user_threshold": self.threshold,
                "power_user_activity_share": self.activity_share}


def power_users(window_facts: Iterable[ActivityFact]) -> PowerUsers:
    activity = Counter(f.member_id for f in window_facts if f.kind in ACTIVE_KINDS)
    if not activity:
        return PowerUsers(0, None, None)
    counts = sorted(activity.values(), reverse=True)
    threshold = counts[math.ceil(TOP_SHARE * len(counts)) - 1]
    top = [n for n in counts if n >= threshold]
    return PowerUsers(len(top), threshold, round(sum(top) / sum(counts), 4))
