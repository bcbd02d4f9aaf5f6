"""Fault drills on the whole real stack: a part fails while events flow, and afterwards every
event has its effect exactly once. Each drill counts what it sent and what came out (sent /
processed / lost / duplicated) and checks the day's KPIs against the reference computation
(``tests/metrics_reference.py``).

``python -m bench.fault_drills`` runs this module and writes the report table; CI runs it in
its slow step. The drills share one stack and run in order; each leaves it whole. The broker
drill has its own stack, whose broker stores to a local S3-compatible server (moto), so
that it keeps its records and committed offsets across its own restart."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import pytest

from schemas import topics
from schemas.topics import dead_letter
from services.ingest.signatures import sign_steward
from services.localstack.stack import LocalStack
from services.moderation.model.bundle import ensure_serving_bundle
from services.ops.deadletters import drain
from services.runtime.settings import RuntimeSettings
from tests.e2e.drills import (
    DrillRow,
    Produced,
    alert_tokens,
    count_effects,
    kpis_of_today,
    kpis_settle,
    mail_tokens,
    publish,
    scrape,
    until,
    workload,
)
from tests.support import SlackStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]  # minutes: CI's slow step

FAULTS = Path(__file__).with_name("faults")
REPORT_ENV = "STEWARD_DRILL_REPORT"
MARKER = "\N{FIRECRACKER}"


@pytest.fixture(scope="module")
def slack():
    with SlackStandIn() as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def backup():
    """The fallback receiver: a second Slack channel, for when Slack or email gives up."""
    with SlackStandIn() as stand_in:
        yield stand_in


def routing_yaml(slack_url: str, backup_url: str) -> str:
    # Every incident to Slack and to email, each incident its own group, sent at once.
    return f"""\
receivers:
  - name: slack
    slack: {{webhook_url: "{slack_url}"}}
  - name: email
    email: {{to: [oncall@drill.local]}}
  - name: backup
    slack: {{webhook_url: "{backup_url}"}}
fallback_receiver: backup
route:
  receiver: slack
  group_by: [community, category, member]
  group_wait: 0s
  routes:
    - receiver: email
      continue: true
    - receiver: slack
"""


def start_stack(home: Path, model_cache: Path, slack: SlackStandIn, backup: SlackStandIn, *,
                durable_broker: bool = False, **env: str) -> LocalStack:
    routing = home / "routing.yaml"
    routing.write_text(routing_yaml(slack.url, backup.url))
    stack = LocalStack(home, preferred_ports=False, durable_broker=durable_broker)
    try:
        stack.start_infrastructure()
        stack.service_env = {
            "STEWARD_MODEL_DIR": str(ensure_serving_bundle(model_cache)),
            "STEWARD_ROUTING_FILE": str(routing),
            "STEWARD_SLACK_CHANNEL_INTERVAL_S": "0",
            "STEWARD_RETRY_AFTER_S": "1",
            **env,
        }
        stack.start_services()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory, model_cache, slack, backup):
    stack = start_stack(tmp_path_factory.mktemp("drills"), model_cache, slack, backup)
    yield stack
    stack.stop()


@pytest.fixture
def durable_stack(tmp_path_factory, model_cache, slack, backup):
    """Its own stack, whose broker stores to S3 (moto). Each fetch lists objects there, so the
    consumers long-poll for 500 ms instead of 10: latency does not matter in this drill."""
    stack = start_stack(tmp_path_factory.mktemp("durable"), model_cache, slack, backup, durable_broker=True,
                        STEWARD_KAFKA_FETCH_MAX_WAIT_MS="500")
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def report():
    rows: list[DrillRow] = []
    yield rows
    if path := os.environ.get(REPORT_ENV):
        Path(path).write_text(json.dumps([row.as_dict() for row in rows], indent=2))


class Drill:
    """One drill's community, the records it produced, and its timing."""

    def __init__(self, stack: LocalStack, name: str, unique: str) -> None:
        self.stack, self.name = stack, name
        self.community = f"drill-{name}-{unique}"
        self.produced = Produced(stack.endpoints.kafka, self.community)
        self._stop = asyncio.Event()
        self._started = time.monotonic()

    async def __aenter__(self) -> Self:
        self._reading = asyncio.create_task(self.produced.run(self._stop))
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await self._reading

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 1)

    def url(self, service: str) -> str:
        return self.stack.endpoints.services[service]

    async def every_verdict(self, events, timeout_s: float = 240) -> None:
        messages = {e.event_id for e in events if e.kind == "message_posted"}
        await until(lambda: messages <= self.produced.verdict_events, timeout_s, "a verdict for every message")

    async def every_alert(self, slack: SlackStandIn, timeout_s: float = 120) -> None:
        await until(lambda: set(self.produced.incident_tokens.values()) <= set(alert_tokens(slack.posts)),
                    timeout_s, "an alert for every incident")

    async def settle(self, events) -> dict:
        return await kpis_settle(self.url("metrics"), self.community, events, self.produced)

    async def every_effect(self, events, slack: SlackStandIn) -> dict:
        """Waits for every verdict and every alert, then for the KPIs; returns their
        difference from the reference (empty when equal)."""
        await self.every_verdict(events)
        await self.every_alert(slack)
        return await self.settle(events)

    def row(self, events, *, notes: str = "", kpis: dict | None = None, **counts) -> DrillRow:
        messages = [e.event_id for e in events if e.kind == "message_posted"]
        verdicts = [v.event_id for v in self.produced.verdicts]
        processed, lost, _ = count_effects(messages, verdicts)
        values = {"unit": "messages", "sent": len(messages), "processed": processed, "lost": lost,
                  "duplicated": 0, "redelivered": len(verdicts) - len(set(verdicts))} | counts
        return DrillRow(self.name, kpis_equal_reference=kpis == {}, notes=notes, seconds=self.seconds, **values)


