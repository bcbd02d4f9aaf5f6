"""The only module that talks to MongoDB for metrics.

Layout (every key starts with the community's *generation*, ``<community>@<gen>``, so a
backfill can rebuild a community beside the live numbers and switch over at once):

- ``metrics_counters``: one document per (generation, scope, day, channel, partition)
  holding that shard's counts as top-level fields. Each partition's consumer owns its shards, so replicas never
  write the same document; reads add the shards up.
- ``metrics_members``: one small document per member (first seen, membership events, its
  bit number), written only when that changes: when it is first seen, mostly.
- ``metrics_bitmaps``: per (generation, day, partition), the bitmap of the partition's
  members active that day; per cohort week, the bitmap of its members.
- ``metrics_indexes``: per (generation, partition), the next member bit number.
- ``metrics_facts``: packed facts per (generation, source, day, partition, batch), under a
  TTL: what the joined KPIs read, and what rebuilds the de-duplication memory.
- ``metrics_offsets``: per consumer group and partition, the last offset whose effects are
  stored. It is written in the same transaction as the effects, so a redelivered record
  is recognised and skipped: the effect happens once even when the commit to Kafka did not.
- ``metrics_incidents``: one document per incident, updated by idempotent operators.
- ``metrics_communities``: the current generation of each community, and a rebuild's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from services.metrics import codec
from services.metrics.kpis import bitmaps
from services.metrics.kpis.calendar import Day
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.members import MemberState
from services.metrics.kpis.safety import IncidentRecord

log = logging.getLogger("steward.metrics.store")

SEP = "|"


def generation_key(community_id: str, generation: int) -> str:
    return f"{community_id}@{generation}"


@dataclass(frozen=True)
class Generation:
    community_id: str
    current: int = 0
    building: int | None = None
    fence: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> first offset it also takes

    def targets(self, topic: str, partition: int, offset: int) -> list[str]:
        """The generations a record at this position is written to."""
        out = [generation_key(self.community_id, self.current)]
        if self.building is not None and offset >= self.fence.get(f"{topic}:{partition}", 1 << 62):
            out.append(generation_key(self.community_id, self.building))
        return out


@dataclass
class BatchWrite:
    """Everything one consumed batch changes, written in one transaction."""

    group: str
    topic: str
    offsets: dict[int, int]  # partition -> last offset of the batch
    writer: str
    counters: dict[tuple[str, int], Counter] = field(default_factory=dict)  # (generation, partition) -> counts
    members: dict[tuple[str, str], tuple[int, MemberState]] = field(default_factory=dict)  # (generation, member) -> (partition, state)
    bitmaps: dict[tuple[str, str, Day, int], int] = field(default_factory=dict)  # (generation, kind, day, partition)
    indexes: dict[tuple[str, int, int], int] = field(default_factory=dict)  # (generation, partition, slot) -> next n
    facts: list[tuple[str, str, Day, int, int, list[list]]] = field(default_factory=list)
    # (generation, source, day, partition, first offset, rows)

    def count_all(self, partition: int, counts: Counter) -> None:
        """Add fold counters keyed (generation, scope, day, channel, name) to this partition's shards."""
        for (generation, scope, day, channel, name), n in counts.items():
            if n:
                self.counters.setdefault((generation, partition), Counter())[(scope, day, channel, name)] += n


