"""SIGTERM mid-batch on the real local stack, for every service: it stops taking requests and
fetching records, finishes what it has in hand, commits and exits in time; its successor
goes on from there. Nothing is lost, and nothing is produced twice (a verdict published but
not committed, or a Slack post sent but not recorded, would come out again)."""

import asyncio
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import MemberActivity, ModerationVerdict, topics
from services.ingest.signatures import sign_steward
from services.localstack.stack import LocalStack
from services.moderation.model.bundle import ensure_serving_bundle
from tests.support import SlackStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]  # minutes: CI runs it in its slow step

GRACE_S = 20
BENIGN = ("thanks for the help with the release notes", "see you all at the meetup on friday",
          "has anyone tried the new build on arm?", "great write-up, bookmarked it")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, model_cache):
    stack = LocalStack(tmp_path_factory.mktemp("shutdown"), preferred_ports=False)
    try:
        stack.start_infrastructure()
        stack.service_env = {"STEWARD_MODEL_DIR": str(ensure_serving_bundle(model_cache)),
                             "STEWARD_SHUTDOWN_GRACE_S": str(GRACE_S)}
        yield stack
    finally:
        stack.stop()


def activity(community: str, n: int, start: datetime, step: timedelta = timedelta(seconds=1)) -> MemberActivity:
    return MemberActivity(
        event_id=f"{community}-{n}", platform="generic", community_id=community, channel_id=f"c{n % 7}",
        member_id=f"m{n % 97}", kind="message_posted", message_id=f"msg-{n}",
        text=f"{BENIGN[n % len(BENIGN)]} #{n}", occurred_at=start + n * step,
    )


async def publish(bootstrap: str, events: list[MemberActivity]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topics.ACTIVITY, e.model_dump_json().encode(), key=e.community_id.encode())
                for e in events]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


