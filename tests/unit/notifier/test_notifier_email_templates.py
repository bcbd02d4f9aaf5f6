"""The email's text and HTML parts come from Jinja2 templates: escaping, groups, reminders,
escalations, operator overrides, and a loud failure on a template typo."""

from email.message import EmailMessage

import pytest
from jinja2 import TemplateSyntaxError, UndefinedError

from services.notifier.receivers.base import Notification, NotificationReason
from services.notifier.receivers.email import (
    EVIDENCE_LIMIT,
    HTML_TEMPLATE,
    TEXT_TEMPLATE,
    EmailReceiver,
    render_email,
)

HOSTILE = "<script>alert('x')</script> & \"quotes\" <img src=x onerror=alert(1)>"


def parts(msg: EmailMessage) -> tuple[str, str]:
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def group(make_incident, n: int, **kw) -> Notification:
    incidents = tuple(
        make_incident(incident_id=f"inc-{i:04d}", evidence={"text": f"message {i}"})
        for i in range(1, n + 1)
    )
    return Notification(key="g1", receiver="mods", incidents=incidents, active=n, **kw)


def test_hostile_evidence_is_escaped_in_html_and_verbatim_in_text(make_incident) -> None:
    lead = make_incident(evidence={"text": HOSTILE, "member_id": "<b>mallory</b>"})
    other = make_incident(incident_id="inc-0002", evidence={"text": "<i>also</i> bad"})
    notification = Notification(key="k", receiver="mods", incidents=(lead, other), active=2)
    text, html = parts(render_email(notification, "s@x.org", ["r@x.org"]))

    assert f"> {HOSTILE}" in text  # quoted, untouched
    assert "<b>mallory</b>" in text and "<i>also</i> bad" in text
    assert "<script>" not in html and "<img" not in html and "<b>mallory" not in html
    assert (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot; "
        "&lt;img src=x onerror=alert(1)&gt;" in html
    )
    assert "&lt;b&gt;mallory&lt;/b&gt;" in html
    assert "&lt;i&gt;also&lt;/i&gt; bad" in html  # the group's others are escaped too
    assert "&amp;amp;" not in html  # escaped once, not twice


def test_evidence_is_truncated_and_only_http_links_are_shown(make_incident) -> None:
    incident = make_incident(
        evidence={"text": "x" * (EVIDENCE_LIMIT + 50), "permalink": "javascript:alert(1)"}
    )
    text, html = parts(render_email(Notification.of(incident), "s@x.org", ["r@x.org"]))
    for part in (text, html):
        assert "x" * (EVIDENCE_LIMIT - 1) + "…" in part
        assert "x" * EVIDENCE_LIMIT not in part
        assert "javascript:" not in part and "Open the message" not in part


def test_group_lists_the_others_and_how_many_more(make_incident) -> None:
    notification = group(make_incident, 3, not_listed=7)
    msg = render_email(notification, "s@x.org", ["r@x.org"])
    text, html = parts(msg)

    assert msg["Subject"] == "[Steward][HIGH] threat in acme (+9 more)"
    assert "Also in this group:" in text and "<h3>Also in this group</h3>" in html
    for other in ("inc-0002", "inc-0003"):
        line = f'high threat by U123: "message {other[-1]}" ({other})'
        assert f"- {line}" in text
        assert f"<li>{line.replace(chr(34), '&quot;')}</li>" in html
    assert "- and 7 more" in text and "<li>and 7 more</li>" in html
    # the lead is the one described in the facts, not listed among the others
    assert "(inc-0001)" not in text and "(inc-0001)" not in html


def test_a_single_incident_has_no_group_section(make_incident) -> None:
    text, html = parts(render_email(Notification.of(make_incident()), "s@x.org", ["r@x.org"]))
    assert "Also in this group" not in text and "Also in this group" not in html
    assert "still unresolved" not in text and "nobody acknowledged" not in text


def test_not_listed_alone_still_says_how_many_more(make_incident) -> None:
    notification = group(make_incident, 1, not_listed=4)
    text, html = parts(render_email(notification, "s@x.org", ["r@x.org"]))
    assert "Also in this group:\n- and 4 more\n" in text
    assert "<li>and 4 more</li>" in html


