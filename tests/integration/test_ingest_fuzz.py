"""Fuzzing ingest: generated bodies and headers against every webhook route of the real app,
with a real broker behind it. Nothing a client sends may produce a 5xx, and unsigned input
must never reach the topic."""

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import topics
from services.ingest.app import create_service
from services.ingest.connections import Connection, Connections
from services.ingest.platforms import sources
from services.runtime.settings import IngestSettings

pytestmark = pytest.mark.integration
EXAMPLES = 10_000
PLATFORMS = sorted(sources())

SIGNATURE_HEADERS = [
    "X-Slack-Request-Timestamp", "X-Slack-Signature", "X-Slack-Retry-Num",
    "X-Steward-Timestamp", "X-Steward-Signature",
    "X-Signature-Ed25519", "X-Signature-Timestamp",
    "X-Discourse-Event-Signature", "X-Discourse-Event", "X-Discourse-Event-Id", "X-Discourse-Instance",
    "X-Telegram-Bot-Api-Secret-Token",
    "X-Hub-Signature-256", "X-GitHub-Event", "X-GitHub-Delivery",
    "Content-Length",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
# Shapes near the real ones reach deeper code than random bytes do.
plausible = st.fixed_dictionaries(
    {"type": st.sampled_from(["event_callback", "url_verification", "ping", 1, 2])},
    optional={"event": json_values, "team_id": json_values, "event_id": json_values, "challenge": json_values,
              "update_id": json_values, "message": json_values, "action": json_values, "post": json_values},
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible.map(lambda v: json.dumps(v).encode()),
)
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.integers(min_value=-10, max_value=2_000_000_000).map(str),
    st.just("sha256=" + "0" * 64), st.just("v0=" + "0" * 64),
)
headers = st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), header_values, max_size=6)
content_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", "", "application/x-www-form-urlencoded"])
paths = st.sampled_from(PLATFORMS).flatmap(
    lambda p: st.sampled_from([f"/webhooks/{p}", f"/webhooks/{p}/default", f"/webhooks/{p}/nope"])
)


async def topic_size(bootstrap: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topics.ACTIVITY, p) for p in consumer.partitions_for_topic(topics.ACTIVITY) or ()]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def test_no_generated_request_gets_a_5xx_or_reaches_the_topic(local_stack):
    bootstrap = local_stack.endpoints.kafka
    connections = Connections(
        [Connection(name="default", platform=p, secret=f"fuzz-secret-{p}") for p in PLATFORMS], environ={}
    )
    settings_ = IngestSettings(kafka_bootstrap=bootstrap, max_body_bytes=200)
    before = asyncio.run(topic_size(bootstrap))
    statuses: dict[int, int] = {}

    with TestClient(create_service(settings_, connections).app, raise_server_exceptions=False) as client:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(path=paths, body=bodies, extra=headers, content_type=content_types)
        def post(path, body, extra, content_type):
            request_headers = {**extra}
            if content_type:
                request_headers["Content-Type"] = content_type
            response = client.post(path, content=body, headers=request_headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (path, body, request_headers, response.text)
            assert response.status_code in {400, 401, 404, 413, 415}, (path, body, request_headers, response.text)

        post()
        exposition = client.get("/metrics").text

    assert sum(statuses.values()) >= EXAMPLES
    assert asyncio.run(topic_size(bootstrap)) == before, "unsigned input reached the topic"
    assert "\nsteward_ingest_events_published_total{" not in exposition  # no sample, only HELP
    assert {401, 404} <= set(statuses), statuses  # the generator reached the signature checks
