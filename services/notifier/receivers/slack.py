"""Slack: a Block Kit rendering of an incident, the attempt loop Slack receivers share, and
the incoming-webhook receiver."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from abc import abstractmethod
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from schemas.feedback import FeedbackAction
from schemas.incidents import Incident, Severity
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
from services.notifier.receivers.pacing import ChannelPacer

__all__ = [
    "ACTIONS_BLOCK_ID",
    "ACTION_IDS",
    "EVIDENCE_LIMIT",
    "SECTION_TEXT_LIMIT",
    "Outcome",
    "SlackPoster",
    "SlackWebhookReceiver",
    "Verdict",
    "button_value",
    "escape_mrkdwn",
    "parse_button_value",
    "parse_retry_after",
    "render_blocks",
    "render_notification",
    "truncate_escaped",
]

log = logging.getLogger(__name__)

SECTION_TEXT_LIMIT = 3000
"""Slack's limit on a section block's text."""
HEADER_LIMIT = 150
FIELD_LIMIT = 2000
BUTTON_VALUE_LIMIT = 2000
BUTTON_URL_LIMIT = 3000
EVIDENCE_LIMIT = 2500
"""Room for the (escaped) evidence excerpt, leaving the rest of the section for its title."""
ELLIPSIS = "…"

ACTIONS_BLOCK_ID = "steward_incident_actions"
ACTION_IDS: dict[FeedbackAction, str] = {
    FeedbackAction.acknowledged: "steward_ack",
    FeedbackAction.resolved: "steward_resolve",
    FeedbackAction.false_positive: "steward_false_positive",
    FeedbackAction.escalated: "steward_escalate",
}
"""Button ``action_id`` per moderator decision; the interactivity callback maps them back."""
_BUTTONS: tuple[tuple[FeedbackAction, str, str | None], ...] = (
    (FeedbackAction.acknowledged, "Acknowledge", None),
    (FeedbackAction.resolved, "Resolve", "primary"),
    (FeedbackAction.false_positive, "False positive", None),
    (FeedbackAction.escalated, "Escalate", "danger"),
)
_EMOJI = {
    Severity.low: ":information_source:",
    Severity.medium: ":warning:",
    Severity.high: ":rotating_light:",
    Severity.critical: ":red_circle:",
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_QUOTE_ESCAPES = {**_ESCAPES, "\n": "\n>", "\r": ""}


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's control characters, so ``<!channel>`` or ``<http://x|y>`` stay text."""
    return "".join(_ESCAPES.get(c, c) for c in text)


def truncate_escaped(text: str, limit: int, escapes: dict[str, str] | None = None) -> str:
    """Escape ``text`` and cut it to at most ``limit`` characters, never inside an entity,
    ending with an ellipsis when anything was cut."""
    escapes = _ESCAPES if escapes is None else escapes
    if limit < 1:
        raise ValueError("limit must be positive")
    out: list[str] = []
    used = 0
    for ch in text:
        piece = escapes.get(ch, ch)
        if used + len(piece) > limit:
            break
        out.append(piece)
        used += len(piece)
    else:
        return "".join(out)
    # cut: make room for the ellipsis, dropping whole pieces
    while out and used + len(ELLIPSIS) > limit:
        used -= len(out.pop())
    return "".join(out) + ELLIPSIS


def _plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _is_link(url: str | None) -> bool:
    return bool(url) and url.startswith(("https://", "http://")) and len(url) <= BUTTON_URL_LIMIT


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: no auto-linking of URLs, channel names or mentions in untrusted text
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _field(title: str, value: str | None) -> dict[str, Any]:
    shown = truncate_escaped(value, 200) if value else "—"
    return _mrkdwn(f"*{title}*\n{shown}")


def button_value(incident: Incident) -> str:
    """What a decision button carries back to the interactivity callback: the incident and
    its community, which the feedback contract needs (compact JSON, within Slack's 2,000)."""
    return json.dumps({"i": incident.incident_id, "c": incident.community_id}, separators=(",", ":"))


def parse_button_value(value: str) -> tuple[str, str]:
    """``(incident_id, community_id)`` from a button's value; ``ValueError`` if it is not ours."""
    try:
        decoded = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        decoded = None
    ids = (decoded.get("i"), decoded.get("c")) if isinstance(decoded, dict) else (None, None)
    if not all(isinstance(v, str) and v for v in ids):
        raise ValueError("button value is not a Steward incident reference (incident and community ids)")
    return ids


def render_text(incident: Incident) -> str:
    """The plain notification text (push notifications, clients without blocks)."""
    sev = incident.severity.value.upper()
    return truncate_escaped(
        f"[{sev}] {incident.category} in {incident.community_id}: "
        f"rule {incident.rule} ({incident.incident_id})",
        500,
    )


