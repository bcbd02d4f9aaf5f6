"""Circle goes through the generic signed source (docs/platforms/circle.md): the documented
example and signing recipe are checked here against the real generic adapter and HTTP app."""

import hashlib
import hmac
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas import ActivityKind, Platform
from services.ingest.app import create_service
from services.ingest.connections import Connection, Connections
from services.ingest.platforms import Delivery, MalformedPayload, sources
from services.ingest.platforms.generic import normalize, verify
from services.ingest.signatures import SignatureError
from services.runtime.settings import IngestSettings

SECRET = "circle-relay-secret"
DOC = Path(__file__).resolve().parents[3] / "docs" / "platforms" / "circle.md"


def documented_example() -> dict:
    match = re.search(r"<!-- circle-example -->\s*```json\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, "docs/platforms/circle.md lost its checked example"
    return json.loads(match.group(1))


def relay_signature(secret: str, timestamp: str, body: bytes) -> str:
    # Exactly the recipe of the doc's relay snippet.
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def delivery(body: bytes, *, secret: str = SECRET, timestamp: int | None = None,
             drop: tuple[str, ...] = ()) -> Delivery:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {"Content-Type": "application/json", "X-Steward-Timestamp": stamp,
               "X-Steward-Signature": relay_signature(secret, stamp, body)}
    for name in drop:
        headers.pop(name)
    return Delivery(body, httpx.Headers(headers), time.time(), 300)


def body_of(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def test_there_is_no_circle_webhook_source_on_purpose():
    assert "circle" not in sources()
    assert "generic" in sources()


def test_the_documented_example_passes_the_generic_source():
    d = delivery(body_of(documented_example()))
    verify(d, SECRET)
    [event] = normalize(json.loads(d.body), d).events
    assert (event.platform, event.kind) == (Platform.circle, ActivityKind.message_posted)
    assert (event.message_id, event.reply_to) == ("comment-9917342", "post-2235511")
    assert event.occurred_at.isoformat() == "2025-03-01T12:10:00+00:00"


def test_a_relay_retry_re_signs_but_keeps_the_event_id():
    body = body_of([documented_example()])
    first, retry = delivery(body, timestamp=int(time.time()) - 60), delivery(body)
    assert first.header("X-Steward-Signature") != retry.header("X-Steward-Signature")
    ids = []
    for d in (first, retry):
        verify(d, SECRET)
        ids.append(normalize(json.loads(d.body), d).events[0].event_id)
    assert ids[0] == ids[1] == "circle:48213:comment_created:9917342"


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "does not match"), ("stale timestamp", "outside the 300s window"),
    ("missing signature", "missing X-Steward-Signature"), ("missing timestamp", "missing request timestamp"),
])
def test_bad_signatures_are_refused(case, reason):
    d = delivery(body_of(documented_example()), secret="other" if case == "wrong secret" else SECRET,
                 timestamp=int(time.time()) - 3600 if case == "stale timestamp" else None,
                 drop={"missing signature": ("X-Steward-Signature",),
                       "missing timestamp": ("X-Steward-Timestamp",)}.get(case, ()))
    with pytest.raises(SignatureError, match=reason):
        verify(d, SECRET)


def test_a_raw_circle_style_payload_is_refused_with_a_reason():
    # What a workflow pointed straight at the endpoint would send: not a MemberActivity.
    d = delivery(body_of({"event": "comment_created", "comment": {"id": 9917342, "body": "Yes"}}))
    verify(d, SECRET)
    with pytest.raises(MalformedPayload, match="event_id: Field required"):
        normalize(json.loads(d.body), d)


@pytest.fixture(scope="module")
def client() -> TestClient:
    connections = Connections([Connection(name="circle-makers", platform="generic", secret=SecretStr(SECRET))],
                              environ={})
    return TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)


def test_http_bad_signature_is_401_with_a_reason(client):
    d = delivery(body_of(documented_example()), secret="wrong")
    response = client.post("/webhooks/generic/circle-makers", content=d.body, headers=dict(d.headers))
    assert response.status_code == 401
    assert "X-Steward-Signature does not match" in response.json()["detail"]


def test_http_malformed_signed_body_is_400_with_a_reason(client):
    d = delivery(body_of({**documented_example(), "kind": "comment_created"}))
    response = client.post("/webhooks/generic/circle-makers", content=d.body, headers=dict(d.headers))
    assert response.status_code == 400
    assert "kind" in response.json()["detail"]
