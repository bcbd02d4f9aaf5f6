"""The notifier service on the real stack: a silence created through its API keeps a noisy
community's incidents from Slack for its hour, a route muted by a time interval tells no
one, both are audited, and everything else is still delivered."""

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from fastapi.testclient import TestClient
from pymongo import MongoClient

from schemas import topics
from services.notifier.app import create_service
from services.runtime.broker import ensure_topics
from services.runtime.settings import NotifierSettings

pytestmark = pytest.mark.integration
KEY = "notifier-key"


def routing_yaml(slack_url: str) -> str:
    return f"""
receivers:
  - name: mods
    slack: {{webhook_url: "{slack_url}"}}
time_intervals:
  - name: long-ago
    time_intervals:
      - years: ["2001"]
route:
  receiver: mods
  group_by: [community]
  group_wait: 0s
  routes:
    - matchers: ['community="quiet-{{run}}"']
      receiver: mods
      active_time_intervals: [long-ago]
"""


async def publish(bootstrap: str, incidents) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for incident in incidents:
            await producer.send_and_wait(topics.INCIDENTS, incident.to_bytes(), key=incident.incident_id.encode())
    finally:
        await producer.stop()


def test_silenced_and_muted_incidents_are_held_back_and_audited(local_stack, slack, make_incident, tmp_path):
    run = uuid.uuid4().hex[:8]
    routing = tmp_path / "routing.yaml"
    routing.write_text(routing_yaml(slack.url).replace("{run}", run))
    asyncio.run(ensure_topics(local_stack.endpoints.kafka))
    settings = NotifierSettings(kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
                                routing_file=routing, api_keys=[KEY])
    incidents = {name: make_incident(incident_id=f"{name}-{run}", community_id=f"{name}-{run}")
                 for name in ("noisy", "quiet", "fine")}
    with TestClient(create_service(settings).app) as client:
        assert client.post("/silences", json={"matchers": ['community="x"'], "duration": "1h",
                                              "created_by": "a", "comment": "c"}).status_code == 401
        created = client.post("/silences", headers={"Authorization": f"Bearer {KEY}"}, json={
            "matchers": [f'community="noisy-{run}"'], "duration": "1h", "created_by": "alice",
            "comment": "a raid, handled by hand"})
        assert created.status_code == 201, created.text
        silence = created.json()
        assert silence["state"] == "active"

        asyncio.run(publish(settings.kafka_bootstrap, incidents.values()))
        audit = MongoClient(local_stack.endpoints.mongo_uri)[settings.mongo_db]["notifier_delivery_attempts"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = {d["incident_id"]: d for d in audit.find({"incident_id": {"$in": [i.incident_id for i in incidents.values()]}})}
            if len(seen) == 3:
                break
            time.sleep(0.2)
        assert set(seen) == {i.incident_id for i in incidents.values()}, seen

    delivered = [p for p in slack.posts if any(b.get("type") == "actions" for b in p.body.get("blocks", []))]
    assert len(delivered) == 1
    rendered = json.dumps(delivered[0].body)
    assert f"fine-{run}" in rendered and f"noisy-{run}" not in rendered and f"quiet-{run}" not in rendered
    assert seen[f"noisy-{run}"]["status"] == "suppressed"
    assert silence["id"] in seen[f"noisy-{run}"]["detail"] and "alice" in seen[f"noisy-{run}"]["detail"]
    assert seen[f"quiet-{run}"]["status"] == "suppressed" and "long-ago" in seen[f"quiet-{run}"]["detail"]
    assert seen[f"fine-{run}"]["status"] == "delivered"
