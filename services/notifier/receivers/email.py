"""Email: a text + HTML rendering of an incident, and an SMTP receiver (aiosmtplib)."""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from schemas.base import utc_now
from schemas.incidents import Incident
from services.notifier.receivers.base import (
    Attempts,
    Backoff,
    DeliveryFailed,
    DeliveryReceipt,
    DeliveryStatus,
    Notification,
    NotificationReason,
    Receiver,
)

__all__ = ["EVIDENCE_LIMIT", "EmailReceiver", "render_email", "render_subject"]

log = logging.getLogger(__name__)

EVIDENCE_LIMIT = 4000
"""Characters of evidence text quoted in a mail."""
INCIDENT_HEADER = "X-Steward-Incident-Id"


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_subject(notification: Notification) -> str:
    """``[Steward][HIGH] threat in <community>``, marked as a reminder or an escalation and
    counting a group's other incidents; CR/LF can never reach the header."""
    incident = notification.lead
    prefix = {NotificationReason.repeat: "[Reminder]",
              NotificationReason.escalation: f"[Escalation L{notification.escalation_level}]"}
    more = len(notification.others) + notification.not_listed
    return _one_line(
        f"[Steward]{prefix.get(notification.reason, '')}[{incident.severity.value.upper()}] "
        f"{incident.category} in {incident.community_id}" + (f" (+{more} more)" if more else ""),
        250,
    )


def _facts(incident: Incident) -> list[tuple[str, str]]:
    ev = incident.evidence
    return [
        ("Incident", incident.incident_id),
        ("Severity", incident.severity.value),
        ("Community", incident.community_id),
        ("Platform", incident.platform.value),
        ("Channel", incident.channel_id or ev.channel_id or "—"),
        ("Member", ev.member_id),
        ("Rule", incident.rule),
        ("Policy version", incident.policy_version),
        ("Model", f"{incident.model_name} {incident.model_version}"),
        ("Occurred", ev.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]


def _excerpt(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= EVIDENCE_LIMIT else text[: EVIDENCE_LIMIT - 1] + "…"


def _scores(incident: Incident) -> list[tuple[str, float]]:
    return sorted(incident.categories.items(), key=lambda kv: kv[1], reverse=True)


def _other_line(incident: Incident) -> str:
    text = _one_line(incident.evidence.text or "", 120)
    return (f"{incident.severity.value} {incident.category} by {incident.evidence.member_id}"
            + (f': "{text}"' if text else "") + f" ({incident.incident_id})")


def _render_text(notification: Notification) -> str:
    incident = notification.lead
    lines = [render_subject(notification), ""]
    width = max(len(k) for k, _ in _facts(incident))
    lines += [f"{k + ':':<{width + 1}} {_one_line(v)}" for k, v in _facts(incident)]
    if incident.categories:
        lines += ["", "Scores:"] + [f"  {name}: {score:.2f}" for name, score in _scores(incident)]
    lines += ["", "Evidence:"]
    excerpt = _excerpt(incident.evidence.text)
    lines += [f"> {line}" for line in excerpt.splitlines()] if excerpt else ["  (no text captured)"]
    if incident.evidence.permalink:
        lines += ["", f"Open the message: {incident.evidence.permalink}"]
    if notification.others:
        lines += ["", "Also in this group:"] + [f"- {_one_line(_other_line(i), 300)}" for i in notification.others]
    if notification.not_listed:
        lines += [f"- and {notification.not_listed} more"]
    lines += [
        "",
        "Acknowledge, resolve or mark as a false positive in Slack or through the Steward API.",
    ]
    return "\n".join(lines) + "\n"


def _render_html(notification: Notification) -> str:
    incident = notification.lead
    e = html.escape
    rows = "\n".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{e(k)}</th>'
        f"<td>{e(v)}</td></tr>"
        for k, v in _facts(incident)
    )
    scores = "".join(
        f"<li><code>{e(name)}</code> {score:.2f}</li>" for name, score in _scores(incident)
    )
    excerpt = _excerpt(incident.evidence.text)
    evidence = (
        '<blockquote style="border-left:3px solid #ccc;margin:0;padding-left:8px;'
        f'white-space:pre-wrap">{e(excerpt)}</blockquote>'
        if excerpt
        else "<p><em>(no text captured)</em></p>"
    )
    link = incident.evidence.permalink
    permalink = (
        f'<p><a href="{e(link, quote=True)}">Open the message</a></p>'
        if link and link.startswith(("https://", "http://"))
        else ""
    )
    heading = (
        f"{incident.severity.value.upper()} · {incident.category} in {incident.community_id}"
    )
    listed = "".join(f"<li>{e(_other_line(i))}</li>" for i in notification.others)
    if notification.not_listed:
        listed += f"<li>and {notification.not_listed} more</li>"
    others = f"<h3>Also in this group</h3><ul>{listed}</ul>" if listed else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(render_subject(notification))}</title></head>
