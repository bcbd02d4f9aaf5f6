"""Slack interactivity, the pure parts: a block_actions payload to ModeratorFeedback, and the
message's blocks rewritten to show the decision."""

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from schemas.feedback import FeedbackAction, FeedbackSource
from services.notifier.interactions import (
    MalformedInteraction,
    click_from_payload,
    decided_blocks,
    read_payload,
    updated_message,
)
from services.notifier.receivers.slack import (
    ACTION_IDS,
    ACTIONS_BLOCK_ID,
    button_value,
    render_blocks,
)

ACTION_TS = "1795284300.123456"  # 2026-11-21 18:05:00 UTC
WHEN = datetime(2026, 11, 21, 18, 5, 0, 123456, tzinfo=UTC)


def block_actions(incident, action_id: str = "steward_ack", **overrides) -> dict:
    """A block_actions payload as Slack sends it for a click on the incident's message."""
    message = {"type": "message", "ts": "1795370000.000100", **render_blocks(incident)}
    payload = {
        "type": "block_actions",
        "user": {"id": "U0MOD", "username": "alice", "name": "alice", "team_id": "T1"},
        "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": "C0MODS"},
        "channel": {"id": "C0MODS", "name": "mods"},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/T1/1/xyz",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": ACTIONS_BLOCK_ID,
                "value": button_value(incident),
                "action_ts": ACTION_TS,
            }
        ],
    }
    payload.update(overrides)
    return payload


def block_ids(blocks: list[dict]) -> list[str | None]:
    return [b.get("block_id") for b in blocks]


# --------------------------------------------------------------------------- payload


def test_read_payload_from_the_form_body() -> None:
    body = urlencode({"payload": json.dumps({"type": "block_actions", "x": "a&b=c"})}).encode()
    assert read_payload(body) == {"type": "block_actions", "x": "a&b=c"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"token=abc", "no payload field"),
        (urlencode({"payload": "{not json"}).encode(), "not JSON"),
        (urlencode({"payload": "[1, 2]"}).encode(), "not a JSON object"),
        (b"payload=\xff\xfe", "not UTF-8"),
    ],
)
def test_read_payload_names_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedInteraction, match=problem):
        read_payload(body)


@pytest.mark.parametrize("action", list(FeedbackAction))
def test_each_button_maps_to_its_feedback(make_incident, action: FeedbackAction) -> None:
    click = click_from_payload(block_actions(make_incident(incident_id="inc-7"), ACTION_IDS[action]))
    assert click is not None
    feedback = click.feedback
    assert (feedback.incident_id, feedback.community_id, feedback.action) == ("inc-7", "acme", action)
    assert feedback.moderator == "alice" and feedback.source is FeedbackSource.slack
    assert feedback.decided_at == WHEN
    assert click.user_id == "U0MOD"
    assert click.response_url == "https://hooks.slack.com/actions/T1/1/xyz"


def test_moderator_falls_back_to_the_user_id(make_incident) -> None:
    click = click_from_payload(block_actions(make_incident(), user={"id": "U0MOD"}))
    assert click is not None and click.feedback.moderator == "U0MOD"


def test_feedback_id_is_the_same_for_a_resent_click_only(make_incident) -> None:
    incident = make_incident()

    def feedback_id(**overrides) -> str:
        payload = block_actions(incident, **overrides)
        click = click_from_payload(json.loads(json.dumps(payload)))
        assert click is not None
        return click.feedback.feedback_id

    first = feedback_id()
    assert first == feedback_id() and first.startswith("slack-")
    assert first != feedback_id(action_id="steward_resolve")
    other_click = block_actions(incident)["actions"]
    other_click[0]["action_ts"] = "1795284301.000001"
    assert first != feedback_id(actions=other_click)
    assert first != feedback_id(container={"message_ts": "1795370001.000100", "channel_id": "C0MODS"})


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "view_submission", "view": {}},
        {"type": "shortcut"},
        {"type": "block_actions", "actions": [{"action_id": "steward_open_permalink", "action_ts": "1"}]},
        {"type": "block_actions", "actions": [{"action_id": "someone_elses_button"}]},
    ],
)
def test_payloads_that_are_not_our_buttons_are_ignored(payload: dict) -> None:
    assert click_from_payload(payload) is None


def test_malformed_clicks_say_why(make_incident) -> None:
    incident = make_incident()
    bare = block_actions(incident)
    bare["actions"][0]["value"] = "inc-0001"  # a bare id: no community
    no_ts = block_actions(incident)
    del no_ts["actions"][0]["action_ts"]
    cases = {
        "Steward incident reference": bare,
        "no user": block_actions(incident, user={}),
        "not a Slack timestamp": no_ts,
        "without an actions list": {"type": "block_actions", "actions": "steward_ack"},
    }
    for problem, payload in cases.items():
        with pytest.raises(MalformedInteraction, match=problem):
            click_from_payload(payload)


