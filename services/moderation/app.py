"""Moderation: classify every message's text, apply the community's policy, emit a verdict
per text and an incident for what needs a human."""

import asyncio
import logging

from prometheus_client import Histogram

from schemas import (
    ActivityKind,
    Incident,
    MemberActivity,
    ModerationVerdict,
    topics,
)
from services.moderation.model.bundle import ensure_default_bundle
from services.moderation.model.classifier import Classifier
from services.moderation.outcome import outcome
from services.moderation.policy.evaluate import evaluate
from services.moderation.policy.load import PolicyBook
from services.runtime.broker import consumer_options
from services.runtime.service import Service
from services.runtime.settings import ModerationSettings

log = logging.getLogger("steward.moderation")

CLASSIFIED_KINDS = frozenset({ActivityKind.message_posted, ActivityKind.message_edited})
GROUP_ID = "steward-moderation"


def create_service(settings: ModerationSettings | None = None) -> Service:
    settings = settings or ModerationSettings()
    service = Service(settings, title="Steward moderation", uses_mongo=False)
    broker = service.broker
    policies = PolicyBook(settings.policy_dir)
    state: dict[str, Classifier] = {}
    model_latency = Histogram(
        "steward_model_latency_seconds", "Model time per classified text", registry=service.registry,
        buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
    )

    verdicts = broker.publisher(
        topics.VERDICTS, title=topics.VERDICTS, schema=ModerationVerdict,
        description="One verdict per classified text, keyed by community.",
    )
    incidents = broker.publisher(
        topics.INCIDENTS, title=topics.INCIDENTS, schema=Incident,
        description="Policy decisions that need a human, keyed by incident_id.",
    )

    @service.on_startup
    async def load_model() -> None:
        path = settings.model_dir or await asyncio.to_thread(ensure_default_bundle, settings.model_cache)
        state["model"] = await asyncio.to_thread(Classifier.load, path)
        log.info("model %s %s loaded from %s", state["model"].name, state["model"].version, path)

    @broker.subscriber(
        topics.ACTIVITY, **consumer_options(settings, GROUP_ID),
        title=f"{topics.ACTIVITY}:moderation",
    )
    async def on_activity(event: MemberActivity) -> None:
        if event.kind not in CLASSIFIED_KINDS or not event.has_text:
            return
        model = state["model"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        [reading] = await asyncio.to_thread(model.classify, [event.text])
        latency_s = loop.time() - started
        model_latency.observe(latency_s)

        policy = policies.for_community(event.community_id)
        verdict, incident = outcome(
            event, reading, evaluate(policy, reading.scores, event.channel_id),
            policy_version=policy.version, model_name=model.name, model_version=model.version,
            latency_ms=latency_s * 1000,
        )
        if incident is not None:
            await incidents.publish(incident.model_dump(mode="json"), key=incident.incident_id.encode())
        await verdicts.publish(verdict.model_dump(mode="json"), key=event.community_id.encode())

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
