"""Tracing and logging setup. Spans are always recorded so that the W3C traceparent
travels in Kafka headers; they are exported only when an OTLP endpoint is configured."""

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.runtime.settings import RuntimeSettings


def setup_tracing(settings: RuntimeSettings) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": f"steward-{settings.service_name}"}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)  # once per process; OpenTelemetry refuses a second
    return provider


def setup_logging(settings: RuntimeSettings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s {settings.service_name} %(levelname)s %(name)s: %(message)s",
    )


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
