"""The whole event path on real parts: a signed Slack webhook through ingest, tansu, the
moderation service with the real model, an incident, the notifier, a real local Slack
receiver and a real SMTP server, then the day's KPIs through the metrics API. A Slack retry
of the same delivery must change nothing."""

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime
from email import message_from_bytes
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from pymongo import MongoClient

from schemas import Incident, ModerationVerdict, topics
from services.ingest.signatures import sign_slack
from services.localstack.processes import free_port
from services.localstack.stack import LocalStack
from services.moderation.model.bundle import ensure_serving_bundle
from services.moderation.policy.load import BUILT_IN
from tests.support import SlackStandIn, read_all

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TEAM = "T0E2E"
MEMBER = "U0HARM"
THREAT = "Post that again and I will find where you live and hurt you."
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PINNED_TEAM = "T0PINNED"


class Mailbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def slack_server():
    with SlackStandIn() as slack:
        yield slack


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def pinned_policies(tmp_path_factory, model_cache) -> tuple[Path, Path]:
    """A policy folder where PINNED_TEAM pins a head bundle, and a home whose model cache
    holds that bundle (fitted on the seed set with the real encoder) and the encoder."""
    from services.moderation.model.encoder import SentenceEncoder, ensure_encoder
    from services.moderation.model.general import fit_general
    from services.moderation.model.head_bundle import write_head_bundle
    from services.moderation.model.seed import seed_examples

    home = tmp_path_factory.mktemp("home")
    encoder_dir = ensure_encoder(model_cache)
    shutil.copytree(encoder_dir, home / "models" / encoder_dir.name)
    examples = list(seed_examples())
    features = SentenceEncoder.load(model_cache).embed([ex.text for ex in examples])
    write_head_bundle(home / "models", "pinned", fit_general(features, examples), train_size=len(examples),
                      data_hash="seed", metrics={}, training={}, community=PINNED_TEAM)
    policies = tmp_path_factory.mktemp("policies")
    (policies / f"{PINNED_TEAM}.yaml").write_text(
        (BUILT_IN.read_text() + "\nmodel: pinned@1\n").replace("version:", "version: pinned-", 1))
    return policies, home


@pytest.fixture(scope="module")
def stack(tmp_path_factory, model_cache, slack_server, mailbox, pinned_policies):
    bundle = ensure_serving_bundle(model_cache)
    _, smtp_port = mailbox
    policies, home = pinned_policies
    stack = LocalStack(tmp_path_factory.mktemp("e2e"), preferred_ports=False)
    try:
        stack.start_infrastructure()
        stack.service_env = {
            "STEWARD_HOME": str(home),
            "STEWARD_POLICY_DIR": str(policies),
            "STEWARD_MODEL_DIR": str(bundle),
            "STEWARD_SLACK_WEBHOOK_URL": slack_server.url,
            "STEWARD_SMTP_PORT": str(smtp_port),
            "STEWARD_EMAIL_TO": '["oncall@example.org"]',
        }
        stack.start_services()
        yield stack
    finally:
        stack.stop()


def slack_delivery(stack: LocalStack, event_id: str, text: str, ts: str, *, retry: int | None = None,
                   team: str = TEAM):
    message = {"type": "message", "channel": "C0GENERAL", "user": MEMBER, "text": text, "ts": ts}
    return slack_event(stack, event_id, message, ts, retry=retry, team=team)


def slack_reaction(stack: LocalStack, event_id: str, message_ts: str):
    now = f"{time.time():.6f}"
    reaction = {"type": "reaction_added", "user": MEMBER, "reaction": "tada", "event_ts": now,
                "item": {"type": "message", "channel": "C0GENERAL", "ts": message_ts}}
    return slack_event(stack, event_id, reaction, now)


def slack_event(stack: LocalStack, event_id: str, event: dict, ts: str, *, retry: int | None = None,
                team: str = TEAM):
    body = json.dumps({
        "type": "event_callback", "team_id": team, "event_id": event_id, "event_time": int(float(ts)),
        "event": event,
    }).encode()
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign_slack(stack.endpoints.slack_secret, now, body),
        "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return httpx.post(f"{stack.endpoints.services['ingest']}/webhooks/slack", content=body, headers=headers, timeout=10)


def kpis_today(stack: LocalStack) -> dict:
    today = datetime.now(UTC).date().isoformat()
    response = httpx.get(f"{stack.endpoints.services['metrics']}/communities/{TEAM}/kpis",
                         params={"from": today, "to": today}, timeout=10)
    response.raise_for_status()
    [day] = response.json()["days"]
    return day


