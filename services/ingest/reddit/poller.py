"""The Reddit poller: new posts and new comments of each subreddit -> community.activity.v1.

Per (subreddit, kind) stream, one cycle:

1. load the cursor (newest fullname and its ``created_utc``) from MongoDB;
2. page the newest-first listing (``limit``, ``after``) until an item older than the
   cursor shows up (or the page budget is spent), skipping items already published;
3. publish the new items OLDEST FIRST, in batches whose events all have distinct partition
   keys (so one member's events keep their order), and save the cursor after each batch the
   broker acknowledged.

A failed publish leaves the cursor where it was: the next cycle reads and publishes the
same items again (at-least-once; ``event_id`` is stable so downstream effects are not
repeated). With no cursor the stream starts "now" (nothing published) unless
``reddit_backfill`` asks for that many of the newest items.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from schemas import MemberActivity
from schemas.base import utc_now
from services.ingest.reddit.client import RedditClient
from services.ingest.reddit.cursor import Cursor, CursorStore
from services.ingest.reddit.mapping import (
    children,
    created_of,
    fullname_of,
    to_activity,
)
from services.ingest.reddit.settings import RedditSettings

log = logging.getLogger("steward.ingest.reddit")

Publish = Callable[[list[MemberActivity]], Awaitable[None]]

STREAMS: dict[str, str] = {"posts": "new", "comments": "comments"}
"""Stream kind -> listing endpoint under ``/r/{subreddit}/``."""


@dataclass
class StreamResult:
    subreddit: str
    kind: str
    new: int = 0
    published: int = 0
    skipped: int = 0
    first_run: bool = False
    truncated: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class RedditPoller:
    def __init__(
        self,
        settings: RedditSettings,
        *,
        client: RedditClient,
        db: AsyncDatabase,
        publish: Publish,
        batch_size: int = 100,
    ) -> None:
        self.settings = settings
        self.client = client
        self.cursors = CursorStore(db, settings.reddit_cursor_collection)
        self.publish = publish
        self.batch_size = batch_size

    async def poll_once(self) -> list[StreamResult]:
        """One cycle over every configured subreddit and stream; errors are per stream."""
        results = []
        for subreddit in self.settings.reddit_subreddits:
            for kind in STREAMS:
                result = StreamResult(subreddit, kind)
                try:
                    await self.poll_stream(subreddit, kind, result)
                except Exception as error:  # noqa: BLE001 - reported; the cursor stays, the next cycle retries
                    result.error = f"{type(error).__name__}: {error}"[:500]
                    log.warning("r/%s %s: cycle failed, cursor kept: %s", subreddit, kind, result.error)
                results.append(result)
        return results

    async def poll_stream(self, subreddit: str, kind: str, result: StreamResult | None = None) -> StreamResult:
        result = result or StreamResult(subreddit, kind)
        cursor = await self.cursors.load(subreddit, kind)
        if cursor is None:
            result.first_run = True
            if self.settings.reddit_backfill == 0:
                await self._start_now(subreddit, kind)
                return result
            items = await self._fetch(subreddit, kind, None, want=self.settings.reddit_backfill, result=result)
            cursor = Cursor(None, -math.inf)
        else:
            items = await self._fetch(subreddit, kind, cursor, want=None, result=result)
        result.new = len(items)
        if items:
            await self._publish_in_order(subreddit, kind, cursor, items, result)
        return result

    async def _start_now(self, subreddit: str, kind: str) -> None:
        """First run without backfill: remember the newest item, publish nothing."""
        page = await self.client.listing(subreddit, STREAMS[kind], limit=self.settings.reddit_page_limit)
        seen = [(n, created_of(i)) for i in children(page) if (n := fullname_of(i))]
        cursor = Cursor(None, 0.0).advance(reversed(seen), self.settings.reddit_lookback_s)
        await self.cursors.save(subreddit, kind, cursor)
        log.info("r/%s %s: first run, starting after %s (no backfill)", subreddit, kind, cursor.newest)

    async def _fetch(
        self, subreddit: str, kind: str, cursor: Cursor | None, *, want: int | None, result: StreamResult
    ) -> list[dict[str, Any]]:
        """The items newer than ``cursor`` (or the ``want`` newest), OLDEST FIRST."""
        s = self.settings
        threshold = cursor.newest_created_utc - s.reddit_lookback_s if cursor else -math.inf
        already = cursor.recent_ids if cursor else frozenset()
        found: list[dict[str, Any]] = []
        names: set[str] = set()
        after: str | None = None
        reached = False
        for _ in range(s.reddit_max_pages):
            page = await self.client.listing(subreddit, STREAMS[kind], limit=s.reddit_page_limit, after=after)
            items = children(page)
            for item in items:
                name = fullname_of(item)
                if name is None:
                    continue
                if created_of(item) < threshold or (want is not None and len(found) >= want):
                    reached = True
                    break
                # Pages shift while new items arrive, so one item can show up on two pages.
                if name in already or name in names:
                    continue
                names.add(name)
                found.append(item)
            after = (page.get("data") or {}).get("after")
            if reached or not after or not items:
                reached = True
                break
        if not reached:
            result.truncated = True
            log.warning("r/%s %s: %d page(s) read without reaching the cursor; older items are "
                        "beyond Reddit's listing and are not published", subreddit, kind, s.reddit_max_pages)
        found.reverse()  # newest first -> oldest first; equal timestamps keep listing order
        found.sort(key=created_of)
        return found

    async def _publish_in_order(
        self, subreddit: str, kind: str, cursor: Cursor, items: list[dict[str, Any]], result: StreamResult
    ) -> None:
        lookback = self.settings.reddit_lookback_s
        received_at = utc_now()
        covered: list[tuple[str, float]] = []
        batch: list[MemberActivity] = []
        keys: set[bytes] = set()

        async def flush() -> None:
            nonlocal cursor
            if batch:
                await self.publish(list(batch))  # returns only once the broker acked them all
                result.published += len(batch)
            cursor = cursor.advance(covered, lookback)
            await self.cursors.save(subreddit, kind, cursor)
            covered.clear()
            batch.clear()
            keys.clear()

        for item in items:
            event = to_activity(item, received_at=received_at)
            if event is not None and (event.partition_key() in keys or len(batch) >= self.batch_size):
                await flush()
            covered.append((fullname_of(item) or "", created_of(item)))
            if event is None:
                result.skipped += 1
            else:
                batch.append(event)
                keys.add(event.partition_key())
        if covered:
            await flush()
        log.info("r/%s %s: published %d, skipped %d; cursor at %s", subreddit, kind,
                 result.published, result.skipped, cursor.newest)

    async def run(self, stop: asyncio.Event, *, grace_s: float = 20.0) -> None:
        """Poll every ``reddit_poll_interval_s`` until ``stop`` is set; a cycle in progress
        gets ``grace_s`` to finish (cancelling it is safe too: the cursor moves only after acks)."""
        while not stop.is_set():
            cycle = asyncio.create_task(self.poll_once())
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({cycle, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if cycle not in done:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(cycle, grace_s)
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.reddit_poll_interval_s)
