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
import logging
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from pymongo.errors import ConnectionFailure, PyMongoError
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential

from services.metrics.kpis.calendar import local_day
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.fold import fold_activity, fold_verdicts
from services.metrics.kpis.members import MemberState
from services.metrics.store import BatchWrite, Generation, MetricsStore

log = logging.getLogger("steward.metrics.consumer")

Fact = TypeVar("Fact", ActivityFact, VerdictFact)
STORE_RETRY_MAX_S = 30
BITMAP_CACHE = 256  # (generation, kind, day) bitmaps kept per partition: the recent days
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
        self.bitmaps: OrderedDict[tuple[str, str, int], int] = OrderedDict()  # (generation, kind, day)
        self.next_index: dict[str, int] = {}  # generation -> the next member bit number

    def forget(self) -> None:
        self.members.clear()
        self.bitmaps.clear()
        self.next_index.clear()


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
        index_slot: int = 0,
        lock: asyncio.Lock | None = None,
        on_outage: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.store = store
        # Told each time a batch waits for MongoDB to come back (the outage counter and alert).
        self.on_outage = on_outage
        self.group, self.topic, self.source = group, topic, source
        self.timezone_of = timezone_of
        self.targets = targets
        self.dedupe_window = dedupe_window
        self.member_cache = member_cache
        self.writer = uuid.uuid4().hex
        self.partitions: dict[int, _PartitionMemory] = defaultdict(_PartitionMemory)
        self.memory_scope = memory_scope  # a rebuild remembers only its own generation's ids
        # Held while a batch is folded. A rebuild fixes its fence under it, and folds under
        # the live folder's lock, so the two never read a member both are about to write.
        self.lock = lock or asyncio.Lock()
        # Member bit numbers are slot + 2 n: a rebuild (slot 1) and the live path writing the
        # same new generation never hand out the same bit.
        self.index_slot = index_slot

    def _zone(self, generation_key: str) -> str:
        return self.timezone_of(generation_key.rsplit("@", 1)[0])

    async def fold(self, consumed: Sequence[Consumed]) -> int:
        """Store the effects of ``consumed``; returns how many events had an effect."""
        if not consumed:
            return 0
        async for attempt in AsyncRetrying(retry=retry_if_exception(_store_unavailable), reraise=True,
                                           wait=wait_exponential(multiplier=0.2, max=STORE_RETRY_MAX_S),
                                           before_sleep=self._before_retry):
            with attempt:
                async with self.lock:
                    return await self._fold(consumed)
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _before_retry(self, state) -> None:
        _log_retry(state)
        error = state.outcome.exception()
        if self.on_outage is not None and isinstance(error, ConnectionFailure):
            self.on_outage(error)

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
                batch.count_all(partition, fold_verdicts([(key, fact) for _, fact, key in items], self._zone))
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
        memory.forget()
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
        building = _building(generations)
        states = await self._member_states(scoped, building)
        await self._load_next_indexes(scoped, states, building)
        sets: dict[tuple[str, str, int, int], int] = defaultdict(int)
        clears: dict[tuple[str, str, int, int], int] = defaultdict(int)
        for partition, items in scoped.items():
            folded = fold_activity([(key, fact) for _, fact, key in items], states, self._zone)
            batch.count_all(partition, folded.counters)
            for member, state in folded.members.items():
                if state.index is None:
                    state.index = self._allocate(member[0], partition, batch)
                if state != states.get(member):
                    batch.members[member] = (partition, state)
                self._touched[member] = (partition, state)
            for (g, day), members in folded.active.items():
                for member_id in members:
                    sets[(g, "active", day, partition)] |= 1 << folded.members[(g, member_id)].index
            for member, (old, new) in folded.cohorts.items():
                bit = 1 << folded.members[member].index
                if old is not None:
                    clears[(member[0], "cohort", old, partition)] |= bit
                sets[(member[0], "cohort", new, partition)] |= bit
        current = await self._bitmaps(set(sets) | set(clears), building)
        for key, before in current.items():
            after = (before | sets.get(key, 0)) & ~clears.get(key, 0)
            if after != before:
                batch.bitmaps[key] = after

    async def _member_states(self, scoped, building: set[str]) -> dict[tuple[str, str], MemberState]:
        states: dict[tuple[str, str], MemberState] = {}
        missing = set()
        for partition, items in scoped.items():
            cache = self.partitions[partition].members
            for _, fact, key in items:
                member = (key, fact.member_id)
                if member in cache and key not in building:
                    states[member] = cache[member]
                else:
                    missing.add(member)
        if missing:
            states.update(await self.store.member_states(missing))
        return states

    async def _load_next_indexes(self, scoped, states, building: set[str]) -> None:
        unknown = {(key, partition) for partition, items in scoped.items() for _, fact, key in items
                   if (key, fact.member_id) not in states
                   and (key in building or key not in self.partitions[partition].next_index)}
        if unknown:
            found = await self.store.next_indexes(unknown, slot=self.index_slot)
            for (key, partition), following in found.items():
                self.partitions[partition].next_index[key] = following

    def _allocate(self, generation: str, partition: int, batch: BatchWrite) -> int:
        # Counted in the batch, and remembered only once it is stored: a retry hands out the same bits.
        key = (generation, partition, self.index_slot)
        n = batch.indexes.get(key, self.partitions[partition].next_index[generation])
        batch.indexes[key] = n + 1
        return self.index_slot + 2 * n

    async def _bitmaps(self, keys: set[tuple[str, str, int, int]], building: set[str]) -> dict:
        current, missing = {}, []
        for key in keys:
            g, kind, day, partition = key
            cached = self.partitions[partition].bitmaps.get((g, kind, day))
            if cached is not None and g not in building:
                current[key] = cached
            else:
                missing.append(key)
        if missing:
            stored = await self.store.bitmap_docs(missing)
            current.update({key: stored.get(key, 0) for key in missing})
        return current

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
        building = _building(generations)
        for (g, partition, _), following in batch.indexes.items():
            self.partitions[partition].next_index[g] = following
        for (g, kind, day, partition), bits in batch.bitmaps.items():
            if g not in building:
                _remember_bounded(self.partitions[partition].bitmaps, (g, kind, day), bits, BITMAP_CACHE)
        for member, (partition, state) in self._touched.items():
            if member[0] in building:
                continue  # a rebuild writes these too: never trust a cached copy
            _remember_bounded(self.partitions[partition].members, member, state, self.member_cache)
        horizon = now - self.dedupe_window.total_seconds()
        for memory in self.partitions.values():
            if len(memory.seen) > 1000 and next(iter(memory.seen.values())) < horizon:
                memory.seen = {k: t for k, t in memory.seen.items() if t >= horizon}



def _store_unavailable(error: BaseException) -> bool:
    """MongoDB is down or a transaction met another writer: fold the batch again, for as
    long as it takes (a dead letter would only postpone the same work)."""
    if isinstance(error, ConnectionFailure):
        return True
    return isinstance(error, PyMongoError) and error.has_error_label("TransientTransactionError")


def _log_retry(state) -> None:
    log.warning("storing a batch failed (%r); folding it again in %.1fs",
                state.outcome.exception(), state.next_action.sleep)


def _building(generations: dict[str, Generation]) -> set[str]:
    """Generations a rebuild writes too: never trust a cached copy of theirs."""
    return {f"{g.community_id}@{g.building}" for g in generations.values() if g.building is not None}


def _remember_bounded(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
