"""Slack Events API: ``event_callback`` envelopes and the ``url_verification`` handshake.

The mapping is data: Slack's event type (and message subtype) names the activity kind, and
a few small functions pull the ids out. Slack's ``event_id`` is the same on every retry of
one delivery, so it is the idempotency key.
"""

from datetime import UTC, datetime
from typing import Any

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.platforms import Delivery, MalformedPayload, Normalized, WebhookSource
from services.ingest.signatures import verify_slack

MESSAGE_SUBTYPES: dict[str | None, ActivityKind] = {
    None: ActivityKind.message_posted,
    "thread_broadcast": ActivityKind.message_posted,
    "file_share": ActivityKind.message_posted,
    "me_message": ActivityKind.message_posted,
    "message_changed": ActivityKind.message_edited,
    "message_deleted": ActivityKind.message_deleted,
}

EVENT_KINDS: dict[str, ActivityKind] = {
    "reaction_added": ActivityKind.reaction_added,
    "member_joined_channel": ActivityKind.member_joined,
    "member_left_channel": ActivityKind.member_left,
    "team_join": ActivityKind.member_joined,
}

KEPT_ATTRIBUTES = ("channel_type", "subtype", "reaction", "bot_id", "client_msg_id", "event_ts")


def _ts_to_datetime(ts: str | float | int) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def _message_ref(channel: str | None, ts: str | None) -> str | None:
    # Slack's ts is unique within a channel only.
    return f"{channel}/{ts}" if channel and ts else None


def _message_fields(event: dict[str, Any]) -> dict[str, Any]:
    subtype = event.get("subtype")
    # Edits and deletes carry the message they change in a nested object.
    inner = event.get("message") or event.get("previous_message") or event
    channel = event.get("channel")
    ts = inner.get("ts") or event.get("deleted_ts") or event.get("ts")
    thread_ts = inner.get("thread_ts")
    return {
        "member_id": inner.get("user") or event.get("user"),
        "channel_id": channel,
        "message_id": _message_ref(channel, ts),
        "reply_to": _message_ref(channel, thread_ts) if thread_ts and thread_ts != ts else None,
        "text": inner.get("text") if subtype != "message_deleted" else None,
        "occurred_at": _ts_to_datetime(event.get("event_ts") or event.get("ts") or ts),
    }


def _other_fields(event: dict[str, Any]) -> dict[str, Any]:
    item = event.get("item") or {}
    user = event.get("user")
    if isinstance(user, dict):  # team_join carries the whole user object
        user = user.get("id")
    channel = event.get("channel") or item.get("channel")
    return {
        "member_id": user,
        "channel_id": channel,
        "message_id": _message_ref(channel, item.get("ts")),
        "occurred_at": _ts_to_datetime(event.get("event_ts") or event.get("ts") or 0),
    }


def normalize(payload: dict[str, Any], delivery: Delivery | None = None) -> Normalized:
    kind_of_payload = payload.get("type")
    if kind_of_payload == "url_verification":
        if "challenge" not in payload:
            raise MalformedPayload("url_verification without a challenge")
        return Normalized(reply={"challenge": payload["challenge"]})
    if kind_of_payload != "event_callback":
        raise MalformedPayload(f"unsupported Slack payload type {kind_of_payload!r}")

    event = payload.get("event")
    team_id = payload.get("team_id")
    event_id = payload.get("event_id")
    if not isinstance(event, dict) or not team_id or not event_id:
        raise MalformedPayload("event_callback needs event, team_id and event_id")

    event_type = event.get("type")
    if event_type == "message":
        if event.get("bot_id") or event.get("subtype") == "bot_message":
            return Normalized(ignored="bot message")
        kind = MESSAGE_SUBTYPES.get(event.get("subtype"), ...)
        if kind is ...:
            return Normalized(ignored=f"message subtype {event.get('subtype')}")
        fields = _message_fields(event)
    elif event_type in EVENT_KINDS:
        kind = EVENT_KINDS[event_type]
        fields = _other_fields(event)
    else:
        return Normalized(ignored=f"event type {event_type}")

    if not fields["member_id"]:
        raise MalformedPayload(f"{event_type} event without a user")
    attributes = {k: event[k] for k in KEPT_ATTRIBUTES if k in event}
    return Normalized(
        events=[
            MemberActivity(
                event_id=f"slack:{team_id}:{event_id}",
                platform=Platform.slack,
                community_id=team_id,
                kind=kind,
                attributes=attributes,
                **fields,
            )
        ]
    )


def verify(delivery: Delivery, secret: str) -> None:
    verify_slack(
        secret,
        timestamp=delivery.header("X-Slack-Request-Timestamp"),
        body=delivery.body,
        signature=delivery.header("X-Slack-Signature"),
        now=delivery.now,
        tolerance_s=delivery.tolerance_s,
    )


SOURCE = WebhookSource(
    name="slack",
    summary="Slack Events API (v0 request signatures)",
    verify=verify,
    normalize=normalize,
    accepted_status=200,  # Slack wants a plain 200 within 3 s
)
