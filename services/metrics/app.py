"""Metrics: record activity and verdicts as idempotent facts; serve KPIs."""

from schemas import MemberActivity, ModerationVerdict, topics
from services.metrics.api import build_router
from services.metrics.store import MetricsStore
from services.runtime.broker import consumer_options
from services.runtime.service import Service
from services.runtime.settings import MetricsSettings

GROUP_ID = "steward-metrics"  # one group per topic: each subscriber is its own consumer


def create_service(settings: MetricsSettings | None = None) -> Service:
    settings = settings or MetricsSettings()
    service = Service(settings, title="Steward metrics")
    store = MetricsStore(service.db)
    service.on_startup(store.create_indexes)

    @service.broker.subscriber(
        topics.ACTIVITY, **consumer_options(settings, f"{GROUP_ID}-activity"),
        title=f"{topics.ACTIVITY}:metrics",
    )
    async def on_activity(event: MemberActivity) -> None:
        await store.record_activity(event)

    @service.broker.subscriber(
        topics.VERDICTS, **consumer_options(settings, f"{GROUP_ID}-verdicts"),
        title=f"{topics.VERDICTS}:metrics",
    )
    async def on_verdict(verdict: ModerationVerdict) -> None:
        await store.record_verdict(verdict)

    service.app.include_router(build_router(store, settings.api_keys))
    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
