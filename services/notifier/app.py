"""Notifier: route each incident to its receivers, once per incident and receiver."""

import asyncio
import logging

from schemas import Incident, topics
from services.notifier.receivers.base import DeliveryFailed, Receiver
from services.notifier.receivers.factory import ReceiverGroup, build_receivers
from services.notifier.routing.config import load_configured_routing
from services.notifier.routing.tree import receivers_for
from services.notifier.state import NotificationLog
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
            for name in receivers_for(routing.route, incident.labels())
            for integration in integrations(receivers[name])
            # a redelivery, or a retry after a partial failure: skip who was told already
            if not await notifications.already_notified(incident.incident_id, name, integration.kind)
        ]
        outcomes = await asyncio.gather(*(i.deliver(incident) for i in pending), return_exceptions=True)
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
