"""Ops commands against the real stack: the dead-letter drain puts poison events back on
their topic after a fix, once each, resumably; every index is created in one go."""

import asyncio
import os
import sys
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from schemas import MemberActivity
from schemas.topics import dead_letter
from services.ops.deadletters import REPLAYED_FROM, drain
from services.ops.indexes import create_all
from services.runtime.broker import consumer_options, ensure_topics, make_broker
from services.runtime.deadletter import HEADER_PREFIX
from services.runtime.settings import RuntimeSettings
from tests.support import read_all, wait_until

pytestmark = pytest.mark.integration


def activity(event_id: str) -> bytes:
    return MemberActivity(
        event_id=event_id, platform="generic", community_id="c", member_id="m", kind="member_joined",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    ).model_dump_json().encode()


async def test_dead_letters_replay_after_a_fix_once_each_and_resumably(backend, unique):
    topic = f"test.replay.{unique}.v1"
    await ensure_topics(backend.kafka_bootstrap, partitions=2, contract_topics=(topic,))
    settings = RuntimeSettings(service_name="test", kafka_bootstrap=backend.kafka_bootstrap,
                               consumer_max_attempts=2, consumer_backoff_initial_s=0.01,
                               consumer_backoff_max_s=0.02)
    broker, policy = make_broker(settings, registry=CollectorRegistry(), tracer_provider=TracerProvider())
    bug = {"on": True}
    handled: list[str] = []

    @broker.subscriber(topic, **consumer_options(settings, f"group-{unique}"))
    async def handle(event: MemberActivity) -> None:
        if bug["on"] and event.event_id.startswith("bad"):
            raise RuntimeError("a bug in the handler")
        handled.append(event.event_id)

    group = f"replay-{unique}"
    await broker.start()
    try:
        for n in range(4):
            await broker.publish(activity(f"good-{n}"), topic, key=f"k{n}".encode())
            await broker.publish(activity(f"bad-{n}"), topic, key=f"k{n}".encode())
        await wait_until(lambda: len(handled) == 4
                         and policy.dead_letters.labels(topic, "RuntimeError")._value.get() == 4)
        dlq = dead_letter(topic)
        shown = await drain(settings, topic, group=group)
        assert shown.pending == 4 and shown.replayed == 0
        assert shown.dlq_topic == dlq and shown.target == topic
        assert shown.by_error == {"RuntimeError": 4}
        assert shown.by_group == {f"group-{unique}": 4}
        assert {letter.why["error-message"] for letter in shown.sample} == {"a bug in the handler"}
        # showing changes nothing
        assert (await drain(settings, dlq, group=group)).pending == 4

        bug["on"] = False  # the fix is deployed
        first = await drain(settings, topic, group=group, replay=True, limit=1)
        assert first.replayed == 1
        await wait_until(lambda: len(handled) == 5)
        rest = await drain(settings, topic, group=group, replay=True)
        assert rest.pending == 3 and rest.replayed == 3
        await wait_until(lambda: len(handled) == 8)
        again = await drain(settings, topic, group=group, replay=True)
        assert again.pending == 0 and again.replayed == 0
    finally:
        await broker.stop()
    assert sorted(handled) == sorted([f"good-{n}" for n in range(4)] + [f"bad-{n}" for n in range(4)])

    # The replayed records are the originals: value, key and trace context, plus where they came from.
    records = await read_all(backend.kafka_bootstrap, topic, expected=12)
    replayed = [r for r in records if any(k == REPLAYED_FROM for k, _ in r.headers)]
    originals = {r.value: dict(r.headers) for r in records if r not in replayed}
    assert len(replayed) == 4
    for record in replayed:
        headers = dict(record.headers)
        event_id = MemberActivity.model_validate_json(record.value).event_id
        assert event_id.startswith("bad") and record.key == f"k{event_id.split('-')[1]}".encode()
        # the same trace goes on (the dead-letter hop may name its own span)
        assert headers["traceparent"][:35] == originals[record.value]["traceparent"][:35]
        assert headers[REPLAYED_FROM].decode().startswith(f"{dlq}[")
        assert not any(k.startswith(HEADER_PREFIX) for k in headers)


async def test_cli_replays_with_yes_and_reports(backend, unique):
    topic = f"test.replaycli.{unique}.v1"
    await ensure_topics(backend.kafka_bootstrap, partitions=1, contract_topics=(topic,))
    settings = RuntimeSettings(service_name="test", kafka_bootstrap=backend.kafka_bootstrap)
    broker, policy = make_broker(settings, registry=CollectorRegistry(), tracer_provider=TracerProvider())
    await broker.start()
    try:
        await policy.publish(b"{not json", topic, b"key", {f"{HEADER_PREFIX}error-type": "ValidationError",
                                                          f"{HEADER_PREFIX}topic": topic}, ValueError())
    finally:
        await broker.stop()

    async def steward(*args: str, answer: str = "") -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "STEWARD_KAFKA_BOOTSTRAP": backend.kafka_bootstrap, "COLUMNS": "200"},
        )
        out, _ = await process.communicate(answer.encode())
        assert process.returncode == 0, out.decode()
        return out.decode()

    shown = await steward("dead-letters", "show", topic, "--group", f"cli-{unique}")
    assert "pending: 1" in shown and "ValidationError: 1" in shown
    assert "pending: 1" in await steward("dead-letters", "replay", topic, "--group", f"cli-{unique}", answer="n\n")
    replayed = await steward("dead-letters", "replay", topic, "--group", f"cli-{unique}", "--yes")
    assert "replayed: 1" in replayed
    assert "pending: 0" in await steward("dead-letters", "show", topic, "--group", f"cli-{unique}")


async def test_every_index_is_created_in_one_go(backend):
    client = AsyncMongoClient(backend.mongo_uri)
    try:
        db = client["steward_indexes_test"]
        done = await create_all(db)
        assert "metrics KPIs" in done and "notifier silences" in done and len(done) == 8
        silences = [list(ix["key"]) async for ix in await db["notifier_silences"].list_indexes()]
        assert ["community", "ends_at"] in silences and ["created_at"] in silences
        facts = [ix async for ix in await db["metrics_facts"].list_indexes()]
        assert any(ix.get("expireAfterSeconds") == 0 for ix in facts)
        assert await create_all(db) == done  # again: existing indexes are kept
    finally:
        await client.close()
