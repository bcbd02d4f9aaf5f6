"""Discourse webhooks: post, topic and user events from one forum.

Discourse names the event in ``X-Discourse-Event`` (``post_created``, ...), its group in
``X-Discourse-Event-Type`` (``post``, ``topic``, ``user``), the forum in
``X-Discourse-Instance`` and signs the raw body: ``X-Discourse-Event-Signature:
sha256=<hex HMAC-SHA256(secret, body)>``. There is no signed timestamp, so no replay window.

Idempotency: ``X-Discourse-Event-Id`` is the id of a ``WebHookEvent`` row, and Discourse's
automatic retries (``retry_web_hook_events``) enqueue the job again, which creates a *new*
row and so a *new* id for the same payload; only the admin "Redeliver" button resends the
stored headers. The payload itself is passed unchanged to every attempt, so the event id is
built from the event name, the object it is about and a digest of the raw body: the same on
every retry and redelivery, different for two edits of one post.

``topic_created`` is ignored on purpose: Discourse sends ``post_created`` for the topic's
first post (``post_number`` 1) as well, and that post carries the text and author; counting
both would count every new topic twice.
"""

import hashlib
from typing import Any
from urllib.parse import urlsplit

from schemas import ActivityKind, MemberActivity, Platform
from services.ingest.platforms import (
    body_signature,
    iso_timestamp,
    Delivery,
    MalformedPayload,
    Normalized,
    WebhookSource,
)
from services.ingest.signatures import sign_body

POST_EVENTS: dict[str, ActivityKind] = {
    "post_created": ActivityKind.message_posted,
    "post_edited": ActivityKind.message_edited,
    "post_destroyed": ActivityKind.message_deleted,
}

USER_EVENTS: dict[str, ActivityKind] = {
    "user_created": ActivityKind.member_joined,
}

IGNORED_EVENTS: dict[str, str] = {
    "ping": "ping",
    "topic_created": "topic_created: the topic's first post arrives as post_created",
}

# Discourse post_type: 1 regular, 2 moderator_action, 3 small_action, 4 whisper.
NOT_MEMBER_POSTS = {2: "moderator action post", 3: "small action post"}

KEPT_POST_ATTRIBUTES = (
    "username", "topic_id", "topic_slug", "topic_title", "post_number", "post_type",
    "category_slug", "topic_archetype", "reply_to_post_number", "version", "wiki",
    "trust_level", "staff", "hidden",
)
KEPT_USER_ATTRIBUTES = ("username", "name", "trust_level", "active")


def _instance_host(delivery: Delivery) -> str:
    instance = delivery.header("X-Discourse-Instance")
    if not instance:
        raise MalformedPayload("missing X-Discourse-Instance header")
    try:
        host = urlsplit(instance).netloc if "://" in instance else instance
    except ValueError:
        raise MalformedPayload(f"X-Discourse-Instance {instance!r} is not a URL") from None
    host = host.strip().strip("/").lower()
    if not host:
        raise MalformedPayload(f"X-Discourse-Instance {instance!r} names no host")
    return host


def _integer(obj: dict[str, Any], key: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"{what}.{key} is missing or not an integer")
    return value


def _message_ref(topic_id: int, post_number: int) -> str:
    # Post numbers are unique within a topic; post ids are forum-wide but replies name numbers.
    return f"{topic_id}#{post_number}"


def _event_id(host: str, event: str, subject: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:24]
    return f"discourse:{host}:{event}:{subject}:{digest}"