class MetricsStore:
    def __init__(self, db: AsyncDatabase, *, facts_ttl_days: int = 90) -> None:
        self.client = db.client
        self.counters = db["metrics_counters"]
        self.members = db["metrics_members"]
        self.bitmaps = db["metrics_bitmaps"]
        self.indexes = db["metrics_indexes"]
        self.facts = db["metrics_facts"]
        self.offsets = db["metrics_offsets"]
        self.incidents = db["metrics_incidents"]
        self.communities = db["metrics_communities"]
        self.sealed = db["metrics_sealed"]
        self.facts_ttl = timedelta(days=facts_ttl_days)
        self.transactions = True
        # A server that offers transactions without being a replica set (nx-27017 locally)
        # runs one at a time: interleaved ones break there, so this process takes turns.
        self._one_at_a_time: asyncio.Lock | None = None

    async def create_indexes(self) -> None:
        await self.counters.create_index([("g", ASCENDING), ("scope", ASCENDING), ("day", ASCENDING)])
        await self.facts.create_index([("g", ASCENDING), ("src", ASCENDING), ("day", ASCENDING)])
        await self.facts.create_index([("topic", ASCENDING), ("p", ASCENDING), ("at", ASCENDING)])
        await self.facts.create_index("expires_at", expireAfterSeconds=0)
        await self.incidents.create_index([("g", ASCENDING), ("occurred_at", ASCENDING)])
        await self.members.create_index([("g", ASCENDING), ("left", ASCENDING)])
        await self.bitmaps.create_index([("g", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)])
        await self.sealed.create_index([("g", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)])
        self.transactions = await self._transactions_work()
        hello = await self.client.admin.command("hello")
        if self.transactions and "setName" not in hello and hello.get("msg") != "isdbgrid":
            self._one_at_a_time = asyncio.Lock()

    async def _transactions_work(self) -> bool:
        try:
            async with self.client.start_session() as session, await session.start_transaction():
                await self.offsets.update_one({"_id": "probe"}, {"$set": {"probe": True}}, upsert=True,
                                              session=session)
            return True
        except OperationFailure as error:  # a standalone mongod: no multi-document transactions
            log.warning("MongoDB has no transactions here (%s): a batch's writes are not atomic "
                        "across a crash; run a replica set for exact KPIs under failures", error)
            return False

    # --- the write path -------------------------------------------------------------------

    async def generations(self, community_ids: Iterable[str]) -> dict[str, Generation]:
        wanted = set(community_ids)
        found = {d["_id"]: d async for d in self.communities.find({"_id": {"$in": list(wanted)}})}
        out = {}
        for community in wanted:
            doc = found.get(community, {})
            building = doc.get("building") or {}
            fence = {f"{topic}:{partition}": offset for topic, partition, offset in building.get("fence", [])}
            out[community] = Generation(community, doc.get("gen", 0), building.get("gen"), fence)
        return out

    async def applied_offsets(self, group: str, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, str]]:
        """partition -> (last applied offset, writer that applied it)."""
        ids = [SEP.join((group, topic, str(p))) for p in partitions]
        return {d["p"]: (d["offset"], d.get("writer", "")) async for d in self.offsets.find({"_id": {"$in": ids}})}

    async def member_states(self, keys: Iterable[tuple[str, str]], *,
                            active_between: tuple[Day, Day] | None = None) -> dict[tuple[str, str], MemberState]:
        """The members' states; with ``active_between``, their active days in that range too."""
        ids = [SEP.join(key) for key in keys]
        if not ids:
            return {}
        docs = [d async for d in self.members.find({"_id": {"$in": ids}})]
        states = {(d["g"], d["m"]): codec.decode_member(d) for d in docs}
        if active_between is not None:
            for g in {d["g"] for d in docs}:
                days = await self.bitmap_days(g, "active", *active_between)
                for d in docs:
                    if d["g"] == g and d.get("idx") is not None:
                        states[(g, d["m"])].active = bitmaps.active_days_of(days.get(d["p"], {}), d["idx"])
        return states

    async def bitmap_docs(self, keys: Iterable[tuple[str, str, Day, int]]) -> dict[tuple[str, str, Day, int], int]:
        """(generation, kind, day, partition) -> bitmap, for those stored."""
        ids = [SEP.join(map(str, key)) for key in keys]
        if not ids:
            return {}
        return {(d["g"], d["kind"], d["key"], d["p"]): bitmaps.from_bytes(d["bits"])
                async for d in self.bitmaps.find({"_id": {"$in": ids}})}

    async def bitmap_days(self, generation: str, kind: str, first: Day, last: Day) -> dict[int, dict[Day, int]]:
        """partition -> day (or cohort week) -> bitmap, for first..last."""
        out: dict[int, dict[Day, int]] = defaultdict(dict)
        async for d in self.bitmaps.find({"g": generation, "kind": kind, "key": {"$gte": first, "$lte": last}}):
            out[d["p"]][d["key"]] = bitmaps.from_bytes(d["bits"])
        return out

    async def next_indexes(self, keys: Iterable[tuple[str, int]], *, slot: int) -> dict[tuple[str, int], int]:
        keys = list(keys)
        ids = [SEP.join((g, str(p), str(slot))) for g, p in keys]
        found = {(d["g"], d["p"]): d["next"] async for d in self.indexes.find({"_id": {"$in": ids}})}
        return {key: found.get(key, 0) for key in keys}

    async def leavers(self, generation: str) -> list[tuple[int, MemberState]]:
        """(partition, state) of every member with a leave among its membership events."""
        return [(d["p"], codec.decode_member(d)) async for d in self.members.find({"g": generation, "left": True})]

    async def write_batch(self, batch: BatchWrite) -> None:
        if not self.transactions:
            await self._write(batch, None)
            return
        # No automatic retry of the same writes: a conflict means another writer changed a
        # member or a bitmap this batch read, so the whole batch is folded again, from a re-read.
        async with (self._one_at_a_time or contextlib.nullcontext(), self.client.start_session() as session,
                    await session.start_transaction()):
            await self._write(batch, session)

    async def _write(self, batch: BatchWrite, session) -> None:
        counter_ops = []
        for (generation, partition), counts in batch.counters.items():
            by_doc: dict[tuple, dict[str, int]] = defaultdict(dict)
            for (scope, day, channel, name), n in counts.items():
                by_doc[(scope, day, channel)][name] = n
            for (scope, day, channel), increments in by_doc.items():
                doc_id = SEP.join((generation, scope, str(day), channel or "", str(partition)))
                counter_ops.append(UpdateOne(
                    {"_id": doc_id},
                    {"$inc": increments,
                     "$setOnInsert": {"g": generation, "scope": scope, "day": day, "channel": channel, "p": partition}},
                    upsert=True))
        member_ops = [
            UpdateOne({"_id": SEP.join(key)},
                      {"$set": {"g": key[0], "m": key[1], "p": partition, **codec.encode_member(state)}}, upsert=True)
            for key, (partition, state) in batch.members.items()
        ]
        bitmap_ops = [
            UpdateOne({"_id": SEP.join(map(str, key))},
                      {"$set": {"g": key[0], "kind": key[1], "key": key[2], "p": key[3], "bits": bitmaps.to_bytes(bits)}},
                      upsert=True)
            for key, bits in batch.bitmaps.items()
        ]
        index_ops = [
            UpdateOne({"_id": SEP.join((g, str(p), str(slot)))},
                      {"$set": {"g": g, "p": p, "slot": slot, "next": following}}, upsert=True)
            for (g, p, slot), following in batch.indexes.items()
        ]
        now = datetime.now(UTC)
        # An upsert, not an insert: without transactions a retried batch meets its own facts.
        fact_ops = [
            UpdateOne({"_id": SEP.join((generation, source, str(day), str(partition), str(first_offset)))},
                      {"$setOnInsert": {
                          "g": generation, "src": source, "day": day, "topic": batch.topic, "p": partition,
                          "grp": batch.group, "n": len(rows), "at": now, "expires_at": now + self.facts_ttl,
                          "blob": codec.pack(rows)}}, upsert=True)
            for generation, source, day, partition, first_offset, rows in batch.facts
        ]
        for collection, ops in ((self.counters, counter_ops), (self.members, member_ops), (self.bitmaps, bitmap_ops),
                                (self.indexes, index_ops), (self.facts, fact_ops)):
            if ops:
                await collection.bulk_write(ops, ordered=False, session=session)
        await self.offsets.bulk_write([
            UpdateOne({"_id": SEP.join((batch.group, batch.topic, str(p)))},
                      {"$set": {"group": batch.group, "topic": batch.topic, "p": p, "offset": offset,
                                "writer": batch.writer}}, upsert=True)
            for p, offset in batch.offsets.items()
        ], ordered=False, session=session)

    async def recent_event_ids(self, topic: str, partition: int, since: datetime, *,
                               generation: str | None = None) -> set[str]:
        """The ids of the facts stored for a partition since ``since`` (of one generation, or
        all): the de-duplication memory of its consumer."""
        ids: set[str] = set()
        query: dict = {"topic": topic, "p": partition, "at": {"$gte": since}}
        if generation is not None:
            query["g"] = generation
        async for doc in self.facts.find(query, {"blob": 1}):
            ids.update(codec.event_ids(doc["blob"]))
        return ids

    async def record_incident(self, generation: str, incident_id: str, *, occurred_at: float,
                              raised_at: float, severity: str, category: str) -> None:
        await self.incidents.update_one(
            {"_id": SEP.join((generation, incident_id))},
            {"$set": {"g": generation, "incident_id": incident_id, "occurred_at": occurred_at,
                      "severity": severity, "category": category},
             "$min": {"raised_at": raised_at}},
            upsert=True)

    async def record_decision(self, generation: str, incident_id: str, *, decided_at: float,
                              acknowledges: bool, false_positive: bool) -> None:
        update: dict = {"$setOnInsert": {"g": generation, "incident_id": incident_id}}
        if acknowledges:
            update["$min"] = {"acknowledged_at": decided_at}
        if false_positive:
            update["$max"] = {"false_positive": True}
        await self.incidents.update_one({"_id": SEP.join((generation, incident_id))}, update, upsert=True)

    # --- rebuilds -------------------------------------------------------------------------

    async def begin_rebuild(self, community_id: str, generation: int) -> None:
        """Announce the generation being built; the live path writes it once it has a fence."""
        await self.communities.update_one(
            {"_id": community_id},
            {"$set": {"building": {"gen": generation, "fence": []}}, "$setOnInsert": {"gen": 0}}, upsert=True)

    async def set_fence(self, community_id: str, fence: dict[str, int]) -> None:
        # Stored as [topic, partition, offset] triples: topic names hold dots, which field names should not.
        triples = [[*key.rsplit(":", 1), offset] for key, offset in fence.items()]
        triples = [[topic, int(partition), offset] for topic, partition, offset in triples]
        doc = await self.communities.find_one({"_id": community_id})
        await self.communities.update_one(
            {"_id": community_id}, {"$set": {"building": {"gen": doc["building"]["gen"], "fence": triples}}})

    async def finish_rebuild(self, community_id: str, generation: int) -> int:
        """Make the rebuilt generation current; returns the one it replaces."""
        doc = await self.communities.find_one({"_id": community_id})
        await self.communities.update_one({"_id": community_id}, {"$set": {"gen": generation, "building": None}})
        return doc.get("gen", 0)

    async def abandon_rebuild(self, community_id: str, generation: int) -> None:
        await self.communities.update_one({"_id": community_id}, {"$set": {"building": None}})
        await self.drop_generation(generation_key(community_id, generation))

    async def drop_generation(self, generation: str) -> None:
        for collection in (self.counters, self.members, self.bitmaps, self.indexes, self.facts, self.incidents,
                           self.sealed):
            await collection.delete_many({"g": generation})

    async def forget_group(self, group: str) -> None:
        await self.offsets.delete_many({"group": group})

    # --- the read path --------------------------------------------------------------------

    async def counter_rows(self, generation: str, scope: str, first: Day, last: Day) -> dict[tuple[Day, str | None], Counter]:
        """(day, channel) -> summed counts over partitions, for days first..last."""
        out: dict[tuple[Day, str | None], Counter] = defaultdict(Counter)
        async for doc in self.counters.find({"g": generation, "scope": scope, "day": {"$gte": first, "$lte": last}}):
            out[(doc["day"], doc.get("channel"))].update(_counts(doc))
        return out

    async def running_totals(self, generation: str, before: Day, names: tuple[str, ...]) -> Counter:
        """Sums of the day counters ``names`` over every day before ``before``."""
        totals: Counter = Counter()
        projection = dict.fromkeys(names, 1)
        async for doc in self.counters.find({"g": generation, "scope": "day", "day": {"$lt": before}}, projection):
            totals.update({name: doc.get(name, 0) for name in names})
        return totals

    async def activity_facts(self, generation: str, first: Day, last: Day) -> list[ActivityFact]:
        return [f async for blob in self._blobs(generation, "activity", first, last) for f in codec.unpack_activity(blob)]

    async def verdict_facts(self, generation: str, first: Day, last: Day) -> list[VerdictFact]:
        return [f async for blob in self._blobs(generation, "verdicts", first, last) for f in codec.unpack_verdicts(blob)]

    async def _blobs(self, generation: str, source: str, first: Day, last: Day):
        async for doc in self.facts.find({"g": generation, "src": source, "day": {"$gte": first, "$lte": last}},
                                         {"blob": 1}):
            yield doc["blob"]

    async def incident_records(self, generation: str, first_at: float, last_at: float) -> list[IncidentRecord]:
        cursor = self.incidents.find({"g": generation, "occurred_at": {"$gte": first_at, "$lt": last_at}})
        return [IncidentRecord(d["incident_id"], d.get("occurred_at"), d.get("raised_at"), d.get("severity"),
                               d.get("category"), d.get("acknowledged_at"), bool(d.get("false_positive")))
                async for d in cursor]

    async def sealed_values(self, generation: str, kind: str, first: Day, last: Day) -> dict[Day, dict]:
        cursor = self.sealed.find({"g": generation, "kind": kind, "key": {"$gte": first, "$lte": last}})
        return {d["key"]: d["value"] async for d in cursor}

    async def seal(self, generation: str, kind: str, values: dict[Day, dict]) -> None:
        """Keep values that can no longer change (their facts may expire) for good."""
        if values:
            await self.sealed.bulk_write([
                UpdateOne({"_id": SEP.join((generation, kind, str(key)))},
                          {"$set": {"g": generation, "kind": kind, "key": key, "value": value}}, upsert=True)
                for key, value in values.items()], ordered=False)



COUNTER_META = frozenset({"_id", "g", "scope", "day", "channel", "p"})


def _counts(document: dict) -> dict[str, int]:
    # Counts are top-level fields beside the shard's identity: dotted paths in upserts are
    # not handled alike by every MongoDB-protocol server.
    return {name: n for name, n in document.items() if name not in COUNTER_META}
