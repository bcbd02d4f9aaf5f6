"""The HTML health report: every chart is there, every mark carries the summary's number,
data from users is escaped, and missing data renders as gaps or 'no data'."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from html.parser import HTMLParser
from itertools import pairwise

import pytest

from services.metrics.report import render_report

SVG = "{http://www.w3.org/2000/svg}"
CHARTS = {"growth", "activity", "retention", "response", "sentiment", "incidents", "segments"}
GAP_DAY = "2026-03-05"  # the fixture's day with no data at all


def _day(index: int, **overrides: object) -> dict:
    """A plausible day, different on every index."""
    dau = 41 + 3 * index
    incidents_by_severity = [
        {"high": 1, "low": 2}, {}, {"medium": 1}, {"low": 1, "critical": 1},
        {"low": 3, "medium": 1, "high": 1}, {"high": 2}, {"low": 1},
    ][index % 7]
    incidents = sum(incidents_by_severity.values())
    row = {
        "day": (date(2026, 3, 2) + timedelta(days=index)).isoformat(),
        "dau": dau, "wau": 120 + 5 * index, "mau": 300 + 7 * index,
        "stickiness": round(dau / (300 + 7 * index), 4),
        "new_members": [3, 0, 5, 2, 7, 1, 4][index % 7], "total_members": 512 + 2 * index,
        "left_members": 20, "engagement_rate": 0.55, "messages": 230 + 11 * index,
        "replies": 90, "reactions": 140, "joins": 4, "leaves": 1, "edits": 3, "deletes": 1,
        "rsvps": 0, "attended": 0, "questions": 12, "answered": 10,
        "response_median_s": 840.0 + 120 * index, "response_p90_s": 7200.0 + 900 * index,
        "unanswered_24h_share": 0.0833,
        "classified": 225 + index, "flagged": 4 + index % 3, "flagged_share": 0.0178,
        "positive": 80, "negative": 20, "neutral": 125,
        "sentiment": round(0.8 - 0.05 * index, 4),
        "incidents": incidents, "incidents_by_severity": incidents_by_severity,
        "incidents_by_category": {"toxicity": incidents},
        "incidents_per_1000_dau": round(1000 * incidents / dau, 2),
        "moderator_precision": [0.6667, None, 1.0, 0.5, 0.8, 1.0, 0.0][index % 7],
        "acknowledged": incidents, "time_to_ack_median_s": 300.0, "time_to_ack_p90_s": 900.0,
    }
    row.update(overrides)
    return row


def _empty_day(index: int) -> dict:
    """A day the store knows nothing about: every number missing."""
    return {key: (value if key == "day" else None) for key, value in _day(index).items()}


def make_summary() -> dict:
    days = [_day(i) for i in range(7)]
    days[3] = _empty_day(3)
    return {
        "community_id": "acme", "timezone": "Europe/Paris", "from": "2026-03-02", "to": "2026-03-08",
        "generated_at": "2026-03-09T08:00:00+00:00",
        "days": days,
        "retention": [
            {"cohort": "2026-W07", "monday": "2026-02-09", "size": 9, "weeks": [1.0, 0.6667, 0.4444, 0.3333, None]},
            {"cohort": "2026-W08", "monday": "2026-02-16", "size": 22, "weeks": [1.0, 0.4545, 0.3636, None]},
            {"cohort": "2026-W09", "monday": "2026-02-23", "size": 14, "weeks": [1.0, 0.5, 0.2857]},
            {"cohort": "2026-W10", "monday": "2026-03-02", "size": 11, "weeks": [1.0, None]},
        ],
        "segments": {"as_of": "2026-03-08", "new": 21, "power_users": 30, "power_user_threshold": 25,
                     "power_user_activity_share": 0.61, "dormant": 80, "left": 20, "total_members": 524},
        "exposure": [
            {"week": "2026-W05", "monday": "2026-01-26", "exposed": 12, "exposed_retention": 0.5,
             "unexposed": 200, "unexposed_retention": 0.61},
            {"week": "2026-W06", "monday": "2026-02-02", "exposed": 7, "exposed_retention": 0.7143,
             "unexposed": 188, "unexposed_retention": 0.6},
        ],
        "channels": [
            {"channel_id": "C1", "messages": 1100, "replies": 40, "reactions": 60, "joins": 0, "leaves": 0,
             "classified": 98, "flagged": 2},
            {"channel_id": "C2", "messages": 77, "replies": 12, "reactions": 9, "joins": 3, "leaves": 1,
             "classified": 70, "flagged": 7},
        ],
    }


# --------------------------------------------------------------------------- parsing


def charts_of(page: str) -> dict[str, ET.Element]:
    """Each chart's root <svg>, parsed as XML (which also proves it is well formed)."""
    roots = [ET.fromstring(fragment) for fragment in re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)]
    return {root.get("data-chart"): root for root in roots}


