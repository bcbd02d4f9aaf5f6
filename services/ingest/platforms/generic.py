"""The generic signed source: a MemberActivity object, or a JSON array of them."""

from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas import MemberActivity
from schemas.base import utc_now
from services.ingest.platforms import Delivery, MalformedPayload, Normalized, WebhookSource
from services.ingest.signatures import verify_steward

_many = TypeAdapter(list[MemberActivity])
MAX_EVENTS = 500


def normalize(payload: Any, delivery: Delivery | None = None) -> Normalized:
    items = payload if isinstance(payload, list) else [payload]
    if len(items) > MAX_EVENTS:
        raise MalformedPayload(f"at most {MAX_EVENTS} events per request, got {len(items)}")
    received_at = utc_now()
    try:
        # received_at is ingest's to stamp; a sender's value would be a lie about us.
        events = _many.validate_python(
            [{**item, "received_at": received_at} if isinstance(item, dict) else item for item in items]
        )
    except ValidationError as error:
        raise MalformedPayload(_describe(error)) from None
    return Normalized(events=events)


def _describe(error: ValidationError) -> str:
    problems = []
    for issue in error.errors()[:10]:
        where = ".".join(str(part) for part in issue["loc"]) or "body"
        problems.append(f"{where}: {issue['msg']}")
    return "; ".join(problems)


def verify(delivery: Delivery, secret: str) -> None:
    verify_steward(
        secret,
        timestamp=delivery.header("X-Steward-Timestamp"),
        body=delivery.body,
        signature=delivery.header("X-Steward-Signature"),
        now=delivery.now,
        tolerance_s=delivery.tolerance_s,
    )


SOURCE = WebhookSource(
    name="generic",
    summary="MemberActivity JSON (one object or an array) signed with HMAC-SHA256",
    verify=verify,
    normalize=normalize,
)
