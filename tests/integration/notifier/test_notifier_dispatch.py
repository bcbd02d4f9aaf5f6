"""The dispatcher on real servers: MongoDB protocol (nx-27017) for its state, a local HTTP
server for Slack, aiosmtpd for email, tansu for the dead-letter topic. The clock is
controlled so grouping and escalation timings are exact; the dispatcher's own code path
(``admit`` / ``decide`` / ``send_due``) is the one the service runs."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from schemas import Incident, topics
from schemas.feedback import FeedbackAction, FeedbackSource, ModeratorFeedback
from services.notifier.delivery import Deliverer, DeliveryMetrics
from services.notifier.dispatcher import Dispatcher
from services.notifier.receivers.base import DeliveryReceipt, Notification
from services.notifier.receivers.factory import build_receivers
from services.notifier.routing.config import load_routing
from services.notifier.silences.models import SilenceIn
from services.notifier.silences.store import SilenceStore
from services.notifier.state import NotificationLog
from services.runtime.broker import ensure_topics
from services.runtime.settings import NotifierSettings

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
FAST = {"max_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def routing_yaml(slack_url: str, extra: str = "", **route: str) -> str:
    timings = "\n".join(f"  {k}: {v}" for k, v in route.items())
    return f"""
receivers:
  - name: mods
    slack: {{webhook_url: "{slack_url}"}}
  - name: oncall
    email: {{to: [oncall@example.org]}}
  - name: backup
    email: {{to: [backup@example.org]}}
route:
  receiver: mods
  group_by: [community, category]
{timings}
{extra}
"""


@dataclass
class Env:
    """One dispatcher (a replica) over collections private to the test."""

    db: object
    prefix: str
    clock: Clock
    routing_text: str
    settings: NotifierSettings
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    replicas: list[Dispatcher] = field(default_factory=list)

    def replica(self, owner: str | None = None) -> Dispatcher:
        routing = load_routing(self.routing_text)
        receivers = build_receivers(routing, self.settings, slack_options=FAST, email_options=FAST)
        log = NotificationLog(self.db, self.prefix)
        metrics = DeliveryMetrics(CollectorRegistry())
        fallback = receivers[routing.fallback_receiver] if routing.fallback_receiver else None

        async def dead_letter(notification: Notification, failed: DeliveryReceipt) -> None:
            producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all")
            await producer.start()
            try:
                for incident in notification.incidents:
                    await producer.send_and_wait(topics.dead_letter(topics.INCIDENTS), incident.to_bytes(),
                                                 key=incident.incident_id.encode(),
                                                 headers=[("notification", notification.key.encode())])
            finally:
                await producer.stop()
            self.dead_letters.append((notification.key, failed.detail))

        deliverer = Deliverer(receivers, log, metrics, fallback=fallback, dead_letter=dead_letter)
        silences = SilenceStore(self.db, f"{self.prefix}_silences")
        dispatcher = Dispatcher(self.db, routing, deliverer, log, silences, metrics, clock=self.clock,
                                owner=owner, prefix=self.prefix, lease=timedelta(seconds=30))
        self.replicas.append(dispatcher)
        return dispatcher

    async def tick(self, dispatcher: Dispatcher | None = None) -> None:
        dispatcher = dispatcher or self.replicas[0]
        await dispatcher.send_due()
        await dispatcher.drain()

    def audit(self) -> NotificationLog:
        return NotificationLog(self.db, self.prefix)


@pytest.fixture
async def env_factory(local_stack, slack, smtp):
    client = AsyncMongoClient(local_stack.endpoints.mongo_uri, tz_aware=True)
    await ensure_topics(local_stack.endpoints.kafka)
    settings = NotifierSettings(kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
                                smtp_host=smtp.host, smtp_port=smtp.port, slack_channel_interval_s=0)

    def make(text: str) -> Env:
        return Env(client["steward"], f"t{uuid.uuid4().hex[:10]}", Clock(), text, settings)

    yield make
    await client.close()


def incident_ids(post) -> set[str]:
    """Incident ids a Slack message shows (its buttons' values name the lead one)."""
    return set(re.findall(r"inc-[A-Za-z0-9-]+", json.dumps(post.body)))


def community() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


async def test_a_burst_is_one_notification_then_updates_repeats_and_a_closed_group(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="30s", group_interval="5m", repeat_interval="4h"))
    dispatcher = env.replica()
    where = community()
    burst = [make_incident(incident_id=f"inc-{where}-{n}", community_id=where, category="insult") for n in range(3)]
    for incident in burst:
        await dispatcher.admit(incident)
    await env.tick()
    assert slack.posts == [], "group_wait holds the first notification back"

    env.clock.advance(seconds=30)
    await env.tick()
    [first] = slack.posts
    assert incident_ids(first) >= {i.incident_id for i in burst}
    await env.tick()
    assert len(slack.posts) == 1, "a notification is sent once"

    late = make_incident(incident_id=f"inc-{where}-late", community_id=where, category="insult")
    env.clock.advance(minutes=1)
    await dispatcher.admit(late)
    await env.tick()
    assert len(slack.posts) == 1, "an update waits for the group_interval tick"
    env.clock.advance(minutes=4)  # 5 minutes after the first notification
    await env.tick()
    assert len(slack.posts) == 2
    update = slack.posts[1]
    assert late.incident_id in incident_ids(update)
    assert burst[0].incident_id not in incident_ids(update), "an update lists only what is new"

    env.clock.advance(hours=4)
    await env.tick()
    assert len(slack.posts) == 3 and "Reminder" in json.dumps(slack.posts[2].body)

    for incident in [*burst, late]:
        await dispatcher.decide(feedback(incident, FeedbackAction.resolved, env.clock.now))
    env.clock.advance(hours=4)
    await env.tick()
    assert len(slack.posts) == 3, "a group whose incidents are all resolved is not reminded of"


