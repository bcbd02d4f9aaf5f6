"""The one-page HTML report: header, headline numbers, charts with captions, tables.

The page is a single self-contained file (inline CSS and SVG, no script, nothing fetched)
so it can be mailed, archived or opened offline. Every string from the summary goes
through ``html.escape``: community and channel ids are chosen by users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from services.metrics.report import charts
from services.metrics.report.headlines import Headline, headlines
from services.metrics.report.svg import count_text, number, percent_text, short_day
from services.metrics.report.tables import channels_table, exposure_table

PERIOD_TITLES = {"weekly": "Weekly", "monthly": "Monthly"}

CAPTIONS = {
    "growth": "Total members each day (line) and the members who joined that day (bars).",
    "activity": (
        "Members active each day, over the last 7 and over the last 30 days, and stickiness: "
        "the share of the monthly members who come on a given day."
    ),
    "retention": "Each row is the members first seen in a week; each cell the share of them active k weeks later.",
    "response": "How long the questions asked each day waited for a first answer: the median and the slowest 10%.",
    "sentiment": "Share of positive messages among those classified positive or negative.",
    "incidents": "Moderation incidents raised on the messages posted each day, stacked by severity.",
}

STYLE = """
body{margin:0;background:#f8fafc;color:#0f172a;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:980px;margin:0 auto;padding:24px 20px 48px}
header h1{margin:0 0 4px;font-size:26px}
header p{margin:0;color:#475569}
h2{font-size:18px;margin:32px 0 10px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin-top:20px}
.kpi{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:10px 14px}
.kpi .label{font-size:13px;color:#475569}
.kpi .value{font-size:24px;font-weight:650;margin:2px 0}
.kpi .note{font-size:12px;color:#64748b}
figure{background:#fff;border:1px solid #e2e8f0;border-radius:10px;margin:0 0 16px;padding:12px 14px}
figure h3{margin:0 0 6px;font-size:16px}
figcaption{font-size:13px;color:#475569;margin-top:4px}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #e2e8f0;font-size:14px}
th,td{padding:6px 10px;border-bottom:1px solid #e2e8f0}
th{background:#f1f5f9;font-weight:600}
.num{text-align:right;font-variant-numeric:tabular-nums}
.text{text-align:left;word-break:break-all}
td.empty{text-align:center;color:#94a3b8}
footer{margin-top:32px;font-size:12px;color:#64748b}
@media print{body{background:#fff}figure,.kpi{break-inside:avoid}}
"""


def _mappings(value: object) -> list[Mapping[str, object]]:
    """The rows of a list field, skipping anything that is not a row (or a missing list)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [row for row in value if isinstance(row, Mapping)]


def _text(summary: Mapping[str, object], key: str, default: str = "—") -> str:
    value = summary.get(key)
    return default if value in (None, "") else str(value)


def _header(summary: Mapping[str, object], period: str) -> str:
    community = escape(_text(summary, "community_id", "unknown community"))
    start, end = _text(summary, "from"), _text(summary, "to")
    zone = _text(summary, "timezone", "UTC")
    return (
        "<header>"
        f"<h1>{escape(PERIOD_TITLES[period])} community health report: {community}</h1>"
        f'<p><span data-field="range">{escape(start)} – {escape(end)}</span> '
        f"({escape(short_day(start))} to {escape(short_day(end))}, days in {escape(zone)})</p>"
        "</header>"
    )


def _headline_card(headline: Headline) -> str:
    value = "" if headline.value is None else f'{headline.value:.10g}'
    return (
        f'<div class="kpi" data-kpi="{escape(headline.key)}" data-value="{value}">'
        f'<div class="label">{escape(headline.label)}</div>'
        f'<div class="value">{escape(headline.text)}</div>'
        f'<div class="note">{escape(headline.note)}</div></div>'
    )


def _figure(title: str, svg: str, caption: str) -> str:
    return f"<figure><h3>{escape(title)}</h3>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _segments_caption(segments: Mapping[str, object]) -> str:
    caption = f"Members in each segment as of {short_day(_text(segments, 'as_of'))}"
    threshold = number(segments.get("power_user_threshold"))
    share = number(segments.get("power_user_activity_share"))
    if threshold is not None:
        caption += f"; power users are the 10% most active over 30 days (at least {count_text(threshold)} actions)"
    if share is not None:
        caption += f" and account for {percent_text(share, 0)} of all activity"
    return caption + "."


def _charts(days: Sequence[Mapping[str, object]], summary: Mapping[str, object]) -> str:
    raw_segments = summary.get("segments")
    segments = raw_segments if isinstance(raw_segments, Mapping) else {}
    figures = [
        ("Growth", charts.growth_chart(days), CAPTIONS["growth"]),
        ("Activity", charts.activity_chart(days), CAPTIONS["activity"]),
        ("Retention", charts.retention_heatmap(_mappings(summary.get("retention"))), CAPTIONS["retention"]),
        ("Response time", charts.response_chart(days), CAPTIONS["response"]),
        ("Sentiment", charts.sentiment_chart(days), CAPTIONS["sentiment"]),
        ("Incidents", charts.incidents_chart(days), CAPTIONS["incidents"]),
        ("Segments", charts.segments_chart(segments), _segments_caption(segments)),
    ]
    return "".join(_figure(title, svg, caption) for title, svg, caption in figures)


def render_page(summary: Mapping[str, object], period: str) -> str:
    days = _mappings(summary.get("days"))
    cards = "".join(_headline_card(h) for h in headlines(days))
    title = f"{PERIOD_TITLES[period]} health report: {_text(summary, 'community_id', 'unknown community')}"
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{_header(summary, period)}"
        f'<section class="kpis" aria-label="Headline numbers">{cards}</section>'
        f"<h2>Trends</h2>{_charts(days, summary)}"
        f"<h2>Channels</h2>{channels_table(_mappings(summary.get('channels')))}"
        "<h2>Exposure to flagged messages</h2>"
        "<p>Members active in a week who replied near a flagged message (exposed) against the others: "
        "the share still active four weeks later.</p>"
        f"{exposure_table(_mappings(summary.get('exposure')))}"
        f"<footer>Generated {escape(_text(summary, 'generated_at'))} by Steward.</footer>"
        "</main></body></html>"
    )
