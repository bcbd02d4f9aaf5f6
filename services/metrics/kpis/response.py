"""Response times (SPEC): a question's first response is the earliest ``message_posted``
replying to it by another member. Per day of the question: questions, answered, median and
p90 seconds to first response, and the share unanswered after 24 h among questions whose
24 h have passed.

Responses are looked for within ``window_s`` of the question (the facts they are found in
are kept that long; the default is seven days)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from services.metrics.kpis.calendar import Day, local_day
from services.metrics.kpis.facts import ActivityFact
from services.metrics.kpis.stats import median, nearest_rank, share

DAY_S = 86_400
WINDOW_S = 7 * DAY_S


@dataclass(frozen=True)
class ResponseDay:
    day: Day
    questions: int
    answered: int
    median_s: float | None
    p90_s: float | None
    due_24h: int  # questions whose 24 h have passed
    unanswered_24h: int

    def as_dict(self) -> dict:
        return {
            "questions": self.questions,
            "answered": self.answered,
            "response_median_s": self.median_s,
            "response_p90_s": self.p90_s,
            "unanswered_24h_share": share(self.unanswered_24h, self.due_24h),
        }


def first_responses(facts: Iterable[ActivityFact], window_s: float = WINDOW_S) -> dict[str, tuple[ActivityFact, float | None]]:
    """message_id -> (the question, seconds to its first response or None)."""
    questions: dict[str, ActivityFact] = {}
    replies: dict[str, list[ActivityFact]] = defaultdict(list)
    for fact in facts:
        if fact.kind != "message_posted":
            continue
        if fact.question and fact.message_id:
            questions.setdefault(fact.message_id, fact)
        elif fact.reply_to is not None:
            replies[fact.reply_to].append(fact)
    out = {}
    for message_id, question in questions.items():
        delays = [r.at - question.at for r in replies.get(message_id, ())
                  if r.member_id != question.member_id and 0 <= r.at - question.at <= window_s]
        out[message_id] = (question, min(delays) if delays else None)
    return out


def response_days(
    facts: Iterable[ActivityFact], first: Day, last: Day, *, tz: str, now: float,
    window_s: float = WINDOW_S,
) -> dict[Day, ResponseDay]:
    by_day: dict[Day, list[tuple[ActivityFact, float | None]]] = defaultdict(list)
    for question, delay in first_responses(facts, window_s).values():
        day = local_day(question.at, tz)
        if first <= day <= last:
            by_day[day].append((question, delay))
    out = {}
    for day in range(first, last + 1):
        rows = by_day.get(day, [])
        delays = [d for _, d in rows if d is not None]
        due = [(q, d) for q, d in rows if q.at + DAY_S <= now]
        out[day] = ResponseDay(
            day, len(rows), len(delays), median(delays), nearest_rank(delays, 0.9), len(due),
            sum(1 for _, d in due if d is None or d > DAY_S),
        )
    return out
