"""The one place a Kafka broker is built: producer guarantees, middlewares, consumer options."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from schemas import topics
from services.runtime.deadletter import DeadLetterPolicy, RetryPolicy
from services.runtime.settings import RuntimeSettings

log = logging.getLogger("steward.broker")


def make_broker(
    settings: RuntimeSettings, *, registry: CollectorRegistry, tracer_provider: TracerProvider
) -> tuple[KafkaBroker, DeadLetterPolicy]:
    """A broker whose every publish waits for acks=all and whose every consumer
    retries, then dead-letters, under one span per event."""
    dead_letters = DeadLetterPolicy(
        RetryPolicy(
            max_attempts=settings.consumer_max_attempts,
            backoff_initial_s=settings.consumer_backoff_initial_s,
            backoff_max_s=settings.consumer_backoff_max_s,
        ),
        registry,
    )
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"steward-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=0,
        # On stop, consuming ends at once and in-flight handlers get this long to finish
        # and commit; only then are the consumers closed.
        graceful_timeout=settings.shutdown_grace_s,
        # Order matters: the first middleware is outermost, so one trace span covers all
        # attempts and Prometheus sees each attempt.
        middlewares=[
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            dead_letters,
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.service_name),
        ],
        log_level=logging.INFO,
        description=f"Steward {settings.service_name}",
    )
    dead_letters.bind(broker)
    return broker, dead_letters


def make_producer(settings: RuntimeSettings) -> AIOKafkaProducer:
    """A plain producer with the same guarantees as the broker's, for hot publish paths
    (ingest) where FastStream's per-message publish pipeline costs more than the send."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"steward-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=0,
    )


def consumer_options(settings: RuntimeSettings, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Subscriber options every consumer uses: commit after the handler (and its retries or
    dead letter) finished, start from the earliest offset a new group has not seen."""
    options: dict[str, Any] = {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.ACK,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }
    options.update(overrides)
    return options


async def ensure_topics(
    bootstrap: str, *, partitions: int = 6, contract_topics: tuple[str, ...] = topics.ALL
) -> list[str]:
    """Create each topic and its dead-letter topic; existing ones are kept. Returns the new ones."""
    names = [name for topic in contract_topics for name in (topic, topics.dead_letter(topic))]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()
