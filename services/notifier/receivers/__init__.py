"""Receivers: where an incident is delivered (Slack, email, console)."""

from services.notifier.receivers.base import (
    Backoff,
    DeliveryFailed,
    DeliveryReceipt,
    DeliveryStatus,
    Receiver,
)
from services.notifier.receivers.console import ConsoleReceiver, render_summary
from services.notifier.receivers.email import EmailReceiver, render_email
from services.notifier.receivers.factory import (
    ReceiverGroup,
    build_receiver,
    build_receivers,
)
from services.notifier.receivers.pacing import ChannelPacer
from services.notifier.receivers.slack import (
    ACTION_IDS,
    SlackWebhookReceiver,
    render_blocks,
)
from services.notifier.receivers.slack_bot import SlackBotReceiver

__all__ = [
    "ACTION_IDS",
    "Backoff",
    "ChannelPacer",
    "ConsoleReceiver",
    "DeliveryFailed",
    "DeliveryReceipt",
    "DeliveryStatus",
    "EmailReceiver",
    "Receiver",
    "ReceiverGroup",
    "SlackBotReceiver",
    "SlackWebhookReceiver",
    "build_receiver",
    "build_receivers",
    "render_blocks",
    "render_email",
    "render_summary",
]
