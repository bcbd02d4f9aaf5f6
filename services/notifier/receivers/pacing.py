"""Spacing posts to one Slack channel: Slack takes about one message a second per channel
(an incoming webhook posts to one channel) and answers a burst with 429s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["ChannelPacer"]


class ChannelPacer:
    """One post at a time per key (a channel, or a webhook URL), each starting at least
    ``interval_s`` after the previous one ended; different keys never wait for each other.

    Spacing from the end of a post, not its start, is what keeps the posts' arrivals at
    Slack ``interval_s`` apart whatever the network delay. Share one pacer between every
    receiver that may post to the same channel, within one event loop.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must not be negative")
        self.interval_s = interval_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._free_at: dict[str, float] = {}

    def _not_before(self, key: str, when: float) -> None:
        if when > self._free_at.get(key, 0.0):
            self._free_at[key] = when

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold ``key`` for one post: wait for its turn, and space the next one after it.
        With no interval, posts go in parallel and only a Retry-After holds them."""
        if self.interval_s == 0:
            while (wait := self._free_at.get(key, 0.0) - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            yield
            return
        async with self._locks.setdefault(key, asyncio.Lock()):
            # a loop, not one sleep: a Retry-After seen meanwhile may push the time further
            while (wait := self._free_at.get(key, 0.0) - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._not_before(key, time.monotonic() + self.interval_s)

    def hold(self, key: str, seconds: float) -> None:
        """Slack asked to wait (Retry-After): no post to ``key`` for ``seconds``."""
        self._not_before(key, time.monotonic() + max(0.0, seconds))