async def test_a_group_that_closed_and_opens_again_is_notified_again(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="30s"))
    dispatcher = env.replica()
    where = community()
    first = make_incident(incident_id=f"inc-{where}-first", community_id=where)
    await dispatcher.admit(first)
    env.clock.advance(seconds=30)
    await env.tick()
    await dispatcher.decide(feedback(first, FeedbackAction.resolved, env.clock.now))
    env.clock.advance(hours=1)
    second = make_incident(incident_id=f"inc-{where}-second", community_id=where)
    await dispatcher.admit(second)  # same labels, same group key: a new group's first message
    env.clock.advance(seconds=30)
    await env.tick()
    assert [incident_ids(p) for p in slack.posts] == [{first.incident_id}, {second.incident_id}]


def feedback(incident: Incident, action: FeedbackAction, at: datetime) -> ModeratorFeedback:
    return ModeratorFeedback(feedback_id=f"fb-{uuid.uuid4().hex}", incident_id=incident.incident_id,
                             community_id=incident.community_id, action=action, moderator="alice",
                             source=FeedbackSource.slack, decided_at=at)


async def test_a_critical_incident_inhibits_the_lower_ones_of_the_same_member(env_factory, slack, make_incident):
    rules = """inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity=~"low|medium|high"']
    equal: [community, member]"""
    env = env_factory(routing_yaml(slack.url, rules, group_wait="0s", group_by="[community, severity, member]"))
    dispatcher = env.replica()
    where = community()
    raid = make_incident(incident_id=f"inc-{where}-raid", community_id=where, severity="critical",
                         evidence={"member_id": "U-raider"})
    same = make_incident(incident_id=f"inc-{where}-same", community_id=where, severity="high",
                         evidence={"member_id": "U-raider"})
    other = make_incident(incident_id=f"inc-{where}-other", community_id=where, severity="high",
                          evidence={"member_id": "U-bystander"})
    for incident in (raid, same, other):
        await dispatcher.admit(incident)
    await env.tick()
    told = set().union(*(incident_ids(p) for p in slack.posts))
    assert raid.incident_id in told and other.incident_id in told
    assert same.incident_id not in told
    audit = await env.audit().attempts.find_one({"incident_id": same.incident_id})
    assert audit["status"] == "suppressed" and "inhibited" in audit["detail"] and "U-raider" in audit["detail"]

    await dispatcher.decide(feedback(raid, FeedbackAction.resolved, env.clock.now))
    again = make_incident(incident_id=f"inc-{where}-again", community_id=where, severity="high",
                          evidence={"member_id": "U-raider"})
    await dispatcher.admit(again)
    await env.tick()
    assert again.incident_id in incident_ids(slack.posts[-1]), "a resolved source inhibits no more"


