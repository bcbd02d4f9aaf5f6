"""Discord: the Ed25519-signed interactions endpoint, and the mapping of Gateway events.

Discord has no HTTP webhooks for what members do in a server: messages, reactions and
joins arrive only over the Gateway websocket, which :mod:`services.ingest.discord_bridge`
holds open and feeds through :func:`normalize_dispatch`. What Discord does POST over HTTP
is *interactions* (slash commands, buttons), signed with the application's Ed25519 key;
``SOURCE`` verifies and answers those. Interactions are not member activity: they are
acknowledged and produce no events.

Every ``event_id`` is built from the event's own content, never from the Gateway sequence
number, so an event replayed after a RESUME (or seen by two bridges) has the same id. The
rules are in :data:`EVENT_ID_RULES` and in ``docs/platforms/discord.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.platforms import Delivery, MalformedPayload, Normalized, WebhookSource
from services.ingest.signatures import SignatureError, fresh_timestamp, require_secret

DISCORD_EPOCH_MS = 1_420_070_400_000

# --------------------------------------------------------------------------- interactions

EPHEMERAL = 1 << 6  # message flag: only the invoking user sees the answer
NOTED = {
    "type": 4,  # CHANNEL_MESSAGE_WITH_SOURCE
    "data": {"content": "Steward has no commands to run; nothing was done.", "flags": EPHEMERAL},
}

INTERACTION_REPLIES: dict[int, dict[str, Any]] = {
    1: {"type": 1},  # PING -> PONG (the endpoint check Discord runs when the URL is saved)
    2: NOTED,  # APPLICATION_COMMAND: an ephemeral answer, so the user sees no "did not respond"
    3: {"type": 6},  # MESSAGE_COMPONENT -> DEFERRED_UPDATE_MESSAGE: acknowledged, message unchanged
    4: {"type": 8, "data": {"choices": []}},  # APPLICATION_COMMAND_AUTOCOMPLETE: no suggestions
    5: NOTED,  # MODAL_SUBMIT
}


def verify_ed25519(
    public_key_hex: str, *, timestamp: str | None, body: bytes, signature: str | None, now: float,
    tolerance_s: int = 300,
) -> None:
    """Discord's scheme: Ed25519 signature (hex) of ``timestamp + body`` by the application key."""
    require_secret(public_key_hex)
    fresh_timestamp(timestamp, now, tolerance_s)
    if not signature:
        raise SignatureError("missing X-Signature-Ed25519 header")
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex.strip()))
    except ValueError:
        raise SignatureError("the configured Discord public key is not 32 bytes of hex") from None
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raise SignatureError("X-Signature-Ed25519 is not hex") from None
    if len(raw_signature) != 64:
        raise SignatureError("X-Signature-Ed25519 is not a 64-byte Ed25519 signature")
    try:
        key.verify(raw_signature, timestamp.encode() + body)
    except InvalidSignature:
        raise SignatureError("X-Signature-Ed25519 does not match the body") from None


def verify(delivery: Delivery, secret: str) -> None:
    verify_ed25519(
        secret,
        timestamp=delivery.header("X-Signature-Timestamp"),
        body=delivery.body,
        signature=delivery.header("X-Signature-Ed25519"),
        now=delivery.now,
        tolerance_s=delivery.tolerance_s,
    )


def normalize(payload: Any, delivery: Delivery | None = None) -> Normalized:
    """An interaction gets its acknowledgement as the direct answer; none is member activity."""
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), int):
        raise MalformedPayload("an interaction needs an integer type")
    reply = INTERACTION_REPLIES.get(payload["type"])
    if reply is None:
        raise MalformedPayload(f"unsupported interaction type {payload['type']}")
    return Normalized(reply=reply)


SOURCE = WebhookSource(
    name="discord",
    summary="Discord interactions endpoint (Ed25519 request signatures); server activity comes "
    "through the Gateway bridge",
    verify=verify,
    normalize=normalize,
    accepted_status=200,
)

# --------------------------------------------------------------------------- Gateway events

EVENT_ID_RULES: dict[str, str] = {
    "MESSAGE_CREATE": "discord:{guild_id}:{message_id}:created",
    "MESSAGE_UPDATE": "discord:{guild_id}:{message_id}:edited:{edited_timestamp}",
    "MESSAGE_DELETE": "discord:{guild_id}:{message_id}:deleted",
    "MESSAGE_REACTION_ADD": "discord:{guild_id}:{message_id}:{user_id}:{emoji}:reacted (+':burst')",
    "GUILD_MEMBER_ADD": "discord:{guild_id}:{user_id}:joined:{joined_at}",
    "GUILD_MEMBER_REMOVE": "discord:{guild_id}:{user_id}:left:{joined_at, when the bridge saw it}",
    "GUILD_SCHEDULED_EVENT_USER_ADD": "discord:{guild_id}:{scheduled_event_id}:{user_id}:rsvp",
}

