"""Rendering an incident: Slack blocks, the email parts, the console summary."""

import io
import json
import re

import pytest

from schemas.feedback import FeedbackAction
from services.notifier.receivers import (
    ACTION_IDS,
    ConsoleReceiver,
    render_blocks,
    render_email,
)
from services.notifier.receivers.base import Notification
from services.notifier.receivers.console import render_summary
from services.notifier.receivers.slack import (
    EVIDENCE_LIMIT,
    SECTION_TEXT_LIMIT,
    escape_mrkdwn,
    truncate_escaped,
)

# --------------------------------------------------------------------------- slack


def _blocks_of(payload: dict, kind: str) -> list[dict]:
    return [b for b in payload["blocks"] if b["type"] == kind]


def _evidence_section(payload: dict) -> dict:
    sections = _blocks_of(payload, "section")
    (section,) = [s for s in sections if s.get("text", {}).get("text", "").startswith("*Evidence")]
    return section


def _all_text(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)


def test_header_and_fields(make_incident) -> None:
    payload = render_blocks(make_incident(severity="critical"))
    header = payload["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    assert "CRITICAL" in header["text"]["text"] and "threat" in header["text"]["text"]
    fields = " ".join(f["text"] for f in payload["blocks"][1]["fields"])
    for expected in ("acme", "C42", "U123", "threat-high", "2025-03-01", "steward-minilm 1.2.0"):
        assert expected in fields
    assert len(payload["blocks"][1]["fields"]) <= 10
    assert payload["text"].startswith("[CRITICAL] threat in acme")


def test_action_buttons_carry_the_incident_id(make_incident) -> None:
    payload = render_blocks(make_incident(incident_id="inc-xyz-42"))
    (actions,) = _blocks_of(payload, "actions")
    buttons = actions["elements"]
    assert [b["action_id"] for b in buttons] == [
        "steward_ack",
        "steward_resolve",
        "steward_false_positive",
        "steward_escalate",
    ]
    assert [b["text"]["text"] for b in buttons] == [
        "Acknowledge",
        "Resolve",
        "False positive",
        "Escalate",
    ]
    # the incident and its community: the interactivity callback needs both for the feedback
    assert all(json.loads(b["value"]) == {"i": "inc-xyz-42", "c": "acme"} for b in buttons)
    assert set(ACTION_IDS) == set(FeedbackAction)
    assert set(ACTION_IDS.values()) == {b["action_id"] for b in buttons}


def test_evidence_is_escaped_and_not_a_mention(make_incident) -> None:
    hostile = "hey <!channel> & <@U999> look <https://evil.example|click> > now"
    section = _evidence_section(render_blocks(make_incident(evidence={"text": hostile})))
    text = section["text"]["text"]
    assert "<" not in text.removeprefix("*Evidence*\n")
    assert "&lt;!channel&gt; &amp; &lt;@U999&gt;" in text
    assert "&gt; now" in text
    assert section["text"]["verbatim"] is True
    # escaping reaches every field built from untrusted values, too
    payload = render_blocks(make_incident(community_id="a<b>&c", rule="<!here>"))
    fields = " ".join(f["text"] for f in payload["blocks"][1]["fields"])
    assert "a&lt;b&gt;&amp;c" in fields and "&lt;!here&gt;" in fields
    assert "<!here>" not in _all_text(payload)


def test_multiline_evidence_is_quoted_line_by_line(make_incident) -> None:
    incident = make_incident(evidence={"text": "one\ntwo\r\nthree"})
    section = _evidence_section(render_blocks(incident))
    assert section["text"]["text"] == "*Evidence*\n>one\n>two\n>three"


def test_long_evidence_is_truncated_within_slack_limits(make_incident) -> None:
    long_text = "x" * 10_000
    text = _evidence_section(render_blocks(make_incident(evidence={"text": long_text})))["text"][
        "text"
    ]
    assert len(text) <= SECTION_TEXT_LIMIT
    assert text.endswith("…")
    assert text.count("x") == EVIDENCE_LIMIT - 1


@pytest.mark.parametrize(
    "evil", ["&" * 5000, "<>" * 3000, "a\n" * 4000, "\n" * 5000, "é&\n<" * 2000]
)
def test_truncation_survives_expanding_characters(make_incident, evil: str) -> None:
    payload = render_blocks(make_incident(evidence={"text": evil}))
    text = _evidence_section(payload)["text"]["text"]
    assert len(text) <= SECTION_TEXT_LIMIT
    assert text.endswith("…")
    body = text.removeprefix("*Evidence*\n")
    # no entity is cut in half: every '&' starts a whole entity
    assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", body)
    for block in payload["blocks"]:
        for t in [block.get("text", {})] + block.get("fields", []):
            assert len(t.get("text", "")) <= SECTION_TEXT_LIMIT


def test_truncate_escaped() -> None:
    assert truncate_escaped("a&b", 10) == "a&amp;b"
    assert truncate_escaped("abcdef", 6) == "abcdef"
    assert truncate_escaped("abcdefg", 6) == "abcde…"
    assert truncate_escaped("ab&cd", 6) == "ab…"  # "&amp;" does not fit; never half of it
    assert escape_mrkdwn("<a & b>") == "&lt;a &amp; b&gt;"


def test_permalink_button_only_for_web_links(make_incident) -> None:
    section = _evidence_section(render_blocks(make_incident()))
    assert section["accessory"]["url"] == "https://acme.slack.com/archives/C42/p1"
    assert section["accessory"]["type"] == "button"
    for link in (None, "javascript:alert(1)"):
        section = _evidence_section(render_blocks(make_incident(evidence={"permalink": link})))
        assert "accessory" not in section


def test_missing_text_and_scores(make_incident) -> None:
    payload = render_blocks(make_incident(evidence={"text": None}, categories={}))
    assert "no text captured" in _evidence_section(payload)["text"]["text"]
    assert "threat in acme" in payload["blocks"][0]["text"]["text"]  # the rule's category
    assert not any("*Scores*" in b.get("text", {}).get("text", "") for b in payload["blocks"])
    payload = render_blocks(make_incident())
    (scores,) = [b for b in payload["blocks"] if "*Scores*" in b.get("text", {}).get("text", "")]
    assert scores["text"]["text"].index("threat") < scores["text"]["text"].index("insult")
    assert "0.97" in scores["text"]["text"]


def test_header_is_cut_to_slack_limit(make_incident) -> None:
    payload = render_blocks(make_incident(community_id="c" * 400))
    assert len(payload["blocks"][0]["text"]["text"]) <= 150


# --------------------------------------------------------------------------- email


def test_email_has_text_and_html_parts(make_incident) -> None:
    msg = render_email(Notification.of(make_incident()), "steward@acme.org", ["a@acme.org", "b@acme.org"])
    assert msg["Subject"] == "[Steward][HIGH] threat in acme"
    assert msg["From"] == "steward@acme.org"
    assert msg["To"] == "a@acme.org, b@acme.org"
    assert msg["X-Steward-Incident-Id"] == "inc-0001"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        for expected in ("inc-0001", "acme", "U123", "threat-high", "0.97", "I will find you"):
            assert expected in part
    assert "https://acme.slack.com/archives/C42/p1" in text
    assert 'href="https://acme.slack.com/archives/C42/p1"' in html


def test_email_html_is_escaped(make_incident) -> None:
    incident = make_incident(
        community_id="<b>acme</b>",
        evidence={
            "text": '<script>alert("x")</script> & co',
            "permalink": 'https://x.example/"><script>',
            "member_id": "<img src=x onerror=alert(1)>",
        },
        rule="a&b",
    )
    msg = render_email(Notification.of(incident), "s@x.org", ["r@x.org"])
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html
    assert "&lt;b&gt;acme&lt;/b&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<td>a&amp;b</td>" in html
    assert 'href="https://x.example/&quot;&gt;&lt;script&gt;"' in html
    # the text part is plain, not escaped
    assert '<script>alert("x")</script> & co' in msg.get_body(("plain",)).get_content()


def test_email_subject_cannot_inject_headers(make_incident) -> None:
    msg = render_email(
        Notification.of(make_incident(community_id="acme\r\nBcc: victim@x.org", severity="critical")),
        "s@x.org",
        ["r@x.org"],
    )
    assert msg["Bcc"] is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Subject"].startswith("[Steward][CRITICAL] threat in acme")


def test_email_needs_recipients(make_incident) -> None:
    with pytest.raises(ValueError):
        render_email(Notification.of(make_incident()), "s@x.org", [])


# --------------------------------------------------------------------------- console


def test_console_summary_is_one_paragraph(make_incident) -> None:
    summary = render_summary(make_incident(evidence={"text": "line one\nline two"}))
    assert "\n" not in summary
    assert summary.startswith("[HIGH] threat (0.97) in acme #C42 (slack) by member U123:")
    assert '"line one line two"' in summary
    assert "Incident inc-0001." in summary


async def test_console_receiver_prints_and_returns_a_receipt(make_incident) -> None:
    out = io.StringIO()
    receiver = ConsoleReceiver("ops", out, note="fallback: slack not configured")
    receipt = await receiver.deliver(Notification.of(make_incident()))
    assert out.getvalue().strip() == render_summary(make_incident())
    assert receipt.ok and receipt.receiver == "ops" and receipt.kind == "console"
    assert receipt.incident_id == "inc-0001" and receipt.attempts == 1
    assert "slack not configured" in receipt.detail
