"""Telegram Bot API webhooks: one ``Update`` object per request.

Telegram signs nothing: ``setWebhook(secret_token=...)`` makes it send that token verbatim in
``X-Telegram-Bot-Api-Secret-Token``, which is compared in constant time. There is no
timestamp, hence no replay window. Telegram retries an unanswered update with the same
``update_id``, so ``telegram:{chat_id}:{update_id}`` is the idempotency key.

Handled updates: ``message`` (text, captions, media; ``new_chat_members`` and
``left_chat_member`` service messages), ``edited_message`` and ``message_reaction``.
"""

from datetime import UTC, datetime
from typing import Any

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.platforms import (
    Delivery,
    MalformedPayload,
    Normalized,
    WebhookSource,
)
from services.ingest.signatures import SignatureError, require_secret, same

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

UPDATE_KINDS: dict[str, ActivityKind] = {
    "message": ActivityKind.message_posted,
    "edited_message": ActivityKind.message_edited,
    "message_reaction": ActivityKind.reaction_added,
}

IGNORED_UPDATES: dict[str, str] = {
    "channel_post": "channel post (no member)",
    "edited_channel_post": "channel post (no member)",
    "message_reaction_count": "anonymous reaction counts (no member)",
    "chat_member": "chat_member (joins and leaves come as service messages)",
    "my_chat_member": "the bot's own membership",
}

# Message fields that make a message a post rather than a service message.
CONTENT_FIELDS = (
    "text", "caption", "photo", "video", "animation", "audio", "document", "voice",
    "video_note", "sticker", "poll", "location", "venue", "contact", "dice", "story",
)
MEDIA_FIELDS = CONTENT_FIELDS[2:]

KEPT_MESSAGE_ATTRIBUTES = ("message_thread_id", "is_topic_message", "media_group_id", "via_bot")


def _integer(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"{what}.{key} is missing or not an integer")
    return value


def _object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what}.{key} is missing or not an object")
    return value


def _unix(value: int) -> datetime:
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedPayload(f"Unix time {value} is out of range") from None


def _ref(chat_id: int, message_id: int) -> str:
    # Telegram message ids are unique within one chat only.
    return f"{chat_id}/{message_id}"


def _chat_attributes(chat: dict[str, Any]) -> dict[str, Any]:
    attributes = {"chat_type": chat.get("type")}
    if chat.get("title"):
        attributes["chat_title"] = chat["title"]
    return attributes


def _channel(chat_id: int, message: dict[str, Any]) -> str:
    # In a forum supergroup each topic is its own conversation: treat it as a channel.
    if message.get("is_topic_message") and message.get("message_thread_id") is not None:
        return f"{chat_id}/{message['message_thread_id']}"
    return str(chat_id)


def _reply_to(chat_id: int, message: dict[str, Any]) -> str | None:
    parent = message.get("reply_to_message")
    if not isinstance(parent, dict) or parent.get("message_id") is None:
        return None
    if "forum_topic_created" in parent:
        # Every message of a forum topic "replies" to the topic's creation service message;
        # that is not an answer to anyone, so the message is top-level in its topic.
        return None
    return _ref(chat_id, _integer(parent, "message_id", "reply_to_message"))