def alerts_once(drill: Drill, slack: SlackStandIn) -> tuple[int, int]:
    """(incidents, alerts posted more than once) for the drill's community."""
    tokens = list(drill.produced.incident_tokens.values())
    posted = [t for t in alert_tokens(slack.posts) if t in set(tokens)]
    return len(tokens), len(posted) - len(set(posted))


async def restart(stack: LocalStack, name: str, env: dict[str, str] | None = None) -> None:
    saved = dict(stack.service_env)
    stack.service_env.update(env or {})
    try:
        await asyncio.to_thread(stack.start_services, (name,))
    finally:
        stack.service_env = saved


async def test_moderation_killed_mid_batch_loses_no_verdict_and_repeats_no_alert(stack, slack, report, unique):
    async with Drill(stack, "moderation-sigkill", unique) as drill:
        events = workload(drill.community, 1200, harmful_every=20)
        await publish(stack.endpoints.kafka, events)
        await until(lambda: len(drill.produced.verdict_events) >= 150, 120, "the first verdicts")
        stack.stop_part("moderation", kill=True)
        killed_at = len(drill.produced.verdict_events)
        await restart(stack, "moderation")
        kpis = await drill.every_effect(events, slack)
    incidents, repeated_alerts = alerts_once(drill, slack)
    row = drill.row(events, kpis=kpis, duplicated=repeated_alerts,
                    notes=f"SIGKILL after {killed_at} verdicts; {incidents} incidents, each alerted once")
    report.append(row)
    assert killed_at < len(events), "nothing was in flight when the service was killed"
    assert (row.lost, row.duplicated, kpis) == (0, 0, {}), row


async def test_metrics_killed_mid_write_counts_every_event_once(stack, report, unique):
    async with Drill(stack, "metrics-sigkill", unique) as drill:
        events = workload(drill.community, 24_000, harmful_every=0, reactions_every=40)

        async def stream() -> None:  # 4,000 events/s: metrics is folding and writing all along
            for start in range(0, len(events), 1000):
                await publish(stack.endpoints.kafka, events[start:start + 1000])
                await asyncio.sleep(0.25)

        sending = asyncio.create_task(stream())

        def folded() -> int:
            day = kpis_of_today(drill.url("metrics"), drill.community) or {}
            return day.get("reactions", 0) + day.get("messages", 0)

        await until(lambda: folded() >= 4000, 120, "the first folded batches")
        killed_at = folded()  # at least this many were written when the kill came
        stack.stop_part("metrics", kill=True)
        await sending
        await restart(stack, "metrics")
        await drill.every_verdict(events)
        kpis = await drill.settle(events)
        counted = folded()
    row = drill.row(events, kpis=kpis, unit="events", sent=len(events), processed=min(counted, len(events)),
                    lost=max(0, len(events) - counted), duplicated=max(0, counted - len(events)),
                    notes=f"SIGKILL with at least {killed_at} of {len(events)} events folded; "
                          "processed = messages and reactions in the day's KPIs")
    report.append(row)
    assert 0 < killed_at < len(events), "the kill came before or after the writes"
    assert kpis == {}, kpis


