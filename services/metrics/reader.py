"""Reading KPIs: counters summed, running totals carried, bitmaps counted, joined KPIs
computed from facts.

Most numbers are sums of the counters the fold wrote, or counts over the day bitmaps. The
ones that join events (response times, exposure) are computed from the packed facts, and
sealed for good once their window has closed (plus a day's grace for late events), so long
ranges keep them after the facts' TTL. One whose facts expired unsealed reads as unknown.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from services.metrics.kpis import bitmaps
from services.metrics.kpis.bitmaps import MAU_DAYS
from services.metrics.kpis.calendar import (
    Day,
    day_end_utc,
    iso,
    iso_week,
    local_day,
    week_of,
)
from services.metrics.kpis.members import left_on
from services.metrics.kpis.response import WINDOW_S, response_days
from services.metrics.kpis.safety import EXPOSURE_WEEKS, exposure_retention, safety_days
from services.metrics.kpis.segments import power_users
from services.metrics.kpis.stats import share
from services.metrics.store import MetricsStore, generation_key

COUNTED = ("messages", "replies", "reactions", "joins", "leaves", "edits", "deletes", "rsvps", "attended",
           "classified", "flagged", "positive", "negative", "neutral")
CHANNEL_COUNTED = ("messages", "replies", "reactions", "joins", "leaves", "classified", "flagged")
LATE_GRACE = timedelta(days=1)  # events this late after a window closes still count; later ones not
UNKNOWN_RESPONSE = dict.fromkeys(("questions", "answered", "response_median_s", "response_p90_s",
                                  "unanswered_24h_share"))
UNKNOWN_EXPOSURE = dict.fromkeys(("exposed", "exposed_retention", "unexposed", "unexposed_retention"))


class KpiReader:
    def __init__(self, store: MetricsStore, timezone_of: Callable[[str], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.timezone_of = timezone_of
        self.clock = clock

    async def generation(self, community_id: str) -> str:
        current = (await self.store.generations([community_id]))[community_id].current
        return generation_key(community_id, current)

    def _final(self, window_closes_at: float) -> bool:
        """The window a joined KPI reads has closed (plus a grace): its value is kept for good."""
        return window_closes_at + LATE_GRACE.total_seconds() < self.clock()

    def _facts_gone(self, first_needed_at: float) -> bool:
        """Facts from this instant may have expired: a value not sealed by then is unknown."""
        return first_needed_at < self.clock() - self.store.facts_ttl.total_seconds()

    async def days(self, community_id: str, first: Day, last: Day) -> list[dict]:
        """Every daily KPI of SPEC, one row per day, zeros (or None for ratios) where nothing happened."""
        g = await self.generation(community_id)
        tz = self.timezone_of(community_id)
        rows = await self.store.counter_rows(g, "day", first, last)
        carried = await self.store.running_totals(g, first, ("total_delta", "left_delta"))
        members = await self.member_days(g, tz, first, last)
        responses = await self.responses(g, tz, first, last)
        start, end = day_end_utc(first - 1, tz).timestamp(), day_end_utc(last, tz).timestamp()
        safety = safety_days(await self.store.incident_records(g, start, end), tz)
        total, left = carried["total_delta"], carried["left_delta"]
        out = []
        for day in range(first, last + 1):
            n = rows.get((day, None), Counter())
            total += n["total_delta"]
            left += n["left_delta"]
            m = members[day]
            row = {"day": iso(day), "dau": m["dau"], "wau": m["wau"], "mau": m["mau"],
                   **{name: n[name] for name in COUNTED}}
            row.update(
                stickiness=share(m["dau"], m["mau"]), new_members=n["new"], total_members=total,
                left_members=left, engagement_rate=share(m["engaged"], total),
                flagged_share=share(n["flagged"], n["classified"]),
                sentiment=share(n["positive"], n["positive"] + n["negative"]),
            )
            row.update(responses[day])
            row.update(safety[day].as_dict(m["dau"]) if day in safety else _no_incidents(m["dau"]))
            out.append(row)
        return out

    async def headline(self, community_id: str, day: Day) -> dict:
        """The gauges' numbers for one day: 30 days of bitmaps rather than the 90 a full row reads."""
        g = await self.generation(community_id)
        tz = self.timezone_of(community_id)
        n = (await self.store.counter_rows(g, "day", day, day)).get((day, None), Counter())
        carried = await self.store.running_totals(g, day + 1, ("total_delta",))
        members: Counter = Counter()
        for days in (await self.store.bitmap_days(g, "active", day - MAU_DAYS + 1, day)).values():
            members.update(bitmaps.day_counts(days, day))
        incidents = await self.store.incident_records(g, day_end_utc(day - 1, tz).timestamp(),
                                                      day_end_utc(day, tz).timestamp())
        return {"dau": members["dau"], "wau": members["wau"], "mau": members["mau"],
                "stickiness": share(members["dau"], members["mau"]), "total_members": carried["total_delta"],
                "flagged_share": share(n["flagged"], n["classified"]),
                "incidents": sum(1 for i in incidents if i.severity is not None)}

    async def member_days(self, g: str, tz: str, first: Day, last: Day) -> dict[Day, Counter]:
        """DAU, WAU, MAU, engaged and dormant per day, from the day bitmaps of every partition."""
        active = await self.store.bitmap_days(g, "active", first - bitmaps.LOOKBACK, last)
        leavers = await self.store.leavers(g)
        out: dict[Day, Counter] = {}
        for day in range(first, last + 1):
            total: Counter = Counter()
            for partition, days in active.items():
                left = 0
                for member_partition, state in leavers:
                    if member_partition == partition and state.index is not None and left_on(state, day, tz):
                        left |= 1 << state.index
                total.update(bitmaps.day_counts(days, day, left))
            out[day] = total
        return out

    async def responses(self, g: str, tz: str, first: Day, last: Day) -> dict[Day, dict]:
        sealed = await self.store.sealed_values(g, "response", first, last)
        missing = [day for day in range(first, last + 1) if day not in sealed]
        gone = [day for day in missing if self._facts_gone(day_end_utc(day - 1, tz).timestamp())]
        sealed.update({day: UNKNOWN_RESPONSE for day in gone})
        missing = [day for day in missing if day not in gone]
        if missing:
            lo, hi = min(missing), max(missing)
            facts = await self.store.activity_facts(g, lo - 1, hi + WINDOW_S // 86_400 + 2)
            computed = response_days(facts, lo, hi, tz=tz, now=self.clock())
            fresh = {day: computed[day].as_dict() for day in missing}
            await self.store.seal(g, "response", {
                day: value for day, value in fresh.items()
                if self._final(day_end_utc(day, tz).timestamp() + WINDOW_S)})
            sealed.update(fresh)
        return sealed

    async def channels(self, community_id: str, first: Day, last: Day) -> list[dict]:
        g = await self.generation(community_id)
        totals: dict[str, Counter] = {}
        for (_, channel), n in (await self.store.counter_rows(g, "channel", first, last)).items():
            totals.setdefault(channel, Counter()).update(n)
        rows = [{"channel_id": channel, **{name: n[name] for name in CHANNEL_COUNTED}}
                for channel, n in totals.items()]
        return sorted(rows, key=lambda r: (-r["messages"], r["channel_id"]))

    async def retention(self, community_id: str, first_week: Day, last_week: Day) -> list[dict]:
        g = await self.generation(community_id)
        tz = self.timezone_of(community_id)
        cohorts = await self.store.bitmap_days(g, "cohort", week_of(first_week), last_week)
        now = self.clock()
        today = local_day(now, tz)
        active = await self.store.bitmap_days(g, "active", week_of(first_week), today)
        out = []
        for monday in range(week_of(first_week), last_week + 1, 7):
            members = {p: weeks[monday] for p, weeks in cohorts.items() if weeks.get(monday)}
            size = sum(bits.bit_count() for bits in members.values())
            if not size:
                continue
            shares = []
            k = 0
            while day_end_utc(monday + 7 * k - 1, tz).timestamp() <= now:  # week W+k has begun
                kept = sum(bitmaps.retained(bits, active.get(p, {}), monday + 7 * k) for p, bits in members.items())
                shares.append(share(kept, size))
                k += 1
            out.append({"cohort": iso_week(monday), "monday": iso(monday), "size": size, "weeks": shares})
        return out

    async def segments(self, community_id: str, day: Day) -> dict:
        g = await self.generation(community_id)
        rows = await self.store.counter_rows(g, "day", day - MAU_DAYS + 1, day)
        carried = await self.store.running_totals(g, day + 1, ("total_delta", "left_delta"))
        members = (await self.member_days(g, self.timezone_of(community_id), day, day))[day]
        facts_kept = self.clock() - self.store.facts_ttl.total_seconds()
        window_start = day_end_utc(day - MAU_DAYS, self.timezone_of(community_id)).timestamp()
        power = (power_users(await self.store.activity_facts(g, day - MAU_DAYS + 1, day)).as_dict()
                 if window_start >= facts_kept else
                 {"power_users": None, "power_user_threshold": None, "power_user_activity_share": None})
        return {
            "as_of": iso(day), "new": sum(n["new"] for n in rows.values()), **power,
            "dormant": members["dormant"], "left": carried["left_delta"], "total_members": carried["total_delta"],
        }

    async def exposure(self, community_id: str, first_week: Day, last_week: Day) -> list[dict]:
        """Weeks first_week..last_week whose week +4 has ended; sealed once their facts would expire."""
        g = await self.generation(community_id)
        tz = self.timezone_of(community_id)
        later = 7 * EXPOSURE_WEEKS
        weeks = [w for w in range(week_of(first_week), last_week + 1, 7)
                 if day_end_utc(w + later + 6, tz).timestamp() <= self.clock()]
        if not weeks:
            return []
        sealed = await self.store.sealed_values(g, "exposure", weeks[0], weeks[-1])
        missing = [w for w in weeks if w not in sealed]
        gone = [w for w in missing if self._facts_gone(day_end_utc(w - 8, tz).timestamp())]
        sealed.update({w: UNKNOWN_EXPOSURE for w in gone})
        missing = [w for w in missing if w not in gone]
        if missing:
            lo, hi = min(missing), max(missing)
            activity = await self.store.activity_facts(g, lo - 7, hi + later + 6)
            verdicts = await self.store.verdict_facts(g, lo - 7, hi + 6)
            fresh = {row.week: row.as_dict() for row in exposure_retention(activity, verdicts, missing, tz=tz)}
            await self.store.seal(g, "exposure", {
                w: value for w, value in fresh.items() if self._final(day_end_utc(w + later + 6, tz).timestamp())})
            sealed.update(fresh)
        return [{"week": iso_week(w), "monday": iso(w), **sealed[w]} for w in weeks]

    async def summary(self, community_id: str, first: Day, last: Day) -> dict:
        """Everything a dashboard or the health report shows for a period."""
        return {
            "community_id": community_id,
            "timezone": self.timezone_of(community_id),
            "from": iso(first),
            "to": iso(last),
            "days": await self.days(community_id, first, last),
            "retention": await self.retention(community_id, week_of(first) - 7 * 8, week_of(last)),
            "segments": await self.segments(community_id, last),
            "exposure": await self.exposure(community_id, week_of(first) - 7 * 8, week_of(last)),
            "channels": await self.channels(community_id, first, last),
        }


def _no_incidents(dau: int) -> dict:
    return {"incidents": 0, "incidents_by_severity": {}, "incidents_by_category": {},
            "incidents_per_1000_dau": 0.0 if dau else None, "moderator_precision": None,
            "acknowledged": 0, "time_to_ack_median_s": None, "time_to_ack_p90_s": None}



