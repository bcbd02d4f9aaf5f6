"""Ingest against a real broker: 2xx only after the record is on the topic, 503 + Retry-After
when the broker is gone, and the platform's retry accepted again once it is back."""

import asyncio
import json
import time

import pytest
from fastapi.testclient import TestClient

from schemas import MemberActivity, topics
from services.ingest.app import create_service
from services.ingest.signatures import sign_slack
from services.localstack.stack import LocalStack
from services.runtime.broker import ensure_topics
from services.runtime.settings import IngestSettings

from tests.support import read_all

pytestmark = pytest.mark.integration
SECRET = "slack-test-secret"


def slack_request(client: TestClient, event_id: str, text: str):
    body = json.dumps({
        "type": "event_callback", "team_id": "T42", "event_id": event_id, "event_time": int(time.time()),
        "event": {"type": "message", "channel": "C1", "user": "U7", "text": text, "ts": f"{time.time():.6f}"},
    }).encode()
    now = int(time.time())
    return client.post("/webhooks/slack", content=body, headers={
        "X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign_slack(SECRET, now, body),
        "Content-Type": "application/json",
    })


def test_ack_after_broker_then_503_when_it_is_gone(tmp_path):
    # A broker of this test's own, so that stopping it disturbs no other test.
    stack = LocalStack(tmp_path, preferred_ports=False)
    bootstrap = stack.start_broker()
    try:
        asyncio.run(ensure_topics(bootstrap, partitions=3))
        settings = IngestSettings(kafka_bootstrap=bootstrap, slack_signing_secret=SECRET,
                                  publish_timeout_s=2, retry_after_s=7, kafka_request_timeout_ms=2000)
        with TestClient(create_service(settings).app) as client:
            accepted = slack_request(client, "Ev1", "hello there")
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["accepted"] == 1
            [record] = asyncio.run(read_all(bootstrap, topics.ACTIVITY, expected=1))
            event = MemberActivity.model_validate_json(record.value)
            assert (event.event_id, event.text) == ("slack:T42:Ev1", "hello there")
            assert record.key == event.partition_key()
            assert any(k == "traceparent" for k, _ in record.headers)

            bad = client.post("/webhooks/slack", content=b"{}", headers={
                "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00",
                "Content-Type": "application/json"})
            assert bad.status_code == 401 and "signature rejected" in bad.json()["detail"]

            stack.child("tansu").kill()
            started = time.monotonic()
            refused = slack_request(client, "Ev2", "are you there?")
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "7"
            assert time.monotonic() - started < 10

            # The broker comes back (tansu keeps nothing in memory mode, so the topics are
            # made again): the platform's retry of the same delivery is accepted and lands.
            stack.children.clear()
            stack.start_broker(port=int(bootstrap.rsplit(":", 1)[1]))
            asyncio.run(ensure_topics(bootstrap, partitions=3))
            deadline = time.monotonic() + 30
            while (retried := slack_request(client, "Ev2", "are you there?")).status_code == 503:
                assert time.monotonic() < deadline, "the producer did not reconnect"
                time.sleep(0.5)
            assert retried.status_code == 200, retried.text
            # A retry whose first try timed out may land twice: same event_id, so the
            # downstream effect is still once.
            records = asyncio.run(read_all(bootstrap, topics.ACTIVITY, expected=1))
            assert {MemberActivity.model_validate_json(r.value).event_id for r in records} == {"slack:T42:Ev2"}
    finally:
        stack.stop()


def test_malformed_json_is_a_400_that_says_why():
    settings = IngestSettings(kafka_bootstrap="127.0.0.1:1", slack_signing_secret=SECRET)
    # Without the context manager the lifespan does not run: rejections need no broker.
    client = TestClient(create_service(settings).app)
    now = int(time.time())
    body = b'{"type": "event_callback", "team_id": "T1"'
    response = client.post("/webhooks/slack", content=body, headers={
        "X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign_slack(SECRET, now, body),
        "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "body is not JSON" in response.json()["detail"]


def test_a_named_connection_names_the_community_and_a_retry_is_answered_at_once(local_stack, unique):
    from services.ingest.connections import Connection, Connections

    bootstrap = local_stack.endpoints.kafka
    connections = Connections([Connection(name="acme", platform="slack", secret=SECRET, community_id=f"acme-{unique}")],
                              environ={})
    with TestClient(create_service(IngestSettings(kafka_bootstrap=bootstrap), connections).app) as client:
        body = json.dumps({
            "type": "event_callback", "team_id": "T42", "event_id": f"Ev{unique}", "event_time": int(time.time()),
            "event": {"type": "message", "channel": "C1", "user": "U7", "text": "hi", "ts": f"{time.time():.6f}"},
        }).encode()

        def deliver(retry: int | None = None):
            now = int(time.time())
            headers = {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign_slack(SECRET, now, body),
                       "Content-Type": "application/json"}
            if retry:
                headers["X-Slack-Retry-Num"] = str(retry)
            return client.post("/webhooks/slack/acme", content=body, headers=headers)

        assert deliver().json()["accepted"] == 1
        assert deliver(retry=1).json() == {"accepted": 0, "duplicate": 1}
        exposition = client.get("/metrics").text
    assert 'steward_ingest_webhooks_total{outcome="duplicate",platform="slack"} 1.0' in exposition
    records = asyncio.run(read_all(bootstrap, topics.ACTIVITY, expected=10_000, timeout_s=3))
    ours = [MemberActivity.model_validate_json(r.value) for r in records]
    ours = [e for e in ours if e.event_id == f"slack:T42:Ev{unique}"]
    assert len(ours) == 1 and ours[0].community_id == f"acme-{unique}"