# --------------------------------------------------------------------------- blocks


def test_acknowledging_keeps_the_buttons_under_a_decision_line(make_incident) -> None:
    blocks = render_blocks(make_incident())["blocks"]
    out = decided_blocks(blocks, FeedbackAction.acknowledged, "<@U0MOD>", WHEN)
    at = block_ids(out).index(ACTIONS_BLOCK_ID)
    line = out[at - 1]
    assert line["type"] == "context"
    assert line["elements"][0]["text"] == "✅ Acknowledged by <@U0MOD> · 2026-11-21 18:05 UTC"
    assert len(out) == len(blocks) + 1 and out[-1] == blocks[-1]


@pytest.mark.parametrize(
    ("action", "text"),
    [
        (FeedbackAction.resolved, "☑️ Resolved by <@U0MOD> · 2026-11-21 18:05 UTC"),
        (FeedbackAction.false_positive, "🚫 Marked a false positive by <@U0MOD> · 2026-11-21 18:05 UTC"),
    ],
)
def test_closing_decisions_replace_the_buttons(make_incident, action, text) -> None:
    blocks = render_blocks(make_incident())["blocks"]
    out = decided_blocks(blocks, action, "<@U0MOD>", WHEN)
    assert ACTIONS_BLOCK_ID not in block_ids(out) and len(out) == len(blocks)
    at = block_ids(blocks).index(ACTIONS_BLOCK_ID)
    assert out[at]["elements"][0]["text"] == text
    assert out[:at] == blocks[:at] and out[at + 1 :] == blocks[at + 1 :]


def test_escalating_keeps_the_buttons(make_incident) -> None:
    out = decided_blocks(render_blocks(make_incident())["blocks"], FeedbackAction.escalated, "bob", WHEN)
    assert ACTIONS_BLOCK_ID in block_ids(out)
    assert any("⏫ Escalated by bob" in str(b) for b in out)


def test_decisions_accumulate_without_repeating(make_incident) -> None:
    blocks = render_blocks(make_incident())["blocks"]
    acked = decided_blocks(blocks, FeedbackAction.acknowledged, "<@U1>", WHEN)
    again = decided_blocks(acked, FeedbackAction.acknowledged, "<@U2>", WHEN)
    assert len(again) == len(acked)  # the same decision replaces its line
    assert "<@U2>" in str(again) and "<@U1>" not in str(again)
    resolved = decided_blocks(again, FeedbackAction.resolved, "<@U3>", WHEN)
    lines = [b["elements"][0]["text"] for b in resolved if str(b.get("block_id")).startswith("steward_decision")]
    assert [t.split(" by ")[0] for t in lines] == ["✅ Acknowledged", "☑️ Resolved"]
    assert ACTIONS_BLOCK_ID not in block_ids(resolved)
    # a message without buttons (already closed) still shows a later decision
    reopened = decided_blocks(resolved, FeedbackAction.escalated, "<@U4>", WHEN)
    assert reopened[-1]["block_id"] == "steward_decision_escalated"


def test_updated_message_replaces_the_original(make_incident) -> None:
    click = click_from_payload(block_actions(make_incident(), "steward_resolve"))
    assert click is not None
    body = updated_message(click)
    assert body is not None and body["replace_original"] is True
    assert body["text"].startswith("[HIGH] threat in acme") and body["text"].endswith("Resolved by alice")
    assert "☑️ Resolved by <@U0MOD> · 2026-11-21 18:05 UTC" in json.dumps(body["blocks"], ensure_ascii=False)
    assert ACTIONS_BLOCK_ID not in block_ids(body["blocks"])


def test_an_odd_user_is_named_escaped_not_mentioned(make_incident) -> None:
    payload = block_actions(make_incident(), user={"id": "<!channel>", "username": "<!here> & co"})
    click = click_from_payload(payload)
    assert click is not None
    body = updated_message(click)
    assert body is not None
    text = json.dumps(body["blocks"], ensure_ascii=False)
    assert "&lt;!here&gt; &amp; co" in text and "<!here>" not in text and "<!channel>" not in text


def test_no_update_without_the_message(make_incident) -> None:
    payload = block_actions(make_incident())
    del payload["message"]
    click = click_from_payload(payload)
    assert click is not None and updated_message(click) is None