class VerdictTally:
    """Every verdict record of one community on the verdicts topic, duplicates included."""

    def __init__(self, bootstrap: str, community: str) -> None:
        self.bootstrap, self.community = bootstrap, community
        self.event_ids: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(topics.VERDICTS, bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await consumer.start()
        try:
            while not stop.is_set():
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    for record in batch:
                        verdict = ModerationVerdict.model_validate_json(record.value)
                        if verdict.community_id == self.community:
                            self.event_ids.append(verdict.event_id)
        finally:
            await consumer.stop()


def sigterm_and_wait(stack: LocalStack, name: str) -> tuple[int, float]:
    child = next(c for c in reversed(stack.children) if c.name == name and c.running)
    started = time.monotonic()
    child.signal(signal.SIGTERM)
    code = child.process.wait(GRACE_S + 15)
    return code, time.monotonic() - started


async def until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_moderation_finishes_its_batch_on_sigterm_and_its_successor_repeats_nothing(stack, unique):
    community = f"shutdown-{unique}"
    count = 1500
    await asyncio.to_thread(stack.start_services, ("moderation",))
    tally, stop = VerdictTally(stack.endpoints.kafka, community), asyncio.Event()
    reading = asyncio.create_task(tally.run(stop))
    try:
        start = datetime.now(UTC) - timedelta(hours=2)
        await publish(stack.endpoints.kafka, [activity(community, n, start) for n in range(count)])
        await until(lambda: len(tally.event_ids) >= 100, 120, "the first verdicts")

        code, took = await asyncio.to_thread(sigterm_and_wait, stack, "moderation")
        # uvicorn re-raises the signal once it has shut down, so the exit status names SIGTERM
        assert code == -signal.SIGTERM and took < GRACE_S, (code, took)
        stopped_at = len(tally.event_ids)
        assert stopped_at < count, "the service finished everything before SIGTERM: nothing was in flight"
        log = next(c for c in stack.children if c.name == "moderation").log_path.read_text()
        assert "finishing in-flight work" in log and "Steward moderation stopped" in log

        await asyncio.to_thread(stack.start_services, ("moderation",))
        await until(lambda: len(set(tally.event_ids)) == count, 180, "every verdict after the restart")
        await asyncio.sleep(3)  # a repeat of the last batch would arrive now
    finally:
        stop.set()
        await reading
    assert sorted(tally.event_ids) == sorted(f"{community}-{n}" for n in range(count)), \
        f"{len(tally.event_ids) - len(set(tally.event_ids))} verdicts repeated"


async def test_metrics_finishes_its_fold_on_sigterm_and_counts_each_event_once(stack, unique):
    community = f"shutdown-kpi-{unique}"
    count = 30_000
    await asyncio.to_thread(stack.start_services, ("metrics",))
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # all on today (the community's day is UTC's)
    events = [activity(community, n, start, step=timedelta(milliseconds=1)) for n in range(count)]
    await publish(stack.endpoints.kafka, events)

    def messages_today() -> int:
        url = stack.endpoints.services["metrics"] + f"/communities/{community}/kpis"
        day = start.date().isoformat()
        response = httpx.get(url, params={"from": day, "to": day}, timeout=10)
        return response.json()["days"][0]["messages"] if response.status_code == 200 else -1

    await until(lambda: messages_today() > 0, 120, "the first folded batch")
    code, took = await asyncio.to_thread(sigterm_and_wait, stack, "metrics")
    # uvicorn re-raises the signal once it has shut down, so the exit status names SIGTERM
    assert code == -signal.SIGTERM and took < GRACE_S, (code, took)
    log = next(c for c in stack.children if c.name == "metrics").log_path.read_text()
    assert "finishing in-flight work" in log and "Steward metrics stopped" in log

    await asyncio.to_thread(stack.start_services, ("metrics",))
    await until(lambda: messages_today() == count, 180, "every message counted after the restart")
    await asyncio.sleep(2)
    assert messages_today() == count


async def test_ingest_answers_what_it_took_on_sigterm_and_loses_no_webhook(stack, unique):
    """Webhooks keep arriving while ingest stops: each one answered 2xx is on the topic; the
    others were refused or cut before they were taken, and the platform's retry to the next
    instance succeeds. Every event ends up on the topic exactly once."""
    community = f"shutdown-ingest-{unique}"
    await asyncio.to_thread(stack.start_services, ("ingest",))
    secret = stack.endpoints.generic_secret
    start = datetime.now(UTC) - timedelta(hours=1)
    bodies = {f"{community}-{n}": activity(community, n, start).model_dump_json().encode() for n in range(400)}
    accepted: set[str] = set()
    sent = 0

    async def deliver(client: httpx.AsyncClient, event_id: str) -> None:
        nonlocal sent
        now = int(time.time())
        headers = {"Content-Type": "application/json", "X-Steward-Timestamp": str(now),
                   "X-Steward-Signature": sign_steward(secret, now, bodies[event_id])}
        try:
            response = await client.post(stack.endpoints.services["ingest"] + "/webhooks/generic",
                                         content=bodies[event_id], headers=headers)
        except httpx.TransportError:
            return  # refused or cut: the platform retries
        finally:
            sent += 1
        if response.is_success:
            accepted.add(event_id)
        else:
            assert response.status_code == 503, response.text

    async def deliver_all(event_ids: list[str]) -> None:
        queue = list(event_ids)
        async with httpx.AsyncClient(timeout=10) as client:
            async def worker() -> None:
                while queue:
                    await deliver(client, queue.pop())
            await asyncio.gather(*(worker() for _ in range(16)))

    sending = asyncio.create_task(deliver_all(list(bodies)))
    await until(lambda: sent >= 100, 60, "the first webhooks")
    code, took = await asyncio.to_thread(sigterm_and_wait, stack, "ingest")
    await sending
    assert code == -signal.SIGTERM and took < GRACE_S, (code, took)
    assert 100 <= len(accepted) < len(bodies), len(accepted)

    await asyncio.to_thread(stack.start_services, ("ingest",))
    await deliver_all([event_id for event_id in bodies if event_id not in accepted])  # the platform's retries
    assert accepted == set(bodies)

    consumer = AIOKafkaConsumer(topics.ACTIVITY, bootstrap_servers=stack.endpoints.kafka, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    on_topic: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(on_topic) < len(bodies) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                on_topic += [e.event_id for r in batch
                             if (e := MemberActivity.model_validate_json(r.value)).community_id == community]
        await asyncio.sleep(1)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            on_topic += [e.event_id for r in batch
                         if (e := MemberActivity.model_validate_json(r.value)).community_id == community]
    finally:
        await consumer.stop()
    assert sorted(on_topic) == sorted(bodies), f"{len(on_topic) - len(set(on_topic))} repeated"


async def test_notifier_sends_what_it_started_on_sigterm_and_its_successor_repeats_nothing(
        stack, unique, tmp_path, make_incident):
    count = 80
    slack = SlackStandIn(delay_s=0.4)  # slow, so that posts are in flight at SIGTERM
    routing = tmp_path / "routing.yaml"
    # grouped by community too: the module's earlier incidents share member labels, and an
    # incident joining their open group would wait for its group_interval
    routing.write_text("receivers:\n  - name: mods\n    slack: {}\n"
                       "route:\n  receiver: mods\n  group_by: [community, member]\n  group_wait: 0s\n"
                       "  group_interval: 5m\n  repeat_interval: 4h\n")
    stack.service_env.update({
        "STEWARD_SLACK_WEBHOOK_URL": slack.url,
        "STEWARD_ROUTING_FILE": str(routing), "STEWARD_SLACK_CHANNEL_INTERVAL_S": "0",
        "STEWARD_CONSUMER_GROUP": f"notifier-{unique}",
    })
    ids = [f"inc-{unique}-{n}" for n in range(count)]

    def posts_of(incident_id: str) -> int:
        return sum(f"`{incident_id}`" in json.dumps(post) for post in slack.posts)

    now = datetime.now(UTC)
    incidents = [make_incident(incident_id=incident_id, community_id=f"shutdown-notify-{unique}",
                               created_at=now, evidence={"member_id": f"m{n}", "occurred_at": now})
                 for n, incident_id in enumerate(ids)]

    async def publish_incidents(batch) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topics.INCIDENTS, i.to_bytes(), key=i.incident_id.encode())
                                   for i in batch])
        finally:
            await producer.stop()

    with slack:
        await asyncio.to_thread(stack.start_services, ("notifier",))
        await publish_incidents(incidents[: count // 2])
        await until(lambda: sum(map(posts_of, ids)) >= 5, 60, "the first posts")
        # SIGTERM while posts are in flight, and while the second half arrives
        stopping = asyncio.create_task(asyncio.to_thread(sigterm_and_wait, stack, "notifier"))
        at_sigterm = sum(map(posts_of, ids))
        await publish_incidents(incidents[count // 2:])
        code, took = await stopping
        assert code == -signal.SIGTERM and took < GRACE_S, (code, took)
        assert at_sigterm < count // 2, "the first half was all sent before SIGTERM: nothing was in flight"

        await asyncio.to_thread(stack.start_services, ("notifier",))
        await until(lambda: all(posts_of(i) for i in ids), 120, "every incident posted after the restart")
        await asyncio.sleep(3)  # a repeat of an in-flight post would arrive now
    assert {i: posts_of(i) for i in ids} == dict.fromkeys(ids, 1)
