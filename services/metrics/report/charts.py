"""The report's charts, one pure function each: summary rows in, an inline SVG string out.

Each mark's ``data-series`` is the summary field it plots and ``data-value`` that field's
number unchanged (seconds stay seconds); the axes and the ``<title>`` carry the readable
units. A day whose value is missing gets no mark and breaks its line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.metrics.report.svg import (
    MUTED,
    WIDTH,
    Frame,
    Scale,
    axis_range,
    count_text,
    data_value,
    legend,
    mark,
    no_data,
    number,
    percent_text,
    polyline,
    svg_root,
    text,
    x_axis,
    y_axis,
)

Day = Mapping[str, object]

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_COLOURS = {"low": "#facc15", "medium": "#fb923c", "high": "#ef4444", "critical": "#7f1d1d"}
OTHER_SEVERITY_COLOUR = "#94a3b8"
SEGMENTS = (("new", "new"), ("power_users", "power users"), ("dormant", "dormant"), ("left", "left"))
SEGMENT_COLOURS = {"new": "#22c55e", "power_users": "#2563eb", "dormant": "#a3a3a3", "left": "#ef4444"}


@dataclass(frozen=True)
class Series:
    key: str  # the summary field, written as data-series
    label: str  # what a reader sees in the legend and the titles
    colour: str
    words: Callable[[float], str] = count_text
    dashed: bool = False


def _values(days: Sequence[Day], key: str) -> list[float | None]:
    return [number(day.get(key)) for day in days]


def _known(days: Sequence[Day], *keys: str) -> list[float]:
    return [v for key in keys for v in _values(days, key) if v is not None]


def _day_names(days: Sequence[Day]) -> list[str]:
    return [str(day.get("day", "")) for day in days]


def _line(frame: Frame, days: Sequence[Day], series: Series, scale: Scale) -> str:
    values = _values(days, series.key)
    points = [None if v is None else (frame.x(i), scale(v)) for i, v in enumerate(values)]
    marks = [
        mark(
            "circle", f"{day} {series.label} {series.words(value)}",
            cx=f"{point[0]:.1f}", cy=f"{point[1]:.1f}", r=3, fill=series.colour,
            data_series=series.key, data_day=day, data_value=data_value(value),
        )
        for day, value, point in zip(frame.days, values, points, strict=True)
        if value is not None and point is not None
    ]
    return polyline(points, series.colour, series=series.key, dashed=series.dashed) + "".join(marks)


def _bar(frame: Frame, index: int, low: float, high: float, scale: Scale, series: Series, value: float) -> str:
    """One vertical bar (or stacked piece) from ``low`` to ``high`` in data units."""
    width = frame.slot * 0.6
    top, bottom = scale(high), scale(low)
    day = frame.days[index]
    return mark(
        "rect", f"{day} {series.label} {series.words(value)}",
        x=f"{frame.x(index) - width / 2:.1f}", y=f"{top:.1f}", width=f"{width:.1f}",
        height=f"{max(0.0, bottom - top):.1f}", fill=series.colour,
        data_series=series.key, data_day=day, data_value=data_value(value),
    )


def _bars(frame: Frame, days: Sequence[Day], series: Series, scale: Scale) -> str:
    return "".join(
        _bar(frame, i, 0.0, value, scale, series, value)
        for i, value in enumerate(_values(days, series.key))
        if value is not None
    )


def _count_scale(frame: Frame, values: Sequence[float], *, from_zero: bool = True) -> Scale:
    low = 0.0 if from_zero else min(values)
    return frame.y_scale(*axis_range(low, max(values), whole=True))


def growth_chart(days: Sequence[Day]) -> str:
    label = "Growth: total members (line, left axis) and new members per day (bars, right axis)"
    total = Series("total_members", "total members", "#2563eb")
    new = Series("new_members", "new members", "#86efac")
    totals, news = _known(days, total.key), _known(days, new.key)
    if not totals and not news:
        return no_data("growth", label)
    frame = Frame(_day_names(days))
    parts = [legend([(total.label, total.colour), (new.label, new.colour)]), x_axis(frame)]
    # The total moves a little around a large number: its axis zooms in to show the trend.
    line = _count_scale(frame, totals, from_zero=False) if totals else None
    # Bars keep their own axis: a handful of joins would vanish on the total's scale.
    bars = _count_scale(frame, news) if news else None
    if line:
        parts.append(y_axis(frame, line, count_text))  # first: its grid lies under the marks
    if bars:
        parts += [y_axis(frame, bars, count_text, side="right"), _bars(frame, days, new, bars)]
    if line:
        parts.append(_line(frame, days, total, line))
    return svg_root("growth", label, "".join(parts))


def activity_chart(days: Sequence[Day]) -> str:
    label = "Activity: daily, weekly and monthly active members, with stickiness (DAU / MAU)"
    lines = [
        Series("dau", "DAU", "#2563eb"),
        Series("wau", "WAU", "#16a34a"),
        Series("mau", "MAU", "#9333ea"),
    ]
    stickiness = Series("stickiness", "stickiness", "#f59e0b", percent_text, dashed=True)
    counts = _known(days, *(s.key for s in lines))
    shares = _known(days, stickiness.key)
    if not counts and not shares:
        return no_data("activity", label)
    frame = Frame(_day_names(days))
    parts = [
        legend([(s.label, s.colour) for s in [*lines, stickiness]], dashed=[stickiness.label]),
        x_axis(frame),
    ]
    if counts:
        scale = _count_scale(frame, counts)
        parts.append(y_axis(frame, scale, count_text))
        parts += [_line(frame, days, series, scale) for series in lines]
    if shares:
        scale = frame.y_scale(*axis_range(0.0, min(1.0, max(shares))))
        parts.append(y_axis(frame, scale, lambda v: percent_text(v, 0), side="right"))
        parts.append(_line(frame, days, stickiness, scale))
    return svg_root("activity", label, "".join(parts))


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def _duration_unit(longest_s: float) -> tuple[float, str]:
    """Minutes while the slowest answer is under two hours, hours beyond: ticks stay short."""
    return (60.0, "min") if longest_s < 2 * 3600 else (3600.0, "h")


def response_chart(days: Sequence[Day]) -> str:
    label = "Response time: median and 90th percentile time to first response, by day of the question"
    median = Series("response_median_s", "median response", "#2563eb", duration_text)
    p90 = Series("response_p90_s", "p90 response", "#dc2626", duration_text, dashed=True)
    values = _known(days, median.key, p90.key)
    if not values:
        return no_data("response", label)
    unit_s, unit = _duration_unit(max(values))
    # Round ticks in the reading unit; the marks keep their seconds.
    low, high, step = axis_range(0.0, max(values) / unit_s)
    frame = Frame(_day_names(days))
    scale = frame.y_scale(low * unit_s, high * unit_s, step * unit_s)
    parts = [
        legend([(median.label, median.colour), (p90.label, p90.colour)], dashed=[p90.label]),
        y_axis(frame, scale, lambda s: f"{s / unit_s:g} {unit}"),
        x_axis(frame),
        _line(frame, days, median, scale),
        _line(frame, days, p90, scale),
    ]
    return svg_root("response", label, "".join(parts))


def sentiment_chart(days: Sequence[Day]) -> str:
    label = "Sentiment: share of positive among positive and negative messages, by day"
    positive = Series("sentiment", "positive share", "#0d9488", percent_text)
    if not _known(days, positive.key):
        return no_data("sentiment", label)
    frame = Frame(_day_names(days))
    scale = frame.y_scale(0.0, 1.0, 0.25)  # a share: the full 0..100% keeps weeks comparable
    parts = [
        legend([(positive.label, positive.colour)]),
        y_axis(frame, scale, lambda v: percent_text(v, 0)),
        x_axis(frame),
        _line(frame, days, positive, scale),
    ]
    return svg_root("sentiment", label, "".join(parts))


def _severity_counts(day: Day) -> list[tuple[str, float]]:
    """The day's incidents by severity in escalating order. Severities outside the usual
    four follow them, and any incidents the breakdown misses show as 'unspecified', so
    the stack always adds up to the day's total."""
    raw = day.get("incidents_by_severity")
    by_severity = raw if isinstance(raw, Mapping) else {}
    known: dict[str, float] = {}
    for severity, count in by_severity.items():
        value = number(count)
        if value:  # a zero or missing count draws nothing
            known[str(severity)] = value
    order = [s for s in SEVERITIES if s in known] + sorted(set(known) - set(SEVERITIES))
    counts = [(s, known[s]) for s in order]
    total = number(day.get("incidents"))
    missing = (total or 0.0) - sum(c for _, c in counts)
    if missing > 0:
        counts.append(("unspecified", missing))
    return counts