async def test_mongodb_down_30s_consumers_wait_and_resume_by_themselves(stack, slack, report, unique):
    async with Drill(stack, "mongodb-down-30s", unique) as drill:
        events = workload(drill.community, 2400, harmful_every=40)
        waits_before = {name: scrape(drill.url(name), "steward_outage_waits_total")
                        for name in ("moderation", "metrics", "notifier")}

        async def trickle() -> None:  # 40 events/s for a minute, through the outage
            for start in range(0, len(events), 40):
                await publish(stack.endpoints.kafka, events[start:start + 40])
                await asyncio.sleep(1)

        sending = asyncio.create_task(trickle())
        await asyncio.sleep(10)
        stack.stop_part("nx-27017")
        await asyncio.sleep(30)
        await asyncio.to_thread(stack.start_mongo, stack.mongo_port)
        await sending
        kpis = await drill.every_effect(events, slack)
        alive = {c.name for c in stack.children if c.running}
        waits = {name: scrape(drill.url(name), "steward_outage_waits_total") - waits_before[name]
                 for name in waits_before}
    incidents, repeated_alerts = alerts_once(drill, slack)
    row = drill.row(events, kpis=kpis, duplicated=repeated_alerts,
                    notes=f"outage waits: {', '.join(f'{k} {v:.0f}' for k, v in waits.items())}; "
                          f"{incidents} incidents, each alerted once; no service restarted")
    report.append(row)
    assert {"ingest", "moderation", "metrics", "notifier"} <= alive, "a service died instead of waiting"
    assert waits["metrics"] > 0, "metrics never noticed the outage"
    assert (row.lost, row.duplicated, kpis) == (0, 0, {}), row


async def test_broker_restart_keeps_data_ingest_answers_503_and_the_retry_succeeds(
        durable_stack, slack, report, unique):
    stack = durable_stack
    async with Drill(stack, "broker-restart", unique) as drill:
        events = workload(drill.community, 900, harmful_every=30)
        secret = stack.endpoints.generic_secret
        statuses: dict[int | str, int] = {}
        accepted: set[str] = set()

        async def platform(client: httpx.AsyncClient, event) -> None:
            """A platform delivering one webhook: retries 503s and failed connections after
            Retry-After, as Slack or GitHub do, until it is accepted."""
            body = event.to_bytes()
            while True:
                now = int(time.time())
                headers = {"Content-Type": "application/json", "X-Steward-Timestamp": str(now),
                           "X-Steward-Signature": sign_steward(secret, now, body)}
                try:
                    response = await client.post(drill.url("ingest") + "/webhooks/generic", content=body,
                                                 headers=headers)
                    status = response.status_code
                except httpx.TransportError:
                    response, status = None, "connection failed"
                statuses[status] = statuses.get(status, 0) + 1
                if response is not None and response.is_success:
                    accepted.add(event.event_id)
                    return
                assert status in (503, "connection failed"), response.text
                await asyncio.sleep(float(response.headers.get("Retry-After", 1)) if response else 1)

        async def deliver_all() -> None:  # 30 webhooks/s for 30 s
            async with httpx.AsyncClient(timeout=30) as client:
                pending = []
                for event in events:
                    pending.append(asyncio.create_task(platform(client, event)))
                    await asyncio.sleep(1 / 30)
                await asyncio.gather(*pending)

        sending = asyncio.create_task(deliver_all())
        await asyncio.sleep(8)
        before_outage = len(accepted)
        stack.stop_part("tansu")
        await asyncio.sleep(10)
        await asyncio.to_thread(stack.start_broker, stack.kafka_port)
        await sending
        kpis = await drill.every_effect(events, slack)
    incidents, repeated_alerts = alerts_once(drill, slack)
    row = drill.row(events, kpis=kpis, duplicated=repeated_alerts,
                    notes=f"{before_outage} accepted before the stop; answers {statuses}; "
                          f"{incidents} incidents, each alerted once")
    report.append(row)
    assert statuses.get(503, 0) > 0, "ingest never answered 503 while the broker was down"
    assert accepted == {e.event_id for e in events}
    assert (row.lost, row.duplicated, kpis) == (0, 0, {}), row


