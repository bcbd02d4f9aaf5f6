"""EmailReceiver against a real SMTP server (aiosmtpd), and the whole notifier path:
routing config -> build_receivers -> real Slack stand-in + real SMTP server."""

import io

import pytest

from services.notifier.receivers import (
    ConsoleReceiver,
    DeliveryFailed,
    DeliveryStatus,
    EmailReceiver,
    ReceiverGroup,
    build_receivers,
)
from services.notifier.receivers.base import Notification
from services.notifier.routing import load_default_routing, receivers_for
from services.runtime.settings import NotifierSettings

FAST = {"max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}


def email_receiver(server, **kw) -> EmailReceiver:
    options = {
        "sender": "steward@acme.org",
        "recipients": ["mods@acme.org", "lead@acme.org"],
        "name": "mods",
        **FAST,
    }
    options.update(kw)
    return EmailReceiver(server.host, server.port, **options)


async def test_mail_arrives_with_text_and_html_parts(smtp, make_incident) -> None:
    incident = make_incident(evidence={"text": "<b>you</b> & me"})
    receipt = await email_receiver(smtp).deliver(Notification.of(incident))
    assert receipt.status is DeliveryStatus.delivered
    assert (receipt.receiver, receipt.kind, receipt.attempts, receipt.response_code) == (
        "mods",
        "email",
        1,
        250,
    )
    (got,) = smtp.received
    assert got.mail_from == "steward@acme.org"
    assert got.rcpt_tos == ["mods@acme.org", "lead@acme.org"]
    assert not got.tls and got.login is None  # STARTTLS and login only when configured
    msg = got.message
    assert msg["Subject"] == "[Steward][HIGH] threat in acme"
    assert msg["X-Steward-Incident-Id"] == "inc-0001"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "<b>you</b> & me" in text and "inc-0001" in text
    assert "&lt;b&gt;you&lt;/b&gt; &amp; me" in html and "<b>you</b>" not in html


async def test_temporary_failure_is_retried(smtp, make_incident) -> None:
    smtp.data_script.append("451 4.3.0 try again later")
    receipt = await email_receiver(smtp).deliver(Notification.of(make_incident()))
    assert receipt.ok and receipt.attempts == 2
    assert smtp.data_commands == 2 and len(smtp.received) == 1


async def test_temporary_failure_forever_exhausts(smtp, make_incident) -> None:
    smtp.data_script.extend(["451 4.3.0 busy"] * 10)
    with pytest.raises(DeliveryFailed) as info:
        await email_receiver(smtp).deliver(Notification.of(make_incident()))
    receipt = info.value.receipt
    assert receipt.status is DeliveryStatus.failed
    assert receipt.attempts == 3 and receipt.response_code == 451
    assert "retries exhausted" in receipt.detail
    assert smtp.data_commands == 3 and not smtp.received


async def test_permanent_refusal_fails_at_once(smtp, make_incident) -> None:
    smtp.rcpt_reply = "550 5.1.1 no such user"
    with pytest.raises(DeliveryFailed) as info:
        await email_receiver(smtp).deliver(Notification.of(make_incident()))
    assert info.value.receipt.attempts == 1
    assert info.value.receipt.response_code == 550
    assert not smtp.received


async def test_unreachable_server_is_retried_then_fails(closed_port, make_incident) -> None:
    receiver = EmailReceiver(
        "127.0.0.1", closed_port, sender="s@x.org", recipients=["r@x.org"], **FAST
    )
    with pytest.raises(DeliveryFailed) as info:
        await receiver.deliver(Notification.of(make_incident()))
    assert info.value.receipt.attempts == 3
    assert info.value.receipt.response_code is None


async def test_starttls_and_login(smtp_tls, tls_cert, make_incident) -> None:
    cert, _ = tls_cert
    receiver = email_receiver(
        smtp_tls, starttls=True, username="steward", password="s3cret", cert_bundle=str(cert)
    )
    receipt = await receiver.deliver(Notification.of(make_incident()))
    assert receipt.ok
    (got,) = smtp_tls.received
    assert got.tls and got.login == "steward"
    assert smtp_tls.logins == [("steward", True)]


async def test_bad_credentials_fail_at_once(smtp_tls, tls_cert, make_incident) -> None:
    cert, _ = tls_cert
    receiver = email_receiver(
        smtp_tls, starttls=True, username="steward", password="wrong", cert_bundle=str(cert)
    )
    with pytest.raises(DeliveryFailed) as info:
        await receiver.deliver(Notification.of(make_incident()))
    assert info.value.receipt.attempts == 1
    assert info.value.receipt.response_code == 535
    assert not smtp_tls.received


async def test_default_routing_end_to_end(slack, smtp, make_incident) -> None:
    settings = NotifierSettings(
        _env_file=None,
        slack_webhook_url=slack.url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        email_from="steward@acme.org",
        email_to=["mods@acme.org"],
    )
    config = load_default_routing()
    out = io.StringIO()
    receivers = build_receivers(
        config, settings, console_stream=out, slack_options=FAST, email_options=FAST
    )
    try:
        assert isinstance(receivers["moderators"], ReceiverGroup)
        assert isinstance(receivers["console"], ConsoleReceiver)

        high = make_incident(incident_id="inc-high", severity="high")
        assert receivers_for(config.route, high.labels()) == ["moderators", "console"]
        receipt = await receivers["moderators"].deliver(Notification.of(high))
        assert receipt.status is DeliveryStatus.delivered and receipt.kind == "group"
        assert sorted(p.kind for p in receipt.parts) == ["email", "slack"]
        assert all(p.ok and p.receiver == "moderators" for p in receipt.parts)
        (post,) = slack.posts
        assert post.body["text"].startswith("[HIGH] threat in acme")
        (mail,) = smtp.received
        assert mail.rcpt_tos == ["mods@acme.org"]
        assert mail.message["X-Steward-Incident-Id"] == "inc-high"

        low = make_incident(incident_id="inc-low", severity="low")
        (name,) = receivers_for(config.route, low.labels())
        assert name == "console"
        receipt = await receivers[name].deliver(Notification.of(low))
        assert receipt.ok and "inc-low" in out.getvalue()
        assert len(slack.posts) == 1 and len(smtp.received) == 1  # nothing more sent

        # Slack down: the group reports a partial delivery and says which part failed
        slack.default = (500, {}, "down")
        with pytest.raises(DeliveryFailed) as info:
            await receivers["moderators"].deliver(Notification.of(make_incident(incident_id="inc-2")))
        group = info.value.receipt
        assert group.status is DeliveryStatus.partial
        by_kind = {p.kind: p for p in group.parts}
        assert by_kind["email"].ok
        assert by_kind["slack"].status is DeliveryStatus.failed
        assert by_kind["slack"].attempts == FAST["max_attempts"]
        assert len(smtp.received) == 2
    finally:
        for receiver in receivers.values():
            await receiver.aclose()
