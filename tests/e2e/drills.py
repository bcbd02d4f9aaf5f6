"""What the fault drills share: a day's workload for one community, a reader of what the
pipeline produced, the KPI check against the reference computation, and the drill's row of
the report (sent / processed / lost / duplicated)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import Incident, MemberActivity, ModerationVerdict, topics
from services.demo.community import CHATTER, HARMFUL
from tests.metrics_reference import Reference

THREATS = tuple(text for _, text in HARMFUL)
REF = re.compile(r"\(ref ([\w.-]+)\)")


def reference_token(text: str | None) -> str | None:
    found = REF.search(text or "")
    return found.group(1) if found else None


def workload(community: str, count: int, *, harmful_every: int = 20, reactions_every: int = 0,
             marker_every: int = 0, marker: str = "") -> list[MemberActivity]:
    """Today's events of one community. Every message carries ``(ref <event_id>)``, which
    comes back in its verdict, its incident and the alert's text. Each harmful message has
    its own author, so that each incident is its own alert group."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    events = []
    for n in range(count):
        event_id = f"{community}-{n}"
        at = start + timedelta(milliseconds=n)
        if reactions_every and n % reactions_every:
            events.append(MemberActivity(
                event_id=event_id, platform="generic", community_id=community, channel_id=f"c{n % 5}",
                member_id=f"m{n % 211}", kind="reaction_added", message_id=f"{community}-msg-0", occurred_at=at))
            continue
        harmful = harmful_every and n % harmful_every == harmful_every - 1
        text = THREATS[n % len(THREATS)] if harmful else CHATTER[n % len(CHATTER)]
        if marker_every and n % marker_every == 0:
            text = f"{text} {marker}"
        events.append(MemberActivity(
            event_id=event_id, platform="generic", community_id=community, channel_id=f"c{n % 5}",
            member_id=f"harm-{community}-{n}" if harmful else f"m{n % 211}", kind="message_posted",
            message_id=f"{community}-msg-{n}", text=f"{text} (ref {event_id})", occurred_at=at))
    return events


async def publish(bootstrap: str, events: list[MemberActivity]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        acks = [await producer.send(topics.ACTIVITY, e.to_bytes(), key=e.partition_key()) for e in events]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


@dataclass
class Produced:
    """Every verdict and incident record of one community, repeats included, read from the
    start of both topics for as long as ``run`` runs."""

    bootstrap: str
    community: str
    verdicts: list[ModerationVerdict] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(topics.VERDICTS, topics.INCIDENTS, bootstrap_servers=self.bootstrap,
                                    group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100)
        await consumer.start()
        try:
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=200)
                except Exception:  # noqa: BLE001 - the broker drill stops the broker under us
                    await asyncio.sleep(0.5)
                    continue
                for tp, records in batches.items():
                    for record in records:
                        self._take(tp.topic, record.value)
        finally:
            await consumer.stop()

    def _take(self, topic: str, value: bytes) -> None:
        if topic == topics.VERDICTS:
            verdict = ModerationVerdict.model_validate_json(value)
            if verdict.community_id == self.community:
                self.verdicts.append(verdict)
        else:
            incident = Incident.model_validate_json(value)
            if incident.community_id == self.community:
                self.incidents.append(incident)

    @property
    def verdict_events(self) -> set[str]:
        return {v.event_id for v in self.verdicts}

    @property
    def incident_tokens(self) -> dict[str, str]:
        """incident id -> the ref token of its message."""
        return {i.incident_id: reference_token(i.evidence.text) for i in self.incidents}


def alert_tokens(posts: list[dict]) -> list[str]:
    """The ref token of each alert posted (one per post: every incident is its own group)."""
    return [token for post in posts if (token := reference_token(json.dumps(post)))]


def mail_tokens(folder: Path, incident_tokens: dict[str, str]) -> list[str]:
    """The ref token of each mail the SMTP sink stored, found by its incident id header."""
    tokens = []
    for path in sorted(folder.glob("*.eml")):
        incident_id = message_from_bytes(path.read_bytes()).get("X-Steward-Incident-Id")
        if incident_id in incident_tokens:
            tokens.append(incident_tokens[incident_id])
    return tokens


def kpis_of_today(metrics_url: str, community: str) -> dict | None:
    today = datetime.now(UTC).date().isoformat()
    try:
        response = httpx.get(f"{metrics_url}/communities/{community}/kpis", params={"from": today, "to": today},
                             timeout=10)
    except httpx.HTTPError:
        return None
    return response.json()["days"][0] if response.status_code == 200 else None


def kpi_difference(metrics_url: str, community: str, events: list[MemberActivity],
                   verdicts: list[ModerationVerdict]) -> dict:
    """{kpi: (reference, service)} for each of today's KPIs on which they differ."""
    reference = Reference.of(events, verdicts, "UTC", datetime.now(UTC)).daily(datetime.now(UTC).date())
    actual = kpis_of_today(metrics_url, community) or {}
    return {k: (v, actual.get(k)) for k, v in reference.items() if actual.get(k) != v}


async def until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.25)


async def kpis_settle(metrics_url: str, community: str, events, produced: Produced, timeout_s: float = 120) -> dict:
    """Waits until the service's KPIs equal the reference's, then a little longer, so that a
    late double count would show; returns the difference left (empty when equal)."""
    deadline = time.monotonic() + timeout_s
    while difference := kpi_difference(metrics_url, community, events, produced.verdicts):
        assert time.monotonic() < deadline, f"KPIs {{name: (reference, service)}} still differ: {difference}"
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)
    return kpi_difference(metrics_url, community, events, produced.verdicts)


@dataclass
class DrillRow:
    """One line of the drill report. ``processed`` counts distinct effects; ``lost`` what was
    sent and has no effect; ``duplicated`` effects that happened more than once (an alert
    posted twice, an event counted twice). ``redelivered`` counts records the pipeline
    delivered again under at-least-once, which idempotent consumers absorbed."""

    drill: str
    unit: str
    sent: int
    processed: int
    lost: int
    duplicated: int
    redelivered: int = 0
    kpis_equal_reference: bool = False
    notes: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def count_effects(sent: list[str], effects: list[str]) -> tuple[int, int, int]:
    """(processed, lost, duplicated) of the ``sent`` keys, from the keys of the ``effects`` seen."""
    seen = set(effects)
    return len(seen & set(sent)), len(set(sent) - seen), len(effects) - len(seen)


def scrape(url: str, family: str) -> float:
    """The sum of one Prometheus counter or gauge family at ``url``/metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(family) and not line.startswith("#"))
