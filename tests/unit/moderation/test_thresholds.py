"""Thresholds per category from moderator feedback: the lowest threshold reaching a target
precision with enough labelled support, and the alert volume it would give."""

from datetime import UTC, datetime, timedelta

import pytest

from services.moderation.thresholds import (
    DEFAULT_MIN_SUPPORT,
    attribute,
    floor_to,
    per_day,
    span_days,
    suggest_threshold,
    suggest_thresholds,
)


def pairs(*spec: tuple[float, int, int]) -> list[tuple[float, bool]]:
    """(score, confirmed harmful, false positives) -> that many labelled pairs at that score."""
    out = []
    for value, harmful, not_harmful in spec:
        out += [(value, True)] * harmful + [(value, False)] * not_harmful
    return out


def test_picks_the_lowest_threshold_reaching_the_target():
    labelled = pairs((0.55, 0, 2), (0.6, 1, 1), (0.7, 3, 0), (0.8, 4, 0), (0.9, 2, 0))
    s = suggest_threshold("insult", labelled, [0.1, 0.55, 0.6, 0.7, 0.8, 0.9],
                          current=0.5, target_precision=0.9, min_support=5)
    # at 0.55: 10/13; at 0.6: 10/11 = 0.909 >= 0.9 -> 0.6 (0.7 would be precise too, but higher)
    assert s.threshold == 0.6
    assert s.precision == pytest.approx(10 / 11)
    assert s.recall == 1.0
    assert (s.support, s.labelled, s.harmful) == (11, 13, 10)
    assert s.reason == ""
    assert (s.current_threshold, s.current_support) == (0.5, 13)
    assert s.current_precision == pytest.approx(10 / 13)
    assert (s.volume, s.current_volume) == (4, 5)


def test_equal_scores_fall_on_the_same_side_of_any_threshold():
    # Two messages at 0.8: one confirmed, one false positive. No threshold takes the confirmed
    # one without the other (a scan that split them would find 4/4 at 0.8); both count: 4/5.
    labelled = pairs((0.8, 1, 1), (0.85, 2, 0), (0.95, 1, 0))
    s = suggest_threshold("spam", labelled, [], target_precision=0.9, min_support=2)
    assert s.threshold == 0.85
    assert (s.precision, s.support) == (1.0, 3)
    assert s.recall == pytest.approx(3 / 4)
    # the order the tied pairs come in changes nothing
    flipped = [(0.8, False), (0.8, True)] + labelled[2:]
    assert suggest_threshold("spam", flipped, [], target_precision=0.9, min_support=2) == s
    # a target the tie meets exactly (4/5) is reached at the tie
    at_tie = suggest_threshold("spam", labelled, [], target_precision=0.8, min_support=2)
    assert (at_tie.threshold, at_tie.precision, at_tie.support) == (0.8, 0.8, 5)


def test_thresholds_are_rounded_down_to_a_policy_value_and_scores_on_it_count():
    labelled = [(0.73418, True), (0.7349, True), (0.7, False)]
    s = suggest_threshold("threat", labelled, [0.7341, 0.73418, 0.75], target_precision=1.0, min_support=2)
    assert s.threshold == 0.734  # both confirmed scores floor to 0.734, which keeps both
    assert (s.support, s.precision) == (2, 1.0)
    assert s.volume == 3  # 0.7341 is at or above 0.734 too: the volume is that of the written threshold
    assert floor_to(0.29, 2) == 0.29 and floor_to(0.2899, 2) == 0.28 and floor_to(1.0) == 1.0


def test_unreachable_target_gives_no_threshold_and_says_so():
    labelled = pairs((0.6, 3, 3), (0.7, 3, 2), (0.9, 2, 1))
    s = suggest_threshold("insult", labelled, [0.6, 0.9], current=0.6, target_precision=0.9, min_support=3)
    assert s.threshold is None
    assert (s.precision, s.recall, s.support, s.volume, s.volume_per_day) == (None, None, 0, None, None)
    assert s.reason.startswith("not reachable")
    assert "best 0.67, at 0.9" in s.reason  # the best precision with enough support, for the record
    # the current threshold is still described
    assert s.current_precision == pytest.approx(8 / 14)
    assert s.current_volume == 2


