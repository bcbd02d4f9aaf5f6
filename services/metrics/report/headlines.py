"""The row of headline numbers at the top of the report.

Levels (DAU, MAU, stickiness, members) are the latest day that has them; flows (new
members, incidents) are period totals; ratios are rebuilt from the period's totals rather
than averaged day by day, so a quiet day weighs as little as it should.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median

from services.metrics.report.charts import duration_text
from services.metrics.report.svg import count_text, number, percent_text, short_day

Day = Mapping[str, object]


@dataclass(frozen=True)
class Headline:
    key: str
    label: str
    value: float | None
    text: str  # the value as a reader sees it; an em dash when there is none
    note: str  # where the number comes from, in a few words


def _latest(days: Sequence[Day], key: str) -> tuple[str, float | None]:
    for day in reversed(days):
        value = number(day.get(key))
        if value is not None:
            return str(day.get("day", "")), value
    return "", None


def _known(days: Sequence[Day], key: str) -> list[float]:
    return [v for day in days if (v := number(day.get(key))) is not None]


def _pairs(days: Sequence[Day], first: str, second: str) -> list[tuple[float, float]]:
    """Both fields of each day that has both."""
    out = []
    for day in days:
        a, b = number(day.get(first)), number(day.get(second))
        if a is not None and b is not None:
            out.append((a, b))
    return out


def _headline(key: str, label: str, value: float | None, words: Callable[[float], str], note: str) -> Headline:
    return Headline(key, label, value, "—" if value is None else words(value), note)


def _level(days: Sequence[Day], key: str, label: str, words: Callable[[float], str]) -> Headline:
    day, value = _latest(days, key)
    return _headline(key, label, value, words, f"on {short_day(day)}" if day else "no data")


def _period_total(days: Sequence[Day], key: str, label: str) -> Headline:
    values = _known(days, key)
    return _headline(key, label, sum(values) if values else None, count_text, "in the period")


def _flagged_share(days: Sequence[Day]) -> Headline:
    pairs = _pairs(days, "flagged", "classified")
    classified = sum(c for _, c in pairs)
    value = sum(f for f, _ in pairs) / classified if classified else None
    note = f"of {count_text(classified)} classified messages" if classified else "no messages classified"
    return _headline("flagged_share", "Flagged", value, percent_text, note)


def _incidents_per_1000_dau(days: Sequence[Day]) -> Headline:
    # Incidents over DAU summed across days: the daily rate, weighted by each day's DAU.
    pairs = _pairs(days, "incidents", "dau")
    dau_days = sum(d for _, d in pairs)
    value = 1000 * sum(i for i, _ in pairs) / dau_days if dau_days else None
    return _headline(
        "incidents_per_1000_dau", "Incidents / 1,000 DAU", value, lambda v: f"{v:.1f}", "over the period",
    )


def _moderator_precision(days: Sequence[Day]) -> Headline:
    # A day's precision times its incidents gives back the incidents upheld that day.
    pairs = _pairs(days, "moderator_precision", "incidents")
    incidents = sum(n for _, n in pairs)
    value = sum(p * n for p, n in pairs) / incidents if incidents else None
    return _headline("moderator_precision", "Moderator precision", value, percent_text,
                     "incidents not false positives")


def _median_response(days: Sequence[Day]) -> Headline:
    # Only daily medians reach the report, so the period gets the typical day's median.
    medians = _known(days, "response_median_s")
    value = median(medians) if medians else None
    return _headline("response_median_s", "Median response", value, duration_text, "median of daily medians")


def headlines(days: Sequence[Day]) -> list[Headline]:
    return [
        _level(days, "dau", "DAU", count_text),
        _level(days, "mau", "MAU", count_text),
        _level(days, "stickiness", "Stickiness", percent_text),
        _level(days, "total_members", "Members", count_text),
        _period_total(days, "new_members", "New members"),
        _median_response(days),
        _flagged_share(days),
        _period_total(days, "incidents", "Incidents"),
        _incidents_per_1000_dau(days),
        _moderator_precision(days),
    ]
