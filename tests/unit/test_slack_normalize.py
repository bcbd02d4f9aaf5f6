import pytest

from schemas import ActivityKind
from services.ingest.platforms import MalformedPayload
from services.ingest.platforms.slack import normalize


def envelope(event: dict, event_id: str = "Ev01") -> dict:
    return {"type": "event_callback", "team_id": "T1", "event_id": event_id, "event_time": 1700000000, "event": event}


def test_url_verification_answers_the_challenge():
    assert normalize({"type": "url_verification", "challenge": "abc"}).reply == {"challenge": "abc"}


def test_message_becomes_message_posted():
    [event] = normalize(
        envelope({"type": "message", "channel": "C1", "user": "U1", "text": "hi all", "ts": "1700000000.000100",
                  "channel_type": "channel"})
    ).events
    assert event.kind is ActivityKind.message_posted
    assert (event.event_id, event.community_id, event.member_id) == ("slack:T1:Ev01", "T1", "U1")
    assert event.message_id == "C1/1700000000.000100"
    assert event.reply_to is None
    assert event.text == "hi all"
    assert event.occurred_at.timestamp() == pytest.approx(1700000000.0001)
    assert event.attributes == {"channel_type": "channel"}


def test_thread_reply_points_at_its_parent():
    [event] = normalize(
        envelope({"type": "message", "channel": "C1", "user": "U2", "text": "yes", "ts": "1700000100.000200",
                  "thread_ts": "1700000000.000100"})
    ).events
    assert event.reply_to == "C1/1700000000.000100"


def test_edit_and_delete():
    [edited] = normalize(envelope({
        "type": "message", "subtype": "message_changed", "channel": "C1", "ts": "1700000200.0",
        "message": {"user": "U1", "text": "fixed typo", "ts": "1700000000.000100"},
    })).events
    assert edited.kind is ActivityKind.message_edited
    assert edited.message_id == "C1/1700000000.000100"
    assert edited.text == "fixed typo"
    [deleted] = normalize(envelope({
        "type": "message", "subtype": "message_deleted", "channel": "C1", "ts": "1700000300.0",
        "deleted_ts": "1700000000.000100", "previous_message": {"user": "U1", "text": "old", "ts": "1700000000.000100"},
    })).events
    assert deleted.kind is ActivityKind.message_deleted
    assert deleted.text is None


def test_reaction_and_membership():
    [reaction] = normalize(envelope({
        "type": "reaction_added", "user": "U3", "reaction": "tada", "event_ts": "1700000400.0",
        "item": {"type": "message", "channel": "C1", "ts": "1700000000.000100"},
    })).events
    assert reaction.kind is ActivityKind.reaction_added
    assert reaction.message_id == "C1/1700000000.000100"
    assert reaction.attributes["reaction"] == "tada"
    [joined] = normalize(envelope({"type": "team_join", "user": {"id": "U9"}, "event_ts": "1700000500.0"})).events
    assert (joined.kind, joined.member_id) == (ActivityKind.member_joined, "U9")


def test_bot_messages_and_unknown_events_are_ignored_not_errors():
    assert normalize(envelope({"type": "message", "bot_id": "B1", "text": "beep", "ts": "1.0", "channel": "C"})).ignored
    assert normalize(envelope({"type": "app_mention", "user": "U1"})).ignored == "event type app_mention"


@pytest.mark.parametrize(
    "payload, reason",
    [
        ({"type": "block_actions"}, "unsupported Slack payload type"),
        ({"type": "event_callback", "team_id": "T1"}, "needs event, team_id and event_id"),
        ({"type": "url_verification"}, "without a challenge"),
    ],
)
def test_malformed_payloads_say_why(payload, reason):
    with pytest.raises(MalformedPayload, match=reason):
        normalize(payload)