def test_minimum_support_refuses_precise_but_thin_evidence():
    # 1.0 precision above 0.9 rests on 3 messages: not enough with min_support 5
    labelled = pairs((0.5, 4, 3), (0.9, 3, 0))
    thin = suggest_threshold("sexual", labelled, [], target_precision=0.9, min_support=5)
    assert thin.threshold is None and thin.reason.startswith("not reachable")
    assert suggest_threshold("sexual", labelled, [], target_precision=0.9, min_support=3).threshold == 0.9
    # support counts the labelled messages at or above the threshold, not all feedback
    assert suggest_threshold("sexual", labelled, [], target_precision=0.9, min_support=4).threshold is None


def test_too_little_or_no_feedback():
    few = suggest_threshold("threat", pairs((0.9, 3, 0)), [0.9], current=0.5)
    assert few.threshold is None
    assert few.reason == f"too little feedback: 3 labelled, needs {DEFAULT_MIN_SUPPORT}"
    assert few.current_volume == 1
    none = suggest_threshold("threat", [], [0.2, 0.95], current=0.5)
    assert (none.threshold, none.reason, none.labelled) == (None, "no feedback", 0)
    assert none.current_volume == 1 and none.current_precision is None
    no_rule = suggest_threshold("sexual", [], [0.9])
    assert (no_rule.current_threshold, no_rule.current_volume) == (None, None)


def test_volume_per_day_over_the_replayed_span():
    start = datetime(2026, 2, 1, tzinfo=UTC)
    times = [start + timedelta(hours=h) for h in (0, 30, 60, 96)]
    assert span_days(times) == 4.0
    assert span_days(times[:1]) is None and span_days([]) is None
    labelled = pairs((0.9, 5, 0))
    scores = [0.95, 0.92, 0.9, 0.8, 0.6, 0.4, 0.1, 0.9]
    s = suggest_threshold("spam", labelled, scores, current=0.7, days=4.0, min_support=5)
    assert s.threshold == 0.9
    assert (s.volume, s.volume_per_day) == (4, 1.0)
    assert (s.current_volume, s.current_volume_per_day) == (5, 1.25)
    # under a day: counts, but no per-day rate extrapolated from a few hours
    short = suggest_threshold("spam", labelled, scores, current=0.7, days=0.25, min_support=5)
    assert (short.volume, short.volume_per_day, short.current_volume_per_day) == (4, None, None)
    assert per_day(3, 0.5, min_span_days=0.5) == 6.0
    assert per_day(3, None) is None and per_day(None, 3.0) is None


def test_suggest_thresholds_covers_every_category_in_taxonomy_order():
    report = suggest_thresholds(
        {"spam": pairs((0.9, 5, 0))},
        {"toxicity": [0.1], "spam": [0.9, 0.1], "insult": [0.2]},
        current={"insult": 0.6, "threat": 0.5},
        days=2.0, target_precision=0.9, min_support=5, attributed={"archive": 5},
    )
    assert list(report.suggestions) == ["toxicity", "insult", "threat", "spam"]
    assert report.suggestions["spam"].threshold == 0.9
    assert report.suggestions["spam"].volume_per_day == 0.5
    assert report.suggestions["threat"].current_volume == 0  # a rule, but no replayed scores
    assert (report.target_precision, report.min_support, report.span_days) == (0.9, 5, 2.0)
    assert report.attributed == {"archive": 5}


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        suggest_threshold("spam", [], [], target_precision=0)
    with pytest.raises(ValueError):
        suggest_threshold("spam", [], [], target_precision=1.5)
    with pytest.raises(ValueError):
        suggest_threshold("spam", [], [], min_support=0)


def test_feedback_counts_for_the_categories_that_fired_on_the_incident():
    scores = {
        "e1": {"insult": 0.7, "toxicity": 0.8, "threat": 0.1},
        "e2": {"insult": 0.65, "toxicity": 0.5, "threat": 0.2},
        "e3": {"insult": 0.9, "toxicity": 0.9, "threat": 0.9},
        "e4": {"insult": 0.1, "toxicity": 0.1, "threat": 0.1},
    }
    truth = {"e1": True, "e2": False, "e3": True, "e4": False, "gone": True}
    archived = {"e1": ["insult", "toxicity"], "e2": ["insult"], "e3": []}
    fired = {"e3": ("threat",), "e1": ("spam",)}
    result = attribute(truth, scores, archived, fired)
    # e1: both archived categories, harmful; e2's false positive only for insult (not toxicity,
    # which did not fire on it); e3 not archived: the replayed policy's categories; e4 and the
    # unscored "gone" cannot be attributed.
    assert result.pairs == {
        "insult": [(0.7, True), (0.65, False)],
        "toxicity": [(0.8, True)],
        "threat": [(0.9, True)],
    }
    assert result.counts == {"archive": 2, "replay": 1, "unknown": 2}
