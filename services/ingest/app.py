"""Ingest's HTTP surface: verify, normalize, publish, and only then answer 2xx."""

import json
import time

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from services.ingest.platforms import MalformedPayload, WebhookSource, sources
from services.ingest.publish import ActivityPublisher, BrokerUnavailable
from services.ingest.signatures import SignatureError
from services.runtime.service import Service
from services.runtime.settings import IngestSettings


def create_service(settings: IngestSettings | None = None) -> Service:
    settings = settings or IngestSettings()
    service = Service(settings, title="Steward ingest", uses_mongo=False)
    publisher = ActivityPublisher(service.broker, settings.publish_timeout_s)
    webhooks = Counter(
        "steward_ingest_webhooks", "Webhook requests by source and outcome", ["source", "outcome"],
        registry=service.registry,
    )
    published = Counter(
        "steward_ingest_events_published", "Events acknowledged by the broker", ["source"],
        registry=service.registry,
    )

    async def accept(source: WebhookSource, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            source.verify(
                getattr(settings, source.secret_setting).get_secret_value(),
                timestamp=request.headers.get(source.timestamp_header),
                body=body,
                signature=request.headers.get(source.signature_header),
                now=time.time(),
                tolerance_s=settings.signature_tolerance_s,
            )
        except SignatureError as error:
            webhooks.labels(source.name, "bad_signature").inc()
            raise HTTPException(401, detail=f"signature rejected: {error}") from None
        try:
            normalized = source.normalize(json.loads(body))
        except json.JSONDecodeError as error:
            webhooks.labels(source.name, "malformed").inc()
            raise HTTPException(400, detail=f"body is not JSON: {error}") from None
        except MalformedPayload as error:
            webhooks.labels(source.name, "malformed").inc()
            raise HTTPException(400, detail=f"malformed {source.name} payload: {error}") from None
        if normalized.reply is not None:
            webhooks.labels(source.name, "handshake").inc()
            return JSONResponse(normalized.reply)
        if normalized.events:
            try:
                await publisher.publish(normalized.events)
            except BrokerUnavailable as error:
                webhooks.labels(source.name, "broker_unavailable").inc()
                return JSONResponse(
                    {"detail": f"broker unavailable, retry later: {error}"},
                    status_code=503,
                    headers={"Retry-After": str(settings.retry_after_s)},
                )
            published.labels(source.name).inc(len(normalized.events))
        webhooks.labels(source.name, "accepted" if normalized.events else "ignored").inc()
        return JSONResponse(
            {"accepted": len(normalized.events), "ignored": normalized.ignored},
            status_code=source.accepted_status,
        )

    def route(source: WebhookSource):
        async def endpoint(request: Request) -> JSONResponse:
            return await accept(source, request)

        return endpoint

    for source in sources():
        service.app.add_api_route(
            f"/webhooks/{source.name}", route(source), methods=["POST"], summary=source.summary,
            name=f"webhook_{source.name}",
        )
    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