def _post_activity(event: str, post: dict[str, Any], host: str, delivery: Delivery) -> MemberActivity:
    post_id = _integer(post, "id", "post")
    topic_id = _integer(post, "topic_id", "post")
    post_number = _integer(post, "post_number", "post")
    user_id = post.get("user_id")
    if user_id is None or isinstance(user_id, bool):
        raise MalformedPayload("post.user_id is missing")
    kind = POST_EVENTS[event]

    if kind is ActivityKind.message_posted:
        occurred_at = iso_timestamp(post.get("created_at"), "post.created_at")
    elif kind is ActivityKind.message_deleted:
        occurred_at = iso_timestamp(post.get("deleted_at") or post.get("updated_at"), "post.deleted_at")
    else:
        occurred_at = iso_timestamp(post.get("updated_at"), "post.updated_at")

    reply_to = None
    if post_number > 1:
        # A post that answers no particular post answers the topic, i.e. its first post.
        parent = post.get("reply_to_post_number")
        if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
            raise MalformedPayload("post.reply_to_post_number is not an integer")
        reply_to = _message_ref(topic_id, parent or 1)

    text = None
    if kind is not ActivityKind.message_deleted:
        raw = post.get("raw")
        text = raw if isinstance(raw, str) else post.get("cooked")
        title = post.get("topic_title")
        if post_number == 1 and title and text is not None:
            text = f"{title}\n\n{text}"  # the title is what people read first: moderate it too

    slug = post.get("topic_slug")
    permalink = f"https://{host}/t/{slug}/{topic_id}/{post_number}" if slug else None
    attributes = {k: post[k] for k in KEPT_POST_ATTRIBUTES if k in post}
    attributes.update(post_id=post_id, discourse_event_id=delivery.header("X-Discourse-Event-Id"))
    category = post.get("category_id")
    return MemberActivity(
        event_id=_event_id(host, event, f"post-{post_id}", delivery.body),
        platform=Platform.discourse,
        community_id=host,
        channel_id=str(category) if category is not None else None,
        member_id=str(user_id),
        kind=kind,
        occurred_at=occurred_at,
        message_id=_message_ref(topic_id, post_number),
        reply_to=reply_to,
        text=text,
        permalink=permalink,
        attributes=attributes,
    )


def _user_activity(event: str, user: dict[str, Any], host: str, delivery: Delivery) -> MemberActivity:
    user_id = _integer(user, "id", "user")
    attributes = {k: user[k] for k in KEPT_USER_ATTRIBUTES if k in user}
    attributes["discourse_event_id"] = delivery.header("X-Discourse-Event-Id")
    return MemberActivity(
        event_id=_event_id(host, event, f"user-{user_id}", delivery.body),
        platform=Platform.discourse,
        community_id=host,
        member_id=str(user_id),
        kind=USER_EVENTS[event],
        occurred_at=iso_timestamp(user.get("created_at"), "user.created_at"),
        attributes=attributes,
    )


def normalize(payload: Any, delivery: Delivery) -> Normalized:
    event = delivery.header("X-Discourse-Event")
    if not event:
        raise MalformedPayload("missing X-Discourse-Event header")
    if not delivery.header("X-Discourse-Event-Id"):
        raise MalformedPayload("missing X-Discourse-Event-Id header")
    if event in IGNORED_EVENTS:
        return Normalized(ignored=IGNORED_EVENTS[event])
    if event not in POST_EVENTS and event not in USER_EVENTS:
        return Normalized(ignored=f"event {event}")
    host = _instance_host(delivery)
    if not isinstance(payload, dict):
        raise MalformedPayload(f"{event} body must be a JSON object")

    if event in POST_EVENTS:
        post = payload.get("post")
        if not isinstance(post, dict):
            raise MalformedPayload(f"{event} without a post object")
        if post.get("topic_archetype") == "private_message":
            return Normalized(ignored="private message")
        if post.get("post_type") in NOT_MEMBER_POSTS:
            return Normalized(ignored=NOT_MEMBER_POSTS[post["post_type"]])
        return Normalized(events=[_post_activity(event, post, host, delivery)])

    user = payload.get("user")
    if not isinstance(user, dict):
        raise MalformedPayload(f"{event} without a user object")
    return Normalized(events=[_user_activity(event, user, host, delivery)])


SIGNATURE_HEADER = "X-Discourse-Event-Signature"
sign = sign_body
verify = body_signature(SIGNATURE_HEADER)


SOURCE = WebhookSource(
    name="discourse",
    summary="Discourse webhooks (post, topic, user events; HMAC-SHA256 of the body)",
    verify=verify,
    normalize=normalize,
)
