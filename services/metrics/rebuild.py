"""Rebuilding a community's KPIs from the topics, beside the live numbers.

A rebuild folds the community's records from a time or an offset into a new generation,
with the same :class:`BatchFolder` the live path uses, so the same events give the same
numbers. Meanwhile the live path keeps the current generation up to date and, from a fence
fixed at the start (the topics' end offsets then), writes new records to both. Once the
rebuild reaches the fence, the new generation becomes current in one write and the old
one is deleted. Incidents and decisions are replayed from the beginning of their (small)
topics; their writes are idempotent.

The fence is fixed while this process's live folders are paused, so no batch of theirs
straddles it. Run rebuilds on a deployment with one metrics replica per partition set as
usual; another replica sees the fence at its next batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from schemas import (
    Incident,
    MemberActivity,
    ModerationVerdict,
    ModeratorFeedback,
    topics,
)
from services.metrics.consumer import BatchFolder, Consumed
from services.metrics.incidents import record_decision, record_incident
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.store import Generation, MetricsStore, generation_key
from services.runtime.positions import end_offsets, start_offsets

log = logging.getLogger("steward.metrics.rebuild")

FOLDED = {topics.ACTIVITY: ("activity", MemberActivity, ActivityFact.of),
          topics.VERDICTS: ("verdicts", ModerationVerdict, VerdictFact.of)}
BATCH = 5000


@dataclass
class RebuildStatus:
    community_id: str
    generation: int
    state: str = "starting"  # starting, running, done, failed
    total: int = 0  # records between the starts and the fence
    read: int = 0
    folded: int = 0  # records of this community with an effect
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    finished_at: datetime | None = None

    def as_dict(self) -> dict:
        return {"community_id": self.community_id, "generation": self.generation, "state": self.state,
                "total": self.total, "read": self.read, "folded": self.folded, "error": self.error,
                "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None}


class Rebuilds:
    """At most one rebuild per community at a time, run as tasks of the metrics service."""

    def __init__(self, store: MetricsStore, bootstrap: str, live: Iterable[BatchFolder], *,
                 timezone_of, dedupe_window: timedelta) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.live = list(live)
        self.timezone_of = timezone_of
        self.dedupe_window = dedupe_window
        self.jobs: dict[str, RebuildStatus] = {}
        self._tasks: set[asyncio.Task] = set()

    def running(self, community_id: str) -> bool:
        job = self.jobs.get(community_id)
        return job is not None and job.state in ("starting", "running")

    async def start(self, community_id: str, *, since: datetime | None = None,
                    from_offset: int | None = None) -> RebuildStatus:
        current = (await self.store.generations([community_id]))[community_id]
        job = RebuildStatus(community_id, max(current.current, current.building or 0) + 1)
        self.jobs[community_id] = job
        task = asyncio.create_task(self._run(job, since, from_offset))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: RebuildStatus, since: datetime | None, from_offset: int | None) -> None:
        community, new = job.community_id, job.generation
        try:
            await self.store.drop_generation(generation_key(community, new))  # leftovers of a failed try
            fence = await self._fence(community, new)
            job.state = "running"
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False, fetch_max_wait_ms=50)
            await consumer.start()
            try:
                for topic in FOLDED:
                    await self._fold_topic(consumer, job, topic, fence, since, from_offset)
            finally:
                await consumer.stop()
            for topic in (topics.INCIDENTS, topics.FEEDBACK):
                await self._replay_decisions(job, topic)
            old = await self.store.finish_rebuild(community, new)
            await self.store.drop_generation(generation_key(community, old))
            job.state = "done"
        except asyncio.CancelledError:
            job.state, job.error = "failed", "the service stopped during the rebuild"
            raise
        except Exception as error:
            log.exception("rebuilding %s failed", community)
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
            await self.store.abandon_rebuild(community, new)
        finally:
            job.finished_at = datetime.now().astimezone()

    async def _fence(self, community: str, new: int) -> dict[str, int]:
        """Fix the fence while the live folders are paused: no live batch straddles it."""
        locks = [folder.lock for folder in self.live]
        for lock in locks:
            await lock.acquire()
        try:
            await self.store.begin_rebuild(community, new)
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await consumer.start()
            try:
                await consumer.topics()
                fence = {}
                for topic in FOLDED:
                    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
                    ends = await end_offsets(self.bootstrap, tps)
                    fence.update({f"{tp.topic}:{tp.partition}": end for tp, end in ends.items()})
            finally:
                await consumer.stop()
            await self.store.set_fence(community, fence)
            return fence
        finally:
            for lock in locks:
                lock.release()

    async def _fold_topic(self, consumer: AIOKafkaConsumer, job: RebuildStatus, topic: str,
                          fence: dict[str, int], since: datetime | None, from_offset: int | None) -> None:
        source, contract, to_fact = FOLDED[topic]
        target = generation_key(job.community_id, job.generation)

        def only_new(generation: Generation, _topic: str, _partition: int, _offset: int) -> list[str]:
            return [target] if generation.community_id == job.community_id else []

        live = next(f for f in self.live if f.topic == topic)
        folder = BatchFolder(self.store, group=f"steward-metrics-rebuild-{target}", topic=topic, source=source,
                             timezone_of=self.timezone_of, targets=only_new, dedupe_window=self.dedupe_window,
                             memory_scope=target, index_slot=1, lock=live.lock)
        ends = {TopicPartition(topic, int(key.split(":")[1])): end for key, end in fence.items()
                if key.rsplit(":", 1)[0] == topic}
        tps = sorted(ends, key=lambda tp: tp.partition)
        consumer.assign(tps)
        starts = await start_offsets(consumer, tps, ends, since=since, from_offset=from_offset)
        job.total += sum(ends[tp] - starts[tp] for tp in tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        while pending:
            batch: list[Consumed] = []
            for tp, records in (await consumer.getmany(*pending, timeout_ms=200, max_records=BATCH)).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    job.read += 1
                    fact = _parse(record, contract, to_fact, job.community_id, since_ms)
                    if fact is not None:
                        batch.append(Consumed(record.partition, record.offset, fact))
            job.folded += await folder.fold(batch)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        await self.store.forget_group(folder.group)

    async def _replay_decisions(self, job: RebuildStatus, topic: str) -> None:
        target = [generation_key(job.community_id, job.generation)]
        # A consumer of its own: one that was assigned other topics knows only their partitions.
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    fetch_max_wait_ms=50)
        await consumer.start()
        try:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                return
            ends = await end_offsets(self.bootstrap, tps)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                for records in (await consumer.getmany(*pending, timeout_ms=200)).values():
                    for record in records:
                        await self._decision(record, topic, job.community_id, target)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()

    async def _decision(self, record: ConsumerRecord, topic: str, community: str, target: list[str]) -> None:
        try:
            if topic == topics.INCIDENTS:
                incident = Incident.model_validate_json(record.value)
                if incident.community_id == community:
                    await record_incident(self.store, incident, target)
            else:
                decision = ModeratorFeedback.model_validate_json(record.value)
                if decision.community_id == community:
                    await record_decision(self.store, decision, target)
        except (ValidationError, UnicodeDecodeError):
            pass  # the live consumer dead-lettered it already


def _parse(record: ConsumerRecord, contract, to_fact, community: str, since_ms: int | None):
    # The record's own time is checked too: not every broker answers a time past its last
    # record with "none" (tansu gives an earlier offset).
    if since_ms is not None and record.timestamp < since_ms:
        return None
    try:
        event = contract.model_validate_json(record.value)
    except (ValidationError, UnicodeDecodeError):
        return None  # poison: the live consumer dead-lettered it
    return to_fact(event) if event.community_id == community else None
