"""Ingest's HTTP surface: verify, normalize, publish, and only then answer 2xx."""

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from services.ingest.platforms import MalformedPayload, Normalized, generic, slack
from services.ingest.publish import ActivityPublisher, BrokerUnavailable
from services.ingest.signatures import SignatureError, verify_slack, verify_steward
from services.runtime.service import Service
from services.runtime.settings import IngestSettings


def create_service(settings: IngestSettings | None = None) -> Service:
    settings = settings or IngestSettings()
    service = Service(settings, title="Steward ingest", uses_mongo=False, consumes=False)
    publisher = ActivityPublisher(service.broker, settings.publish_timeout_s)
    webhooks = Counter(
        "steward_ingest_webhooks",
        "Webhook requests by source and outcome",
        ["source", "outcome"],
        registry=service.registry,
    )
    events_published = Counter(
        "steward_ingest_events_published", "Events acknowledged by the broker", ["source"],
        registry=service.registry,
    )

    async def accept(
        source: str,
        request: Request,
        verify: Callable[..., None],
        secret: str,
        headers: tuple[str, str],
        normalize: Callable[[Any], Normalized],
    ) -> JSONResponse:
        body = await request.body()
        timestamp_header, signature_header = headers
        try:
            verify(
                secret,
                timestamp=request.headers.get(timestamp_header),
                body=body,
                signature=request.headers.get(signature_header),
                now=time.time(),
                tolerance_s=settings.signature_tolerance_s,
            )
        except SignatureError as error:
            webhooks.labels(source, "bad_signature").inc()
            raise HTTPException(401, detail=f"signature rejected: {error}") from None
        try:
            normalized = normalize(json.loads(body))
        except json.JSONDecodeError as error:
            webhooks.labels(source, "malformed").inc()
            raise HTTPException(400, detail=f"body is not JSON: {error}") from None
        except MalformedPayload as error:
            webhooks.labels(source, "malformed").inc()
            raise HTTPException(400, detail=f"malformed {source} payload: {error}") from None
        if normalized.reply is not None:
            webhooks.labels(source, "handshake").inc()
            return JSONResponse(normalized.reply)
        if normalized.events:
            try:
                await publisher.publish(normalized.events)
            except BrokerUnavailable as error:
                webhooks.labels(source, "broker_unavailable").inc()
                return JSONResponse(
                    {"detail": f"broker unavailable, retry later: {error}"},
                    status_code=503,
                    headers={"Retry-After": str(settings.retry_after_s)},
                )
            events_published.labels(source).inc(len(normalized.events))
        webhooks.labels(source, "accepted" if normalized.events else "ignored").inc()
        return JSONResponse(
            {"accepted": len(normalized.events), "ignored": normalized.ignored},
            status_code=200 if source == "slack" else 202,
        )

    @service.app.post("/webhooks/slack", summary="Slack Events API")
    async def slack_events(request: Request) -> JSONResponse:
        return await accept(
            "slack", request, verify_slack, settings.slack_signing_secret.get_secret_value(),
            ("X-Slack-Request-Timestamp", "X-Slack-Signature"), slack.normalize,
        )

    @service.app.post("/webhooks/generic", summary="MemberActivity JSON signed with HMAC-SHA256")
    async def generic_events(request: Request) -> JSONResponse:
        return await accept(
            "generic", request, verify_steward, settings.generic_signing_secret.get_secret_value(),
            ("X-Steward-Timestamp", "X-Steward-Signature"), generic.normalize,
        )

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
