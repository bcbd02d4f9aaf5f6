"""Folding consumed batches into the store, exactly once per event.

A batch of records becomes one transaction: the facts it adds, the counters and member
states they change, and the partition offsets they reach. Two things keep an event's
effect single under at-least-once delivery:

- a redelivered record is at or below the offset stored with the effects, so it is skipped;
- an event published twice (a platform retry, at another offset) is recognised by its
  idempotency key in this partition's memory of recent ids (both copies share the
  partition: they share the key). The memory is rebuilt from the stored facts whenever
  this process was not the last to write the partition, and reaches back
  ``dedupe_window`` (a duplicate older than that counts again).

Member states are cached per partition for the same reason they can be trusted: the
cache is dropped whenever another writer touched the partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from services.metrics.kpis.calendar import local_day
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.fold import fold_activity, fold_verdicts
from services.metrics.kpis.members import MemberState
from services.metrics.store import BatchWrite, Generation, MetricsStore

Fact = TypeVar("Fact", ActivityFact, VerdictFact)
Targets = Callable[[Generation, str, int, int], list[str]]


@dataclass(frozen=True)
class Consumed(Generic[Fact]):
    """One parsed record: its fact and where it sat in the topic."""

    partition: int
    offset: int
    fact: Fact


def live_targets(generation: Generation, topic: str, partition: int, offset: int) -> list[str]:
    return generation.targets(topic, partition, offset)


class _PartitionMemory:
    def __init__(self) -> None:
        self.last_offset: int | None = None
        self.seen: dict[str, float] = {}  # event id -> when it was stored (epoch s)
        self.members: OrderedDict[tuple[str, str], MemberState] = OrderedDict()


class BatchFolder:
    """Folds batches of one topic for one consumer group; one instance per process."""

    def __init__(
        self,
        store: MetricsStore,
        *,
        group: str,
        topic: str,
        source: str,
        timezone_of: Callable[[str], str],
        targets: Targets = live_targets,
        dedupe_window: timedelta = timedelta(days=2),
        member_cache: int = 100_000,
        memory_scope: str | None = None,
    ) -> None:
        self.store = store
        self.group, self.topic, self.source = group, topic, source
        self.timezone_of = timezone_of
        self.targets = targets
        self.dedupe_window = dedupe_window
        self.member_cache = member_cache
        self.writer = uuid.uuid4().hex
        self.partitions: dict[int, _PartitionMemory] = defaultdict(_PartitionMemory)
        self.memory_scope = memory_scope  # a rebuild remembers only its own generation's ids
        self.lock = asyncio.Lock()  # held while a batch is folded; a rebuild fixes its fence under it

    def _zone(self, generation_key: str) -> str:
        return self.timezone_of(generation_key.rsplit("@", 1)[0])

    async def fold(self, consumed: Sequence[Consumed]) -> int:
        """Store the effects of ``consumed``; returns how many events had an effect."""
        if not consumed:
            return 0
        async with self.lock:
            return await self._fold(consumed)

    async def _fold(self, consumed: Sequence[Consumed]) -> int:
        by_partition: dict[int, list[Consumed]] = defaultdict(list)
        for item in consumed:
            by_partition[item.partition].append(item)
        applied = await self.store.applied_offsets(self.group, self.topic, by_partition)
        for partition in by_partition:
            await self._own(partition, *applied.get(partition, (-1, "")))
        fresh = self._fresh(by_partition, applied)
        generations = await self.store.generations({item.fact.community_id for _, item in fresh})
        scoped: dict[int, list[tuple[int, Fact, str]]] = defaultdict(list)
        for partition, item in fresh:
            for key in self.targets(generations[item.fact.community_id], self.topic, partition, item.offset):
                scoped[partition].append((item.offset, item.fact, key))
        self._touched: dict[tuple[str, str], tuple[int, MemberState]] = {}
        batch = BatchWrite(self.group, self.topic,
                           {p: max(i.offset for i in items) for p, items in by_partition.items()}, self.writer)
        if self.source == "activity":
            await self._fold_activity(scoped, batch, generations)
        else:
            for partition, items in scoped.items():
                facts = [dataclasses.replace(fact, community_id=key) for _, fact, key in items]
                batch.count_all(partition, fold_verdicts(facts, self._zone))
        self._pack(scoped, batch)
        await self.store.write_batch(batch)
        self._remember(fresh, batch, generations)
        return len(fresh)

    async def _own(self, partition: int, stored_offset: int, writer: str) -> None:
        memory = self.partitions[partition]
        if memory.last_offset == stored_offset and (writer == self.writer or stored_offset < 0):
            return
        # Another writer (or none we know of) stored this partition last: rebuild what we know.
        since = datetime.now(UTC) - self.dedupe_window
        ids = await self.store.recent_event_ids(self.topic, partition, since, generation=self.memory_scope)
        memory.seen = dict.fromkeys(ids, time.time())
        memory.members.clear()
        memory.last_offset = stored_offset

    def _fresh(self, by_partition: dict[int, list[Consumed]], applied: dict) -> list[tuple[int, Consumed]]:
        fresh = []
        for partition, items in by_partition.items():
            stored_offset = applied.get(partition, (-1, ""))[0]
            seen = self.partitions[partition].seen
            batch_ids: set[str] = set()
            for item in sorted(items, key=lambda i: i.offset):
                event_id = item.fact.event_id
                if item.offset <= stored_offset or event_id in seen or event_id in batch_ids:
                    continue
                batch_ids.add(event_id)
                fresh.append((partition, item))
        return fresh

    async def _fold_activity(self, scoped, batch: BatchWrite, generations: dict[str, Generation]) -> None:
        states: dict[tuple[str, str], MemberState] = {}
        missing = set()
        for partition, items in scoped.items():
            cache = self.partitions[partition].members
            for _, fact, key in items:
                member = (key, fact.member_id)
                if member in cache:
                    states[member] = cache[member]
                else:
                    missing.add(member)
        if missing:
            states.update(await self.store.member_states(missing))
        for partition, items in scoped.items():
            facts = [dataclasses.replace(fact, community_id=key) for _, fact, key in items]
            folded = fold_activity(facts, states, self._zone)
            batch.count_all(partition, folded.counters)
            for member, state in folded.members.items():
                if state != states.get(member):
                    batch.members[member] = state
                self._touched[member] = (partition, state)

    def _pack(self, scoped, batch: BatchWrite) -> None:
        packs: dict[tuple[str, int, int], list[list]] = defaultdict(list)
        first_offsets: dict[tuple[str, int, int], int] = {}
        for partition, items in scoped.items():
            for offset, fact, key in items:
                pack_key = (key, local_day(fact.at, self._zone(key)), partition)
                packs[pack_key].append(fact.row())
                first_offsets[pack_key] = min(offset, first_offsets.get(pack_key, offset))
        for (key, day, partition), rows in packs.items():
            batch.facts.append((key, self.source, day, partition, first_offsets[(key, day, partition)], rows))

    def _remember(self, fresh, batch: BatchWrite, generations: dict[str, Generation]) -> None:
        now = time.time()
        for partition, offset in batch.offsets.items():
            self.partitions[partition].last_offset = offset
        for partition, item in fresh:
            self.partitions[partition].seen[item.fact.event_id] = now
        building = {generation_key for g in generations.values() if g.building is not None
                    for generation_key in (f"{g.community_id}@{g.building}",)}
        for member, (partition, state) in self._touched.items():
            if member[0] in building:
                continue  # a rebuild writes these too: never trust a cached copy
            cache = self.partitions[partition].members
            cache[member] = state
            cache.move_to_end(member)
            while len(cache) > self.member_cache:
                cache.popitem(last=False)
        horizon = now - self.dedupe_window.total_seconds()
        for memory in self.partitions.values():
            if len(memory.seen) > 1000 and next(iter(memory.seen.values())) < horizon:
                memory.seen = {k: t for k, t in memory.seen.items() if t >= horizon}

