"""Prometheus gauges for the headline KPIs, per community, with bounded label cardinality.

Only the ``limit`` communities with the most events seen by this process get labelled
series; the rest are counted in ``steward_kpi_untracked_communities``. Refreshed in the
background every ``interval_s``; the same loop seals joined KPIs whose facts near expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge

from services.metrics.kpis.calendar import local_day, week_of
from services.metrics.reader import KpiReader

log = logging.getLogger("steward.metrics.gauges")

HEADLINES = {
    "dau": "Members active today (community time zone)",
    "wau": "Members active over the last 7 days",
    "mau": "Members active over the last 30 days",
    "stickiness": "DAU / MAU today",
    "total_members": "Members today (joined or seen, not left)",
    "flagged_share": "Share of today's classified messages that were flagged",
    "incidents": "Incidents today",
}
SEAL_EVERY_S = 3600


class KpiGauges:
    def __init__(self, reader: KpiReader, registry: CollectorRegistry, *, limit: int, interval_s: float = 60) -> None:
        self.reader = reader
        self.limit = limit
        self.interval_s = interval_s
        self.seen: Counter = Counter()
        self.tracked: set[str] = set()
        self.gauges = {name: Gauge(f"steward_kpi_{name}", help_, ["community"], registry=registry)
                       for name, help_ in HEADLINES.items()}
        self.untracked = Gauge("steward_kpi_untracked_communities",
                               "Communities seen but not exported as labelled series (over the limit)",
                               registry=registry)
        self._task: asyncio.Task | None = None
        self._sealed_at = 0.0

    def observe(self, community_id: str) -> None:
        self.seen[community_id] += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is down: keep the last values, try again later
                log.exception("refreshing KPI gauges failed")
            await asyncio.sleep(self.interval_s)

    async def refresh(self) -> None:
        wanted = {community for community, _ in self.seen.most_common(self.limit)}
        for gone in self.tracked - wanted:
            for gauge in self.gauges.values():
                with contextlib.suppress(KeyError):
                    gauge.remove(gone)
        self.tracked = wanted
        self.untracked.set(max(0, len(self.seen) - len(wanted)))
        for community in wanted:
            today = local_day(time.time(), self.reader.timezone_of(community))
            row = await self.reader.headline(community, today)
            for name, gauge in self.gauges.items():
                value = row.get(name)
                gauge.labels(community).set(float("nan") if value is None else value)
        if time.time() - self._sealed_at > SEAL_EVERY_S:
            await self.seal_due(wanted)
            self._sealed_at = time.time()

    async def seal_due(self, communities: set[str]) -> None:
        """Read the days whose facts are about to expire, which seals their joined KPIs."""
        ttl_days = self.reader.store.facts_ttl.days
        for community in communities:
            today = local_day(time.time(), self.reader.timezone_of(community))
            first = today - ttl_days + 1
            await self.reader.days(community, first, first + 7)
            await self.reader.exposure(community, week_of(first) + 7, week_of(first) + 14)
