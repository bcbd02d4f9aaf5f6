"""Notifier service: consumes incidents and moderators' decisions, and runs the dispatcher
that groups, escalates and delivers them (``dispatcher``), plus the silences API."""

import asyncio
import contextlib
import logging
import signal

from fastapi import APIRouter, Depends, HTTPException
from faststream.kafka import KafkaMessage
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError

from schemas import Incident, ModeratorFeedback, topics
from services.notifier.delivery import Deliverer, DeliveryMetrics
from services.notifier.dispatcher import Dispatcher
from services.notifier.interactions import build_interactions_router
from services.notifier.receivers.base import DeliveryReceipt, Notification
from services.notifier.receivers.factory import build_receivers
from services.notifier.routing.config import RoutingConfigError, load_configured_routing
from services.notifier.silences.store import SilenceStore
from services.notifier.silences.views import build_silences_router
from services.notifier.state import NotificationLog
from services.runtime.auth import require_api_key
from services.runtime.broker import consumer_options
from services.runtime.deadletter import HEADER_PREFIX
from services.runtime.service import Service
from services.runtime.settings import NotifierSettings

log = logging.getLogger("steward.notifier")
ADMIT_BATCH = 500
"""Incidents admitted per batch: one round of store writes for all of them."""


class DeliveryGaveUp(Exception):
    """The reason a notification is on the incidents' dead-letter topic."""


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def create_service(settings: NotifierSettings | None = None) -> Service:
    settings = settings or NotifierSettings()
    service = Service(settings, title="Steward notifier")
    routing = load_configured_routing(settings.routing_file)
    receivers = build_receivers(routing, settings)
    notifications = NotificationLog(service.db)
    silences = SilenceStore(service.db)
    metrics = DeliveryMetrics(service.registry)

    async def dead_letter(notification: Notification, failed: DeliveryReceipt) -> None:
        headers = {
            f"{HEADER_PREFIX}error-type": DeliveryGaveUp.__name__,
            f"{HEADER_PREFIX}error-message": failed.detail[:2000],
            f"{HEADER_PREFIX}attempts": str(failed.attempts),
            f"{HEADER_PREFIX}topic": topics.INCIDENTS,
            f"{HEADER_PREFIX}group": settings.consumer_group,
            f"{HEADER_PREFIX}receiver": f"{failed.receiver}/{failed.kind}",
            f"{HEADER_PREFIX}notification": notification.key,
            f"{HEADER_PREFIX}failed-at": failed.finished_at.isoformat(),
        }
        for incident in notification.incidents:
            await service.dead_letters.publish(incident.to_bytes(), topics.INCIDENTS, incident.incident_id.encode(),
                                               headers, DeliveryGaveUp(failed.detail))

    fallback = receivers[routing.fallback_receiver] if routing.fallback_receiver else None
    deliverer = Deliverer(receivers, notifications, metrics, fallback=fallback, dead_letter=dead_letter,
                          tracer=service.tracer_provider.get_tracer("steward.notifier"))
    dispatcher = Dispatcher(service.db, routing, deliverer, notifications, silences, metrics,
                            lease=settings.lease, active_for=settings.incident_active_for, poll=settings.poll)
    service.app.state.dispatcher = dispatcher
    service.on_startup(dispatcher.create_indexes)
    service.on_startup(silences.create_indexes)
    service.app.include_router(build_silences_router(silences),
                               dependencies=[Depends(require_api_key(settings.api_keys))])

    async def publish_feedback(feedback: ModeratorFeedback) -> None:
        # Through the topic, like every decision: the notifier's own consumer applies it
        # (whichever replica owns the partition), and metrics and training data see it too.
        await service.broker.publish(feedback, topics.FEEDBACK, key=feedback.incident_id.encode())

    # Signed by Slack, not by an API key; without a signing secret every click is refused.
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    service.app.include_router(build_interactions_router(secret, publish_feedback))

    async def reload_routing() -> dict:
        """Read the routing file again; a bad one is refused and the last good one stays live.
        Running groups and escalations keep the timings and levels they started with."""
        try:
            fresh = load_configured_routing(settings.routing_file)
        except RoutingConfigError as error:
            log.error("routing reload refused, the last good config stays live: %s", error)
            raise HTTPException(400, {"error": "invalid routing config; the last good one stays live",
                                      "problems": error.problems}) from error
        old = dict(deliverer.receivers)
        deliverer.receivers = build_receivers(fresh, settings)
        chosen = deliverer.receivers[fresh.fallback_receiver] if fresh.fallback_receiver else None
        deliverer.fallback = chosen or deliverer.default_fallback
        dispatcher.routing = fresh
        log.info("routing reloaded: receivers %s", ", ".join(deliverer.receivers))

        async def close_later() -> None:  # notifications in flight still use the old ones
            await asyncio.sleep(settings.dispatch_lease_s)
            for receiver in old.values():
                await receiver.aclose()
        asyncio.get_running_loop().create_task(close_later())
        return {"status": "reloaded", "receivers": sorted(deliverer.receivers)}

    admin = APIRouter(tags=["admin"])
    admin.add_api_route("/-/reload", reload_routing, methods=["POST"],
                        summary="Reload the routing file (refused with the problems and their lines when invalid)")
    service.app.include_router(admin, dependencies=[Depends(require_api_key(settings.api_keys))])

    async def reload_on_hangup() -> None:
        with contextlib.suppress(HTTPException):
            await reload_routing()

    @service.on_startup
    async def listen_for_sighup() -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_on_hangup()))

    stop = asyncio.Event()
    running: list[asyncio.Task[None]] = []

    @service.on_startup
    async def start_dispatcher() -> None:
        stop.clear()
        running.append(asyncio.create_task(dispatcher.run(stop), name="notifier-dispatcher"))

    @service.on_shutdown
    async def stop_dispatcher() -> None:
        stop.set()  # in-flight notifications finish and are recorded before the store closes
        for task in running:
            await task
        running.clear()
        for receiver in deliverer.receivers.values():  # those of the last reload
            await receiver.aclose()

    @service.broker.subscriber(
        topics.INCIDENTS, **consumer_options(settings, settings.consumer_group), title=f"{topics.INCIDENTS}:notifier",
        description="Incidents admitted into aggregation groups and escalations, a batch at a time.",
        batch=True, max_records=ADMIT_BATCH, decoder=_undecoded,
    )
    async def on_incidents(msg: KafkaMessage) -> None:
        batch = []
        for record in msg.raw_message:
            try:
                incident = Incident.model_validate_json(record.value)
            except (ValidationError, UnicodeDecodeError) as error:
                # One poison record must not hold back, or dead-letter, the rest of its batch.
                await service.dead_letters.dead_letter_record(record, error, attempts=1, group=settings.consumer_group)
                continue
            headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
            batch.append((incident, headers.get("traceparent") or current_traceparent()))
        await dispatcher.admit_many(batch)

    @service.broker.subscriber(
        topics.FEEDBACK, **consumer_options(settings, f"{settings.consumer_group}-feedback"), title=f"{topics.FEEDBACK}:notifier"
    )
    async def on_feedback(feedback: ModeratorFeedback) -> None:
        await dispatcher.decide(feedback)

    return service


async def _undecoded(_msg) -> None:
    return None  # the handler parses each record itself


def create_app():  # uvicorn --factory entry point
    return create_service().app