def _user(obj: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    user = _object(obj, key, what)
    _integer(user, "id", f"{what}.{key}")
    return user


def _user_attributes(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in ("username", "is_bot") if k in user}


def _message_events(update_key: str, update_id: int, message: dict[str, Any]) -> Normalized:
    chat = _object(message, "chat", update_key)
    chat_id = _integer(chat, "id", f"{update_key}.chat")
    message_id = _integer(message, "message_id", update_key)
    date = _integer(message, "date", update_key)
    base_id = f"telegram:{chat_id}:{update_id}"
    common = {"platform": Platform.telegram, "community_id": str(chat_id), "channel_id": _channel(chat_id, message)}
    attributes = {**_chat_attributes(chat), **{k: message[k] for k in KEPT_MESSAGE_ATTRIBUTES if k in message}}

    if update_key == "message" and "new_chat_members" in message:
        members = message["new_chat_members"]
        if not isinstance(members, list) or not members:
            raise MalformedPayload("message.new_chat_members must be a non-empty array of users")
        events = []
        for index, member in enumerate(members):
            if not isinstance(member, dict):
                raise MalformedPayload(f"message.new_chat_members[{index}] is not a user object")
            _integer(member, "id", f"message.new_chat_members[{index}]")
            if member.get("is_bot"):
                continue
            added_by = (message.get("from") or {}).get("id")
            events.append(MemberActivity(
                # One update can add several members: one event each, each stable.
                event_id=f"{base_id}:{member['id']}", kind=ActivityKind.member_joined,
                member_id=str(member["id"]), occurred_at=_unix(date),
                attributes={**attributes, **_user_attributes(member),
                            **({"added_by": str(added_by)} if added_by not in (None, member["id"]) else {})},
                **common,
            ))
        return Normalized(events=events, ignored=None if events else "bots joined")

    if update_key == "message" and "left_chat_member" in message:
        member = _user(message, "left_chat_member", "message")
        if member.get("is_bot"):
            return Normalized(ignored="a bot left")
        removed_by = (message.get("from") or {}).get("id")
        if removed_by not in (None, member["id"]):
            attributes["removed_by"] = str(removed_by)
        return Normalized(events=[MemberActivity(
            event_id=base_id, kind=ActivityKind.member_left, member_id=str(member["id"]),
            occurred_at=_unix(date), attributes={**attributes, **_user_attributes(member)}, **common,
        )])

    if not any(field in message for field in CONTENT_FIELDS):
        return Normalized(ignored=f"service message in {update_key}")
    sender = _user(message, "from", update_key)
    if sender.get("is_bot") and sender.get("username") != "GroupAnonymousBot":
        return Normalized(ignored="bot message")
    if isinstance(message.get("sender_chat"), dict):  # anonymous admin or linked channel
        attributes["sender_chat_id"] = message["sender_chat"].get("id")
    media = next((field for field in MEDIA_FIELDS if field in message), None)
    if media:
        attributes["media"] = media
    occurred = _integer(message, "edit_date", update_key) if update_key == "edited_message" else date
    text = message.get("text") if "text" in message else message.get("caption")
    username = chat.get("username")
    return Normalized(events=[MemberActivity(
        event_id=base_id, kind=UPDATE_KINDS[update_key], member_id=str(sender["id"]),
        occurred_at=_unix(occurred), message_id=_ref(chat_id, message_id),
        reply_to=_reply_to(chat_id, message), text=text if isinstance(text, str) else None,
        permalink=f"https://t.me/{username}/{message_id}" if username else None,
        attributes={**attributes, **_user_attributes(sender)}, **common,
    )])


def _reaction_events(update_id: int, reaction: dict[str, Any]) -> Normalized:
    chat = _object(reaction, "chat", "message_reaction")
    chat_id = _integer(chat, "id", "message_reaction.chat")
    message_id = _integer(reaction, "message_id", "message_reaction")
    date = _integer(reaction, "date", "message_reaction")
    old, new = reaction.get("old_reaction"), reaction.get("new_reaction")
    if not isinstance(old, list) or not isinstance(new, list):
        raise MalformedPayload("message_reaction needs old_reaction and new_reaction arrays")
    added = [r for r in new if r not in old]
    if not added:
        return Normalized(ignored="reaction removed")
    if isinstance(reaction.get("user"), dict):
        member = reaction["user"]
    elif isinstance(reaction.get("actor_chat"), dict):  # reacting anonymously as a chat
        member = reaction["actor_chat"]
    else:
        raise MalformedPayload("message_reaction names neither user nor actor_chat")
    member_id = _integer(member, "id", "message_reaction.user")
    emojis = [r.get("emoji") or r.get("custom_emoji_id") or r.get("type") for r in added if isinstance(r, dict)]
    return Normalized(events=[MemberActivity(
        event_id=f"telegram:{chat_id}:{update_id}", platform=Platform.telegram,
        community_id=str(chat_id), channel_id=str(chat_id), member_id=str(member_id),
        kind=ActivityKind.reaction_added, occurred_at=_unix(date), message_id=_ref(chat_id, message_id),
        attributes={**_chat_attributes(chat), "reaction": emojis[0] if len(emojis) == 1 else emojis,
                    **_user_attributes(member)},
    )])


def normalize(payload: Any, delivery: Delivery | None = None) -> Normalized:
    if not isinstance(payload, dict):
        raise MalformedPayload("a Telegram Update must be a JSON object")
    update_id = _integer(payload, "update_id", "update")
    present = [key for key in payload if key != "update_id"]
    if not present:
        raise MalformedPayload("update carries no content besides update_id")
    update_key = present[0]
    if update_key in IGNORED_UPDATES:
        return Normalized(ignored=IGNORED_UPDATES[update_key])
    if update_key not in UPDATE_KINDS:
        return Normalized(ignored=f"update {update_key}")
    content = payload[update_key]
    if not isinstance(content, dict):
        raise MalformedPayload(f"update.{update_key} must be an object")
    if update_key == "message_reaction":
        return _reaction_events(update_id, content)
    return _message_events(update_key, update_id, content)


def verify(delivery: Delivery, secret: str) -> None:
    require_secret(secret)
    token = delivery.header(SECRET_HEADER)
    if not token:
        raise SignatureError(f"missing {SECRET_HEADER} header")
    if not same(secret, token):
        raise SignatureError(f"{SECRET_HEADER} does not match the configured secret")


SOURCE = WebhookSource(
    name="telegram",
    summary="Telegram Bot API updates (X-Telegram-Bot-Api-Secret-Token)",
    verify=verify,
    normalize=normalize,
    accepted_status=200,  # Telegram only needs a 2xx; 200 is what its docs show
)
