"""Email: a text + HTML rendering of an incident, and an SMTP receiver (aiosmtplib)."""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import os
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import aiosmtplib
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from markupsafe import Markup

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

__all__ = [
    "EVIDENCE_LIMIT",
    "EmailReceiver",
    "render_email",
    "render_parts",
    "render_subject",
    "template_context",
]

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


TEMPLATE_DIR = Path(__file__).with_name("templates")
"""The built-in templates, shipped as package data."""
TEXT_TEMPLATE = "incident_email.txt.j2"
HTML_TEMPLATE = "incident_email.html.j2"


@pass_eval_context
def _finalize(eval_ctx: EvalContext, value: object) -> object:
    """Escape every ``{{ value }}`` of an autoescaped template the way ``html.escape`` does
    (``&quot;``, ``&#x27;``) rather than markupsafe's ``&#34;``/``&#39;``, so both spellings
    of the mails stay the same; values already marked safe pass through. Text templates
    get their values untouched."""
    if eval_ctx.autoescape and not hasattr(value, "__html__"):
        return Markup(html.escape(str(value), quote=True))
    return value


@functools.lru_cache(maxsize=16)
def _environment(template_dir: str | None) -> Environment:
    """Templates from ``template_dir`` first (an operator's overrides), then the built-ins.
    HTML templates (``*.html.j2``) are autoescaped, text ones are not; an undefined name
    raises instead of rendering as an empty string."""
    loaders = [FileSystemLoader(template_dir)] if template_dir else []
    env = Environment(
        loader=ChoiceLoader([*loaders, FileSystemLoader(TEMPLATE_DIR)]),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2", "html", "htm"), default_for_string=False, default=False
        ),
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["one_line"] = _one_line
    return env


def template_context(notification: Notification) -> dict[str, object]:
    """What the email templates see."""
    incident = notification.lead
    link = incident.evidence.permalink
    return {
        "notification": notification,
        "incident": incident,
        "subject": render_subject(notification),
        "reason": notification.reason.value,
        "escalation_level": notification.escalation_level,
        "active": notification.active,
        "group_labels": dict(notification.group_labels),
        "facts": _facts(incident),
        "scores": _scores(incident),
        "excerpt": _excerpt(incident.evidence.text),
        "permalink": link if link and link.startswith(("https://", "http://")) else None,
        "others": [_other_line(i) for i in notification.others],
        "not_listed": notification.not_listed,
    }


def _template_dir(template_dir: str | os.PathLike[str] | None) -> str | None:
    return os.fspath(template_dir) if template_dir is not None else None


def render_parts(
    notification: Notification, template_dir: str | os.PathLike[str] | None = None
) -> tuple[str, str]:
    """The text and the HTML part of the email, from the templates."""
    env = _environment(_template_dir(template_dir))
    context = template_context(notification)
    return (
        env.get_template(TEXT_TEMPLATE).render(context),
        env.get_template(HTML_TEMPLATE).render(context),
    )


def render_email(
    notification: Notification,
    sender: str,
    recipients: Sequence[str],
    *,
    template_dir: str | os.PathLike[str] | None = None,
) -> EmailMessage:
    """A multipart/alternative message: a text part, then an HTML part (escaped), rendered
    from the templates (``template_dir``'s files of the same names win over the built-ins)."""
    if not recipients:
        raise ValueError("an email needs at least one recipient")
    text, html_part = render_parts(notification, template_dir)
    msg = EmailMessage()
    msg["Subject"] = render_subject(notification)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(utc_now())
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "steward.local")
    msg[INCIDENT_HEADER] = _one_line(notification.lead.incident_id, 200)
    msg.set_content(text)
    msg.add_alternative(html_part, subtype="html")
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
    receipt's detail. ``template_dir`` names a directory whose ``incident_email.txt.j2`` /
    ``incident_email.html.j2`` replace the built-in templates.
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
        template_dir: str | os.PathLike[str] | None = None,
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
        self.template_dir = _template_dir(template_dir)
        if self.template_dir is not None:
            if not os.path.isdir(self.template_dir):
                raise ValueError(f"template_dir {self.template_dir!r} is not a directory")
            env = _environment(self.template_dir)
            for template in (TEXT_TEMPLATE, HTML_TEMPLATE):
                env.get_template(template)  # a syntax error shows at start, not at the first incident

    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        message = render_email(
            notification, self.sender, self.recipients, template_dir=self.template_dir
        )
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
