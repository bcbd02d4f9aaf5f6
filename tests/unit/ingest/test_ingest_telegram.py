"""Telegram adapter: Update objects as the Bot API documents them."""

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
from services.ingest.platforms.telegram import SECRET_HEADER, normalize, verify
from services.ingest.signatures import SignatureError
from services.runtime.settings import IngestSettings

SECRET = "tg-secret_token-123"
CHAT = {"id": -1001234567890, "title": "Steward Testers", "username": "stewardtesters", "type": "supergroup"}
ADA = {"id": 111111, "is_bot": False, "first_name": "Ada", "username": "ada", "language_code": "en"}
BOB = {"id": 222222, "is_bot": False, "first_name": "Bob"}


def message(**overrides) -> dict:
    fields = {"message_id": 1365, "from": ADA, "chat": CHAT, "date": 1740830400, "text": "Is the meetup on Friday?"}
    fields.update(overrides)
    return fields


def delivery(update: dict | bytes, *, token: str | None = SECRET) -> Delivery:
    raw = update if isinstance(update, bytes) else json.dumps(update).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers[SECRET_HEADER] = token
    return Delivery(raw, httpx.Headers(headers), time.time(), 300)


def run(update: dict):
    d = delivery(update)
    verify(d, SECRET)
    return normalize(json.loads(d.body), d)


def test_valid_secret_token_passes():
    verify(delivery({"update_id": 1, "message": message()}), SECRET)