def wait_for(predicate, what: str, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_harmful_message_alerts_once_and_counts_once(stack, slack_server, mailbox):
    box, _ = mailbox
    ts = f"{time.time():.6f}"
    first = slack_delivery(stack, "Ev0E2E1", THREAT, ts)
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 1

    wait_for(lambda: slack_server.posts, "the Slack alert")
    wait_for(lambda: box.messages, "the email alert")
    [post] = slack_server.posts
    rendered = json.dumps(post)
    assert "find where you live" in rendered
    actions = [b for b in post["blocks"] if b["type"] == "actions"]
    assert actions, "the Slack alert carries action buttons"
    [mail] = box.messages
    assert "oncall@example.org" in mail["To"]
    assert {part.get_content_type() for part in mail.walk()} >= {"text/plain", "text/html"}

    day = wait_for(lambda: (d := kpis_today(stack))["classified"] == 1 and d, "the day's KPIs")
    assert (day["dau"], day["messages"], day["flagged"]) == (1, 1, 1)

    # Slack retries the same delivery. Then come two markers from the same member (same
    # partition, so each is processed after the retry): an ordinary message, whose verdict ends
    # the verdict stream, and a reaction, which ends the activity stream. Metrics reads the two
    # topics independently, so one marker alone could arrive before the other topic's retry.
    again = slack_delivery(stack, "Ev0E2E1", THREAT, ts, retry=1)
    assert again.status_code == 200
    later = slack_delivery(stack, "Ev0E2E2", "Thanks everyone, see you at the meetup!", f"{time.time():.6f}")
    assert later.status_code == 200
    assert slack_reaction(stack, "Ev0E2E2R", ts).status_code == 200
    day = wait_for(lambda: (d := kpis_today(stack))["classified"] == 2 and d["reactions"] == 1 and d,
                   "both marker events")
    assert (day["dau"], day["messages"], day["flagged"]) == (1, 2, 1)
    time.sleep(1)  # give a duplicate alert, if any were coming, time to arrive
    assert len(slack_server.posts) == 1, "a redelivered event must not alert twice"
    assert len(box.messages) == 1

    # The W3C trace context travelled from the webhook to the incident and the alert record.
    incidents = asyncio.run(read_all(stack.endpoints.kafka, topics.INCIDENTS, expected=2, timeout_s=5))
    ours = [r for r in incidents if Incident.model_validate_json(r.value).community_id == TEAM]
    assert ours and len({Incident.model_validate_json(r.value).incident_id for r in ours}) == 1
    traceparent = dict(ours[0].headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == TRACE_ID
    def delivered() -> list[dict]:
        with MongoClient(stack.endpoints.mongo_uri) as mongo:
            found = list(mongo["steward"]["notifier_notifications"].find({}))
        return found if len(found) >= 3 else []

    # the default routing's root (the console) waits its group_wait of 30 s
    records = wait_for(delivered, "the console's grouped notification")
    assert {(r["receiver"], r["kind"]) for r in records} == {
        ("moderators", "slack"), ("moderators", "email"), ("console", "console")}
    assert all(r["trace_id"] == TRACE_ID for r in records)


def test_poison_events_are_dead_lettered_by_each_consumer_and_the_path_keeps_working(stack):
    from aiokafka import AIOKafkaProducer

    from services.runtime.deadletter import HEADER_PREFIX

    huge = json.dumps({
        "event_id": "poison-huge", "platform": "generic", "community_id": "poison", "member_id": "m",
        "kind": "message_posted", "message_id": "x", "text": "a" * 60_000,
        "occurred_at": "2026-01-01T00:00:00Z",
    }).encode()
    poison = [b"\xff\xfe not utf-8 \xc3\x28", b'{"event_id": "half', huge]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka)
        await producer.start()
        try:
            for value in poison:
                await producer.send_and_wait(topics.ACTIVITY, value, key=b"poison")
        finally:
            await producer.stop()

    asyncio.run(produce())
    letters = asyncio.run(read_all(stack.endpoints.kafka, topics.dead_letter(topics.ACTIVITY), expected=6, timeout_s=60))
    by_group: dict[str, set[bytes]] = {}
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers[f"{HEADER_PREFIX}error-type"] in {"ValidationError", "UnicodeDecodeError", "JSONDecodeError"}
        by_group.setdefault(headers[f"{HEADER_PREFIX}group"], set()).add(record.value)
    # Moderation and metrics each read the topic, so each dead-letters every poison record once.
    assert set(by_group) == {"steward-moderation", "steward-metrics-activity"}
    assert all(values == set(poison) for values in by_group.values())

    # Both consumers moved on: a normal message after the poison is still classified and counted.
    before = kpis_today(stack)["classified"]
    ok = slack_delivery(stack, "Ev0E2E3", "Does anyone have the meetup slides?", f"{time.time():.6f}")
    assert ok.status_code == 200
    wait_for(lambda: kpis_today(stack)["classified"] == before + 1, "the message after the poison")


def test_moderator_feedback_is_stored_and_exported_as_training_data(stack):
    from aiokafka import AIOKafkaProducer

    from schemas import ModeratorFeedback

    incidents = [Incident.model_validate_json(r.value) for r in
                 asyncio.run(read_all(stack.endpoints.kafka, topics.INCIDENTS, expected=1, timeout_s=5))]
    ours = next(i for i in incidents if i.community_id == TEAM)
    decision = ModeratorFeedback(feedback_id="fb-e2e-1", incident_id=ours.incident_id, community_id=TEAM,
                                 action="resolved", moderator="U0MOD", source="slack")

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.endpoints.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topics.FEEDBACK, decision.to_bytes(), key=ours.incident_id.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    export = stack.folder / "feedback.jsonl"
    env = {**__import__("os").environ, "STEWARD_MONGO_URI": stack.endpoints.mongo_uri,
           "STEWARD_KAFKA_BOOTSTRAP": stack.endpoints.kafka}

    def exported() -> list[dict]:
        import subprocess
        import sys

        subprocess.run([sys.executable, "-m", "services.cli", "moderation", "feedback-export",
                        "--community", TEAM, "--out", str(export)], env=env, check=True, capture_output=True)
        return [json.loads(line) for line in export.read_text().splitlines()]

    rows = wait_for(lambda: exported(), "the exported feedback", timeout_s=60)
    assert rows[0]["text"] == THREAT and rows[0]["action"] == "resolved" and rows[0]["labels"]

    # The same feedback feeds `steward model adapt`; one decision is too few to adapt on,
    # and the command says so rather than writing a bundle.
    import subprocess
    import sys

    adapt = subprocess.run([sys.executable, "-m", "services.cli", "model", "adapt", "--community", TEAM,
                            "--from-feedback", "--cache", str(stack.folder / "models")],
                           env=env, capture_output=True, text=True)
    assert adapt.returncode == 2, adapt.stdout + adapt.stderr
    assert "1 examples" in adapt.stdout and "at least 5 harmful" in adapt.stdout


def test_a_community_is_scored_by_the_head_bundle_its_policy_pins(stack):
    """The pinned community's verdicts name its head bundle; everyone else keeps the default."""
    sent = slack_delivery(stack, "Ev0PIN1", THREAT, f"{time.time():.6f}", team=PINNED_TEAM)
    assert sent.status_code == 200, sent.text

    def pinned_verdicts():
        records = asyncio.run(read_all(stack.endpoints.kafka, topics.VERDICTS, expected=10**6, timeout_s=2))
        verdicts = [ModerationVerdict.model_validate_json(r.value) for r in records]
        return [v for v in verdicts if v.community_id == PINNED_TEAM], verdicts

    ours, every = wait_for(lambda: (found := pinned_verdicts())[0] and found, "the pinned community's verdict")
    [verdict] = ours
    assert (verdict.model_name, verdict.model_version) == ("pinned", "1")
    assert verdict.policy_version.startswith("pinned-")
    assert verdict.scores["threat"] > 0.5, verdict.scores
    others = [v for v in every if v.community_id == TEAM]
    assert others and all(v.model_name == "steward-default" for v in others)


def test_kpis_rebuild_to_the_same_numbers_and_report_renders(stack, tmp_path):
    """After the path above: the day's incident reached metrics; `steward metrics backfill`
    rebuilds the community from the topics to the same numbers; `steward metrics report`
    writes a report whose DAU chart carries the day's DAU."""
    import subprocess
    import sys

    metrics = stack.endpoints.services["metrics"]
    before = wait_for(lambda: (d := kpis_today(stack))["incidents"] >= 1 and d, "the incident in the KPIs")
    assert before["incidents_by_severity"] and before["incidents_per_1000_dau"] == 1000 * before["incidents"] / before["dau"]
    rebuilt = subprocess.run([sys.executable, "-m", "services.cli", "metrics", "backfill", "--community", TEAM,
                              "--url", metrics], capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "is live" in rebuilt.stdout
    assert kpis_today(stack) == before

    out = tmp_path / "report.html"
    report = subprocess.run([sys.executable, "-m", "services.cli", "metrics", "report", "--community", TEAM,
                             "--url", metrics, "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stdout + report.stderr
    marks = _DataMarks()
    marks.feed(out.read_text())
    today = datetime.now(UTC).date().isoformat()
    assert marks.values[("dau", today)] == before["dau"]


class _DataMarks(HTMLParser):
    """The (series, day) -> value of every chart mark in a report."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], float] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-series" in a and "data-day" in a and "data-value" in a:
            self.values[(a["data-series"], a["data-day"])] = float(a["data-value"])
