"""Discourse adapter: payloads as Discourse's webhook serializers send them."""

import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from schemas import ActivityKind
from services.ingest.app import create_service
from services.ingest.connections import Connection, Connections
from services.ingest.platforms import Delivery, MalformedPayload
from services.ingest.platforms.discourse import normalize, sign, verify
from services.ingest.signatures import SignatureError
from services.runtime.settings import IngestSettings

SECRET = "discourse-webhook-secret"
INSTANCE = "https://forum.example.org"

EVENT_TYPES = {"post_created": "post", "post_edited": "post", "post_destroyed": "post",
               "topic_created": "topic", "user_created": "user", "ping": "ping"}


def post(**overrides) -> dict:
    fields = {
        "id": 4201, "name": "Ada Lovelace", "username": "ada", "avatar_template": "/user_avatar/forum/ada/{size}/1_2.png",
        "created_at": "2025-03-01T12:00:00.000Z", "cooked": "<p>Has anyone tried the new API?</p>",
        "post_number": 3, "post_type": 1, "updated_at": "2025-03-01T12:00:00.000Z", "reply_count": 0,
        "reply_to_post_number": 2, "quote_count": 0, "incoming_link_count": 0, "reads": 1, "score": 0,
        "topic_id": 77, "topic_slug": "api-questions", "topic_title": "API questions", "category_id": 5,
        "display_username": "Ada Lovelace", "primary_group_name": None, "flair_name": None, "version": 1,
        "user_title": None, "bookmarked": False, "raw": "Has anyone tried the new API?", "moderator": False,
        "admin": False, "staff": False, "user_id": 12, "hidden": False, "trust_level": 1, "deleted_at": None,
        "user_deleted": False, "edit_reason": None, "wiki": False, "reviewable_id": None,
        "reviewable_score_count": 0, "reviewable_score_pending_count": 0, "topic_posts_count": 3,
        "topic_filtered_posts_count": 3, "topic_archetype": "regular", "category_slug": "dev",
    }
    fields.update(overrides)
    return {"post": fields}


def user(**overrides) -> dict:
    fields = {"id": 31, "username": "grace", "name": "Grace Hopper", "avatar_template": "/letter_avatar/grace/{size}/1.png",
              "active": True, "admin": False, "moderator": False, "last_seen_at": None, "last_emailed_at": None,
              "created_at": "2025-03-02T08:30:00.000Z", "trust_level": 0, "title": None}
    fields.update(overrides)
    return {"user": fields}


def topic() -> dict:
    return {"topic": {"id": 77, "title": "API questions", "fancy_title": "API questions", "posts_count": 1,
                      "created_at": "2025-03-01T11:00:00.000Z", "views": 0, "reply_count": 0, "like_count": 0,
                      "archetype": "regular", "slug": "api-questions", "category_id": 5, "user_id": 12,
                      "created_by": {"id": 12, "username": "ada"}, "last_poster": {"id": 12, "username": "ada"},
                      "tags": []}}


def delivery(event: str, body: dict | bytes, *, event_id: str = "1001", secret: str = SECRET,
             drop: tuple[str, ...] = ()) -> Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Discourse-Instance": INSTANCE,
        "X-Discourse-Event-Id": event_id,
        "X-Discourse-Event-Type": EVENT_TYPES.get(event, "post"),
        "X-Discourse-Event": event,
        "X-Discourse-Event-Signature": sign(secret, raw),
    }
    for name in drop:
        headers.pop(name)
    return Delivery(raw, httpx.Headers(headers), time.time(), 300)


def run(event: str, body: dict, **kwargs):
    d = delivery(event, body, **kwargs)
    verify(d, SECRET)
    return normalize(json.loads(d.body), d)


# signatures

def test_valid_signature_passes():
    verify(delivery("post_created", post()), SECRET)


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "does not match"),
    ("tampered body", "does not match"),
    ("missing header", "missing X-Discourse-Event-Signature"),
    ("no secret configured", "no signing secret"),
])
def test_bad_signatures_are_refused(case, reason):
    d = delivery("post_created", post(), secret="other" if case == "wrong secret" else SECRET,
                 drop=("X-Discourse-Event-Signature",) if case == "missing header" else ())
    if case == "tampered body":
        d = Delivery(d.body.replace(b"new API", b"old API"), d.headers, d.now, d.tolerance_s)
    with pytest.raises(SignatureError, match=reason):
        verify(d, "" if case == "no secret configured" else SECRET)


# mapping

def test_post_created_is_a_reply_within_its_topic():
    [event] = run("post_created", post()).events
    assert event.kind is ActivityKind.message_posted
    assert (event.community_id, event.channel_id, event.member_id) == ("forum.example.org", "5", "12")
    assert (event.message_id, event.reply_to) == ("77#3", "77#2")
    assert event.text == "Has anyone tried the new API?"  # raw markdown, not cooked HTML
    assert event.occurred_at.isoformat() == "2025-03-01T12:00:00+00:00"
    assert event.permalink == "https://forum.example.org/t/api-questions/77/3"
    assert event.event_id.startswith("discourse:forum.example.org:post_created:post-4201:")
    assert event.attributes["username"] == "ada"
    assert event.attributes["discourse_event_id"] == "1001"


