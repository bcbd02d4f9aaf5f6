"""Silences in MongoDB, collection ``notifier_silences``: one document per silence,

    {_id: "<uuid4 hex>", matchers: ['community="c1"', ...], starts_at, ends_at,
     created_by, comment, created_at, updated_at, community: "c1" | None}

Times are UTC datetimes truncated to milliseconds (BSON's precision), so what ``create``
returns equals what ``get`` reads back. ``community`` copies the value of the first
``community="..."`` equality matcher, for the ``community`` filter of ``list``.

Expiring sets ``ends_at`` (and, for a pending silence, ``starts_at``) to now. It is written
with ``replace_one`` on a still-unexpired filter: a compare-and-set, so two concurrent
expiries do not both write, and it avoids nx-27017 (the local MongoDB-protocol server)
storing datetimes given to ``$set`` as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.routing.config import MatchOp, parse_matcher
from services.notifier.silences.models import (
    Silence,
    SilenceIn,
    SilenceState,
    as_utc,
    silence_state,
)

__all__ = ["COLLECTION", "DEFAULT_LIST_LIMIT", "MAX_LIST_LIMIT", "SilenceStore"]

COLLECTION = "notifier_silences"
DEFAULT_LIST_LIMIT = 200
MAX_LIST_LIMIT = 1000


def _ms(value: datetime, up: bool = False) -> datetime:
    """``value`` in UTC at BSON's millisecond precision (rounded up with ``up``)."""
    value = as_utc(value)
    truncated = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if up and truncated < value:
        truncated += timedelta(milliseconds=1)
    return truncated


def _now(now: datetime | None) -> datetime:
    return _ms(now if now is not None else datetime.now(UTC))


def _time(value: Any) -> datetime:
    if isinstance(value, str):  # a datetime some server stored as text
        value = datetime.fromisoformat(value)
    return as_utc(value)


def community_of(matchers: list[str]) -> str | None:
    """The value of the first ``community="..."`` equality matcher, if any."""
    for text in matchers:
        m = parse_matcher(text)
        if m.name == "community" and m.op is MatchOp.eq:
            return m.value
    return None


def _silence(doc: Mapping[str, Any], now: datetime) -> Silence:
    starts_at, ends_at = _time(doc["starts_at"]), _time(doc["ends_at"])
    return Silence(
        id=doc["_id"],
        matchers=list(doc["matchers"]),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=doc["created_by"],
        comment=doc["comment"],
        created_at=_time(doc["created_at"]),
        updated_at=_time(doc.get("updated_at", doc["created_at"])),
        state=silence_state(starts_at, ends_at, now),
    )


def _state_query(state: SilenceState | None, now: datetime) -> tuple[dict, list]:
    """The filter and sort for silences in ``state`` at ``now`` (all of them for ``None``)."""
    if state is SilenceState.active:
        return {"starts_at": {"$lte": now}, "ends_at": {"$gt": now}}, [("ends_at", ASCENDING)]
    if state is SilenceState.pending:
        return {"starts_at": {"$gt": now}}, [("starts_at", ASCENDING)]
    if state is SilenceState.expired:
        return {"ends_at": {"$lte": now}}, [("ends_at", DESCENDING)]
    return {}, [("created_at", DESCENDING)]


class SilenceStore:
    """Create, read, list and expire silences. Each method takes ``now`` (UTC) for tests;
    it defaults to the current time."""

    def __init__(self, db: AsyncDatabase, collection: str = COLLECTION) -> None:
        self.silences = db[collection]

    async def create_indexes(self) -> None:
        # the notifier's read of current silences (``current``) and state filters range over ends_at
        await self.silences.create_index([("ends_at", ASCENDING)], name="ends_at")
        await self.silences.create_index(
            [("community", ASCENDING), ("ends_at", ASCENDING)], name="community_ends_at"
        )
        await self.silences.create_index([("created_at", DESCENDING)], name="created_at")

    async def create(self, data: SilenceIn, now: datetime | None = None) -> Silence:
        """Store a new silence; ``SilenceWindowError`` when it would not end in the future."""
        now = _now(now)
        starts_at, ends_at = data.window(now)
        doc = {
            "_id": uuid4().hex,
            "matchers": list(data.matchers),
            "starts_at": _ms(starts_at),
            "ends_at": _ms(ends_at, up=True),  # still after now, however close
            "created_by": data.created_by,
            "comment": data.comment,
            "created_at": now,
            "updated_at": now,
            "community": community_of(data.matchers),
        }
        await self.silences.insert_one(doc)
        return _silence(doc, now)

    async def get(self, silence_id: str, now: datetime | None = None) -> Silence | None:
        doc = await self.silences.find_one({"_id": silence_id})
        return None if doc is None else _silence(doc, _now(now))

    async def expire(self, silence_id: str, now: datetime | None = None) -> Silence | None:
        """End the silence now; ``None`` when unknown. An expired one is returned unchanged."""
        now = _now(now)
        doc = await self.silences.find_one({"_id": silence_id})
        if doc is None:
            return None
        if _time(doc["ends_at"]) <= now:
            return _silence(doc, now)
        updated = {
            **doc,
            "starts_at": min(_time(doc["starts_at"]), now),
            "ends_at": now,
            "updated_at": now,
        }
        result = await self.silences.replace_one(
            {"_id": silence_id, "ends_at": {"$gt": now}}, updated
        )
        if result.matched_count:
            return _silence(updated, now)
        # expired (or removed) concurrently: report what is there now
        return await self.get(silence_id, now)

    async def current(self, now: datetime | None = None) -> list[Silence]:
        """Every silence not over at ``now`` (active or still to start): what the notifier
        caches for a second and checks each incident against."""
        now = _now(now)
        return [_silence(doc, now) async for doc in self.silences.find({"ends_at": {"$gt": now}})]

    async def list(
        self,
        state: SilenceState | None = None,
        community: str | None = None,
        now: datetime | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> list[Silence]:
        """Silences in ``state`` (all when ``None``) at ``now``, optionally only those with a
        ``community="<community>"`` matcher. Active ones soonest-ending first, pending ones
        soonest-starting first, expired ones latest-ended first, all of them newest first."""
        now = _now(now)
        query, sort = _state_query(state, now)
        if community is not None:
            query["community"] = community
        cursor = self.silences.find(query).sort([*sort, ("_id", ASCENDING)]).limit(
            max(1, min(limit, MAX_LIST_LIMIT))
        )
        return [_silence(doc, now) async for doc in cursor]
