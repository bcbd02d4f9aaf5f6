"""Notifier: route each incident to its receivers, once per incident and receiver."""

import logging

from schemas import Incident, topics
from services.notifier.receivers.base import DeliveryFailed
from services.notifier.receivers.factory import build_receivers
from services.notifier.routing.config import load_default_routing, load_routing
from services.notifier.routing.tree import receivers_for
from services.notifier.state import NotificationLog
from services.runtime.broker import consumer_options
from services.runtime.service import Service
from services.runtime.settings import NotifierSettings
from services.runtime.telemetry import current_trace_id

log = logging.getLogger("steward.notifier")
GROUP_ID = "steward-notifier"


def create_service(settings: NotifierSettings | None = None) -> Service:
    settings = settings or NotifierSettings()
    service = Service(settings, title="Steward notifier")
    routing = load_routing(settings.routing_file) if settings.routing_file else load_default_routing()
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
        for name in receivers_for(routing.route, incident.labels()):
            if await notifications.already_notified(incident.incident_id, name):
                continue  # a redelivery: this receiver was told already
            try:
                receipt = await receivers[name].deliver(incident)
            except DeliveryFailed as failure:
                await notifications.record(failure.receipt, trace_id)
                raise  # the consumer wrapper retries, then dead-letters
            await notifications.record(receipt, trace_id)
            log.info("incident %s sent to %s", incident.incident_id, name)

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
