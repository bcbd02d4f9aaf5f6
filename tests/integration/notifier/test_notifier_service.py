"""Two notifier services on the real stack (tansu, nx-27017, a local Slack, aiosmtpd): every
incident is notified once whichever replica has it, and a moderator's click on an alert's
button travels as ModeratorFeedback through Kafka and stops that incident's escalation."""

import asyncio
import json
import re
import time
import uuid
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from services.ingest.signatures import sign_slack
from services.notifier.app import create_service
from services.notifier.interactions import INTERACTIONS_PATH
from services.runtime.broker import ensure_topics
from services.runtime.settings import NotifierSettings
from tests.integration.notifier.test_notifier_suppression import publish

pytestmark = pytest.mark.integration
SECRET = "slack-signing-secret"
# Each test has its own consumer groups: after both replicas of a group left, tansu was seen
# to keep the next member of that group re-joining forever (generation never advancing).


def routing_yaml(slack_url: str, run: str) -> str:
    return f"""
receivers:
  - name: mods
    slack: {{webhook_url: "{slack_url}"}}
  - name: oncall
    email: {{to: [oncall-{run}@example.org]}}
  - name: backup
    email: {{to: [backup-{run}@example.org]}}
escalation_policies:
  - name: pager
    levels:
      - {{receiver: oncall, timeout: 4s}}
      - {{receiver: backup, timeout: 1h}}
route:
  receiver: mods
  group_by: [community, category, member]
  group_wait: 0s
  escalation_policy: pager
"""


def wait_until(predicate, what: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def click(client: TestClient, post_body: dict, response_url: str):
    [actions] = [b for b in post_body["blocks"] if b["type"] == "actions"]
    [ack] = [e for e in actions["elements"] if e["action_id"] == "steward_ack"]
    payload = {
        "type": "block_actions",
        "user": {"id": "U0MOD", "username": "alice"},
        "container": {"type": "message", "message_ts": "1795284000.000100", "channel_id": "C0MODS"},
        "channel": {"id": "C0MODS"},
        "message": {"type": "message", "ts": "1795284000.000100", **post_body},
        "response_url": response_url,
        "actions": [{**ack, "block_id": actions["block_id"], "action_ts": f"{time.time():.6f}"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    now = int(time.time())
    return client.post(INTERACTIONS_PATH, content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign_slack(SECRET, now, body),
    })


def test_two_replicas_notify_once_and_a_click_stops_the_escalation(local_stack, slack, smtp, make_incident, tmp_path):
    run = uuid.uuid4().hex[:8]
    routing = tmp_path / "routing.yaml"
    routing.write_text(routing_yaml(slack.url, run))
    asyncio.run(ensure_topics(local_stack.endpoints.kafka))
    settings = NotifierSettings(kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
                                routing_file=routing, smtp_host=smtp.host, smtp_port=smtp.port,
                                slack_signing_secret=SECRET, slack_channel_interval_s=0,
                                consumer_group=f"notifier-{run}")
    incidents = [make_incident(incident_id=f"inc-{run}-{n}", community_id=f"c-{run}",
                               evidence={"member_id": f"U{n}"}) for n in range(12)]
    ours = {i.incident_id for i in incidents}

    def slack_posts() -> list[dict]:
        return [p.body for p in slack.posts if "blocks" in p.body and f"inc-{run}" in json.dumps(p.body)]

    def mails_to(prefix: str) -> list[str]:
        # a fresh consumer group reads the topic from its start: earlier tests' incidents too
        return [m.message["X-Steward-Incident-Id"] for m in smtp.received
                if m.rcpt_tos[0].startswith(prefix) and m.message["X-Steward-Incident-Id"].startswith(f"inc-{run}")]

    with TestClient(create_service(settings).app), TestClient(create_service(settings).app) as two:
        asyncio.run(publish(settings.kafka_bootstrap, incidents))
        wait_until(lambda: len(slack_posts()) >= len(incidents) and len(mails_to("oncall")) >= len(incidents),
                   "every incident on Slack and paged")
        time.sleep(1)  # a duplicate, if one were coming, has time to arrive
        told = [set(re.findall(rf"inc-{run}-\d+", json.dumps(body))) for body in slack_posts()]
        assert sorted(i for ids in told for i in ids) == sorted(ours), "each incident once, across both replicas"
        assert sorted(mails_to("oncall")) == sorted(ours)

        acked = incidents[0].incident_id
        [alert] = [body for body in slack_posts() if acked in json.dumps(body)]
        answer = click(two, alert, slack.url.rsplit("/services", 1)[0] + "/actions/T1/1/x")
        assert answer.status_code == 200, answer.text
        updated = wait_until(lambda: [p.body for p in slack.posts if p.body.get("replace_original")],
                             "the message updated in place")
        assert "Acknowledged by" in json.dumps(updated[0])

        wait_until(lambda: len(mails_to("backup")) >= len(incidents) - 1, "the others escalated", timeout_s=40)
        time.sleep(1)
        assert sorted(mails_to("backup")) == sorted(ours - {acked}), "the acknowledged incident stopped escalating"


def test_a_bad_routing_reload_is_refused_with_its_line_and_the_last_good_one_stays_live(
        local_stack, slack, smtp, make_incident, tmp_path):
    run = uuid.uuid4().hex[:8]
    routing = tmp_path / "routing.yaml"
    routing.write_text(f"""
receivers:
  - name: mods
    slack: {{webhook_url: "{slack.url}"}}
route: {{receiver: mods, group_by: [community], group_wait: 0s}}
""")
    asyncio.run(ensure_topics(local_stack.endpoints.kafka))
    settings = NotifierSettings(kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
                                routing_file=routing, smtp_host=smtp.host, smtp_port=smtp.port,
                                slack_channel_interval_s=0, api_keys=["k"],
                                consumer_group=f"notifier-{run}")
    auth = {"Authorization": "Bearer k"}
    with TestClient(create_service(settings).app) as client:
        routing.write_text(routing.read_text().replace("group_wait: 0s", "group_wait: soon"))
        refused = client.post("/-/reload", headers=auth)
        assert refused.status_code == 400
        assert any("line 5" in p and "invalid duration 'soon'" in p for p in refused.json()["detail"]["problems"])
        assert client.post("/-/reload").status_code == 401

        asyncio.run(publish(settings.kafka_bootstrap, [make_incident(incident_id=f"inc-{run}-1", community_id=run)]))
        wait_until(lambda: any(f"inc-{run}-1" in json.dumps(p.body) for p in slack.posts), "the old config at work")

        routing.write_text(f"""
receivers:
  - name: mail
    email: {{to: [mods-{run}@example.org]}}
route: {{receiver: mail, group_by: [community], group_wait: 0s}}
""")
        reloaded = client.post("/-/reload", headers=auth)
        assert reloaded.status_code == 200 and reloaded.json()["receivers"] == ["mail"]
        asyncio.run(publish(settings.kafka_bootstrap, [make_incident(incident_id=f"inc-{run}-2", community_id=run)]))
        wait_until(lambda: any(m.message["X-Steward-Incident-Id"] == f"inc-{run}-2" for m in smtp.received),
                   "the new config at work")
        assert not any(f"inc-{run}-2" in json.dumps(p.body) for p in slack.posts)
