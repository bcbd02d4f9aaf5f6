"""Safety KPIs: incidents by severity and category, moderator precision, time to
acknowledge, and the safety-adjusted ones (incidents per 1,000 DAU, and the 4-week
retention of members exposed to flagged messages against those who were not).

Choices SPEC leaves open:
- an incident belongs to the day its message was posted, in the community's zone;
- moderator precision is the share of a day's incidents not marked false_positive;
- acknowledged means the first acknowledged, resolved or false_positive decision
  (``escalated`` hands it on and is not one); time to acknowledge runs from the earliest
  time the incident was raised;
- a member is exposed in week W when, that week, they reply to a flagged message or post
  in its thread (reply to the message it replies to) after it, and did not write it;
  among the members active in W, the exposed and the rest are compared by the share
  active in week W+4, for weeks whose W+4 has ended.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.metrics.kpis.calendar import Day, local_day, week_of
from services.metrics.kpis.facts import ACTIVE_KINDS, ActivityFact, VerdictFact
from services.metrics.kpis.stats import median, nearest_rank, share

ACK_ACTIONS = frozenset({"acknowledged", "resolved", "false_positive"})
EXPOSURE_WEEKS = 4


@dataclass
class IncidentRecord:
    incident_id: str
    occurred_at: float | None = None
    raised_at: float | None = None
    severity: str | None = None
    category: str | None = None
    acknowledged_at: float | None = None
    false_positive: bool = False


@dataclass
class SafetyDay:
    incidents: int = 0
    by_severity: Counter = field(default_factory=Counter)
    by_category: Counter = field(default_factory=Counter)
    false_positives: int = 0
    ack_delays: list[float] = field(default_factory=list)

    def as_dict(self, dau: int) -> dict:
        return {
            "incidents": self.incidents,
            "incidents_by_severity": dict(self.by_severity),
            "incidents_by_category": dict(self.by_category),
            "incidents_per_1000_dau": round(1000 * self.incidents / dau, 2) if dau else None,
            "moderator_precision": share(self.incidents - self.false_positives, self.incidents),
            "acknowledged": len(self.ack_delays),
            "time_to_ack_median_s": median(self.ack_delays),
            "time_to_ack_p90_s": nearest_rank(self.ack_delays, 0.9),
        }


def safety_days(incidents: Iterable[IncidentRecord], tz: str) -> dict[Day, SafetyDay]:
    days: dict[Day, SafetyDay] = defaultdict(SafetyDay)
    for incident in incidents:
        if incident.occurred_at is None or incident.severity is None:
            continue  # feedback came before its incident: nothing to count yet
        row = days[local_day(incident.occurred_at, tz)]
        row.incidents += 1
        row.by_severity[incident.severity] += 1
        row.by_category[incident.category] += 1
        row.false_positives += incident.false_positive
        if incident.acknowledged_at is not None and incident.raised_at is not None:
            row.ack_delays.append(max(0.0, incident.acknowledged_at - incident.raised_at))
    return days


@dataclass(frozen=True)
class ExposureWeek:
    week: Day
    exposed: int
    exposed_retained: int
    unexposed: int
    unexposed_retained: int

    def as_dict(self) -> dict:
        return {
            "exposed": self.exposed, "exposed_retention": share(self.exposed_retained, self.exposed),
            "unexposed": self.unexposed,
            "unexposed_retention": share(self.unexposed_retained, self.unexposed),
        }


def exposure_retention(
    activity: Iterable[ActivityFact], verdicts: Iterable[VerdictFact], weeks: Iterable[Day], *, tz: str,
) -> list[ExposureWeek]:
    """For each ISO week (its Monday) in ``weeks``: exposed vs not, retained 4 weeks later.
    ``activity`` must cover the weeks and the weeks 4 later, and the flagged messages' threads."""
    activity = list(activity)
    flagged = {v.message_id for v in verdicts if v.flagged and v.message_id}
    messages = {f.message_id: f for f in activity if f.kind == "message_posted" and f.message_id}
    # A reply target that exposes: the flagged message itself, or the thread it was posted in.
    exposing: dict[str, list[ActivityFact]] = defaultdict(list)
    for message_id in flagged:
        message = messages.get(message_id)
        if message is None:
            continue
        exposing[message_id].append(message)
        if message.reply_to is not None:
            exposing[message.reply_to].append(message)
    active: dict[Day, set[str]] = defaultdict(set)
    exposed: dict[Day, set[str]] = defaultdict(set)
    for fact in activity:
        if fact.kind not in ACTIVE_KINDS:
            continue
        week = week_of(local_day(fact.at, tz))
        active[week].add(fact.member_id)
        if fact.kind == "message_posted" and _exposes(fact, exposing.get(fact.reply_to or "", ())):
            exposed[week].add(fact.member_id)
    out = []
    for week in weeks:
        later = active.get(week + 7 * EXPOSURE_WEEKS, set())
        hit = exposed.get(week, set())
        rest = active.get(week, set()) - hit
        out.append(ExposureWeek(week, len(hit), len(hit & later), len(rest), len(rest & later)))
    return out


def _exposes(reply: ActivityFact, flagged_in_thread: Iterable[ActivityFact]) -> bool:
    """A reply after a flagged message, to it or in its thread, by someone who did not write it."""
    return any(reply.member_id != bad.member_id and reply.at >= bad.at and reply.message_id != bad.message_id
               for bad in flagged_in_thread)
