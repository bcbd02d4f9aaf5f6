"""Replay scoring: precision/recall against moderator feedback, and before/after deltas."""

from datetime import UTC, datetime

import pytest

from services.moderation.replay import ReplayReport, compare, parse_since, render, score
from services.moderation.thresholds import suggest_thresholds


def test_score_counts_incidents_and_scores_only_labelled_events():
    decisions = {"e1": True, "e2": True, "e3": False, "e4": True, "e5": False}
    truth = {"e1": True, "e2": False, "e3": True, "e5": False, "missing": True}
    result = score(decisions, truth)
    assert result == {"incidents": 3, "precision": 0.5, "recall": 0.5, "tp": 1, "fp": 1, "fn": 1}


def test_score_is_undefined_without_flags_or_harm():
    assert score({"e1": False}, {"e1": False}) == {
        "incidents": 0, "precision": None, "recall": None, "tp": 0, "fp": 0, "fn": 0}
    assert score({}, {})["incidents"] == 0


def test_compare_gives_after_minus_before():
    before = score({"a": True, "b": True, "c": True}, {"a": True, "b": False, "c": False})
    after = score({"a": True, "b": False, "c": False}, {"a": True, "b": False, "c": False})
    assert before["precision"] == pytest.approx(1 / 3)
    delta = compare(before, after)
    assert delta["incidents"] == -2
    assert delta["precision"] == pytest.approx(2 / 3)
    assert delta["recall"] == 0.0
    assert compare({"incidents": 1, "precision": None, "recall": 1.0},
                   {"incidents": 1, "precision": 0.5, "recall": 1.0}) == {
        "incidents": 0, "precision": None, "recall": 0.0}


def test_parse_since():
    now = datetime(2026, 2, 10, 12, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2026, 2, 9, 12, tzinfo=UTC)
    assert parse_since("2026-02-01T00:00:00", now) == datetime(2026, 2, 1, tzinfo=UTC)
    assert parse_since(None, now) is None


def test_render_shows_both_sides():
    b = score({"a": True}, {"a": False})
    a = score({"a": False}, {"a": False})
    shown = render(ReplayReport("c", 1, 1, b, a, compare(b, a), "p1", "p2"))
    [table] = shown.renderables  # no threshold table without suggestions
    assert [c.header for c in table.columns][1:3] == ["before (p1)", "after (p2)"]


def test_render_adds_the_thresholds_from_feedback():
    from rich.console import Console

    b = a = score({"a": True}, {"a": True})
    thresholds = suggest_thresholds(
        {"insult": [(0.9, True)] * 3 + [(0.6, False)]}, {"insult": [0.95, 0.9, 0.6, 0.1]},
        current={"insult": 0.5, "spam": 0.7}, days=2.0, target_precision=0.9, min_support=3,
        attributed={"archive": 4, "replay": 0, "unknown": 0},
    )
    shown = render(ReplayReport("c", 4, 4, b, a, compare(b, a), "p1", "p2", thresholds))
    comparison, table = shown.renderables
    assert comparison.title.startswith("Replay of c")
    assert [c.header for c in table.columns][:2] == ["category", "now (p1)"]
    console = Console(width=240, record=True)
    console.print(shown)
    text = console.export_text()
    insult = next(line for line in text.splitlines() if line.startswith("│ insult"))
    cells = [cell.strip() for cell in insult.strip("│").split("│")]
    # now 0.5: precision 3/4, 3 alerts (1.5 a day); suggested 0.9: precise, 2 alerts (1.0 a day)
    assert cells == ["insult", "0.5", "0.750", "3 (1.5/day)", "0.9", "1.000", "1.000", "3/4", "2 (1.0/day)", ""]
    assert "too little feedback" not in insult
    assert "no feedback" in next(line for line in text.splitlines() if line.startswith("│ spam"))
    assert "precision 0.90" in text and "over 2.0 days" in text
