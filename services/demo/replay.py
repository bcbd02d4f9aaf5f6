"""Send the demo week through the real signed ingest endpoint, then read back what came out."""

import asyncio
import json
import time

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Incident, topics
from services.ingest.signatures import sign_steward
from services.runtime.positions import end_offsets

BATCH = 100


def signed_post(client: httpx.Client, url: str, secret: str, payload: object) -> httpx.Response:
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    return client.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Steward-Timestamp": str(timestamp),
            "X-Steward-Signature": sign_steward(secret, timestamp, body),
        },
    )


def send_events(ingest_url: str, secret: str, events: list[dict], *, on_batch=None) -> int:
    """POST events in batches, honouring 503 + Retry-After like a well-behaved platform."""
    sent = 0
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(events), BATCH):
            batch = events[start : start + BATCH]
            while True:
                response = signed_post(client, f"{ingest_url}/webhooks/generic", secret, batch)
                if response.status_code != 503:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
            response.raise_for_status()
            sent += len(batch)
            if on_batch:
                on_batch(len(batch))
    return sent


async def read_incidents(bootstrap: str, community_id: str) -> list[Incident]:
    """Every incident of one community on the topic so far, without joining a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topics.INCIDENTS, p) for p in await _partitions(consumer, topics.INCIDENTS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await end_offsets(bootstrap, partitions)
        found: dict[str, Incident] = {}
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    incident = Incident.model_validate_json(record.value)
                    if incident.community_id == community_id:
                        found[incident.incident_id] = incident
        return sorted(found.values(), key=lambda i: i.evidence.occurred_at)
    finally:
        await consumer.stop()


def wait_for_kpis(metrics_url: str, community_id: str, first: str, last: str, *, messages: int,
                  timeout_s: float = 180, api_key: str | None = None) -> dict:
    """Poll the metrics API until every message is counted and classified."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            response = client.get(
                f"{metrics_url}/communities/{community_id}/kpis",
                params={"from": first, "to": last}, headers=headers,
            )
            response.raise_for_status()
            body = response.json()
            counted = sum(d["messages"] for d in body["days"])
            classified = sum(d["classified"] for d in body["days"])
            if counted >= messages and classified >= messages:
                return body
            time.sleep(1)
    raise TimeoutError(f"KPIs incomplete after {timeout_s}s: {body}")


async def wait_until_consumed(bootstrap: str, group_id: str, topic: str, timeout_s: float = 180) -> None:
    """Wait until ``group_id`` has committed every record of ``topic`` produced so far."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await probe.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(probe, topic)]
        ends = await end_offsets(bootstrap, partitions)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            committed = {tp: (await probe.committed(tp)) or 0 for tp in partitions}
            if all(committed[tp] >= ends[tp] for tp in partitions):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{group_id} still behind on {topic}: {committed} < {ends}")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer.topics()  # loads the cluster metadata
    return consumer.partitions_for_topic(topic) or set()


def incidents_now(bootstrap: str, community_id: str) -> list[Incident]:
    return asyncio.run(read_incidents(bootstrap, community_id))
