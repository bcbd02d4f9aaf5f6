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