async def test_slack_500_then_429_and_smtp_down_retried_then_fallback_and_no_alert_lost(
        stack, slack, backup, report, unique):
    async with Drill(stack, "slack-429-smtp-down", unique) as drill:
        events = workload(drill.community, 420, harmful_every=6)  # 70 incidents over 70 s
        stack.stop_part("smtp-sink")
        slack.refuse(500)
        refused_before, backup_before = slack.refused, len(backup.posts)
        for second, start in enumerate(range(0, len(events), 6)):
            if second == 30:  # a minute of trouble: 30 s of 500s, then 30 s rate limited
                slack.refuse(429, retry_after="1")
            if second == 60:
                slack.accept()
                await asyncio.to_thread(stack.start_smtp_sink, stack.endpoints.smtp_port)
            await publish(stack.endpoints.kafka, events[start:start + 6])
            await asyncio.sleep(1)
        await drill.every_verdict(events)

        def deliveries() -> list[str]:
            """One token per delivery of an incident: Slack itself, the SMTP sink, or the fallback."""
            return (alert_tokens(slack.posts) + alert_tokens(backup.posts[backup_before:])
                    + mail_tokens(stack.folder / "mail", drill.produced.incident_tokens))

        incidents = drill.produced.incident_tokens
        await until(lambda: all(deliveries().count(t) >= 2 for t in incidents.values()), 180,
                    "two deliveries (Slack and email, or the fallback) for every incident")
        await asyncio.sleep(5)  # a repeated delivery, if any were coming
        kpis = await drill.settle(events)
        ours = [t for t in deliveries() if t in set(incidents.values())]
    lost = sum(1 for t in incidents.values() if ours.count(t) < 2)
    duplicated = sum(max(0, ours.count(t) - 2) for t in incidents.values())
    fallbacks = len([t for t in alert_tokens(backup.posts[backup_before:]) if t in set(incidents.values())])
    row = DrillRow(drill.name, unit="alerts (incident x receiver)", sent=2 * len(incidents),
                   processed=2 * len(incidents) - lost, lost=lost, duplicated=duplicated,
                   kpis_equal_reference=kpis == {}, seconds=drill.seconds,
                   notes=f"{len(incidents)} incidents to Slack and email; Slack refused {slack.refused - refused_before} "
                         f"posts (500, then 429); {fallbacks} deliveries went to the fallback receiver")
    report.append(row)
    assert slack.refused > refused_before and fallbacks > 0
    assert (lost, duplicated, kpis) == (0, 0, {}), row


async def test_poison_events_land_in_the_dead_letter_topic_and_drain_back_after_the_fix(
        stack, slack, report, unique):
    async with Drill(stack, "poison-replay", unique) as drill:
        events = workload(drill.community, 400, harmful_every=25, marker_every=40, marker=MARKER)
        settings = RuntimeSettings(kafka_bootstrap=stack.endpoints.kafka)
        pending_before = (await drain(settings, topics.ACTIVITY)).pending
        # A bad release: the moderation service now fails on every message with the marker.
        stack.stop_part("moderation")
        python_path = os.pathsep.join(filter(None, (str(FAULTS), os.environ.get("PYTHONPATH"))))
        await restart(stack, "moderation", {"PYTHONPATH": python_path,
                                            "STEWARD_DRILL_BAD_RELEASE": MARKER,
                                            "STEWARD_CONSUMER_BACKOFF_MAX_S": "0.5"})
        await publish(stack.endpoints.kafka, events)
        poisoned = {e.event_id for e in events if MARKER in (e.text or "")}
        messages = {e.event_id for e in events if e.kind == "message_posted"}

        async def dead_lettered() -> int:
            return (await drain(settings, topics.ACTIVITY)).pending - pending_before

        deadline = time.monotonic() + 240
        while len(messages & drill.produced.verdict_events) + await dead_lettered() < len(messages):
            assert time.monotonic() < deadline, "the bad release neither classified nor dead-lettered everything"
            await asyncio.sleep(1)
        dead_lettered_count = await dead_lettered()
        assert not poisoned & drill.produced.verdict_events

        # The fix is deployed, then the documented command drains the dead letters back.
        stack.stop_part("moderation")
        await restart(stack, "moderation")
        replay = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "services.cli", "dead-letters", "replay", topics.ACTIVITY, "--yes"],
            check=False, capture_output=True, text=True, env={**os.environ, "STEWARD_KAFKA_BOOTSTRAP": stack.endpoints.kafka},
            timeout=120)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        kpis = await drill.every_effect(events, slack)
        left = (await drain(settings, dead_letter(topics.ACTIVITY))).pending
    incidents, repeated_alerts = alerts_once(drill, slack)
    row = drill.row(events, kpis=kpis, duplicated=repeated_alerts,
                    notes=f"{len(poisoned)} poison messages; {dead_lettered_count} records dead-lettered (whole batches) "
                          f"and replayed by `steward dead-letters replay`; {left} left pending; "
                          f"{incidents} incidents, each alerted once")
    report.append(row)
    assert left == 0
    assert (row.lost, row.duplicated, kpis) == (0, 0, {}), row
