"""A bounded memory of event ids this process got acknowledged, to answer platform retries
without publishing again. It is an optimisation only: downstream effects are idempotent on
event_id, so a retry that reaches another replica is still harmless."""

from collections import OrderedDict


class RecentEvents:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def all_seen(self, event_ids: list[str]) -> bool:
        return bool(event_ids) and all(event_id in self._ids for event_id in event_ids)

    def remember(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