def marks(root: ET.Element, series: str | None = None) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("data-value") is not None
            and (series is None or e.get("data-series") == series)]


def values_by_day(root: ET.Element, series: str) -> dict[str, float]:
    found = [(e.get("data-day"), float(e.get("data-value"))) for e in marks(root, series)]
    assert len({day for day, _ in found}) == len(found), "one mark per day"
    return dict(found)


def title_of(element: ET.Element) -> str:
    return element.find(f"{SVG}title").text


class Tags(HTMLParser):
    """Every start tag, and the text of each headline card's value."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.kpis: dict[str, dict[str, str]] = {}
        self._kpi: str | None = None
        self._in_value = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if "data-kpi" in attributes:
            self._kpi = attributes["data-kpi"]
            self.kpis[self._kpi] = {"data-value": attributes.get("data-value") or "", "text": ""}
        self._in_value = self._kpi is not None and attributes.get("class") == "value"

    def handle_endtag(self, tag: str) -> None:
        self._in_value = False

    def handle_data(self, data: str) -> None:
        if self._in_value and self._kpi is not None:
            self.kpis[self._kpi]["text"] += data


def parse(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    return tags


@pytest.fixture(scope="module")
def summary() -> dict:
    return make_summary()


@pytest.fixture(scope="module")
def page(summary: dict) -> str:
    return render_report(summary, period="weekly")


@pytest.fixture(scope="module")
def charts(page: str) -> dict[str, ET.Element]:
    return charts_of(page)


def expected(summary: dict, key: str) -> dict[str, float]:
    return {d["day"]: d[key] for d in summary["days"] if d[key] is not None}


# --------------------------------------------------------------------------- charts


def test_every_chart_is_present_and_labelled(charts: dict[str, ET.Element]) -> None:
    assert set(charts) == CHARTS
    for name, root in charts.items():
        assert root.get("role") == "img", name
        assert root.get("aria-label"), name
        assert marks(root), f"{name} has no data marks"
        assert all(title_of(mark) for mark in marks(root)), f"{name} has marks without a title"


def test_dau_points_carry_the_summary_dau(summary: dict, charts: dict[str, ET.Element]) -> None:
    dau = values_by_day(charts["activity"], "dau")
    assert dau == expected(summary, "dau")
    assert GAP_DAY not in dau and len(dau) == 6
    (first,) = [m for m in marks(charts["activity"], "dau") if m.get("data-day") == "2026-03-02"]
    assert title_of(first) == "2026-03-02 DAU 41"


@pytest.mark.parametrize(("chart", "key"), [
    ("activity", "wau"), ("activity", "mau"), ("activity", "stickiness"),
    ("growth", "total_members"), ("growth", "new_members"),
    ("response", "response_median_s"), ("response", "response_p90_s"),
    ("sentiment", "sentiment"),
])
def test_day_series_carry_the_summary_values(
    summary: dict, charts: dict[str, ET.Element], chart: str, key: str,
) -> None:
    assert values_by_day(charts[chart], key) == pytest.approx(expected(summary, key))


def test_points_are_drawn_higher_for_higher_values(summary: dict, charts: dict[str, ET.Element]) -> None:
    # SVG y grows downwards: a larger DAU must sit higher on the chart.
    points = sorted((float(m.get("data-value")), float(m.get("cy"))) for m in marks(charts["activity"], "dau"))
    heights = [cy for _, cy in points]
    assert heights == sorted(heights, reverse=True) and heights[0] > heights[-1]


def test_a_missing_day_breaks_the_line(charts: dict[str, ET.Element]) -> None:
    runs = [e for e in charts["activity"].iter(f"{SVG}polyline") if e.get("data-line") == "dau"]
    # Days 0-2 and 4-6 around the empty day: two separate runs of three points.
    assert [len(run.get("points").split()) for run in runs] == [3, 3]


def test_response_titles_use_readable_units(charts: dict[str, ET.Element]) -> None:
    median = {m.get("data-day"): title_of(m) for m in marks(charts["response"], "response_median_s")}
    assert median["2026-03-02"] == "2026-03-02 median response 14 min"
    p90 = {m.get("data-day"): title_of(m) for m in marks(charts["response"], "response_p90_s")}
    assert p90["2026-03-02"] == "2026-03-02 p90 response 2.0 h"
    axis = [t.text for t in charts["response"].iter(f"{SVG}text")]
    assert any(label.endswith(" h") for label in axis), axis


def test_retention_cells_carry_the_cohort_shares(summary: dict, charts: dict[str, ET.Element]) -> None:
    cells = {(m.get("data-cohort"), int(m.get("data-week"))): float(m.get("data-value"))
             for m in marks(charts["retention"], "retention")}
    wanted = {(c["cohort"], k): share for c in summary["retention"]
              for k, share in enumerate(c["weeks"]) if share is not None}
    assert cells == wanted
    printed = [t.text for t in charts["retention"].iter(f"{SVG}text")]
    assert "67%" in printed and "29%" in printed  # the share is written in its cell


def test_retention_cells_darken_with_the_share(charts: dict[str, ET.Element]) -> None:
    def lightness(fill: str) -> int:
        return sum(int(fill[i:i + 2], 16) for i in (1, 3, 5))

    cells = sorted((float(m.get("data-value")), lightness(m.get("fill"))) for m in marks(charts["retention"]))
    assert cells[0][1] > cells[-1][1]


def test_incident_bars_stack_to_the_days_total(summary: dict, charts: dict[str, ET.Element]) -> None:
    totals: dict[str, float] = {}
    for bar in marks(charts["incidents"]):
        totals[bar.get("data-day")] = totals.get(bar.get("data-day"), 0.0) + float(bar.get("data-value"))
    assert totals == {day: n for day, n in expected(summary, "incidents").items() if n}
    severities = {(m.get("data-day"), m.get("data-series")): float(m.get("data-value"))
                  for m in marks(charts["incidents"])}
    assert severities[("2026-03-06", "medium")] == 1 and severities[("2026-03-06", "low")] == 3


def test_incident_stacks_do_not_overlap(charts: dict[str, ET.Element]) -> None:
    day = [m for m in marks(charts["incidents"]) if m.get("data-day") == "2026-03-06"]
    spans = sorted((float(m.get("y")), float(m.get("y")) + float(m.get("height"))) for m in day)
    assert len(spans) == 3
    assert all(upper[1] == pytest.approx(lower[0], abs=0.11) for upper, lower in pairwise(spans))


def test_incidents_without_a_severity_still_add_up() -> None:
    summary = make_summary()
    summary["days"][0].update(incidents=5, incidents_by_severity={"high": 1})
    root = charts_of(render_report(summary, period="weekly"))["incidents"]
    first = {m.get("data-series"): float(m.get("data-value"))
             for m in marks(root) if m.get("data-day") == "2026-03-02"}
    assert first == {"high": 1, "unspecified": 4}


def test_segment_bars_carry_the_counts(summary: dict, charts: dict[str, ET.Element]) -> None:
    bars = {m.get("data-series"): float(m.get("data-value")) for m in marks(charts["segments"])}
    assert bars == {key: summary["segments"][key] for key in ("new", "power_users", "dormant", "left")}
    widths = {m.get("data-series"): float(m.get("width")) for m in marks(charts["segments"])}
    assert widths["dormant"] > widths["power_users"] > widths["new"] > widths["left"]


# --------------------------------------------------------------------------- page


def test_headline_numbers(summary: dict, page: str) -> None:
    kpis = parse(page).kpis
    days = [d for d in summary["days"] if d["dau"] is not None]
    last = days[-1]
    assert kpis["dau"]["text"] == str(last["dau"]) and float(kpis["dau"]["data-value"]) == last["dau"]
    assert float(kpis["mau"]["data-value"]) == last["mau"]
    assert kpis["stickiness"]["text"] == f"{last['stickiness'] * 100:.1f}%"
    assert float(kpis["total_members"]["data-value"]) == last["total_members"]
    assert float(kpis["new_members"]["data-value"]) == sum(d["new_members"] for d in days)
    assert float(kpis["incidents"]["data-value"]) == sum(d["incidents"] for d in days)
    flagged = sum(d["flagged"] for d in days) / sum(d["classified"] for d in days)
    assert float(kpis["flagged_share"]["data-value"]) == pytest.approx(flagged)
    per_1000 = 1000 * sum(d["incidents"] for d in days) / sum(d["dau"] for d in days)
    assert float(kpis["incidents_per_1000_dau"]["data-value"]) == pytest.approx(per_1000)
    upheld = sum(d["moderator_precision"] * d["incidents"] for d in days if d["moderator_precision"] is not None)
    precision = upheld / sum(d["incidents"] for d in days)
    assert float(kpis["moderator_precision"]["data-value"]) == pytest.approx(precision)
    # Daily medians 840, 960, 1080, 1320, 1440, 1560 s: the period shows their median, 1200 s.
    assert kpis["response_median_s"]["text"] == "20 min"
    assert set(kpis) == {"dau", "mau", "stickiness", "total_members", "new_members", "response_median_s",
                         "flagged_share", "incidents", "incidents_per_1000_dau", "moderator_precision"}


def test_header_and_period_wording(summary: dict) -> None:
    weekly, monthly = render_report(summary, period="weekly"), render_report(summary, period="monthly")

    def headings(page: str) -> str:
        return " ".join(re.findall(r"<(?:title|h1)>(.*?)</(?:title|h1)>", page))

    assert "Weekly" in headings(weekly) and "Monthly" not in headings(weekly)
    assert "Monthly" in headings(monthly) and "Weekly" not in headings(monthly)
    for text in ("acme", "2026-03-02", "2026-03-08", "Europe/Paris"):
        assert text in weekly
    with pytest.raises(ValueError):
        render_report(summary, period="daily")


def test_tables(summary: dict, page: str) -> None:
    channel_rows = re.search(r'<table data-table="channels">.*?</table>', page, flags=re.DOTALL).group(0)
    assert channel_rows.count("<tr>") == 1 + len(summary["channels"])
    assert "1,100" in channel_rows and "10.0%" in channel_rows  # C2: 7 flagged of 70
    exposure = re.search(r'<table data-table="exposure">.*?</table>', page, flags=re.DOTALL).group(0)
    assert exposure.count("<tr>") == 1 + len(summary["exposure"])
    assert "50.0%" in exposure and "61.0%" in exposure and "-11.0 pp" in exposure


def test_user_controlled_strings_are_escaped() -> None:
    summary = make_summary()
    summary["community_id"] = "<script>alert(1)</script>"
    summary["channels"][0]["channel_id"] = '"><img src=x onerror=alert(2)>'
    summary["retention"][0]["cohort"] = "<b>W07</b>"
    page = render_report(summary, period="weekly")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tags = parse(page).tags
    assert not [tag for tag, _ in tags if tag in {"script", "img", "b"}]
    assert not [attrs for _, attrs in tags if any(name.startswith("on") for name in attrs)]
    cohorts = {m.get("data-cohort") for m in marks(charts_of(page)["retention"])}
    assert "<b>W07</b>" in cohorts  # escaped in the page, intact once parsed


def test_the_page_is_self_contained(page: str) -> None:
    tags = parse(page).tags
    assert not [tag for tag, _ in tags if tag in {"script", "link", "img", "iframe"}]
    assert not [attrs for _, attrs in tags if "src" in attrs or "href" in attrs]
    assert re.findall(r"https?://[^\s\"']*", page) == ["http://www.w3.org/2000/svg"] * len(CHARTS)


# --------------------------------------------------------------------------- missing data


def test_missing_values_render_as_gaps() -> None:
    summary = make_summary()
    summary["days"] = [_empty_day(i) for i in range(7)]
    summary["days"][2] = _day(2, wau=None, incidents_by_severity=None)
    summary["segments"]["dormant"] = None
    summary["retention"][1]["weeks"] = [None, None]
    charts = charts_of(render_report(summary, period="monthly"))
    assert values_by_day(charts["activity"], "dau") == {"2026-03-04": 47}
    assert values_by_day(charts["activity"], "wau") == {}
    assert not [e for e in charts["activity"].iter(f"{SVG}polyline")]  # a lone point has no line
    # incidents known, breakdown unknown: one 'unspecified' bar of the day's total.
    bars = {m.get("data-series"): float(m.get("data-value")) for m in marks(charts["incidents"])}
    assert bars == {"unspecified": 1}
    assert "dormant" not in {m.get("data-series") for m in marks(charts["segments"])}
    assert "2026-W08" not in {m.get("data-cohort") for m in marks(charts["retention"])}


@pytest.mark.parametrize("summary", [
    {},
    {"community_id": "acme", "from": "2026-03-02", "to": "2026-03-08", "days": [], "retention": [],
     "segments": {}, "exposure": [], "channels": []},
    {"community_id": None, "days": None, "retention": None, "segments": None, "exposure": None, "channels": None},
    {"days": [_empty_day(i) for i in range(7)], "retention": [{"cohort": "2026-W10", "size": None, "weeks": []}]},
], ids=["nothing", "empty-lists", "nulls", "all-days-empty"])
def test_an_empty_summary_renders_no_data(summary: dict) -> None:
    page = render_report(copy.deepcopy(summary), period="weekly")
    charts = charts_of(page)
    assert set(charts) == CHARTS
    for name, root in charts.items():
        assert not marks(root), name
        assert "no data" in "".join(root.itertext()), name
    assert all(kpi["text"] == "—" for kpi in parse(page).kpis.values())
    assert page.count("no data</td>") == 2  # both tables say so


def test_a_month_of_days(summary: dict) -> None:
    month = copy.deepcopy(summary)
    month["days"] = [_day(i) for i in range(31)]
    root = charts_of(render_report(month, period="monthly"))["activity"]
    assert values_by_day(root, "dau") == {d["day"]: d["dau"] for d in month["days"]}
    day_labels = [t.text for t in root.iter(f"{SVG}text") if re.fullmatch(r"[A-Z][a-z]{2} \d+", t.text or "")]
    assert 4 <= len(day_labels) <= 10  # thinned so the labels do not collide
