"""Category thresholds chosen from moderator feedback. Pure: numbers in, suggestions out.

For each category, feedback gives pairs ``(score, harmful)``: the model's score of that
category on a message that was raised as an incident, and whether a moderator confirmed it
(acknowledged, resolved or escalated: harmful) or marked it a false positive (not harmful).
:func:`suggest_threshold` picks the **lowest** threshold at which the share of confirmed
incidents among the labelled messages scoring at or above it (the precision) reaches the
target, provided at least ``min_support`` labelled messages score at or above it. It then
counts how many of the replayed messages score at or above that threshold (the alert
volume this category's rule would produce on its own), and the same at the policy's
current threshold, for comparison.

Choices, and why:

- **Which feedback counts for a category.** An incident's feedback counts for every category
  that *fired* on it (``Incident.categories``, kept by the incident archive), and for no other.
  A false positive is "not harmful" for each of them; a confirmed incident is harmful for each.
  Using only the deciding category (``Incident.category``, the most severe one) would drop every
  message on which a more severe category also fired, so a low-severity category's threshold
  would be judged on a biased remainder. Feedback on an incident says nothing about
  categories that did not fire on it, so it is not counted for them.
- **Candidate thresholds** are the labelled scores rounded *down* to ``decimals`` places (a value
  fit for the policy file), and every labelled message scoring at or above a candidate counts:
  messages with equal scores cannot be separated by a threshold and always fall on the same side.
- **Support.** A precision from a handful of decisions is noise (with 10, one mistake moves it by
  10 points), so a threshold needs ``min_support`` labelled messages at or above it
  (default :data:`DEFAULT_MIN_SUPPORT`). Too little feedback, or no threshold that reaches the
  target, gives no threshold (``None``) and a reason, never a guess.
- **What feedback cannot tell.** Only raised messages ever reach a moderator, so there is
  feedback below the current threshold only where another rule raised the message. The suggestion
  therefore never goes below the lowest labelled score; recall is measured against the confirmed
  incidents (the harm moderators saw), not against all harm in the community.
- **Per day.** Volume per day is the count divided by the replayed span (first to last replayed
  message), and is only given when that span is at least ``min_span_days`` (default one day):
  an afternoon's rate says little about a day with its quiet night.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal

from schemas.moderation import CATEGORIES

DEFAULT_TARGET_PRECISION = 0.9
DEFAULT_MIN_SUPPORT = 20
DEFAULT_DECIMALS = 3
DEFAULT_MIN_SPAN_DAYS = 1.0
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class ThresholdSuggestion:
    category: str
    threshold: float | None  # the lowest threshold reaching the target; None: not reachable
    reason: str  # why there is no threshold ("" when there is one)
    precision: float | None  # on feedback, at ``threshold``
    recall: float | None  # share of the confirmed incidents scoring at or above ``threshold``
    support: int  # labelled messages at or above ``threshold``
    labelled: int  # labelled messages for this category in all
    harmful: int  # of them, confirmed harmful
    volume: int | None  # replayed messages at or above ``threshold``
    volume_per_day: float | None
    current_threshold: float | None  # the policy's community-wide threshold, None without a rule
    current_precision: float | None = None
    current_recall: float | None = None
    current_support: int = 0
    current_volume: int | None = None
    current_volume_per_day: float | None = None


@dataclass(frozen=True)
class ThresholdReport:
    target_precision: float
    min_support: int
    span_days: float | None  # first to last replayed message
    suggestions: dict[str, ThresholdSuggestion]
    attributed: dict[str, int] = field(default_factory=dict)  # labels by where their categories came from
    min_span_days: float = DEFAULT_MIN_SPAN_DAYS  # shorter spans give no per-day figures


def floor_to(value: float, decimals: int = DEFAULT_DECIMALS) -> float:
    """``value`` rounded down to ``decimals`` places, as it would be written in a policy file
    (never above ``value``, so a message scoring ``value`` stays at or above it)."""
    step = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(float(value))).quantize(step, rounding=ROUND_FLOOR))


def span_days(times: Iterable[datetime]) -> float | None:
    """Days from the first to the last of ``times``; None with fewer than two."""
    ordered = sorted(times)
    if len(ordered) < 2:
        return None
    return (ordered[-1] - ordered[0]).total_seconds() / SECONDS_PER_DAY


def per_day(count: int | None, days: float | None, min_span_days: float = DEFAULT_MIN_SPAN_DAYS) -> float | None:
    if count is None or days is None or days <= 0 or days < min_span_days:
        return None
    return count / days


class _Feedback:
    """Labelled pairs of one category, sorted by score, for counts at any threshold."""

    def __init__(self, pairs: Iterable[tuple[float, bool]]) -> None:
        ordered = sorted((float(s), bool(h)) for s, h in pairs)
        self.scores = [s for s, _ in ordered]
        # harmful_from[i]: confirmed harmful among ordered[i:]
        self.harmful_from = [0] * (len(ordered) + 1)
        for i in range(len(ordered) - 1, -1, -1):
            self.harmful_from[i] = self.harmful_from[i + 1] + ordered[i][1]
        self.harmful = self.harmful_from[0]

    def __len__(self) -> int:
        return len(self.scores)

    def at(self, threshold: float) -> tuple[int, int]:
        """(support, confirmed) among messages scoring at or above ``threshold``."""
        i = bisect_left(self.scores, threshold)
        return len(self.scores) - i, self.harmful_from[i]

    def precision_recall(self, threshold: float) -> tuple[float | None, float | None, int]:
        support, tp = self.at(threshold)
        return (tp / support if support else None,
                tp / self.harmful if self.harmful else None,
                support)


def _volume(sorted_scores: Sequence[float], threshold: float | None) -> int | None:
    return None if threshold is None else len(sorted_scores) - bisect_left(sorted_scores, threshold)


def suggest_threshold(
    category: str,
    labelled: Iterable[tuple[float, bool]],
    scores: Iterable[float],
    *,
    current: float | None = None,
    days: float | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_support: int = DEFAULT_MIN_SUPPORT,
    decimals: int = DEFAULT_DECIMALS,
    min_span_days: float = DEFAULT_MIN_SPAN_DAYS,
) -> ThresholdSuggestion:
    """The lowest threshold for ``category`` whose precision on ``labelled`` (score, harmful)
    pairs is at least ``target_precision`` with at least ``min_support`` labelled at or above
    it; with the volume of ``scores`` (every replayed message's score) at or above it, and the
    same figures at the ``current`` threshold. ``days``: the replayed span, for volume per day."""
    if not 0 < target_precision <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    if min_support < 1:
        raise ValueError(f"min_support must be at least 1, got {min_support}")
    feedback = _Feedback(labelled)
    replayed = sorted(float(s) for s in scores)

    threshold: float | None = None
    reason = ""
    if not len(feedback):
        reason = "no feedback"
    elif len(feedback) < min_support:
        reason = f"too little feedback: {len(feedback)} labelled, needs {min_support}"
    else:
        best = (-1.0, 0.0)  # (precision, threshold) with enough support
        for candidate in sorted({floor_to(s, decimals) for s in feedback.scores}):
            precision, _, support = feedback.precision_recall(candidate)
            if support < min_support or precision is None:
                break  # support only shrinks as the threshold rises
            if precision >= target_precision:
                threshold = candidate
                break
            if precision > best[0]:
                best = (precision, candidate)
        if threshold is None:  # the lowest candidate has every labelled message: best is set
            reason = f"not reachable: best {best[0]:.2f}, at {best[1]:g}, with {min_support}+ labelled"

    precision, recall, support = (feedback.precision_recall(threshold) if threshold is not None
                                  else (None, None, 0))
    cur_precision, cur_recall, cur_support = (feedback.precision_recall(current) if current is not None
                                              else (None, None, 0))
    volume, current_volume = _volume(replayed, threshold), _volume(replayed, current)
    return ThresholdSuggestion(
        category=category, threshold=threshold, reason=reason,
        precision=precision, recall=recall, support=support,
        labelled=len(feedback), harmful=feedback.harmful,
        volume=volume, volume_per_day=per_day(volume, days, min_span_days),
        current_threshold=current, current_precision=cur_precision, current_recall=cur_recall,
        current_support=cur_support, current_volume=current_volume,
        current_volume_per_day=per_day(current_volume, days, min_span_days),
    )


def _ordered(categories: Iterable[str]) -> list[str]:
    known = set(categories)
    return [c for c in CATEGORIES if c in known] + sorted(known - set(CATEGORIES))


def suggest_thresholds(
    labelled: Mapping[str, Iterable[tuple[float, bool]]],
    scores: Mapping[str, Iterable[float]],
    *,
    current: Mapping[str, float],
    days: float | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_support: int = DEFAULT_MIN_SUPPORT,
    decimals: int = DEFAULT_DECIMALS,
    min_span_days: float = DEFAULT_MIN_SPAN_DAYS,
    attributed: Mapping[str, int] | None = None,
) -> ThresholdReport:
    """:func:`suggest_threshold` for every category that has scores, feedback or a current rule."""
    categories = _ordered([*labelled, *scores, *current])
    return ThresholdReport(
        target_precision=target_precision, min_support=min_support, span_days=days,
        suggestions={
            c: suggest_threshold(
                c, labelled.get(c, ()), scores.get(c, ()), current=current.get(c), days=days,
                target_precision=target_precision, min_support=min_support, decimals=decimals,
                min_span_days=min_span_days,
            )
            for c in categories
        },
        attributed=dict(attributed or {}),
        min_span_days=min_span_days,
    )


@dataclass(frozen=True)
class Attribution:
    pairs: dict[str, list[tuple[float, bool]]]  # category -> (score, harmful)
    counts: dict[str, int]  # labels by source of their categories: archive, replay, unknown


def attribute(
    truth: Mapping[str, bool],
    scores: Mapping[str, Mapping[str, float]],
    archived: Mapping[str, Iterable[str]],
    fired: Mapping[str, Iterable[str]] | None = None,
) -> Attribution:
    """Per category, the (score, harmful) pairs of labelled messages.

    ``truth``: message (event id) -> harmful; ``scores``: message -> category -> score;
    ``archived``: message -> the categories that fired on its incident (the incident archive);
    ``fired``: message -> the categories the replayed policy fires, used only for a labelled
    message the archive does not know. A label whose categories are known from neither, or whose
    message was not scored, counts under ``unknown`` and gives no pair."""
    pairs: dict[str, list[tuple[float, bool]]] = {}
    counts = {"archive": 0, "replay": 0, "unknown": 0}
    fired = fired or {}
    for event_id, harmful in truth.items():
        reading = scores.get(event_id)
        categories, source = list(archived.get(event_id) or ()), "archive"
        if not categories:
            categories, source = list(fired.get(event_id) or ()), "replay"
        used = [c for c in dict.fromkeys(categories) if reading is not None and c in reading]
        if not used:
            counts["unknown"] += 1
            continue
        counts[source] += 1
        for category in used:
            pairs.setdefault(category, []).append((reading[category], harmful))
    return Attribution(pairs, counts)
