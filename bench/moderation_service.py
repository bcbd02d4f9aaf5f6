"""Benchmark: messages/s and latency through the real moderation service on the int8 bundle.

Run: ``.venv/bin/python -m bench.moderation_service``. Starts tansu and nx-27017, then:

- throughput: pre-loads N activity records, starts the moderation service (BENCH_CONSUMERS
  processes in one consumer group, cores/consumers model threads each) and times how long
  the group takes to commit them all. Next to it, in the same run, the raw ONNX Runtime
  bound: the same texts classified in calls of 64 with no broker, store or service, both as
  one process with every core and as one single-threaded process per core; the better of
  the two is the bound;
- latency: a steady rate of records (300/s, then 150/s) for a while each, measured from each
  record's send to its verdict's broker timestamp (p50 / p99).

Writes ``bench/results/moderation_service.json`` and ``metrics.service_speed`` of the
bundle's card.
"""

import asyncio
import json
import math
import multiprocessing
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cards import stamp_card
from schemas import MemberActivity, topics
from services.demo.community import ANSWERS, CHATTER, HARMFUL, QUESTIONS
from services.localstack.processes import Child, free_port
from services.localstack.stack import SERVER_OPTIONS, LocalStack
from services.moderation.app import GROUP_ID
from services.moderation.model import ensure_serving_bundle, load_classifier
from services.runtime.broker import ensure_topics

RESULTS = Path(__file__).with_name("results") / "moderation_service.json"
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "6000"))
# The target rate, then one this host can sustain, to show latency short of saturation.
RATES = [float(r) for r in os.environ.get("BENCH_RATES", "300,150").split(",")]
RATE_SECONDS = float(os.environ.get("BENCH_RATE_SECONDS", "20"))
CORES = os.cpu_count() or 1
CONSUMERS = int(os.environ.get("BENCH_CONSUMERS", str(CORES)))
BATCH = 64
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


async def steady(bootstrap: str, rate: float, seconds: float, tag: str) -> dict[str, int]:
    """Publish at ``rate``/s; return each event's send time (ms) by event_id."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    sent: dict[str, int] = {}
    try:
        start = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            event = activity(n, tag)
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
            await asyncio.sleep(0.25)  # the probe must not take the cores it measures
        raise TimeoutError(f"only {done} of {total} consumed")
    finally:
        await probe.stop()


def raw_rate(bundle: Path, threads: int, texts: list[str], ready=None, go=None) -> float:
    """Texts/s of the bare classifier over ``texts`` in calls of ``BATCH``."""
    classifier = load_classifier(bundle, threads=threads)
    classifier.classify(texts[:BATCH])
    if ready is not None:  # processes start timing together, so they compete as in service
        ready.wait()
        go.wait()
    started = time.perf_counter()
    for start in range(0, len(texts), BATCH):
        classifier.classify(texts[start : start + BATCH])
    return len(texts) / (time.perf_counter() - started)


def _raw_worker(bundle: Path, texts: list[str], ready, go, rates) -> None:
    rates.put(raw_rate(bundle, 1, texts, ready, go))


def raw_rate_per_core(bundle: Path, texts: list[str]) -> float:
    """One single-threaded process per core, each over its share of ``texts``; summed."""
    context = multiprocessing.get_context("spawn")
    ready, go, rates = context.Barrier(CORES + 1), context.Barrier(CORES + 1), context.Queue()
    workers = [context.Process(target=_raw_worker, args=(bundle, texts[i::CORES], ready, go, rates))
               for i in range(CORES)]
    for worker in workers:
        worker.start()
    ready.wait()
    go.wait()
    total = sum(rates.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    bundle = ensure_serving_bundle(Path(".steward/models"))
    texts = [activity(n, "load").text for n in range(MESSAGES)]
    raw_one_process = raw_rate(bundle, CORES, texts)
    raw_per_core = raw_rate_per_core(bundle, texts)
    raw_bound = max(raw_one_process, raw_per_core)

    with tempfile.TemporaryDirectory() as folder:
        stack = LocalStack(Path(folder), preferred_ports=False)
        try:
            stack.start_infrastructure()
            bootstrap = stack.endpoints.kafka
            asyncio.run(ensure_topics(bootstrap))
            asyncio.run(preload(bootstrap, MESSAGES))
            threads = max(1, CORES // CONSUMERS)
            for index in range(CONSUMERS):
                env = {**stack.service_environment("moderation"), "STEWARD_MODEL_DIR": str(bundle),
                       "STEWARD_MODEL_THREADS": str(threads), "STEWARD_LOG_LEVEL": "WARNING"}
                command = [sys.executable, "-m", "uvicorn", "--factory", "services.moderation.app:create_app",
                           "--host", "127.0.0.1", "--port", str(free_port()), *SERVER_OPTIONS]
                log = Path(folder) / f"moderation-{index}.log"
                stack.children.append(Child(f"moderation-{index}", command, log, env).start())
            service_rate = asyncio.run(consumption_rate(bootstrap, MESSAGES))
            latency = {}
            for rate in RATES:
                sent = asyncio.run(steady(bootstrap, rate, RATE_SECONDS, f"rate{rate:g}"))
                done = asyncio.run(verdict_times(bootstrap, set(sent), timeout_s=120))
                waits = [done[e] - sent[e] for e in done]
                latency[f"{rate:g}_per_s"] = {
                    "sent": len(sent), "verdicts_seen": len(done),
                    "p50_ms": nearest_rank(waits, 0.5) if waits else None,
                    "p99_ms": nearest_rank(waits, 0.99) if waits else None,
                }
        finally:
            stack.stop()
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{CORES} cores, shared by broker, store, service and load",
        "bundle": bundle.name,
        "messages": MESSAGES,
        "mean_words_per_message": round(sum(len(t.split()) for t in texts) / len(texts), 1),
        "raw_onnx_int8_batch64_one_process_texts_per_s": round(raw_one_process, 1),
        "raw_onnx_int8_batch64_process_per_core_texts_per_s": round(raw_per_core, 1),
        "raw_bound_texts_per_s": round(raw_bound, 1),
        "service_consumers": CONSUMERS,
        "service_model_threads_each": max(1, CORES // CONSUMERS),
        "service_msgs_per_s": round(service_rate, 1),
        "service_vs_raw_bound": round(service_rate / raw_bound, 2),
        "steady_seconds": RATE_SECONDS,
        "latency_at_steady_rate": latency,
    }
    stamp_card(bundle, "service_speed", results)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
