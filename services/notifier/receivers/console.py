"""Console: a one-paragraph summary on stdout and in the log, for local runs."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from schemas.base import utc_now
from schemas.incidents import Incident
from services.notifier.receivers.base import (
    DeliveryReceipt,
    DeliveryStatus,
    Notification,
    NotificationReason,
    Receiver,
)

__all__ = ["ConsoleReceiver", "render_notification", "render_summary"]

log = logging.getLogger(__name__)

EXCERPT_LIMIT = 280


def render_summary(incident: Incident) -> str:
    """One paragraph (one line) a human can read in a terminal or a log."""
    ev = incident.evidence
    category = incident.category
    score = incident.categories.get(category) if incident.categories else None
    scored = f" ({score:.2f})" if score is not None else ""
    channel = incident.channel_id or ev.channel_id
    where = f"{incident.community_id}" + (f" #{channel}" if channel else "")
    text = " ".join((ev.text or "").split())
    if len(text) > EXCERPT_LIMIT:
        text = text[: EXCERPT_LIMIT - 1] + "…"
    parts = [
        f"[{incident.severity.value.upper()}] {category}{scored} in {where} "
        f"({incident.platform.value}) by member {ev.member_id}:",
        f"rule {incident.rule}, policy {incident.policy_version}, "
        f"model {incident.model_name} {incident.model_version}.",
        f'Evidence: "{text}".' if text else "Evidence: (no text captured).",
    ]
    if ev.permalink:
        parts.append(f"Link: {ev.permalink}.")
    parts.append(f"Incident {incident.incident_id}.")
    return " ".join(parts)


def render_notification(notification: Notification) -> str:
    """One line per listed incident, after a heading line for a group or an escalation."""
    lines = [render_summary(incident) for incident in notification.incidents]
    heading = []
    if notification.reason is NotificationReason.escalation:
        heading.append(f"Escalation, level {notification.escalation_level}:")
    elif notification.reason is NotificationReason.repeat:
        heading.append("Reminder, still unresolved:")
    if notification.active > len(lines) or len(lines) > 1:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(notification.group_labels.items()))
        heading.append(f"{notification.active} active incident(s) in group {{{labels}}}"
                       + (f", {notification.not_listed} not listed" if notification.not_listed else "") + ":")
    return "\n".join([" ".join(heading), *lines] if heading else lines)


class ConsoleReceiver(Receiver):
    """Writes the summary to ``stream`` (stdout by default), and logs it at ``log_level``.

    ``note`` is appended to the detail, e.g. "slack not configured" for a fallback.
    """

    kind = "console"

    def __init__(
        self,
        name: str = "console",
        stream: TextIO | None = None,
        *,
        note: str | None = None,
        log_level: int = logging.DEBUG,
    ) -> None:
        self.name = name
        self._stream = stream
        self.note = note
        self.log_level = log_level

    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        started = utc_now()
        summary = render_notification(notification)
        stream = self._stream if self._stream is not None else sys.stdout
        print(summary, file=stream, flush=True)
        log.log(self.log_level, "notification %s: %s", notification.key, summary)
        detail = "printed to console" + (f" ({self.note})" if self.note else "")
        return DeliveryReceipt(
            receiver=self.name,
            kind=self.kind,
            incident_id=notification.lead.incident_id,
            notification_key=notification.key,
            status=DeliveryStatus.delivered,
            attempts=1,
            detail=detail,
            started_at=started,
            finished_at=utc_now(),
        )
