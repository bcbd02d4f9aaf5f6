"""Metrics: fold activity, verdicts, incidents and feedback into KPIs; serve them."""

from __future__ import annotations

from datetime import timedelta

from aiokafka import ConsumerRecord
from fastapi import Depends
from faststream.kafka import KafkaMessage
from pydantic import ValidationError

from schemas import (
    Incident,
    MemberActivity,
    ModerationVerdict,
    ModeratorFeedback,
    topics,
)
from services.metrics.api import (
    build_rebuild_router,
    build_router,
    install_error_handlers,
)
from services.metrics.consumer import BatchFolder, Consumed
from services.metrics.gauges import KpiGauges
from services.metrics.identity.store import IdentityStore
from services.metrics.identity.views import build_identity_router
from services.metrics.incidents import record_decision, record_incident
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.reader import KpiReader
from services.metrics.rebuild import Rebuilds
from services.metrics.store import MetricsStore
from services.runtime.auth import require_api_key
from services.runtime.broker import consumer_options
from services.runtime.service import Service
from services.runtime.settings import MetricsSettings

GROUP_ID = "steward-metrics"  # one group per topic: each subscriber is its own consumer
# KPIs are not a latency path: a longer long-poll saves the CPU that idle fetches burn.
FETCH_WAIT_MS = 250


def create_service(settings: MetricsSettings | None = None) -> Service:
    settings = settings or MetricsSettings()
    service = Service(settings, title="Steward metrics")
    store = MetricsStore(service.db, facts_ttl_days=settings.facts_ttl_days)
    service.on_startup(store.create_indexes)
    reader = KpiReader(store, settings.timezone_of)
    gauges = KpiGauges(reader, service.registry, limit=settings.gauge_communities,
                       interval_s=settings.gauge_interval_s)
    service.on_startup(gauges.start)
    service.on_shutdown(gauges.stop)

    def folder(topic: str, source: str) -> BatchFolder:
        return BatchFolder(store, group=f"{GROUP_ID}-{source}", topic=topic, source=source,
                           timezone_of=settings.timezone_of,
                           dedupe_window=timedelta(hours=settings.dedupe_window_hours),
                           member_cache=settings.member_cache,
                           on_outage=lambda error: service.dead_letters.outage_waits.labels(
                               topic, type(error).__name__).inc())

    activity, verdicts = folder(topics.ACTIVITY, "activity"), folder(topics.VERDICTS, "verdicts")
    rebuilds = Rebuilds(store, settings.kafka_bootstrap, (activity, verdicts), timezone_of=settings.timezone_of,
                        dedupe_window=timedelta(hours=settings.dedupe_window_hours))
    service.on_shutdown(rebuilds.stop)
    identities = IdentityStore(service.db)
    service.on_startup(identities.create_indexes)

    async def parsed(msg: KafkaMessage, contract, to_fact, events: list | None = None) -> list[Consumed]:
        out = []
        for record in msg.raw_message:
            try:
                event = contract.model_validate_json(record.value)
            except (ValidationError, UnicodeDecodeError) as error:
                # One poison record must not hold back, or dead-letter, the rest of its batch.
                await service.dead_letters.dead_letter_record(record, error, attempts=1, group=_group(record))
                continue
            out.append(Consumed(record.partition, record.offset, to_fact(event)))
            gauges.observe(event.community_id)
            if events is not None:
                events.append(event)
        return out

    # The handlers parse each record themselves (a poison one is dead-lettered alone), so
    # FastStream's per-record decoding of the batch would be work thrown away.
    batch = {"batch": True, "max_records": settings.batch_max, "batch_timeout_ms": settings.batch_wait_ms,
             "decoder": _undecoded}

    @service.broker.subscriber(
        topics.ACTIVITY, **consumer_options(settings, f"{GROUP_ID}-activity", fetch_max_wait_ms=FETCH_WAIT_MS), **batch,
        title=f"{topics.ACTIVITY}:metrics",
        description="MemberActivity folded into counters and member states, a batch per transaction.",
    )
    async def on_activity(msg: KafkaMessage) -> None:
        events: list[MemberActivity] = []
        await activity.fold(await parsed(msg, MemberActivity, ActivityFact.of, events))
        await identities.observe(events)  # usernames and verified emails, for identity suggestions

    @service.broker.subscriber(
        topics.VERDICTS, **consumer_options(settings, f"{GROUP_ID}-verdicts", fetch_max_wait_ms=FETCH_WAIT_MS), **batch,
        title=f"{topics.VERDICTS}:metrics",
        description="ModerationVerdicts folded into safety and sentiment counters.",
    )
    async def on_verdicts(msg: KafkaMessage) -> None:
        await verdicts.fold(await parsed(msg, ModerationVerdict, VerdictFact.of))

    @service.broker.subscriber(
        topics.INCIDENTS, **consumer_options(settings, f"{GROUP_ID}-incidents", fetch_max_wait_ms=FETCH_WAIT_MS),
        title=f"{topics.INCIDENTS}:metrics",
    )
    async def on_incident(incident: Incident) -> None:
        await record_incident(store, incident)

    @service.broker.subscriber(
        topics.FEEDBACK, **consumer_options(settings, f"{GROUP_ID}-feedback", fetch_max_wait_ms=FETCH_WAIT_MS),
        title=f"{topics.FEEDBACK}:metrics",
    )
    async def on_feedback(decision: ModeratorFeedback) -> None:
        await record_decision(store, decision)

    service.app.include_router(build_router(reader, settings.api_keys))
    service.app.include_router(build_identity_router(identities, store, reader),
                               dependencies=[Depends(require_api_key(settings.api_keys))])
    service.app.include_router(build_rebuild_router(rebuilds, settings.api_keys))
    install_error_handlers(service.app)
    return service


async def _undecoded(_msg) -> None:
    return None


def _group(record: ConsumerRecord) -> str:
    return f"{GROUP_ID}-{'activity' if record.topic == topics.ACTIVITY else 'verdicts'}"


def create_app():  # uvicorn --factory entry point
    return create_service().app
