"""Reddit listing items -> MemberActivity. Pure: no I/O, no clock except ``received_at``.

A listing (``GET /r/{sub}/new``, ``GET /r/{sub}/comments``) is
``{"kind": "Listing", "data": {"after": ..., "children": [{"kind": "t3"|"t1", "data": {...}}]}}``.
A post (``t3``) and a comment (``t1``) both become ``message_posted``; a comment answers
its ``parent_id`` (the post ``t3_...`` or the comment ``t1_...`` it replies to).

The idempotency key is ``reddit:{fullname}:posted``: Reddit's fullname never changes, so
the same post or comment seen again by any poller yields the same ``event_id``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from schemas import ActivityKind, MemberActivity, Platform

REDDIT = "https://www.reddit.com"
POST, COMMENT = "t3", "t1"
DELETED_AUTHORS = frozenset({"[deleted]", ""})
GONE_TEXT = frozenset({"[deleted]", "[removed]"})
MAX_TEXT = 40_000

POST_ATTRIBUTES = ("author_fullname", "subreddit_id", "score", "num_comments", "link_flair_text",
                   "over_18", "distinguished")
COMMENT_ATTRIBUTES = ("author_fullname", "subreddit_id", "link_id", "score", "author_flair_text",
                      "is_submitter", "distinguished")


def community_for(subreddit: str) -> str:
    return f"r/{subreddit.lower()}"


def event_id_for(fullname: str) -> str:
    return f"reddit:{fullname}:posted"


def fullname_of(item: dict[str, Any]) -> str | None:
    """``t3_abc`` for a listing child ``{"kind": "t3", "data": {"id": "abc", ...}}``."""
    data = item.get("data") or {}
    name = data.get("name")
    if name:
        return str(name)
    if item.get("kind") and data.get("id"):
        return f"{item['kind']}_{data['id']}"
    return None


def created_of(item: dict[str, Any]) -> float:
    return float((item.get("data") or {}).get("created_utc") or 0.0)


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or value.strip() in GONE_TEXT:
        return None
    return value


def _attributes(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: data[name] for name in names if data.get(name) not in (None, "")}


def to_activity(item: dict[str, Any], *, received_at: datetime | None = None) -> MemberActivity | None:
    """One listing child as MemberActivity, or None: other kinds, deleted authors, no id."""
    kind = item.get("kind")
    data = item.get("data") or {}
    if kind not in (POST, COMMENT):
        return None
    author = data.get("author")
    fullname = fullname_of(item)
    subreddit = data.get("subreddit")
    if (not author or author in DELETED_AUTHORS or not fullname or not subreddit
            or data.get("created_utc") is None):
        return None
    if kind == POST:
        title = _text(data.get("title")) or ""
        body = _text(data.get("selftext"))
        text = f"{title}\n\n{body}" if body else title
        reply_to = None
        attributes = _attributes(data, POST_ATTRIBUTES)
        if not data.get("is_self") and data.get("url"):
            attributes["url"] = data["url"]
    else:
        text = _text(data.get("body"))
        reply_to = data.get("parent_id") or data.get("link_id")
        attributes = _attributes(data, COMMENT_ATTRIBUTES)
    permalink = data.get("permalink")
    extra = {"received_at": received_at} if received_at else {}
    return MemberActivity(
        event_id=event_id_for(fullname),
        platform=Platform.reddit,
        community_id=community_for(subreddit),
        channel_id=subreddit,
        member_id=author,
        kind=ActivityKind.message_posted,
        occurred_at=datetime.fromtimestamp(float(data["created_utc"]), UTC),
        message_id=fullname,
        reply_to=reply_to,
        text=(text or None) and text[:MAX_TEXT],
        permalink=f"{REDDIT}{permalink}" if permalink and permalink.startswith("/") else permalink,
        attributes=attributes,
        **extra,
    )


def children(listing: dict[str, Any] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(listing, dict):
        return list((listing.get("data") or {}).get("children") or [])
    return list(listing)


def to_activities(
    listing: dict[str, Any] | Iterable[dict[str, Any]], *, received_at: datetime | None = None
) -> list[MemberActivity]:
    """Every mappable child of a Listing (or of a list of children), in the given order."""
    events = (to_activity(item, received_at=received_at) for item in children(listing))
    return [event for event in events if event is not None]
