"""Where a replay of a topic starts: from a time, from an offset, or from the beginning."""

from __future__ import annotations

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