def render_blocks(incident: Incident) -> dict[str, Any]:
    """A Slack message payload (``text`` fallback + Block Kit ``blocks``) for an incident."""
    sev = incident.severity
    category = incident.category
    evidence = incident.evidence
    channel = incident.channel_id or evidence.channel_id

    header = _plain(
        f"{_EMOJI[sev]} {sev.value.upper()} · {category} in {incident.community_id}", HEADER_LIMIT
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [
                _field("Community", incident.community_id),
                _field("Channel", channel),
                _field("Member", evidence.member_id),
                _field("Platform", incident.platform.value),
                _field("Rule", incident.rule),
                _field("Policy version", incident.policy_version),
                _field("Model", f"{incident.model_name} {incident.model_version}"),
                _field("Occurred", evidence.occurred_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
            ],
        },
    ]

    title = "*Evidence*\n"
    if evidence.text:
        # a block quote: every line starts with '>' (counted against the limit)
        body = ">" + truncate_escaped(evidence.text, EVIDENCE_LIMIT, _QUOTE_ESCAPES)
    else:
        body = "_(no text captured)_"
    evidence_section: dict[str, Any] = {"type": "section", "text": _mrkdwn(title + body)}
    if _is_link(evidence.permalink):
        evidence_section["accessory"] = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open message"},
            "url": evidence.permalink,
            "action_id": "steward_open_permalink",
        }
    blocks.append(evidence_section)

    if incident.categories:
        ranked = sorted(incident.categories.items(), key=lambda kv: kv[1], reverse=True)
        scores = " · ".join(f"`{name}` {score:.2f}" for name, score in ranked)
        blocks.append({"type": "section", "text": _mrkdwn(f"*Scores*\n{scores}")})

    value = button_value(incident)
    if incident.incident_id and incident.community_id and len(value) <= BUTTON_VALUE_LIMIT:
        buttons = []
        for action, label, style in _BUTTONS:
            button: dict[str, Any] = {
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "action_id": ACTION_IDS[action],
                "value": value,
            }
            if style:
                button["style"] = style
            buttons.append(button)
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": buttons})

    created = incident.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"Incident `{truncate_escaped(incident.incident_id, 200)}` · {created}")
            ],
        }
    )
    return {"text": render_text(incident), "blocks": blocks}


OTHERS_LISTED = 6
"""Other incidents of a group listed one line each under the lead incident (each line is at
most about 400 characters, so the list stays within a section's 3,000)."""


def _other_line(incident: Incident) -> str:
    excerpt = " ".join((incident.evidence.text or "").split())
    quoted = f": {truncate_escaped(excerpt, 120)}" if excerpt else ""
    return (f"• {_EMOJI[incident.severity]} *{incident.severity.value}* {truncate_escaped(incident.category, 60)} "
            f"by `{truncate_escaped(incident.evidence.member_id, 80)}`{quoted} "
            f"(`{truncate_escaped(incident.incident_id, 80)}`)")


def render_notification(notification: Notification) -> dict[str, Any]:
    """The lead incident in full (with its buttons), then one line per other listed incident,
    and a line saying why this message comes: a reminder, an escalation, a group's size."""
    payload = render_blocks(notification.lead)
    blocks = payload["blocks"]
    why: list[str] = []
    if notification.reason is NotificationReason.escalation:
        why.append(f":arrow_double_up: *Escalation, level {notification.escalation_level}*: "
                   "nobody acknowledged in time")
    elif notification.reason is NotificationReason.repeat:
        why.append(":repeat: *Reminder*: still unresolved")
    if notification.active > 1:
        why.append(f"{notification.active} active incidents in this group")
    if why:
        blocks.insert(1, {"type": "context", "elements": [_mrkdwn(" · ".join(why))]})
    others = notification.others
    if others:
        lines = [_other_line(i) for i in others[:OTHERS_LISTED]]
        more = len(others) - OTHERS_LISTED + notification.not_listed
        if more > 0:
            lines.append(f"…and {more} more")
        blocks.insert(-1, {"type": "section", "text": _mrkdwn("*Also in this group*\n" + "\n".join(lines))})
    if len(notification.incidents) > 1:
        payload["text"] = f"{payload['text']} (+{len(notification.incidents) - 1 + notification.not_listed} more)"
    return payload


def parse_retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.netloc else "<webhook>"


class Outcome(StrEnum):
    delivered = "delivered"
    rate_limited = "rate_limited"
    """Wait ``Retry-After`` (or back off), then retry."""
    transient = "transient"
    """Back off, then retry."""
    permanent = "permanent"
    """Retrying cannot help: fail at once."""