def incidents_chart(days: Sequence[Day]) -> str:
    label = "Incidents per day, stacked by severity"
    stacks = [_severity_counts(day) for day in days]
    totals = [sum(c for _, c in stack) for stack in stacks]
    if not any(stack for stack in stacks) and not _known(days, "incidents"):
        return no_data("incidents", label)
    frame = Frame(_day_names(days))
    scale = _count_scale(frame, totals or [0.0])
    parts = [
        legend([(s, SEVERITY_COLOURS[s]) for s in SEVERITIES]),
        y_axis(frame, scale, count_text),
        x_axis(frame),
    ]
    for index, stack in enumerate(stacks):
        base = 0.0
        for severity, count in stack:
            colour = SEVERITY_COLOURS.get(severity, OTHER_SEVERITY_COLOUR)
            series = Series(severity, f"{severity} incidents", colour)
            parts.append(_bar(frame, index, base, base + count, scale, series, count))
            base += count
    return svg_root("incidents", label, "".join(parts))


def retention_heatmap(cohorts: Sequence[Mapping[str, object]]) -> str:
    """Rows are weekly join cohorts, columns the weeks since; a cell is the share of the
    cohort active that week. Weeks not yet known stay blank."""
    label = "Weekly retention: share of each cohort active in each following week"
    width_of_row = max((len(c.get("weeks") or []) for c in cohorts), default=0)
    if not width_of_row:
        return no_data("retention", label)
    label_w, header_h, row_h = 130.0, 24.0, 24.0
    cell_w = min(64.0, (WIDTH - label_w - 8) / width_of_row)
    height = int(header_h + row_h * len(cohorts) + 8)
    parts = [
        text(label_w + (k + 0.5) * cell_w, 16, f"wk {k}", text_anchor="middle")
        for k in range(width_of_row)
    ]
    for row, cohort in enumerate(cohorts):
        y = header_h + row * row_h
        name, size = str(cohort.get("cohort", "")), number(cohort.get("size"))
        caption = name if size is None else f"{name} ({count_text(size)})"
        parts.append(text(label_w - 8, y + row_h / 2 + 4, caption, text_anchor="end"))
        for week, raw in enumerate(cohort.get("weeks") or []):
            share = number(raw)
            if share is not None:
                parts.append(_heat_cell(label_w + week * cell_w, y, cell_w, row_h, name, week, share, size))
    return svg_root("retention", label, "".join(parts), height=height)