def test_first_post_is_top_level_and_carries_the_title():
    [event] = run("post_created", post(post_number=1, reply_to_post_number=None, raw="How do I start?")).events
    assert (event.message_id, event.reply_to) == ("77#1", None)
    assert event.text == "API questions\n\nHow do I start?"


def test_post_answering_the_topic_replies_to_its_first_post():
    [event] = run("post_created", post(post_number=4, reply_to_post_number=None)).events
    assert event.reply_to == "77#1"


def test_topic_created_is_ignored_so_a_new_topic_counts_once():
    assert run("topic_created", topic()).ignored.startswith("topic_created")


def test_post_edited_and_destroyed():
    [edited] = run("post_edited", post(raw="Has anyone tried the v2 API?", version=2,
                                       updated_at="2025-03-01T12:05:00.000Z")).events
    assert edited.kind is ActivityKind.message_edited
    assert (edited.message_id, edited.text) == ("77#3", "Has anyone tried the v2 API?")
    assert edited.occurred_at.isoformat() == "2025-03-01T12:05:00+00:00"
    [deleted] = run("post_destroyed", post(deleted_at="2025-03-01T13:00:00.000Z")).events
    assert deleted.kind is ActivityKind.message_deleted
    assert (deleted.message_id, deleted.text) == ("77#3", None)
    assert deleted.occurred_at.isoformat() == "2025-03-01T13:00:00+00:00"


def test_user_created_is_member_joined():
    [event] = run("user_created", user()).events
    assert event.kind is ActivityKind.member_joined
    assert (event.member_id, event.message_id) == ("31", None)
    assert event.attributes["username"] == "grace"


def test_a_retry_has_the_same_event_id_even_with_a_new_discourse_event_id():
    body = post()
    first = run("post_created", body, event_id="1001").events[0]
    assert run("post_created", body, event_id="1001").events[0].event_id == first.event_id  # admin redeliver
    # Discourse's automatic retry creates a new WebHookEvent row: new header id, same payload.
    assert run("post_created", body, event_id="1002").events[0].event_id == first.event_id


def test_two_edits_of_one_post_are_two_events():
    one = run("post_edited", post(version=2, updated_at="2025-03-01T12:05:00.000Z")).events[0]
    two = run("post_edited", post(version=3, updated_at="2025-03-01T12:09:00.000Z")).events[0]
    assert one.event_id != two.event_id


@pytest.mark.parametrize("event, body, reason", [
    ("ping", {"ping": "OK"}, "ping"),
    ("post_recovered", post(), "event post_recovered"),
    ("post_created", post(topic_archetype="private_message"), "private message"),
    ("post_created", post(post_type=3), "small action post"),
])
def test_ignored_events(event, body, reason):
    assert run(event, body).ignored == reason


@pytest.mark.parametrize("event, body, drop, reason", [
    ("post_created", {"topic": {}}, (), "without a post object"),
    ("post_created", post(topic_id="77"), (), "post.topic_id is missing or not an integer"),
    ("post_created", post(created_at="yesterday"), (), "not an ISO 8601 timestamp"),
    ("user_created", {"user": {"username": "x"}}, (), "user.id is missing"),
    ("post_created", [1, 2], (), "must be a JSON object"),
    ("post_created", post(), ("X-Discourse-Event-Id",), "missing X-Discourse-Event-Id"),
    ("post_created", post(), ("X-Discourse-Instance",), "missing X-Discourse-Instance"),
    ("post_created", post(), ("X-Discourse-Event",), "missing X-Discourse-Event header"),
])
def test_malformed_signed_bodies_say_why(event, body, drop, reason):
    d = delivery(event, body, drop=drop)
    verify(d, SECRET)
    with pytest.raises(MalformedPayload, match=reason):
        normalize(json.loads(d.body), d)


# through the HTTP app (no broker: only the refusals)

@pytest.fixture(scope="module")
def client() -> TestClient:
    connections = Connections([Connection(name="default", platform="discourse", secret=SecretStr(SECRET))], environ={})
    return TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)


def test_http_bad_signature_is_401_with_a_reason(client):
    d = delivery("post_created", post(), secret="wrong")
    response = client.post("/webhooks/discourse", content=d.body, headers=dict(d.headers))
    assert response.status_code == 401
    assert "X-Discourse-Event-Signature does not match" in response.json()["detail"]


def test_http_malformed_signed_body_is_400_with_a_reason(client):
    d = delivery("post_created", {"post": {"id": 1}})
    response = client.post("/webhooks/discourse", content=d.body, headers=dict(d.headers))
    assert response.status_code == 400
    assert "post.topic_id" in response.json()["detail"]
