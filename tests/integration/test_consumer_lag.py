"""steward_consumer_lag on a real broker: what a consumer has not fetched yet, per partition,
back to zero once it caught up; partitions it no longer owns disappear."""

import asyncio

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from services.runtime.broker import consumer_options, ensure_topics, make_broker
from services.runtime.lag import ConsumerLag, lag_of
from services.runtime.settings import RuntimeSettings
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_lag_is_unknown_until_both_ends_are_known_and_never_negative():
    assert lag_of(None, 3) is None and lag_of(10, None) is None
    assert lag_of(10, 4) == 6
    assert lag_of(10, 12) == 0  # a stale high watermark


async def test_lag_counts_what_is_not_fetched_and_returns_to_zero(backend, unique):
    topic = f"test.lag.{unique}.v1"
    await ensure_topics(backend.kafka_bootstrap, partitions=1, contract_topics=(topic,))
    settings = RuntimeSettings(service_name="test", kafka_bootstrap=backend.kafka_bootstrap)
    broker, _ = make_broker(settings, registry=CollectorRegistry(), tracer_provider=TracerProvider())
    registry = CollectorRegistry()
    lag = ConsumerLag(registry, interval_s=60)
    release = asyncio.Event()
    handled: list[int] = []

    @broker.subscriber(topic, **consumer_options(settings, f"lag-{unique}"))
    async def on_record(n: int) -> None:
        await release.wait()
        handled.append(n)

    await broker.start()
    try:
        for n in range(30):
            await broker.publish(n, topic)
        labels = (f"lag-{unique}", topic, "0")
        behind: dict = {}

        async def sampled_behind() -> bool:
            behind.update(await lag.sample(broker))
            return behind.get(labels, 0) > 0

        deadline = asyncio.get_running_loop().time() + 20
        while not await sampled_behind():
            assert asyncio.get_running_loop().time() < deadline, "lag never showed"
            await asyncio.sleep(0.1)
        assert 1 <= behind[labels] <= 30
        assert registry.get_sample_value("steward_consumer_lag", dict(zip(("group", "topic", "partition"),
                                                                          labels, strict=True))) == behind[labels]
        release.set()
        await wait_until(lambda: len(handled) == 30)
        assert (await lag.sample(broker))[labels] == 0
    finally:
        await broker.stop()
    assert await lag.sample(broker) == {}  # stopped: nothing owned, the series is removed
    assert registry.get_sample_value("steward_consumer_lag", {"group": f"lag-{unique}", "topic": topic,
                                                              "partition": "0"}) is None