async def test_a_silence_holds_back_until_it_ends(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="0s"))
    dispatcher = env.replica()
    where = community()
    store = SilenceStore(env.db, f"{env.prefix}_silences")
    await store.create(SilenceIn(matchers=[f'community="{where}"'], duration="1h", created_by="alice",
                                 comment="noisy"), now=env.clock.now)
    await dispatcher.admit(make_incident(incident_id=f"inc-{where}-1", community_id=where))
    await env.tick()
    assert slack.posts == []
    env.clock.advance(hours=1, seconds=1)
    await dispatcher.admit(make_incident(incident_id=f"inc-{where}-2", community_id=where))
    await env.tick()
    assert [incident_ids(p) for p in slack.posts] == [{f"inc-{where}-2"}]


ESCALATION = """escalation_policies:
  - name: oncall
    levels:
      - {receiver: oncall, timeout: 5m}
      - {receiver: backup, timeout: 10m}
    repeat: 1"""


def escalating(slack_url: str) -> str:
    return routing_yaml(slack_url, ESCALATION, group_wait="0s").replace(
        "  group_by: [community, category]", "  group_by: [community, category]\n  escalation_policy: oncall")


async def test_escalation_moves_up_a_level_when_nobody_acknowledges_and_repeats(env_factory, slack, smtp, make_incident):
    env = env_factory(escalating(slack.url))
    dispatcher = env.replica()
    incident = make_incident(incident_id=f"inc-{community()}", severity="critical")
    await dispatcher.admit(incident)
    await env.tick()
    assert len(slack.posts) == 1
    assert [r.rcpt_tos for r in smtp.received] == [["oncall@example.org"]], "level 0 is paged at once"

    env.clock.advance(minutes=5)
    await env.tick()
    assert len(smtp.received) == 1, "acknowledging at the deadline still wins: nothing before it has passed"
    env.clock.advance(seconds=1)
    await env.tick()
    assert [r.rcpt_tos for r in smtp.received][-1] == ["backup@example.org"]
    assert "Escalation" in smtp.received[-1].message["Subject"]

    env.clock.advance(minutes=10, seconds=1)
    await env.tick()
    assert [r.rcpt_tos[0] for r in smtp.received] == ["oncall@example.org", "backup@example.org", "oncall@example.org"]
    await dispatcher.decide(feedback(incident, FeedbackAction.acknowledged, env.clock.now))
    env.clock.advance(hours=1)
    await env.tick()
    assert len(smtp.received) == 3, "an acknowledged incident escalates no further"
    assert len(slack.posts) == 1


async def test_the_escalate_button_pages_the_next_level_at_once(env_factory, slack, smtp, make_incident):
    env = env_factory(escalating(slack.url))
    dispatcher = env.replica()
    incident = make_incident(incident_id=f"inc-{community()}", severity="critical")
    await dispatcher.admit(incident)
    await env.tick()
    env.clock.advance(seconds=20)
    await dispatcher.decide(feedback(incident, FeedbackAction.escalated, env.clock.now))
    await env.tick()
    assert [r.rcpt_tos[0] for r in smtp.received] == ["oncall@example.org", "backup@example.org"]


async def test_the_policy_an_incident_started_with_stays_its_policy(env_factory, slack, smtp, make_incident):
    env = env_factory(escalating(slack.url))
    first = env.replica()
    incident = make_incident(incident_id=f"inc-{community()}", severity="critical")
    await first.admit(incident)
    await env.tick(first)
    # the config changes: level 1 now pages "mods"; the running escalation keeps "backup"
    env.routing_text = env.routing_text.replace("{receiver: backup, timeout: 10m}", "{receiver: mods, timeout: 10m}")
    second = env.replica()
    env.clock.advance(minutes=5, seconds=1)
    await env.tick(second)
    assert [r.rcpt_tos[0] for r in smtp.received] == ["oncall@example.org", "backup@example.org"]