<body style="font-family:sans-serif">
<h2>{e(heading)}</h2>
<table>
{rows}
</table>
{f"<h3>Scores</h3><ul>{scores}</ul>" if scores else ""}
<h3>Evidence</h3>
{evidence}
{permalink}
{others}
<p style="color:#666">Acknowledge, resolve or mark as a false positive in Slack or through the
Steward API.</p>
</body></html>
"""


def render_email(notification: Notification, sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A multipart/alternative message: a text part, then an HTML part (escaped)."""
    if not recipients:
        raise ValueError("an email needs at least one recipient")
    msg = EmailMessage()
    msg["Subject"] = render_subject(notification)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(utc_now())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "steward.local")
    msg[INCIDENT_HEADER] = _one_line(notification.lead.incident_id, 200)
    msg.set_content(_render_text(notification))
    msg.add_alternative(_render_html(notification), subtype="html")
    return msg


_TRANSIENT = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def _transient_code(exc: BaseException) -> int | None:
    """The SMTP reply code when it is a temporary (4xx) one, else None."""
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return max(codes) if codes and all(400 <= c < 500 for c in codes) else None
    return code if isinstance(code, int) and 400 <= code < 500 else None


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return exc.recipients[0].code
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


class EmailReceiver(Receiver):
    """Sends the incident by SMTP. STARTTLS and login happen only when configured.

    Connection errors, timeouts and 4xx replies are retried with bounded exponential
    backoff; 5xx replies (bad recipient, auth refused) fail at once. Giving up raises
    ``DeliveryFailed``. Recipients refused while others were accepted are noted in the
    receipt's detail.
    """

    kind = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        sender: str = "steward@localhost",
        recipients: Sequence[str] = (),
        *,
        name: str = "email",
        use_tls: bool = False,
        validate_certs: bool = True,
        cert_bundle: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 4,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
    ) -> None:
        if not recipients:
            raise ValueError("EmailReceiver needs at least one recipient")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = name
        self.host = host
        self.port = port
        self.username = username or None
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.validate_certs = validate_certs
        self.cert_bundle = cert_bundle
        self.sender = sender
        self.recipients = list(recipients)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff = Backoff(backoff_initial_s, backoff_max_s)

    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        message = render_email(notification, self.sender, self.recipients)
        tries = Attempts(self, notification)

        while True:
            attempts = tries.next()
            try:
                refused, reply = await aiosmtplib.send(
                    message,
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self.password if self.username else None,
                    start_tls=self.starttls,
                    use_tls=self.use_tls,
                    validate_certs=self.validate_certs,
                    cert_bundle=self.cert_bundle,
                    timeout=self.timeout_s,
                )
            except aiosmtplib.SMTPException as exc:
                tries.code = _code(exc)
                detail = f"{type(exc).__name__}: {exc}"
                if _transient_code(exc) is None and not isinstance(exc, _TRANSIENT):
                    raise DeliveryFailed(tries.receipt(DeliveryStatus.failed, detail)) from exc
            except _TRANSIENT as exc:  # socket-level: refused, reset, DNS, timeout
                tries.code = None
                detail = f"{type(exc).__name__}: {exc}"
            else:
                tries.code = 250
                detail = reply.strip()
                if refused:
                    detail += "; refused: " + ", ".join(
                        f"{addr} ({r.code} {r.message})" for addr, r in refused.items()
                    )
                return tries.receipt(DeliveryStatus.delivered, detail)
            log.warning(
                "email receiver %r attempt %d/%d failed: %s",
                self.name,
                attempts,
                self.max_attempts,
                detail,
            )
            if attempts >= self.max_attempts:
                raise DeliveryFailed(tries.receipt(DeliveryStatus.failed, f"retries exhausted: {detail}"))
            await asyncio.sleep(self.backoff.delay(attempts))
