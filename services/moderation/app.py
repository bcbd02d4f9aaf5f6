"""Moderation: classify every message's text, apply the community's policy, emit a verdict
per text and an incident for what needs a human."""

import asyncio
import logging

from aiokafka import ConsumerRecord
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import propagate
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from schemas import (
    ActivityKind,
    Incident,
    MemberActivity,
    ModerationVerdict,
    ModeratorFeedback,
    topics,
)
from services.moderation.feedback import FeedbackStore, IncidentArchive
from services.moderation.model.bundle import ensure_serving_bundle, load_classifier
from services.moderation.model.registry import ModelRegistry
from services.moderation.outcome import outcome
from services.moderation.policy.engine import PolicyEngine
from services.moderation.policy.load import PolicyStore
from services.runtime.broker import consumer_options
from services.runtime.records import OutgoingRecord, RecordPublisher, trace_headers
from services.runtime.service import Service
from services.runtime.settings import ModerationSettings

log = logging.getLogger("steward.moderation")

CLASSIFIED_KINDS = frozenset({ActivityKind.message_posted, ActivityKind.message_edited})
GROUP_ID = "steward-moderation"


def create_service(settings: ModerationSettings | None = None) -> Service:
    settings = settings or ModerationSettings()
    service = Service(settings, title="Steward moderation")
    archive = IncidentArchive(service.db)
    feedback = FeedbackStore(service.db)
    service.on_startup(archive.create_indexes)
    service.on_startup(feedback.create_indexes)
    broker = service.broker
    tracer = service.tracer_provider.get_tracer("steward.moderation")
    policies = PolicyEngine(PolicyStore(settings.policy_dir))
    state: dict = {}
    model_latency = Histogram(
        "steward_model_latency_seconds", "Model time per classified text (its share of the batch)",
        registry=service.registry, buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
    )
    batch_sizes = Histogram(
        "steward_model_batch_size", "Texts per model call", registry=service.registry,
        buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    )

    # Declared for the AsyncAPI document; records go out through the batched producer.
    broker.publisher(
        topics.VERDICTS, title=topics.VERDICTS, schema=ModerationVerdict,
        description="One verdict per classified text, keyed by community.",
    )
    broker.publisher(
        topics.INCIDENTS, title=topics.INCIDENTS, schema=Incident,
        description="Policy decisions that need a human, keyed by incident_id.",
    )
    outputs = RecordPublisher(settings, settings.publish_timeout_s)
    service.on_startup(outputs.start)
    service.on_shutdown(outputs.stop)

    fallbacks = Counter(
        "steward_model_fallbacks_total",
        "Texts scored by the default model because the head bundle their policy pins could not be loaded",
        ["bundle"], registry=service.registry,
    )

    @service.on_startup
    async def load_model() -> None:
        path = settings.model_dir or await asyncio.to_thread(ensure_serving_bundle, settings.model_cache)
        default = await asyncio.to_thread(load_classifier, path, scheme=settings.model_scheme,
                                          threads=settings.model_threads)
        state["models"] = ModelRegistry(default, settings.model_cache, threads=settings.model_threads,
                                        on_fallback=lambda ref: fallbacks.labels(bundle=ref).inc())
        log.info("model %s %s loaded from %s", default.name, default.version, path)

    async def parse(record: ConsumerRecord) -> MemberActivity | None:
        try:
            return MemberActivity.model_validate_json(record.value)
        except (ValidationError, UnicodeDecodeError) as error:
            # One poison record must not hold back, or dead-letter, the rest of its batch.
            await service.dead_letters.dead_letter_record(record, error, attempts=1, group=GROUP_ID)
            return None

    @broker.subscriber(
        topics.ACTIVITY, **consumer_options(settings, GROUP_ID),
        batch=True, max_records=settings.batch_max, batch_timeout_ms=settings.batch_wait_ms,
        title=f"{topics.ACTIVITY}:moderation",
        description="MemberActivity records, classified in adaptive micro-batches.",
    )
    async def on_activity(msg: KafkaMessage) -> None:
        """Classify a micro-batch: as many records as arrived within batch_wait_ms, up to
        batch_max. A failure retries the whole batch (every effect is idempotent)."""
        parsed = [(event, record) for record in msg.raw_message if (event := await parse(record))]
        for event, _ in parsed:
            policies.observe(event)
        batch = [(e, r) for e, r in parsed if e.kind in CLASSIFIED_KINDS and e.has_text]
        if not batch:
            return
        batch_sizes.observe(len(batch))
        pinned = [policies.policy_for(e.community_id).model for e, _ in batch]
        readings, models, per_text_ms = await asyncio.to_thread(
            state["models"].classify_timed, [e.text for e, _ in batch], pinned)
        await emit(batch, readings, models, per_text_ms)

    async def emit(batch: list[tuple[MemberActivity, ConsumerRecord]], readings, models,
                   per_text_ms: list[float]) -> None:
        """The batch's verdicts and incidents, archived and acknowledged."""
        records: list[OutgoingRecord] = []
        raised: list[Incident] = []
        for (event, record), reading, model, ms in zip(batch, readings, models, per_text_ms, strict=True):
            model_latency.observe(ms / 1000)
            policy = policies.policy_for(event.community_id)
            verdict, incident = outcome(
                event, reading, policies.decide(policy, event, reading.scores),
                policy_version=policy.version, model_name=model.name, model_version=model.version,
                latency_ms=ms,
            )
            # Each event keeps its own trace (from its webhook) through the batch: its
            # outputs carry a span whose parent is the record's traceparent.
            carrier = {key: value.decode(errors="replace") for key, value in record.headers or ()}
            with tracer.start_as_current_span("moderate", context=propagate.extract(carrier)):
                headers = trace_headers()
            if incident is not None:
                raised.append(incident)
                records.append(OutgoingRecord(topics.INCIDENTS, incident.to_bytes(),
                                              incident.incident_id.encode(), headers))
            records.append(OutgoingRecord(topics.VERDICTS, verdict.to_bytes(),
                                          event.community_id.encode(), headers))
        # Archived before publishing: feedback on an incident must find its evidence.
        await archive.remember_all(raised)
        await outputs.send_all(records)

    @broker.subscriber(
        topics.FEEDBACK, **consumer_options(settings, f"{GROUP_ID}-feedback"),
        title=f"{topics.FEEDBACK}:moderation",
    )
    async def on_feedback(decision: ModeratorFeedback) -> None:
        await feedback.record(decision)

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