def test_reminder_says_still_unresolved(make_incident) -> None:
    notification = group(make_incident, 2, reason=NotificationReason.repeat)
    msg = render_email(notification, "s@x.org", ["r@x.org"])
    text, html = parts(msg)
    assert msg["Subject"].startswith("[Steward][Reminder][HIGH]")
    assert "Reminder: still unresolved (2 active incidents in this group)." in text
    assert "still unresolved (2 active incidents in this group)." in html
    assert "nobody acknowledged" not in text + html


def test_escalation_says_the_level_and_why(make_incident) -> None:
    notification = group(
        make_incident, 1, reason=NotificationReason.escalation, escalation_level=2
    )
    msg = render_email(notification, "s@x.org", ["r@x.org"])
    text, html = parts(msg)
    assert msg["Subject"].startswith("[Steward][Escalation L2][HIGH]")
    assert "Escalation level 2: nobody acknowledged in time." in text
    assert "level 2:</strong> nobody acknowledged in time." in html
    assert "still unresolved" not in text + html


def test_footer_tells_how_to_acknowledge(make_incident) -> None:
    text, html = parts(render_email(Notification.of(make_incident()), "s@x.org", ["r@x.org"]))
    assert text.endswith(
        "\n\nAcknowledge, resolve or mark as a false positive in Slack or through the Steward API.\n"
    )
    assert "Acknowledge, resolve or mark as a false positive" in html


def test_override_template_dir_wins(tmp_path, make_incident) -> None:
    (tmp_path / TEXT_TEMPLATE).write_text("ACME {{ incident.incident_id }}: {{ excerpt }}\n")
    incident = make_incident(evidence={"text": "<b>hi</b>"})
    text, html = parts(
        render_email(Notification.of(incident), "s@x.org", ["r@x.org"], template_dir=tmp_path)
    )
    assert text == "ACME inc-0001: <b>hi</b>\n"
    # no HTML override: the built-in one is used
    assert "<h3>Evidence</h3>" in html and "&lt;b&gt;hi&lt;/b&gt;" in html

    # an overriding HTML template is autoescaped too
    both = tmp_path / "both"
    both.mkdir()
    (both / HTML_TEMPLATE).write_text("<p>ACME {{ excerpt }}</p>\n")
    _, html = parts(
        render_email(Notification.of(incident), "s@x.org", ["r@x.org"], template_dir=both)
    )
    assert html == "<p>ACME &lt;b&gt;hi&lt;/b&gt;</p>\n"


async def test_receiver_renders_with_its_template_dir(tmp_path, make_incident, monkeypatch) -> None:
    (tmp_path / TEXT_TEMPLATE).write_text("custom text for {{ incident.community_id }}\n")
    sent: list[EmailMessage] = []

    async def fake_send(message, **_kw):
        sent.append(message)
        return {}, "250 OK"

    monkeypatch.setattr("services.notifier.receivers.email.aiosmtplib.send", fake_send)
    receiver = EmailReceiver("localhost", recipients=["r@x.org"], template_dir=tmp_path)
    receipt = await receiver.deliver(Notification.of(make_incident()))
    assert receipt.ok
    (msg,) = sent
    assert parts(msg)[0] == "custom text for acme\n"


def test_receiver_rejects_a_bad_template_dir(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        EmailReceiver("localhost", recipients=["r@x.org"], template_dir=tmp_path / "missing")
    (tmp_path / HTML_TEMPLATE).write_text("{% if %}")
    with pytest.raises(TemplateSyntaxError):
        EmailReceiver("localhost", recipients=["r@x.org"], template_dir=tmp_path)


@pytest.mark.parametrize("name", [TEXT_TEMPLATE, HTML_TEMPLATE])
def test_unknown_variable_fails_loudly(tmp_path, make_incident, name) -> None:
    (tmp_path / name).write_text("Incident {{ incident.incident_id }} by {{ membr }}\n")
    with pytest.raises(UndefinedError, match="membr"):
        render_email(Notification.of(make_incident()), "s@x.org", ["r@x.org"], template_dir=tmp_path)