def _heat_colour(share: float) -> str:
    """White to deep blue as the share grows (clamped to 0..1)."""
    share = min(1.0, max(0.0, share))
    start, end = (239, 246, 255), (29, 78, 216)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(start, end, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _heat_cell(
    x: float, y: float, w: float, h: float, cohort: str, week: int, share: float, size: float | None,
) -> str:
    of = "" if size is None else f" of {count_text(size)}"
    title = f"{cohort} week {week} {percent_text(share)}{of}"
    cell = mark(
        "rect", title, x=f"{x + 1:.1f}", y=f"{y + 1:.1f}", width=f"{w - 2:.1f}", height=f"{h - 2:.1f}",
        fill=_heat_colour(share), data_series="retention", data_cohort=cohort, data_week=week,
        data_value=data_value(share),
    )
    ink = "#ffffff" if share > 0.55 else "#1e293b"  # keep the printed share readable on dark cells
    printed = text(x + w / 2, y + h / 2 + 4, percent_text(share, 0), text_anchor="middle", fill=ink, font_size=10)
    return cell + printed


def segments_chart(segments: Mapping[str, object] | None) -> str:
    label = "Member segments: new, power users, dormant and left"
    segments = segments or {}
    as_of = str(segments.get("as_of") or "")
    rows = [(key, words, number(segments.get(key))) for key, words in SEGMENTS]
    known = [value for _, _, value in rows if value is not None]
    if not known:
        return no_data("segments", label)
    label_w, row_h, top = 110.0, 30.0, 8.0
    longest = max(known) or 1.0
    scale = Scale(0.0, longest, longest, label_w, WIDTH - 90)
    parts = []
    for index, (key, words, value) in enumerate(rows):
        y = top + index * row_h
        parts.append(text(label_w - 8, y + row_h / 2 + 4, words, text_anchor="end"))
        if value is None:
            parts.append(text(label_w + 4, y + row_h / 2 + 4, "no data", fill=MUTED))
            continue
        end = scale(value)
        parts.append(mark(
            "rect", f"{as_of} {words} {count_text(value)}".strip(),
            x=f"{label_w:.1f}", y=f"{y + 4:.1f}", width=f"{end - label_w:.1f}", height=f"{row_h - 8:.1f}",
            fill=SEGMENT_COLOURS[key], data_series=key, data_day=as_of or None, data_value=data_value(value),
        ))
        parts.append(text(end + 6, y + row_h / 2 + 4, count_text(value)))
    return svg_root("segments", label, "".join(parts), height=int(top * 2 + row_h * len(rows)))

