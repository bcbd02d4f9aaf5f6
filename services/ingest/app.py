"""Ingest's HTTP surface: verify, normalize, publish, and only then answer 2xx.

Every answer to a client's mistake is a 4xx that says why; nothing a client sends can
produce a 5xx. 503 means the broker did not acknowledge, and comes with Retry-After.
"""

import json
import time

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from schemas import MemberActivity, topics
from services.ingest.connections import DEFAULT, Connections
from services.ingest.platforms import Delivery, MalformedPayload, sources
from services.ingest.publish import ActivityPublisher, BrokerUnavailable
from services.ingest.recent import RecentEvents
from services.ingest.signatures import SignatureError
from services.runtime.service import Service
from services.runtime.settings import IngestSettings


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (a lying Content-Length too)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def create_service(settings: IngestSettings | None = None, connections: Connections | None = None) -> Service:
    settings = settings or IngestSettings()
    service = Service(settings, title="Steward ingest", uses_mongo=False)
    platforms = sources()
    connections = connections or Connections.load(
        settings.connections_file, list(platforms),
        defaults={"slack": settings.slack_signing_secret, "generic": settings.generic_signing_secret},
    )
    publisher = ActivityPublisher(settings, settings.publish_timeout_s)
    # Declared for the AsyncAPI document; records go through the leaner producer above.
    service.broker.publisher(
        topics.ACTIVITY, title=topics.ACTIVITY, schema=MemberActivity,
        description="Normalized member activity, keyed by community and member.",
    )

    service.on_startup(publisher.start)
    service.on_shutdown(publisher.stop)
    recent = RecentEvents(settings.recent_event_ids)
    webhooks = Counter(
        "steward_ingest_webhooks", "Webhook deliveries by platform and outcome", ["platform", "outcome"],
        registry=service.registry,
    )
    published = Counter(
        "steward_ingest_events_published", "Events acknowledged by the broker", ["platform"],
        registry=service.registry,
    )

    def refuse(platform: str, outcome: str, status: int, detail: str) -> HTTPException:
        webhooks.labels(platform, outcome).inc()
        return HTTPException(status, detail=detail)

    async def accept(platform: str, connection_name: str, request: Request) -> JSONResponse:
        source = platforms.get(platform)
        if source is None:
            raise refuse("unknown", "unknown_connection", 404, f"no platform named {platform!r}")
        connection = connections.get(platform, connection_name)
        if connection is None:
            raise refuse(platform, "unknown_connection", 404, f"no {platform} connection named {connection_name!r}")
        if not is_json(request.headers.get("content-type")):
            raise refuse(platform, "invalid", 415, "Content-Type must be application/json")
        try:
            body = await read_body(request, settings.max_body_bytes)
        except TooLarge:
            raise refuse(platform, "too_large", 413, f"body exceeds {settings.max_body_bytes} bytes") from None
        delivery = Delivery(body, request.headers, time.time(), settings.signature_tolerance_s)
        try:
            source.verify(delivery, connection.secret.get_secret_value())
        except SignatureError as error:
            raise refuse(platform, "rejected_signature", 401, f"signature rejected: {error}") from None
        try:
            normalized = source.normalize(json.loads(body), delivery)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise refuse(platform, "invalid", 400, f"body is not JSON: {error}") from None
        except (MalformedPayload, ValueError, TypeError, KeyError, AttributeError) as error:
            # A signed body of an unexpected shape is still the client's mistake, never a 500.
            raise refuse(platform, "invalid", 400, f"malformed {platform} payload: {error}") from None
        if normalized.reply is not None:
            webhooks.labels(platform, "handshake").inc()
            return JSONResponse(normalized.reply)
        events = normalized.events
        if connection.community_id:
            events = [e.model_copy(update={"community_id": connection.community_id}) for e in events]
        event_ids = [e.event_id for e in events]
        if recent.all_seen(event_ids):
            webhooks.labels(platform, "duplicate").inc()
            return JSONResponse({"accepted": 0, "duplicate": len(events)}, status_code=source.accepted_status)
        if events:
            try:
                await publisher.publish(events)
            except BrokerUnavailable as error:
                webhooks.labels(platform, "unavailable").inc()
                return JSONResponse(
                    {"detail": f"broker unavailable, retry later: {error}"},
                    status_code=503,
                    headers={"Retry-After": str(settings.retry_after_s)},
                )
            recent.remember(event_ids)
            published.labels(platform).inc(len(events))
        webhooks.labels(platform, "accepted" if events else "ignored").inc()
        return JSONResponse({"accepted": len(events), "ignored": normalized.ignored},
                            status_code=source.accepted_status)

    summary = "Webhook of one platform: " + ", ".join(sorted(platforms))

    @service.app.post("/webhooks/{platform}", summary=summary)
    async def default_connection(platform: str, request: Request) -> JSONResponse:
        return await accept(platform, DEFAULT, request)

    @service.app.post("/webhooks/{platform}/{connection}", summary=summary + " (a named connection)")
    async def named_connection(platform: str, connection: str, request: Request) -> JSONResponse:
        return await accept(platform, connection, request)

    return service


def create_app():  # uvicorn --factory entry point
    return create_service().app
