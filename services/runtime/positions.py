"""Where a replay of a topic starts: from a time, from an offset, or from the beginning."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition


async def start_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], ends: dict[TopicPartition, int], *,
    since: datetime | None = None, from_offset: int | None = None,
) -> dict[TopicPartition, int]:
    """The first offset to read on each partition: the first record at or after ``since``,
    or ``from_offset`` (the same on every partition, within what the log still holds),
    else the beginning. Never past ``ends``."""
    starts = await consumer.beginning_offsets(partitions)
    if since is not None:
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
        return {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in partitions}
    if from_offset is not None:
        return {tp: min(max(from_offset, starts[tp]), ends[tp]) for tp in partitions}
    return starts


async def end_offsets(bootstrap: str, partitions: list[TopicPartition], *, settle_ms: int = 300) -> dict[TopicPartition, int]:
    """One past the last record of each partition.

    The broker's answer is checked by reading: tansu answers the latest offset of a
    partition with one past the *first* record of its last batch, so the records after it
    in that batch are read to find the true end (with Apache Kafka this reads one record).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        reported = await consumer.end_offsets(partitions)
        ends = dict(reported)
        pending = [tp for tp in partitions if reported[tp] > 0]
        if not pending:
            return ends
        consumer.assign(pending)
        for tp in pending:
            consumer.seek(tp, reported[tp] - 1)
        quiet_since = asyncio.get_running_loop().time()
        while pending and asyncio.get_running_loop().time() - quiet_since < settle_ms / 1000:
            fetched = await consumer.getmany(*pending, timeout_ms=settle_ms // 3)
            for tp, records in fetched.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    quiet_since = asyncio.get_running_loop().time()
        return ends
    finally:
        await consumer.stop()
