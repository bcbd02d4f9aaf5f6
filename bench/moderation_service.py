"""Benchmark: messages/s and latency through the real moderation service on the int8 bundle.

Run: ``.venv/bin/python -m bench.moderation_service``. Starts tansu and nx-27017, then:

- throughput: pre-loads N activity records, starts the moderation service and times how
  long its consumer group takes to commit them all; next to it, in the same run, the raw
  ONNX Runtime bound: the same texts classified in batches of 64 in one process;
- latency: a steady rate of records (default 300/s) for a while, measured from each
  activity record's broker timestamp to its verdict's (p50 / p99).

Writes ``bench/results/moderation_service.json``.
"""

import asyncio
import json
import math
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import MemberActivity, topics
from services.demo.community import ANSWERS, CHATTER, HARMFUL, QUESTIONS
from services.localstack.stack import SERVER_OPTIONS, LocalStack
from services.localstack.processes import Child, free_port
from services.moderation.app import GROUP_ID
from services.moderation.model import ensure_serving_bundle, load_classifier
from services.runtime.broker import ensure_topics

RESULTS = Path(__file__).with_name("results") / "moderation_service.json"
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "6000"))
RATE = float(os.environ.get("BENCH_RATE", "300"))
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "20"))
TEXTS = [*QUESTIONS, *ANSWERS, *CHATTER, *(t for _, t in HARMFUL)]


def activity(n: int, tag: str) -> MemberActivity:
    rng = random.Random(n)
    text = " ".join(rng.choice(TEXTS) for _ in range(rng.randint(1, 2)))
    return MemberActivity(event_id=f"bench-{tag}-{n}", platform="generic", community_id=f"bench-{n % 20}",
                          channel_id="general", member_id=f"m{n % 400}", kind="message_posted",
                          message_id=f"{tag}-{n}", text=text, occurred_at=datetime.now(UTC))


async def preload(bootstrap: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topics.ACTIVITY, a.to_bytes(), key=a.partition_key())
                for a in (activity(n, "load") for n in range(count))]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def steady(bootstrap: str, rate: float, seconds: float) -> dict[str, int]:
    """Publish at ``rate``/s; return each event's send time (ms) by event_id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    sent: dict[str, int] = {}
    try:
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            event = activity(n, "rate")
            sent[event.event_id] = int(time.time() * 1000)
            await producer.send(topics.ACTIVITY, event.to_bytes(), key=event.partition_key())
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def verdict_times(bootstrap: str, wanted: set[str], timeout_s: float = 60) -> dict[str, int]:
    consumer = AIOKafkaConsumer(topics.VERDICTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    found: dict[str, int] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while wanted - found.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event_id = json.loads(record.value)["event_id"]
                    if event_id in wanted:
                        found[event_id] = record.timestamp
    finally:
        await consumer.stop()
    return found


async def consumption_rate(bootstrap: str, total: int, timeout_s: float = 600) -> float:
    """msgs/s between the group's first commit and its last, so that model loading and the
    group join (start-up, not moderation work) are left out."""
    from aiokafka import TopicPartition

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP_ID, enable_auto_commit=False)
    await probe.start()
    try:
        await probe.topics()
        partitions = [TopicPartition(topics.ACTIVITY, p) for p in probe.partitions_for_topic(topics.ACTIVITY)]
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = sum([(await probe.committed(tp)) or 0 for tp in partitions])
            now = time.monotonic()
            if done and first is None:
                first = (now, done)
            if done >= total:
                return (done - first[1]) / (now - first[0])
            await asyncio.sleep(0.05)
        raise TimeoutError(f"only {done} of {total} consumed")
    finally:
        await probe.stop()


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    bundle = ensure_serving_bundle(Path(".steward/models"))
    classifier = load_classifier(bundle, threads=2)
    texts = [activity(n, "load").text for n in range(MESSAGES)]
    classifier.classify(texts[:64])
    started = time.perf_counter()
    for start in range(0, len(texts), 64):
        classifier.classify(texts[start : start + 64])
    raw_rate = len(texts) / (time.perf_counter() - started)
    del classifier

    with tempfile.TemporaryDirectory() as folder:
        stack = LocalStack(Path(folder), preferred_ports=False)
        try:
            stack.start_infrastructure()
            bootstrap = stack.endpoints.kafka
            asyncio.run(ensure_topics(bootstrap))
            asyncio.run(preload(bootstrap, MESSAGES))
            port = free_port()
            env = {**stack.service_environment("moderation"), "STEWARD_MODEL_DIR": str(bundle),
                   "STEWARD_LOG_LEVEL": "WARNING"}
            service = Child("moderation", [sys.executable, "-m", "uvicorn", "--factory",
                                           "services.moderation.app:create_app", "--host", "127.0.0.1",
                                           "--port", str(port), *SERVER_OPTIONS], Path(folder) / "mod.log", env).start()
            stack.children.append(service)
            service_rate = asyncio.run(consumption_rate(bootstrap, MESSAGES))
            sent = asyncio.run(steady(bootstrap, RATE, RATE_SECONDS))
            done = asyncio.run(verdict_times(bootstrap, set(sent)))
        finally:
            stack.stop()
    latencies = [done[e] - sent[e] for e in done]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, shared by broker, store, service and load",
        "bundle": bundle.name,
        "messages": MESSAGES,
        "raw_onnx_int8_batch64_texts_per_s": round(raw_rate, 1),
        "service_msgs_per_s": round(service_rate, 1),
        "service_vs_raw_bound": round(service_rate / raw_rate, 2),
        "steady_rate_per_s": RATE,
        "steady_seconds": RATE_SECONDS,
        "verdicts_seen": len(done),
        "latency_ms_p50": nearest_rank(latencies, 0.5) if latencies else None,
        "latency_ms_p99": nearest_rank(latencies, 0.99) if latencies else None,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