@pytest.mark.parametrize("token, configured, reason", [
    ("wrong", SECRET, "does not match"),
    (None, SECRET, f"missing {SECRET_HEADER}"),
    (SECRET, "", "no signing secret"),
])
def test_bad_tokens_are_refused(token, configured, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(delivery({"update_id": 1, "message": message()}, token=token), configured)


def test_message_is_message_posted():
    [event] = run({"update_id": 900001, "message": message()}).events
    assert event.kind is ActivityKind.message_posted
    assert event.event_id == "telegram:-1001234567890:900001"
    assert (event.community_id, event.channel_id, event.member_id) == ("-1001234567890", "-1001234567890", "111111")
    assert (event.message_id, event.reply_to) == ("-1001234567890/1365", None)
    assert event.text == "Is the meetup on Friday?"
    assert event.occurred_at.isoformat() == "2025-03-01T12:00:00+00:00"
    assert event.permalink == "https://t.me/stewardtesters/1365"
    assert event.attributes["username"] == "ada"


def test_reply_points_at_the_message_it_answers():
    parent = message()
    [event] = run({"update_id": 900002, "message": message(
        message_id=1366, **{"from": BOB}, text="Yes, at 7pm", reply_to_message=parent)}).events
    assert event.reply_to == "-1001234567890/1365"
    assert event.member_id == "222222"


def test_forum_topic_is_a_channel_and_the_topic_root_is_not_a_parent():
    root = {"message_id": 50, "from": ADA, "chat": CHAT, "date": 1740830000, "message_thread_id": 50,
            "forum_topic_created": {"name": "Meetups", "icon_color": 7322096}}
    [event] = run({"update_id": 900003, "message": message(
        message_id=1400, message_thread_id=50, is_topic_message=True, reply_to_message=root)}).events
    assert event.channel_id == "-1001234567890/50"
    assert event.reply_to is None
    assert event.attributes["message_thread_id"] == 50


def test_caption_is_the_text_of_media_messages():
    fields = message(caption="our venue", photo=[{"file_id": "AgAD", "file_unique_id": "AQAD", "width": 90,
                                                   "height": 90}])
    del fields["text"]
    [event] = run({"update_id": 900005, "message": fields}).events
    assert (event.text, event.attributes["media"]) == ("our venue", "photo")


def test_edited_message():
    [event] = run({"update_id": 900006, "edited_message": message(
        text="Is the meetup on Saturday?", edit_date=1740830700)}).events
    assert event.kind is ActivityKind.message_edited
    assert (event.message_id, event.text) == ("-1001234567890/1365", "Is the meetup on Saturday?")
    assert event.occurred_at.isoformat() == "2025-03-01T12:05:00+00:00"


def test_new_chat_members_one_event_each():
    fields = message(**{"from": ADA}, new_chat_members=[BOB, {"id": 333333, "is_bot": False, "first_name": "Cy"},
                                                         {"id": 999, "is_bot": True, "first_name": "SomeBot"}])
    del fields["text"]
    events = run({"update_id": 900007, "message": fields}).events
    assert [(e.kind, e.member_id) for e in events] == [(ActivityKind.member_joined, "222222"),
                                                       (ActivityKind.member_joined, "333333")]
    assert [e.event_id for e in events] == ["telegram:-1001234567890:900007:222222",
                                            "telegram:-1001234567890:900007:333333"]
    assert events[0].attributes["added_by"] == "111111"


def test_left_chat_member():
    fields = message(**{"from": BOB}, left_chat_member=BOB)
    del fields["text"]
    [event] = run({"update_id": 900008, "message": fields}).events
    assert (event.kind, event.member_id, event.message_id) == (ActivityKind.member_left, "222222", None)


def test_message_reaction_added():
    update = {"update_id": 900009, "message_reaction": {
        "chat": CHAT, "message_id": 1365, "user": BOB, "date": 1740830460,
        "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}
    [event] = run(update).events
    assert event.kind is ActivityKind.reaction_added
    assert (event.member_id, event.message_id) == ("222222", "-1001234567890/1365")
    assert event.attributes["reaction"] == "👍"


def test_a_retried_update_has_the_same_event_id():
    update = {"update_id": 900010, "message": message()}
    assert run(update).events[0].event_id == run(update).events[0].event_id


@pytest.mark.parametrize("update, reason", [
    ({"update_id": 1, "message_reaction": {"chat": CHAT, "message_id": 1, "user": BOB, "date": 1740830460,
                                           "old_reaction": [{"type": "emoji", "emoji": "👍"}], "new_reaction": []}},
     "reaction removed"),
    ({"update_id": 2, "message": {"message_id": 7, "from": ADA, "chat": CHAT, "date": 1740830400,
                                  "pinned_message": message()}}, "service message in message"),
    ({"update_id": 3, "channel_post": {"message_id": 1, "chat": {"id": -100, "type": "channel"}, "date": 1,
                                       "text": "news"}}, "channel post (no member)"),
    ({"update_id": 4, "callback_query": {"id": "1", "from": ADA, "chat_instance": "x"}}, "update callback_query"),
    ({"update_id": 5, "message": message(**{"from": {"id": 5, "is_bot": True, "first_name": "B"}})}, "bot message"),
])
def test_ignored_updates(update, reason):
    assert run(update).ignored == reason


@pytest.mark.parametrize("update, reason", [
    ({"message": message()}, "update.update_id"),
    ({"update_id": 1}, "no content besides update_id"),
    ({"update_id": 1, "message": "hi"}, "update.message must be an object"),
    ({"update_id": 1, "message": message(chat={"title": "x"})}, "message.chat.id"),
    ({"update_id": 1, "message": message(date="today")}, "message.date"),
    ({"update_id": 1, "edited_message": message()}, "edited_message.edit_date"),
    ({"update_id": 1, "message_reaction": {"chat": CHAT, "message_id": 1, "date": 1, "old_reaction": [],
                                           "new_reaction": [{"type": "emoji", "emoji": "👍"}]}}, "neither user"),
    ([1], "must be a JSON object"),
])
def test_malformed_signed_bodies_say_why(update, reason):
    with pytest.raises(MalformedPayload, match=reason):
        run(update)


@pytest.fixture(scope="module")
def client() -> TestClient:
    connections = Connections([Connection(name="default", platform="telegram", secret=SecretStr(SECRET))], environ={})
    return TestClient(create_service(IngestSettings(kafka_bootstrap="127.0.0.1:1"), connections).app)


def test_http_bad_token_is_401_with_a_reason(client):
    response = client.post("/webhooks/telegram", json={"update_id": 1, "message": message()},
                           headers={SECRET_HEADER: "nope"})
    assert response.status_code == 401
    assert SECRET_HEADER in response.json()["detail"]


def test_http_malformed_signed_body_is_400_with_a_reason(client):
    response = client.post("/webhooks/telegram", json={"update_id": "x", "message": message()},
                           headers={SECRET_HEADER: SECRET})
    assert response.status_code == 400
    assert "update.update_id" in response.json()["detail"]