class Verdict(NamedTuple):
    """What one answer from Slack means for the delivery."""

    outcome: Outcome
    detail: str
    retry_after_s: float | None = None
    reference: str | None = None


class SlackPoster(Receiver):
    """The attempt loop every Slack receiver shares: pace, post, judge the answer, retry.

    Rate limited: waits ``Retry-After`` (at most ``retry_after_max_s``; the backoff when
    absent) and holds the pacer's key so other posts to the channel wait too. Transient
    errors and connection errors: bounded exponential backoff. Permanent errors: fail at
    once. Every retry counts against ``max_attempts``; giving up raises ``DeliveryFailed``.
    Each attempt is paced by ``pacer`` (when given) under ``pace_key``.
    """

    kind = "slack"
    pace_key: str

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        name: str = "slack",
        max_attempts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        retry_after_max_s: float = 60.0,
        timeout_s: float = 10.0,
        pacer: ChannelPacer | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = name
        self.max_attempts = max_attempts
        self.backoff = Backoff(backoff_initial_s, backoff_max_s)
        self.retry_after_max_s = retry_after_max_s
        self.timeout_s = timeout_s
        self.pacer = pacer
        self._client = client
        self._owns_client = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _paced(self) -> AbstractAsyncContextManager[None]:
        return self.pacer.slot(self.pace_key) if self.pacer is not None else nullcontext()

    @abstractmethod
    def _payload(self, notification: Notification) -> dict[str, Any]:
        """The JSON body to post."""

    @abstractmethod
    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """One POST; transport errors propagate."""

    @abstractmethod
    def _judge(self, response: httpx.Response) -> Verdict:
        """What Slack's answer means."""

    @abstractmethod
    def _target(self) -> str:
        """Where the posts go, safe to log (no secret in it)."""

    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        payload = self._payload(notification)
        tries = Attempts(self, notification)

        while True:
            attempts = tries.next()
            t0 = time.monotonic()
            try:
                async with self._paced():
                    t0 = time.monotonic()  # the post's own time, not the pacing's
                    response = await self._post(payload)
            except httpx.TransportError as exc:
                tries.code = None
                detail = f"{type(exc).__name__} posting to {self._target()}: {exc}".rstrip(": ")
                delay = self.backoff.delay(attempts)
            else:
                tries.code = response.status_code
                verdict = self._judge(response)
                detail = verdict.detail
                if verdict.outcome is Outcome.delivered:
                    return tries.receipt(DeliveryStatus.delivered, detail, verdict.reference)
                if verdict.outcome is Outcome.permanent:
                    raise DeliveryFailed(tries.receipt(DeliveryStatus.failed, detail))
                delay = self.backoff.delay(attempts)
                if verdict.outcome is Outcome.rate_limited:
                    if verdict.retry_after_s is not None:
                        delay = verdict.retry_after_s
                    delay = min(self.retry_after_max_s, delay)
                    if self.pacer is not None:
                        self.pacer.hold(self.pace_key, delay)
            log.warning(
                "slack receiver %r attempt %d/%d failed after %.0f ms: %s",
                self.name,
                attempts,
                self.max_attempts,
                (time.monotonic() - t0) * 1000,
                detail,
            )
            if attempts >= self.max_attempts:
                raise DeliveryFailed(tries.receipt(DeliveryStatus.failed, f"retries exhausted: {detail}"))
            await asyncio.sleep(delay)


class SlackWebhookReceiver(SlackPoster):
    """Posts the Block Kit message to a Slack incoming webhook.

    2xx: delivered. 429: rate limited. 5xx, 408 and connection errors: transient. Other
    4xx: permanent. Paced under the webhook's URL: a webhook posts to one channel.
    """

    def __init__(self, url: str, client: httpx.AsyncClient | None = None, **options: Any) -> None:
        super().__init__(client, **options)
        self.url = url
        self.pace_key = f"webhook:{url}"

    def _payload(self, notification: Notification) -> dict[str, Any]:
        return render_notification(notification)

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        return await self._http().post(self.url, json=payload, timeout=self.timeout_s)

    def _target(self) -> str:
        return _redact(self.url)

    def _judge(self, response: httpx.Response) -> Verdict:
        code = response.status_code
        detail = f"HTTP {code} {response.text[:200]}".strip()
        if response.is_success:
            return Verdict(Outcome.delivered, detail)
        if code == 429:
            wait = parse_retry_after(response)
            return Verdict(Outcome.rate_limited, f"rate limited (HTTP 429, Retry-After {wait})", wait)
        if code >= 500 or code == 408:
            return Verdict(Outcome.transient, detail)
        return Verdict(Outcome.permanent, detail)
