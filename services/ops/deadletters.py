"""Drain a dead-letter topic back into the topic its records came from, after a fix.

A dead letter keeps the original value, key and headers, plus ``x-steward-dlq-*`` headers
that say which topic, partition, offset and consumer group gave up and why. Replaying puts
the original record back on its topic, so every consumer group sees it again; that is safe
because every consumer is idempotent (stable ids, a dedupe window in metrics).

Progress is the committed offset of a consumer group of its own (``steward-dlq-replay`` by
default) on the dead-letter topic: a record is committed only once the broker acknowledged
its replay, so a replay that stops half-way (Ctrl-C, broker outage) resumes where it was and
repeats at most what was in flight. A replay reads up to the end it found at start: records
that fail again land behind that end and wait for the next run instead of looping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from schemas.topics import DLQ_SUFFIX, dead_letter
from services.runtime.broker import make_producer
from services.runtime.deadletter import HEADER_PREFIX
from services.runtime.positions import end_offsets
from services.runtime.settings import RuntimeSettings

REPLAY_GROUP = "steward-dlq-replay"
REPLAYED_FROM = "x-steward-replayed-from"

Headers = list[tuple[str, bytes]]


def topics_of(topic: str) -> tuple[str, str]:
    """(dead-letter topic, original topic) for either name."""
    if topic.endswith(DLQ_SUFFIX):
        return topic, topic.removesuffix(DLQ_SUFFIX)
    return dead_letter(topic), topic


def reason(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The dead-letter headers without their prefix: error-type, error-message, group, ..."""
    return {k.removeprefix(HEADER_PREFIX): v.decode(errors="replace")
            for k, v in headers if k.startswith(HEADER_PREFIX)}


def replay_headers(record: ConsumerRecord) -> Headers:
    """The original headers (trace context included), and where the replay came from."""
    kept = [(k, v) for k, v in (record.headers or ()) if not k.startswith(HEADER_PREFIX) and k != REPLAYED_FROM]
    return [*kept, (REPLAYED_FROM, f"{record.topic}[{record.partition}]@{record.offset}".encode())]


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    why: dict[str, str]


@dataclass
class Drain:
    """What a show or replay found: the pending dead letters and the outcome."""

    dlq_topic: str
    target: str
    pending: int = 0
    replayed: int = 0
    by_error: Counter = field(default_factory=Counter)
    by_group: Counter = field(default_factory=Counter)
    sample: list[DeadLetter] = field(default_factory=list)


async def _pending(consumer: AIOKafkaConsumer, bootstrap: str, dlq_topic: str) -> dict[TopicPartition, tuple[int, int]]:
    """(first pending offset, end) per partition that has dead letters this group has not replayed."""
    partitions = sorted(consumer.partitions_for_topic(dlq_topic) or ())
    tps = [TopicPartition(dlq_topic, p) for p in partitions]
    if not tps:
        return {}
    ends = await end_offsets(bootstrap, tps)
    starts = await consumer.beginning_offsets(tps)
    spans = {}
    for tp in tps:
        committed = await consumer.committed(tp)
        first = max(committed if committed is not None else 0, starts[tp])
        if first < ends[tp]:
            spans[tp] = (first, ends[tp])
    return spans


async def drain(
    settings: RuntimeSettings, topic: str, *, group: str = REPLAY_GROUP, replay: bool = False, limit: int | None = None,
    sample: int = 20, progress: Callable[[int, int], None] | None = None,
) -> Drain:
    """Read the pending dead letters of ``topic``; with ``replay``, put each back on its topic
    and commit it. ``limit`` caps how many are read (per run, in partition order)."""
    bootstrap = settings.kafka_bootstrap
    dlq_topic, target = topics_of(topic)
    outcome = Drain(dlq_topic, target)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    producer = make_producer(settings) if replay else None
    await consumer.start()
    try:
        await consumer.topics()  # loads the cluster's metadata: partitions_for_topic needs it
        spans = await _pending(consumer, bootstrap, dlq_topic)
        total = sum(end - first for first, end in spans.values())
        outcome.pending = total if limit is None else min(total, limit)
        if progress:
            progress(0, outcome.pending)
        if producer is not None:
            await producer.start()
        read = 0
        for tp, (first, end) in spans.items():
            consumer.assign([tp])
            consumer.seek(tp, first)
            position = first
            while position < end and read < outcome.pending:
                batch = (await consumer.getmany(tp, timeout_ms=1000, max_records=500)).get(tp, [])
                records = [r for r in batch if r.offset < end][: outcome.pending - read]
                if not records:
                    continue
                for record in records:
                    why = reason(record.headers or ())
                    outcome.by_error[why.get("error-type", "?")] += 1
                    outcome.by_group[why.get("group") or "?"] += 1
                    if len(outcome.sample) < sample:
                        outcome.sample.append(DeadLetter(record.partition, record.offset, record.key,
                                                         record.value, why))
                if producer is not None:
                    acks = [await producer.send(reason(r.headers or ()).get("topic") or target, r.value,
                                                key=r.key, headers=replay_headers(r)) for r in records]
                    for ack in acks:
                        await ack
                    # Committed only after every replay in the batch was acknowledged.
                    await consumer.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "")})
                    outcome.replayed += len(records)
                position = records[-1].offset + 1
                read += len(records)
                if progress:
                    progress(read, outcome.pending)
        return outcome
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
