"""Sending one notification to one routing receiver, and what happens when that fails.

Each integration of the receiver (Slack, email, ...) already retries with backoff. One that
still fails is recorded, its notification goes to the incidents' dead-letter topic (for an
operator to replay) and to the fallback receiver, so the alert still reaches a human. Every
attempt is recorded; integrations that got the notification earlier are skipped, so a
resend after a crash or a partial failure repeats nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram

from services.notifier.receivers.base import (
    DeliveryFailed,
    DeliveryReceipt,
    DeliveryStatus,
    Notification,
    NotificationReason,
    Receiver,
)
from services.notifier.receivers.console import ConsoleReceiver
from services.notifier.receivers.factory import ReceiverGroup
from services.notifier.state import NotificationLog

__all__ = ["Deliverer", "DeliveryMetrics"]

log = logging.getLogger("steward.notifier")
DeadLetter = Callable[[Notification, DeliveryReceipt], Awaitable[None]]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "steward_notifier_deliveries", "Notifications handed to an integration, by outcome",
            ["receiver", "integration", "status"], registry=registry)
        self.seconds = Histogram(
            "steward_notifier_delivery_seconds", "Time one integration took to deliver, retries included",
            ["integration"], buckets=LATENCY_BUCKETS, registry=registry)
        self.incident_to_delivery = Histogram(
            "steward_notifier_incident_to_delivery_seconds",
            "From an incident's creation to the first or update notification that delivered it",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.fallbacks = Counter(
            "steward_notifier_fallbacks", "Notifications sent to the fallback receiver after a failure",
            ["receiver"], registry=registry)
        self.suppressed = Counter(
            "steward_notifier_suppressed", "Incidents held back from a receiver, by reason",
            ["reason"], registry=registry)


def integrations(receiver: Receiver) -> list[Receiver]:
    return receiver.members if isinstance(receiver, ReceiverGroup) else [receiver]


class Deliverer:
    def __init__(
        self,
        receivers: Mapping[str, Receiver],
        notifications: NotificationLog,
        metrics: DeliveryMetrics,
        *,
        fallback: Receiver | None,
        dead_letter: DeadLetter,
        tracer: trace.Tracer | None = None,
    ) -> None:
        # The service's own provider: the process-wide one belongs to whichever service
        # was built first in this process, and would name (and export) the span as its own.
        self.tracer = tracer or trace.get_tracer("steward.notifier")
        self.receivers = receivers
        self.notifications = notifications
        self.metrics = metrics
        # The console is the last resort: it cannot fail, so an alert always lands somewhere.
        self.default_fallback = ConsoleReceiver("fallback", note="fallback after a failed delivery")
        self.fallback = fallback or self.default_fallback
        self.dead_letter = dead_letter

    async def send(self, notification: Notification, traceparent: str | None = None, *, fresh: bool = False) -> None:
        """Deliver ``notification`` to its receiver's integrations not told yet (``fresh``:
        none can have been, skip the lookup); failures go to the dead-letter topic and the
        fallback receiver. Returns once handled."""
        receiver = self.receivers.get(notification.receiver)
        parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None
        with self.tracer.start_as_current_span(f"notify {notification.receiver}", context=parent) as span:
            span.set_attribute("steward.notification", notification.key)
            span.set_attribute("steward.incident_id", notification.lead.incident_id)
            trace_id = format(span.get_span_context().trace_id, "032x")
            if receiver is None:  # removed by a config reload while this notification waited
                gone = DeliveryReceipt(
                    receiver=notification.receiver, kind="missing", incident_id=notification.lead.incident_id,
                    notification_key=notification.key, status=DeliveryStatus.failed, attempts=0,
                    detail=f"receiver {notification.receiver!r} is no longer in the routing config")
                await self.notifications.record(gone, trace_id)
                await self._fail_over(notification, gone, trace_id)
                return
            members = integrations(receiver)
            told = set() if fresh else await self.notifications.already_notified(
                notification.key, notification.receiver, [i.kind for i in members])
            pending = [i for i in members if i.kind not in told]
            receipts = await asyncio.gather(*(self._one(i, notification) for i in pending))
            await asyncio.gather(*(self.notifications.record(r, trace_id) for r in receipts))
            for receipt in receipts:
                if not receipt.ok:
                    await self._fail_over(notification, receipt, trace_id)

    async def _one(self, integration: Receiver, notification: Notification) -> DeliveryReceipt:
        started = time.perf_counter()
        try:
            receipt = await integration.deliver(notification)
        except DeliveryFailed as failed:
            receipt = failed.receipt
        except Exception as error:  # a receiver bug must not lose the alert: fail over instead
            log.exception("receiver %r crashed", integration)
            receipt = DeliveryReceipt(
                receiver=integration.name, kind=integration.kind, incident_id=notification.lead.incident_id,
                notification_key=notification.key, status=DeliveryStatus.failed, attempts=1,
                detail=f"unexpected {type(error).__name__}: {error}")
        self.metrics.seconds.labels(integration.kind).observe(time.perf_counter() - started)
        self.metrics.deliveries.labels(notification.receiver, integration.kind, receipt.status.value).inc()
        if receipt.ok and notification.reason in (NotificationReason.first, NotificationReason.update):
            first = min(i.created_at for i in notification.incidents)  # reminders would skew it
            self.metrics.incident_to_delivery.observe(max(0.0, (datetime.now(UTC) - first).total_seconds()))
        log.info("notification %s to %s (%s): %s", notification.key, notification.receiver,
                 integration.kind, receipt.status.value)
        return receipt

    async def _fail_over(self, notification: Notification, failed: DeliveryReceipt, trace_id: str) -> None:
        await self.dead_letter(notification, failed)
        self.metrics.fallbacks.labels(notification.receiver).inc()
        try:
            receipt = await self.fallback.deliver(notification)
        except Exception as error:  # noqa: BLE001 - the fallback failing too: the console still tells
            log.error("fallback %r failed too (%s); printing notification %s", self.fallback, error, notification.key)
            receipt = await ConsoleReceiver("fallback-console", note=f"fallback failed: {error}").deliver(notification)
        await self.notifications.record(receipt, trace_id, fallback_for=f"{failed.receiver}/{failed.kind}")
