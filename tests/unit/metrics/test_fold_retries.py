"""A store outage or a transaction conflict folds the batch again; nothing is dead-lettered."""

import pytest
from pymongo.errors import AutoReconnect, OperationFailure

from services.metrics import consumer
from services.metrics.consumer import BatchFolder, Consumed
from services.metrics.kpis.facts import ActivityFact
from services.metrics.store import Generation


class FlakyStore:
    """In-memory stand-in for the MetricsStore calls a fold makes; fails the first writes."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.written = []

    async def applied_offsets(self, group, topic, partitions):
        return {}

    async def recent_event_ids(self, topic, partition, since, *, generation=None):
        return set()

    async def generations(self, communities):
        return {c: Generation(c) for c in communities}

    async def member_states(self, keys):
        return {}

    async def next_indexes(self, keys, *, slot):
        return dict.fromkeys(keys, 0)

    async def bitmap_docs(self, keys):
        return {}

    async def write_batch(self, batch):
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(batch)


def conflict() -> OperationFailure:
    error = OperationFailure("WriteConflict")
    error._add_error_label("TransientTransactionError")
    return error


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(consumer, "STORE_RETRY_MAX_S", 0)
    monkeypatch.setattr(consumer, "wait_exponential", lambda **_: lambda _state: 0)


async def test_an_outage_and_a_conflict_are_retried_until_the_batch_is_stored():
    store = FlakyStore([AutoReconnect("primary gone"), conflict()])
    folder = BatchFolder(store, group="g", topic="t", source="activity", timezone_of=lambda _: "UTC")
    fact = ActivityFact("e1", "acme", "m1", "message_posted", 1.7e9, "general", "msg1")
    assert await folder.fold([Consumed(0, 5, fact)]) == 1
    [batch] = store.written
    assert batch.offsets == {0: 5}
    assert list(batch.members) == [("acme@0", "m1")]
    assert batch.members[("acme@0", "m1")][1].index == 0  # bits handed out again from the start


async def test_other_errors_are_left_to_the_consumer_wrapper():
    store = FlakyStore([OperationFailure("bad update")])
    folder = BatchFolder(store, group="g", topic="t", source="activity", timezone_of=lambda _: "UTC")
    with pytest.raises(OperationFailure):
        await folder.fold([Consumed(0, 5, ActivityFact("e1", "acme", "m1", "message_posted", 1.7e9))])


async def test_each_wait_on_an_outage_is_reported_and_a_conflict_is_not():
    store = FlakyStore([AutoReconnect("primary gone"), AutoReconnect("still gone"), conflict()])
    waits: list[str] = []
    folder = BatchFolder(store, group="g", topic="t", source="activity", timezone_of=lambda _: "UTC",
                         on_outage=lambda error: waits.append(type(error).__name__))
    assert await folder.fold([Consumed(0, 5, ActivityFact("e1", "acme", "m1", "message_posted", 1.7e9))]) == 1
    assert waits == ["AutoReconnect", "AutoReconnect"]
