"""``steward_consumer_lag``: how far each consumer of a service is behind, per partition.

The partition's end comes from one ListOffsets request per consumer per sample (a consumer
busy with a long batch fetches nothing, so its last fetch's high watermark would hide the
lag that matters most), the consumer's side from its own position: the next record it will
hand to a handler. tansu answers ListOffsets with an end inside the last producer batch, so
there the figure can be short by up to one batch; Apache Kafka's is exact. KEDA reads
committed-offset lag from the broker itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("steward.lag")

Labels = tuple[str, str, str]


def lag_of(highwater: int | None, position: int | None) -> int | None:
    """Records between the consumer's position and the partition's end; None when unknown."""
    if highwater is None or position is None:
        return None
    return max(highwater - position, 0)


class ConsumerLag:
    def __init__(self, registry: CollectorRegistry, interval_s: float) -> None:
        self.gauge = Gauge("steward_consumer_lag", "Records a consumer group has not fetched yet, per partition",
                           ["group", "topic", "partition"], registry=registry)
        self.interval_s = interval_s
        self._shown: set[Labels] = set()
        self._task: asyncio.Task[None] | None = None

    async def sample(self, broker: KafkaBroker) -> dict[Labels, int]:
        seen: dict[Labels, int] = {}
        for subscriber in broker.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            group = getattr(subscriber, "group_id", None)
            if consumer is None or not group:
                continue
            owned = list(consumer.assignment())
            if not owned:
                continue
            ends = await asyncio.wait_for(consumer.end_offsets(owned), 5.0)
            for tp in owned:
                try:
                    position = await asyncio.wait_for(consumer.position(tp), 1.0)
                    lag = lag_of(max(ends.get(tp) or 0, consumer.highwater(tp) or 0), position)
                except (IllegalStateError, AssertionError, TimeoutError):
                    continue  # revoked in a rebalance, or no position yet
                if lag is not None:
                    seen[(group, tp.topic, str(tp.partition))] = lag
        for labels, lag in seen.items():
            self.gauge.labels(*labels).set(lag)
        for gone in self._shown - seen.keys():  # partitions this replica no longer owns
            self.gauge.remove(*gone)
        self._shown = set(seen)
        return seen

    def start(self, broker: KafkaBroker) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.sample(broker)
                except Exception:  # a metric must never take the service down
                    log.exception("sampling consumer lag failed")

        self._task = asyncio.create_task(loop(), name="consumer-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
