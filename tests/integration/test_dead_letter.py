"""The consumer wrapper against a real broker: retry with backoff, dead-letter, move on,
and commit only after the effect."""

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from schemas import MemberActivity
from schemas.topics import dead_letter
from services.runtime.broker import consumer_options, ensure_topics, make_broker
from services.runtime.deadletter import HEADER_PREFIX
from services.runtime.settings import RuntimeSettings
from tests.support import read_all, wait_until

pytestmark = pytest.mark.integration


def activity(event_id: str) -> dict:
    return MemberActivity(
        event_id=event_id, platform="generic", community_id="c", member_id="m", kind="member_joined",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    ).model_dump(mode="json")


def build(backend, unique):
    settings = RuntimeSettings(
        service_name="test", kafka_bootstrap=backend.kafka_bootstrap, consumer_max_attempts=3,
        consumer_backoff_initial_s=0.01, consumer_backoff_max_s=0.05,
    )
    broker, policy = make_broker(settings, registry=CollectorRegistry(), tracer_provider=TracerProvider())
    return settings, broker, policy


async def test_retry_then_dead_letter_then_move_on(backend, unique):
    topic = f"test.dlq.{unique}.v1"
    await ensure_topics(backend.kafka_bootstrap, partitions=1, contract_topics=(topic,))
    settings, broker, policy = build(backend, unique)
    calls: list[str] = []
    done: list[str] = []

    @broker.subscriber(topic, **consumer_options(settings, f"group-{unique}"))
    async def handle(event: MemberActivity) -> None:
        calls.append(event.event_id)
        if event.event_id == "broken":
            raise RuntimeError("store rejected the write")
        if event.event_id == "flaky" and calls.count("flaky") < 2:
            raise ConnectionError("transient blip")
        done.append(event.event_id)

    await broker.start()
    try:
        for body in (activity("first"), b"{not json", activity("broken"), activity("flaky"), activity("last")):
            await broker.publish(body, topic, key=b"same-partition")
        await wait_until(lambda: "last" in done)
    finally:
        await broker.stop()

    assert done == ["first", "flaky", "last"]
    assert calls.count("broken") == 3  # bounded: consumer_max_attempts
    assert calls.count("flaky") == 2

    letters = await read_all(backend.kafka_bootstrap, dead_letter(topic), expected=2)
    headers = [{k: v.decode() for k, v in record.headers} for record in letters]
    assert [r.value for r in letters] == [b"{not json", activity_bytes(letters[1].value, "broken")]
    poison, broken = headers
    assert poison[f"{HEADER_PREFIX}error-type"] == "ValidationError"
    assert poison[f"{HEADER_PREFIX}attempts"] == "1"  # poison skips the retries
    assert broken[f"{HEADER_PREFIX}error-type"] == "RuntimeError"
    assert broken[f"{HEADER_PREFIX}error-message"] == "store rejected the write"
    assert broken[f"{HEADER_PREFIX}attempts"] == "3"
    assert broken[f"{HEADER_PREFIX}topic"] == topic
    assert broken[f"{HEADER_PREFIX}partition"] == "0"
    assert broken[f"{HEADER_PREFIX}offset"] == "2"
    assert broken[f"{HEADER_PREFIX}group"] == f"group-{unique}"
    assert letters[1].key == b"same-partition"
    assert policy.dead_letters.labels(topic, "RuntimeError")._value.get() == 1

    # Offsets were committed after each effect: the same group sees only what is new.
    settings, broker, _ = build(backend, unique)
    again: list[str] = []

    @broker.subscriber(topic, **consumer_options(settings, f"group-{unique}"))
    async def handle_again(event: MemberActivity) -> None:
        again.append(event.event_id)

    await broker.start()
    try:
        await broker.publish(activity("after-restart"), topic, key=b"same-partition")
        await wait_until(lambda: "after-restart" in again)
    finally:
        await broker.stop()
    assert again == ["after-restart"]


def activity_bytes(raw: bytes, event_id: str) -> bytes:
    assert MemberActivity.model_validate_json(raw).event_id == event_id
    return raw


async def test_an_outage_holds_the_partition_instead_of_dead_lettering(backend, unique):
    """The store is down for longer than the retries last: the event waits, then is handled
    once; nothing goes to the dead-letter topic, and the events behind it keep their order."""
    from pymongo.errors import AutoReconnect

    topic = f"test.outage.{unique}.v1"
    await ensure_topics(backend.kafka_bootstrap, partitions=1, contract_topics=(topic,))
    settings, broker, policy = build(backend, unique)
    calls: list[str] = []
    done: list[str] = []

    @broker.subscriber(topic, **consumer_options(settings, f"group-{unique}"))
    async def handle(event: MemberActivity) -> None:
        calls.append(event.event_id)
        if event.event_id == "during-outage" and calls.count("during-outage") <= 7:
            raise AutoReconnect("connection refused")
        done.append(event.event_id)

    await broker.start()
    try:
        for event_id in ("during-outage", "behind-it"):
            await broker.publish(activity(event_id), topic, key=b"same-partition")
        await wait_until(lambda: "behind-it" in done)
    finally:
        await broker.stop()
    assert done == ["during-outage", "behind-it"]
    assert calls.count("during-outage") == 8  # three rounds of consumer_max_attempts, then success
    assert policy.outage_waits.labels(topic, "AutoReconnect")._value.get() == 2
    assert policy.dead_letters.labels(topic, "AutoReconnect")._value.get() == 0
