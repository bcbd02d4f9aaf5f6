"""Notifier: route each incident to its receivers, once per incident and receiver, unless
a silence covers it or its route is muted by a time interval (both recorded)."""

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import Depends

from schemas import Incident, topics
from services.notifier.receivers.base import DeliveryFailed, Notification, Receiver
from services.notifier.receivers.factory import ReceiverGroup, build_receivers
from services.notifier.routing.config import load_configured_routing
from services.notifier.routing.intervals import mute_reason
from services.notifier.routing.tree import match_route
from services.notifier.silences.matching import silencing
from services.notifier.silences.store import SilenceStore
from services.notifier.silences.views import build_silences_router
from services.notifier.state import NotificationLog
from services.runtime.auth import require_api_key
from services.runtime.broker import consumer_options
from services.runtime.service import Service
from services.runtime.settings import NotifierSettings
from services.runtime.telemetry import current_trace_id

log = logging.getLogger("steward.notifier")
GROUP_ID = "steward-notifier"


def integrations(receiver: Receiver) -> list[Receiver]:
    return receiver.members if isinstance(receiver, ReceiverGroup) else [receiver]


def create_service(settings: NotifierSettings | None = None) -> Service:
    settings = settings or NotifierSettings()
    service = Service(settings, title="Steward notifier")
    routing = load_configured_routing(settings.routing_file)
    receivers = build_receivers(routing, settings)
    notifications = NotificationLog(service.db)
    service.on_startup(notifications.create_indexes)
    silences = SilenceStore(service.db)
    service.on_startup(silences.create_indexes)
    service.app.include_router(build_silences_router(silences),
                               dependencies=[Depends(require_api_key(settings.api_keys))])

    async def receivers_now(incident: Incident) -> list[str]:
        """The receivers to tell now: none under a silence; none on a route muted by its time intervals."""
        labels, now = incident.labels(), datetime.now(UTC)
        silence = silencing(labels, await silences.active(now), now)
        if silence is not None:
            await notifications.suppressed(incident.incident_id, "", f"silenced by {silence.id} until "
                                           f"{silence.ends_at.isoformat()} ({silence.created_by}: {silence.comment})")
            return []
        names: list[str] = []
        for matched in match_route(routing.route, labels):
            muted = mute_reason(matched, routing.time_intervals_by_name, now)
            if muted is not None:
                await notifications.suppressed(incident.incident_id, matched.receiver, muted)
            elif matched.receiver not in names:
                names.append(matched.receiver)
        return names

    @service.on_shutdown
    async def close_receivers() -> None:
        for receiver in receivers.values():
            await receiver.aclose()

    @service.broker.subscriber(
        topics.INCIDENTS, **consumer_options(settings, GROUP_ID), title=f"{topics.INCIDENTS}:notifier"
    )
    async def on_incident(incident: Incident) -> None:
        await notifications.remember_incident(incident)
        trace_id = current_trace_id()
        pending = [
            integration
            for name in await receivers_now(incident)
            for integration in integrations(receivers[name])
            # a redelivery, or a retry after a partial failure: skip who was told already
            if not await notifications.already_notified(incident.incident_id, name, integration.kind)
        ]
        notification = Notification.of(incident)
        outcomes = await asyncio.gather(*(i.deliver(notification) for i in pending), return_exceptions=True)
        failures = []
        for integration, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, DeliveryFailed):
                failures.append(outcome)
                outcome = outcome.receipt
            elif isinstance(outcome, BaseException):
                raise outcome
            await notifications.record(outcome, trace_id)
            log.info("incident %s to %s (%s): %s", incident.incident_id, integration.name,
                     integration.kind, outcome.status.value)
        if failures:
            raise failures[0]  # the consumer wrapper retries, then dead-letters

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
