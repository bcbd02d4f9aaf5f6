"""A plain reference computation of the metrics KPIs, straight from SPEC, for the tests.

Written separately from the service on purpose: it keeps whole sets of members per day,
sorts and scans, and shares no code with ``services/metrics`` beyond the contracts. If the
service's incremental fold and this brute force disagree, one of them misreads SPEC.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas import MemberActivity, ModerationVerdict

ACTIVE = {"message_posted", "reaction_added", "event_attended"}
VOLUME = {"message_posted": "messages", "reaction_added": "reactions", "member_joined": "joins",
          "member_left": "leaves", "message_edited": "edits", "message_deleted": "deletes",
          "event_rsvp": "rsvps", "event_attended": "attended"}
RESPONSE_WINDOW = timedelta(days=7)


def ratio(part, whole):
    return round(part / whole, 4) if whole else None


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[math.ceil(q * len(ordered)) - 1] if ordered else None


def median(values):
    ordered = sorted(values)
    if not ordered:
        return None
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def is_question(e: MemberActivity) -> bool:
    return (e.kind == "message_posted" and e.reply_to is None
            and (bool(e.attributes.get("is_question")) or (e.text or "").strip().endswith("?")))


@dataclass
class Reference:
    activity: list[MemberActivity]
    verdicts: list[ModerationVerdict]
    tz: str
    now: datetime

    @classmethod
    def of(cls, activity, verdicts, tz: str, now: datetime) -> Reference:
        """Each event counted once: the first copy of each idempotency key wins."""
        unique_activity = list({e.event_id: e for e in reversed(activity)}.values())
        unique_verdicts = list({v.verdict_id: v for v in reversed(verdicts)}.values())
        return cls(unique_activity, unique_verdicts, tz, now)

    def day(self, moment: datetime) -> date:
        return moment.astimezone(ZoneInfo(self.tz)).date()

    def actives(self, first: date, last: date) -> set[str]:
        return {e.member_id for e in self.activity if e.kind in ACTIVE and first <= self.day(e.occurred_at) <= last}

    def first_seen(self) -> dict[str, date]:
        earliest: dict[str, datetime] = {}
        for e in self.activity:
            if e.member_id not in earliest or e.occurred_at < earliest[e.member_id]:
                earliest[e.member_id] = e.occurred_at
        return {m: self.day(t) for m, t in earliest.items()}

    def latest_membership(self, member: str, d: date) -> str | None:
        events = [e for e in self.activity if e.member_id == member and e.kind in ("member_joined", "member_left")
                  and self.day(e.occurred_at) <= d]
        if not events:
            return None
        return max(events, key=lambda e: (e.occurred_at, e.kind == "member_left")).kind

    def members_on(self, d: date) -> tuple[set[str], set[str]]:
        """(counted in total members, left) at the end of d."""
        total, left = set(), set()
        for member, seen in self.first_seen().items():
            if seen > d:
                continue
            latest = self.latest_membership(member, d)
            (left if latest == "member_left" else total).add(member)
        return total, left

    def daily(self, d: date) -> dict:
        dau = self.actives(d, d)
        mau = self.actives(d - timedelta(days=29), d)
        total, left = self.members_on(d)
        firsts = self.first_seen()
        row = {
            "dau": len(dau), "wau": len(self.actives(d - timedelta(days=6), d)), "mau": len(mau),
            "stickiness": ratio(len(dau), len(mau)),
            "new_members": sum(1 for seen in firsts.values() if seen == d),
            "total_members": len(total), "left_members": len(left),
            "engagement_rate": ratio(len(mau & total), len(total)),
        }
        volume = Counter(VOLUME[e.kind] for e in self.activity if self.day(e.occurred_at) == d)
        row.update({name: volume[name] for name in VOLUME.values()})
        row["replies"] = sum(1 for e in self.activity if e.kind == "message_posted" and e.reply_to is not None
                             and self.day(e.occurred_at) == d)
        row.update(self.responses(d))
        verdicts = [v for v in self.verdicts if self.day(v.occurred_at) == d]
        sentiments = Counter(v.sentiment.value for v in verdicts)
        flagged = sum(v.flagged for v in verdicts)
        row.update(classified=len(verdicts), flagged=flagged, flagged_share=ratio(flagged, len(verdicts)),
                   positive=sentiments["positive"], negative=sentiments["negative"], neutral=sentiments["neutral"],
                   sentiment=ratio(sentiments["positive"], sentiments["positive"] + sentiments["negative"]))
        return row

    def responses(self, d: date) -> dict:
        questions = [q for q in self.activity if is_question(q) and self.day(q.occurred_at) == d]
        delays, due, late = [], 0, 0
        for q in questions:
            answers = [(r.occurred_at - q.occurred_at).total_seconds() for r in self.activity
                       if r.kind == "message_posted" and r.reply_to == q.message_id and r.member_id != q.member_id
                       and timedelta(0) <= r.occurred_at - q.occurred_at <= RESPONSE_WINDOW]
            first = min(answers) if answers else None
            if first is not None:
                delays.append(first)
            if q.occurred_at + timedelta(days=1) <= self.now:
                due += 1
                late += first is None or first > 86_400
        return {"questions": len(questions), "answered": len(delays), "response_median_s": median(delays),
                "response_p90_s": nearest_rank(delays, 0.9), "unanswered_24h_share": ratio(late, due)}

    def dormant(self, d: date) -> int:
        recent = self.actives(d - timedelta(days=29), d)
        return len(self.actives(d - timedelta(days=89), d - timedelta(days=30)) - recent)

    def retention(self, first_week: date, last_week: date) -> list[dict]:
        cohorts: dict[date, set[str]] = defaultdict(set)
        for member, seen in self.first_seen().items():
            cohorts[monday(seen)].add(member)
        out = []
        week = first_week
        while week <= last_week:
            members = cohorts.get(week)
            if members:
                shares, k = [], 0
                while datetime.combine(week + timedelta(weeks=k), datetime.min.time(), ZoneInfo(self.tz)) <= self.now:
                    start = week + timedelta(weeks=k)
                    shares.append(ratio(len(members & self.actives(start, start + timedelta(days=6))), len(members)))
                    k += 1
                out.append({"monday": week.isoformat(), "size": len(members), "weeks": shares})
            week += timedelta(weeks=1)
        return out

    def segments(self, d: date) -> dict:
        window = [e for e in self.activity if e.kind in ACTIVE
                  and d - timedelta(days=29) <= self.day(e.occurred_at) <= d]
        counts = sorted(Counter(e.member_id for e in window).values(), reverse=True)
        total, left = self.members_on(d)
        firsts = self.first_seen()
        power = {"power_users": 0, "power_user_threshold": None, "power_user_activity_share": None}
        if counts:
            threshold = counts[math.ceil(0.1 * len(counts)) - 1]
            top = [n for n in counts if n >= threshold]
            power = {"power_users": len(top), "power_user_threshold": threshold,
                     "power_user_activity_share": round(sum(top) / sum(counts), 4)}
        return {"new": sum(1 for seen in firsts.values() if d - timedelta(days=29) <= seen <= d), **power,
                "dormant": self.dormant(d), "left": len(left), "total_members": len(total)}

    def channels(self, first: date, last: date) -> dict[str, Counter]:
        out: dict[str, Counter] = defaultdict(Counter)
        for e in self.activity:
            if e.channel_id is None or not first <= self.day(e.occurred_at) <= last:
                continue
            name = VOLUME[e.kind]
            if name in ("messages", "reactions", "joins", "leaves"):
                out[e.channel_id][name] += 1
            if e.kind == "message_posted" and e.reply_to is not None:
                out[e.channel_id]["replies"] += 1
        for v in self.verdicts:
            if v.channel_id is not None and first <= self.day(v.occurred_at) <= last:
                out[v.channel_id]["classified"] += 1
                out[v.channel_id]["flagged"] += v.flagged
        return out

    def exposure(self, week: date) -> dict:
        flagged = {v.message_id for v in self.verdicts if v.flagged}
        messages = {e.message_id: e for e in self.activity if e.kind == "message_posted"}
        bad = [messages[m] for m in flagged if m in messages]
        active_now = self.actives(week, week + timedelta(days=6))
        later = self.actives(week + timedelta(weeks=4), week + timedelta(weeks=4, days=6))
        exposed = set()
        for e in self.activity:
            if (e.kind != "message_posted" or e.reply_to is None
                    or not week <= self.day(e.occurred_at) <= week + timedelta(days=6)):
                continue
            for b in bad:
                in_thread = e.reply_to == b.message_id or (b.reply_to is not None and e.reply_to == b.reply_to)
                if in_thread and e.member_id != b.member_id and e.occurred_at >= b.occurred_at and e.message_id != b.message_id:
                    exposed.add(e.member_id)
        rest = active_now - exposed
        return {"exposed": len(exposed), "exposed_retention": ratio(len(exposed & later), len(exposed)),
                "unexposed": len(rest), "unexposed_retention": ratio(len(rest & later), len(rest))}
