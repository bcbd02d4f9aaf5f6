"""Building the receivers a routing config names, from the config and the settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import httpx

from schemas.base import utc_now
from services.notifier.receivers.base import (
    DeliveryFailed,
    DeliveryReceipt,
    DeliveryStatus,
    Notification,
    Receiver,
)
from services.notifier.receivers.console import ConsoleReceiver
from services.notifier.receivers.email import EmailReceiver
from services.notifier.receivers.pacing import ChannelPacer
from services.notifier.receivers.slack import SlackWebhookReceiver
from services.notifier.receivers.slack_bot import SlackBotReceiver
from services.notifier.routing.config import ReceiverConfig, RoutingConfig
from services.runtime.settings import NotifierSettings

__all__ = ["ReceiverGroup", "build_receiver", "build_receivers"]

log = logging.getLogger(__name__)


class ReceiverGroup(Receiver):
    """A routing receiver with several integrations (say Slack and email), delivered
    concurrently. Its receipt has one part per integration; unless every part was
    delivered it raises ``DeliveryFailed`` whose receipt is ``partial`` or ``failed``."""

    kind = "group"

    def __init__(self, name: str, members: Sequence[Receiver]) -> None:
        if not members:
            raise ValueError("a receiver group needs members")
        self.name = name
        self.members = list(members)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()

    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        incident = notification.lead
        started = utc_now()
        results = await asyncio.gather(
            *(m.deliver(notification) for m in self.members), return_exceptions=True
        )
        parts: list[DeliveryReceipt] = []
        for member, result in zip(self.members, results, strict=True):
            if isinstance(result, DeliveryReceipt):
                parts.append(result)
            elif isinstance(result, DeliveryFailed):
                parts.append(result.receipt)
            elif isinstance(result, Exception):
                log.exception("receiver %r crashed", member, exc_info=result)
                parts.append(
                    DeliveryReceipt(
                        receiver=member.name,
                        kind=member.kind,
                        incident_id=incident.incident_id,
                        notification_key=notification.key,
                        status=DeliveryStatus.failed,
                        attempts=1,
                        detail=f"unexpected {type(result).__name__}: {result}",
                        started_at=started,
                    )
                )
            else:  # CancelledError and friends
                raise result
        delivered = sum(p.ok for p in parts)
        status = (
            DeliveryStatus.delivered
            if delivered == len(parts)
            else DeliveryStatus.partial
            if delivered
            else DeliveryStatus.failed
        )
        receipt = DeliveryReceipt(
            receiver=self.name,
            kind=self.kind,
            incident_id=incident.incident_id,
            notification_key=notification.key,
            status=status,
            attempts=max(p.attempts for p in parts),
            detail="; ".join(f"{p.kind}: {p.status.value}" for p in parts),
            parts=tuple(parts),
            started_at=started,
            finished_at=utc_now(),
        )
        if status is not DeliveryStatus.delivered:
            raise DeliveryFailed(receipt)
        return receipt


def build_receiver(
    config: ReceiverConfig,
    settings: NotifierSettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    console_stream: TextIO | None = None,
    slack_options: Mapping[str, Any] | None = None,
    email_options: Mapping[str, Any] | None = None,
    pacer: ChannelPacer | None = None,
) -> Receiver:
    """One receiver for one ``receivers:`` entry.

    Slack with a ``channel`` posts with the bot token (``slack_bot_token``), else to the
    webhook (the entry's or ``slack_webhook_url``). Slack without its token or URL, and email
    without ``smtp_host`` or recipients, are left out with a warning; an entry left with
    nothing falls back to the console, so an incident is never silently dropped. Slack posts
    are spaced per channel by ``pacer`` (a new one from the settings when not given).
    """
    members: list[Receiver] = []
    missing: list[str] = []
    if config.console is not None:
        members.append(ConsoleReceiver(config.name, console_stream))
    if config.slack is not None:
        options = {
            "name": config.name,
            "pacer": pacer if pacer is not None else ChannelPacer(settings.slack_channel_interval_s),
            **(slack_options or {}),
        }
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
        url = config.slack.webhook_url or settings.slack_webhook_url
        if config.slack.channel and token:
            members.append(
                SlackBotReceiver(
                    token, config.slack.channel, http_client, api_url=settings.slack_api_url, **options
                )
            )
        elif config.slack.channel:
            missing.append("slack (a channel but no bot token)")
        elif url:
            members.append(SlackWebhookReceiver(url, http_client, **options))
        else:
            missing.append("slack (no webhook URL)")
    if config.email is not None:
        recipients = config.email.to or settings.email_to
        if settings.smtp_host and recipients:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
            members.append(
                EmailReceiver(
                    settings.smtp_host,
                    settings.smtp_port,
                    settings.smtp_username,
                    password,
                    settings.smtp_starttls,
                    settings.email_from,
                    recipients,
                    name=config.name,
                    **(email_options or {}),
                )
            )
        else:
            why = "no recipients" if settings.smtp_host else "no smtp_host"
            missing.append(f"email ({why})")
    if not members:
        note = "fallback: " + ", ".join(missing) + " not configured"
        log.warning("receiver %r: %s; using the console", config.name, note)
        return ConsoleReceiver(config.name, console_stream, note=note)
    if missing:
        log.warning("receiver %r: left out %s: not configured", config.name, ", ".join(missing))
    return members[0] if len(members) == 1 else ReceiverGroup(config.name, members)


def build_receivers(
    config: RoutingConfig,
    settings: NotifierSettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    console_stream: TextIO | None = None,
    slack_options: Mapping[str, Any] | None = None,
    email_options: Mapping[str, Any] | None = None,
) -> dict[str, Receiver]:
    """Every receiver of the routing config, by name. ``slack_options`` / ``email_options``
    pass retry and timeout keywords through to the receivers (``max_attempts``,
    ``backoff_initial_s``, ``backoff_max_s``, ``timeout_s``, ...). Every Slack receiver
    shares one pacer, so two receivers posting to one channel still space their posts."""
    pacer = ChannelPacer(settings.slack_channel_interval_s)
    return {
        rc.name: build_receiver(
            rc,
            settings,
            http_client=http_client,
            console_stream=console_stream,
            slack_options=slack_options,
            email_options=email_options,
            pacer=pacer,
        )
        for rc in config.receivers
    }
