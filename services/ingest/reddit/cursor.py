"""Where each (subreddit, kind) stream stopped, kept durably in MongoDB.

One document per stream, ``_id = "{subreddit lower-cased}:{kind}"``::

    {"_id": "python:posts", "subreddit": "Python", "kind": "posts",
     "newest": "t3_abc", "newest_created_utc": 1735732800.0,
     "recent": [{"id": "t3_abc", "t": 1735732800.0}, ...],   # bounded: RECENT_MAX
     "updated_at": datetime}

``recent`` holds the fullnames already published whose ``created_utc`` is within the
look-back window of the newest (items with equal timestamps at least), so that the next
cycle can tell them apart from new items created in the same second.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

RECENT_MAX = 500


@dataclass(frozen=True)
class Cursor:
    newest: str | None
    newest_created_utc: float
    recent: tuple[tuple[str, float], ...] = field(default=())

    @property
    def recent_ids(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.recent)

    def advance(self, items: Iterable[tuple[str, float]], lookback_s: float = 0.0) -> Cursor:
        """The cursor after ``items`` (fullname, created_utc), given oldest first, were published."""
        newest, newest_created = self.newest, self.newest_created_utc
        merged: dict[str, float] = dict(self.recent)
        for name, created in items:
            merged[name] = created
            if created >= newest_created:
                newest, newest_created = name, created
        floor = newest_created - lookback_s
        kept = sorted(((n, t) for n, t in merged.items() if t >= floor), key=lambda p: p[1])
        return Cursor(newest, newest_created, tuple(kept[-RECENT_MAX:]))


class CursorStore:
    def __init__(self, db: AsyncDatabase, collection: str = "ingest_reddit_cursors") -> None:
        self.collection = db[collection]

    @staticmethod
    def key(subreddit: str, kind: str) -> str:
        return f"{subreddit.lower()}:{kind}"

    async def load(self, subreddit: str, kind: str) -> Cursor | None:
        doc: dict[str, Any] | None = await self.collection.find_one({"_id": self.key(subreddit, kind)})
        if doc is None:
            return None
        recent = tuple((str(r["id"]), float(r["t"])) for r in doc.get("recent") or [])
        return Cursor(doc.get("newest"), float(doc.get("newest_created_utc") or 0.0), recent)

    async def save(self, subreddit: str, kind: str, cursor: Cursor) -> None:
        # $set with upsert (not replace_one): nx-27017 does not carry the filter's _id
        # into an upserted replacement document; MongoDB accepts both.
        await self.collection.update_one(
            {"_id": self.key(subreddit, kind)},
            {"$set": {
                "subreddit": subreddit,
                "kind": kind,
                "newest": cursor.newest,
                "newest_created_utc": cursor.newest_created_utc,
                "recent": [{"id": n, "t": t} for n, t in cursor.recent],
                "updated_at": datetime.now(UTC),
            }},
            upsert=True,
        )
