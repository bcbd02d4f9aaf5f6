"""Small, bounded, in-memory state for the rules that look across messages. No clock: the
caller passes every timestamp (seconds, or an aware datetime), so tests and replays are exact.

- ``OffenderWindow``: recent flags per member, for ``repeat_offenders``.
- ``RaidTracker``: recent joins per community, for ``raid``; ``in_join_burst`` is the pure part.
"""

from bisect import bisect_left, bisect_right
from collections import OrderedDict, deque
from collections.abc import Hashable, Sequence
from datetime import datetime

Instant = float | datetime


def _seconds(at: Instant) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


class OffenderWindow:
    """Flag timestamps per member (any hashable key; use ``(community_id, member_id)``).

    Bounded: at most ``max_members`` members (least recently flagged evicted first), at most
    ``max_per_member`` timestamps each, nothing older than ``horizon_s`` kept.
    """

    def __init__(self, horizon_s: float = 86_400.0, max_members: int = 50_000, max_per_member: int = 256) -> None:
        self.horizon_s = horizon_s
        self.max_members = max_members
        self.max_per_member = max_per_member
        self._flags: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flags)

    def count(self, member: Hashable, at: Instant, window_s: float | None = None) -> int:
        """Flags recorded for ``member`` in ``(at - window_s, at]``; records nothing."""
        now = _seconds(at)
        since = now - min(window_s if window_s is not None else self.horizon_s, self.horizon_s)
        return sum(1 for t in self._flags.get(member, ()) if since < t <= now)

    def record(self, member: Hashable, at: Instant, window_s: float | None = None) -> int:
        """Records a flag; returns the member's flags in the window, this one included."""
        now = _seconds(at)
        times = self._flags.pop(member, None) or deque(maxlen=self.max_per_member)
        times.append(now)
        while times and times[0] <= now - self.horizon_s:
            times.popleft()
        self._flags[member] = times  # most recently flagged last
        while len(self._flags) > self.max_members:
            self._flags.popitem(last=False)
        return self.count(member, now, window_s)


def in_join_burst(join_times: Sequence[float], joined_at: float, *, joins: int, window_s: float) -> bool:
    """Whether some span of ``window_s`` seconds that contains ``joined_at`` holds at least
    ``joins`` of the (sorted) ``join_times``. Pure."""
    lo = bisect_left(join_times, joined_at - window_s)
    hi = bisect_right(join_times, joined_at)
    for i in range(lo, hi):  # spans starting at each join up to joined_at
        if bisect_right(join_times, join_times[i] + window_s) - i >= joins:
            return True
    return False


class RaidTracker:
    """Recent joins per community. Bounded: ``max_communities`` (least recently joined evicted),
    ``max_joins`` per community, nothing older than ``horizon_s``."""

    def __init__(self, horizon_s: float = 3_600.0, max_communities: int = 10_000, max_joins: int = 2_000) -> None:
        self.horizon_s = horizon_s
        self.max_communities = max_communities
        self.max_joins = max_joins
        self._joins: OrderedDict[Hashable, deque[tuple[float, Hashable]]] = OrderedDict()

    def record_join(self, community: Hashable, member: Hashable, at: Instant) -> None:
        now = _seconds(at)
        joins = self._joins.pop(community, None) or deque(maxlen=self.max_joins)
        joins.append((now, member))
        if len(joins) > 1 and joins[-2][0] > now:  # out-of-order delivery: keep it sorted
            joins = deque(sorted(joins, key=lambda j: j[0]), maxlen=self.max_joins)
        while joins and joins[0][0] <= now - self.horizon_s:
            joins.popleft()
        self._joins[community] = joins
        while len(self._joins) > self.max_communities:
            self._joins.popitem(last=False)

    def is_raid_member(
        self,
        community: Hashable,
        member: Hashable,
        at: Instant,
        *,
        joins: int,
        join_window_s: float,
        message_window_s: float,
    ) -> bool:
        """``member`` joined ``community`` in a burst of ``joins`` joins within ``join_window_s``,
        at most ``message_window_s`` before ``at``. Pass the policy's ``raid`` settings."""
        now = _seconds(at)
        history = self._joins.get(community, ())
        times = [t for t, _ in history]
        for t, who in reversed(history):
            if who == member and t <= now:
                return now - t <= message_window_s and in_join_burst(
                    times, t, joins=joins, window_s=join_window_s
                )
        return False