# Message types written by members; the rest (joins, pins, boosts, thread-created notices,
# poll results...) are system messages. 19 is a reply, 0 everything else a member types.
MEMBER_MESSAGE_TYPES = frozenset({0, 19})
MESSAGE_REFERENCE_DEFAULT = 0  # 1 is a forward: it quotes another message, it answers none


def snowflake_time(snowflake: str | int) -> datetime:
    """When a Discord id was minted: the top 42 bits are ms since the Discord epoch (2015)."""
    return datetime.fromtimestamp(((int(snowflake) >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


def parse_time(value: str) -> datetime:
    """Discord's ISO 8601 timestamps (``2024-01-02T03:04:05.678000+00:00``)."""
    moment = datetime.fromisoformat(value)  # 3.11 reads a trailing Z too
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def permalink(guild_id: str, channel_id: str, message_id: str) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


class GatewayMemory:
    """What a bridge remembers between events, because some events name less than we need.

    ``MESSAGE_DELETE`` names no author, and ``GUILD_MEMBER_REMOVE`` no membership: the
    bridge records authors of messages and the ``joined_at`` of members as it sees them
    (bounded, least recently used dropped first) and the mapping reads them back.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._authors: OrderedDict[str, str] = OrderedDict()
        self._joins: OrderedDict[tuple[str, str], str] = OrderedDict()

    def _put(self, store: OrderedDict, key: Any, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > self.size:
            store.popitem(last=False)

    def observe(self, event_name: str, data: dict[str, Any]) -> None:
        guild_id = data.get("guild_id")
        if event_name in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            author = data.get("author") or {}
            if data.get("id") and author.get("id"):
                self._put(self._authors, str(data["id"]), str(author["id"]))
        elif event_name in ("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE"):
            user = data.get("user") or {}
            if guild_id and user.get("id") and data.get("joined_at"):
                self._put(self._joins, (str(guild_id), str(user["id"])), data["joined_at"])

    def author_of(self, message_id: str) -> str | None:
        return self._authors.get(message_id)

    def joined_at(self, guild_id: str, user_id: str) -> str | None:
        return self._joins.get((guild_id, user_id))


def _is_bot(user: dict[str, Any] | None) -> bool:
    return bool(user and (user.get("bot") or user.get("system")))


Mapped = dict[str, Any] | None  # the fields of one MemberActivity, or None to ignore


def _message_created(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    author = data.get("author") or {}
    if _is_bot(author) or data.get("webhook_id") or data.get("type", 0) not in MEMBER_MESSAGE_TYPES:
        return None
    reference = data.get("message_reference") or {}
    replies_to = reference.get("type", MESSAGE_REFERENCE_DEFAULT) == MESSAGE_REFERENCE_DEFAULT
    message_id, channel_id = str(data["id"]), str(data["channel_id"])
    return {
        "event_id": f"discord:{guild}:{message_id}:created",
        "kind": ActivityKind.message_posted,
        "member_id": author.get("id"),
        "channel_id": channel_id,
        "message_id": message_id,
        # A thread is a channel: its messages carry the thread's id as channel_id already.
        "reply_to": str(reference["message_id"]) if replies_to and reference.get("message_id") else None,
        "text": data.get("content"),
        "occurred_at": parse_time(data["timestamp"]) if data.get("timestamp") else snowflake_time(message_id),
        "permalink": permalink(guild, channel_id, message_id),
        "attributes": {"message_type": data.get("type", 0)},
    }


def _message_edited(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    author = data.get("author") or {}
    message_id = str(data["id"])
    member_id = author.get("id") or (memory.author_of(message_id) if memory else None)
    edited = data.get("edited_timestamp")
    # No edited_timestamp: Discord re-sent the message for an embed, a pin or a flag, not an edit.
    if not edited or _is_bot(author) or data.get("webhook_id") or not member_id:
        return None
    channel_id = str(data["channel_id"])
    return {
        "event_id": f"discord:{guild}:{message_id}:edited:{edited}",
        "kind": ActivityKind.message_edited,
        "member_id": member_id,
        "channel_id": channel_id,
        "message_id": message_id,
        "text": data.get("content"),
        "occurred_at": parse_time(edited),
        "permalink": permalink(guild, channel_id, message_id),
        "attributes": {"edited_timestamp": edited},
    }


def _message_deleted(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    message_id = str(data["id"])
    member_id = memory.author_of(message_id) if memory else None
    if not member_id:
        return None  # Discord does not say whose message it was, and we never saw it posted
    return {
        "event_id": f"discord:{guild}:{message_id}:deleted",
        "kind": ActivityKind.message_deleted,
        "member_id": member_id,
        "channel_id": str(data["channel_id"]),
        "message_id": message_id,
        # No timestamp in the payload; the message id's snowflake is its creation, not its
        # deletion, so the time Discord delivered it (real time, ms late) is the best one.
        "occurred_at": None,
    }


def _emoji_key(emoji: dict[str, Any]) -> str:
    return str(emoji.get("id") or emoji.get("name") or "?")  # a custom emoji's id, or the unicode


def _reaction_added(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    member = data.get("member") or {}
    if _is_bot(member.get("user")):
        return None
    emoji = data.get("emoji") or {}
    message_id, user_id = str(data["message_id"]), str(data["user_id"])
    burst = ":burst" if data.get("burst") else ""
    return {
        "event_id": f"discord:{guild}:{message_id}:{user_id}:{_emoji_key(emoji)}:reacted{burst}",
        "kind": ActivityKind.reaction_added,
        "member_id": user_id,
        "channel_id": str(data["channel_id"]),
        "message_id": message_id,
        "occurred_at": None,  # no timestamp in the payload: delivery time (see _message_deleted)
        "attributes": {
            k: v for k, v in {
                "emoji": emoji.get("name"), "emoji_id": emoji.get("id"), "burst": bool(data.get("burst")),
                "message_author_id": data.get("message_author_id"),
            }.items() if v is not None
        },
    }


def _member_joined(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    user = data.get("user") or {}
    if _is_bot(user) or not data.get("joined_at"):
        return None
    return {
        "event_id": f"discord:{guild}:{user['id']}:joined:{data['joined_at']}",
        "kind": ActivityKind.member_joined,
        "member_id": user["id"],
        "occurred_at": parse_time(data["joined_at"]),
        "attributes": {"pending": data["pending"]} if "pending" in data else {},
    }


def _member_left(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    user = data.get("user") or {}
    if _is_bot(user):
        return None
    user_id = str(user["id"])
    joined_at = memory.joined_at(guild, user_id) if memory else None
    # The leave that ends the membership begun at joined_at; without it (the member joined
    # before the bridge saw them), one id per member: a later leave of the same member
    # after a rejoin the bridge did not see would be taken for a replay.
    suffix = f":{joined_at}" if joined_at else ""
    return {
        "event_id": f"discord:{guild}:{user_id}:left{suffix}",
        "kind": ActivityKind.member_left,
        "member_id": user_id,
        "occurred_at": None,
    }


def _rsvp(guild: str, data: dict[str, Any], memory: GatewayMemory | None) -> Mapped:
    event_id, user_id = str(data["guild_scheduled_event_id"]), str(data["user_id"])
    return {
        "event_id": f"discord:{guild}:{event_id}:{user_id}:rsvp",
        "kind": ActivityKind.event_rsvp,
        "member_id": user_id,
        "occurred_at": None,
        "attributes": {"scheduled_event_id": event_id},
    }


DISPATCH: dict[str, Callable[[str, dict[str, Any], GatewayMemory | None], Mapped]] = {
    "MESSAGE_CREATE": _message_created,
    "MESSAGE_UPDATE": _message_edited,
    "MESSAGE_DELETE": _message_deleted,
    "MESSAGE_REACTION_ADD": _reaction_added,
    "GUILD_MEMBER_ADD": _member_joined,
    "GUILD_MEMBER_REMOVE": _member_left,
    "GUILD_SCHEDULED_EVENT_USER_ADD": _rsvp,
}


def normalize_dispatch(
    event_name: str, data: dict[str, Any], *, received_at: datetime, memory: GatewayMemory | None = None
) -> MemberActivity | None:
    """One Gateway DISPATCH (``t``, ``d``) as member activity, or None when it is not any:
    an event type we do not map, a bot, a webhook, a system message, or a DM (no guild).

    Pure: ``memory`` is only read (the bridge calls :meth:`GatewayMemory.observe`).
    Raises :class:`MalformedPayload` when a mapped event lacks the ids it must carry.
    """
    mapper = DISPATCH.get(event_name)
    if mapper is None or not isinstance(data, dict) or not data.get("guild_id"):
        return None
    guild = str(data["guild_id"])
    try:
        fields = mapper(guild, data, memory)
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedPayload(f"{event_name} without a usable {error}") from None
    if fields is None:
        return None
    if not fields.get("member_id"):
        raise MalformedPayload(f"{event_name} without a user")
    fields["member_id"] = str(fields["member_id"])
    if fields.get("occurred_at") is None:
        fields["occurred_at"] = received_at
    return MemberActivity(
        platform=Platform.discord, community_id=guild, received_at=received_at, **fields
    )