async def test_a_restart_resends_nothing_and_forgets_nothing(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="1m"))
    before = env.replica("before-restart")
    where = community()
    sent = make_incident(incident_id=f"inc-{where}-sent", community_id=where, category="spam")
    waiting = make_incident(incident_id=f"inc-{where}-waiting", community_id=where, category="threat")
    await before.admit(sent)
    env.clock.advance(minutes=1)
    await env.tick(before)
    await before.admit(waiting)  # its group_wait is still running when the process dies
    assert len(slack.posts) == 1

    after = env.replica("after-restart")  # a new process: nothing in memory
    await env.tick(after)
    assert len(slack.posts) == 1, "what was sent is not sent again"
    env.clock.advance(minutes=1)
    await env.tick(after)
    assert [incident_ids(p) for p in slack.posts] == [{sent.incident_id}, {waiting.incident_id}]


async def test_a_sender_that_dies_mid_delivery_is_taken_over_after_its_lease(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="0s"))
    dying = env.replica("dying")
    where = community()
    incident = make_incident(incident_id=f"inc-{where}", community_id=where)
    await dying.admit(incident)  # writes the group leased to itself, due at once (group_wait 0) ...
    [sending] = dying._in_flight.values()
    sending.cancel()  # ... and dies before its send runs
    await dying.drain()

    survivor = env.replica("survivor")
    await env.tick(survivor)
    assert slack.posts == [], "a live lease is respected"
    env.clock.advance(seconds=31)
    await env.tick(survivor)
    assert [incident_ids(p) for p in slack.posts] == [{incident.incident_id}]


async def test_two_replicas_never_send_the_same_notification_twice(env_factory, slack, make_incident):
    env = env_factory(routing_yaml(slack.url, group_wait="0s", group_by="[community, category, member]"))
    one, two = env.replica("one"), env.replica("two")
    where = community()
    incidents = [make_incident(incident_id=f"inc-{where}-{n}", community_id=where, evidence={"member_id": f"U{n}"})
                 for n in range(40)]
    # both replicas admit everything (a rebalance redelivers), then both send, concurrently
    await asyncio.gather(*(r.admit(i) for i in incidents for r in (one, two)))
    for _ in range(3):
        await asyncio.gather(env.tick(one), env.tick(two))
    told = [incident_ids(p) for p in slack.posts]
    assert sorted(i for ids in told for i in ids) == sorted(i.incident_id for i in incidents)
    assert len(told) == 40, "one message per group, from one replica"


async def test_a_failing_receiver_is_retried_then_dead_lettered_and_the_fallback_is_told(
        env_factory, slack, smtp, make_incident, local_stack):
    env = env_factory(routing_yaml(slack.url, "fallback_receiver: backup", group_wait="0s"))
    dispatcher = env.replica()
    slack.default = (500, {}, "down")
    incident = make_incident(incident_id=f"inc-{community()}")
    await dispatcher.admit(incident)
    await env.tick()
    assert len(slack.posts) == FAST["max_attempts"], "retried with backoff"
    assert [r.rcpt_tos for r in smtp.received] == [["backup@example.org"]], "the fallback receiver is told"
    assert [key for key, _ in env.dead_letters] and "HTTP 500" in env.dead_letters[0][1]

    consumer = AIOKafkaConsumer(topics.dead_letter(topics.INCIDENTS), bootstrap_servers=local_stack.endpoints.kafka,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        found = False
        deadline = asyncio.get_running_loop().time() + 20
        while not found and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found = any(Incident.model_validate_json(r.value).incident_id == incident.incident_id
                        for records in batch.values() for r in records)
        assert found, "the notification's incident is on the dead-letter topic"
    finally:
        await consumer.stop()

    attempts = [d async for d in env.audit().attempts.find({"incident_id": incident.incident_id})]
    assert {(d["kind"], d["status"]) for d in attempts} == {("slack", "failed"), ("email", "delivered")}
    assert [d.get("fallback_for") for d in attempts if d["kind"] == "email"] == ["mods/slack"]
    slack.default = (200, {}, "ok")
    env.clock.advance(hours=5)
    await env.tick()
    assert len(smtp.received) == 1 and len(slack.posts) == FAST["max_attempts"] + 1, \
        "the failed notification counts as handled; the next one (a reminder) goes to Slack again"
