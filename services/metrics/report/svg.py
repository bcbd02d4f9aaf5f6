"""SVG building blocks shared by the charts: numbers, scales, axes, marks and the frame.

Everything returns strings. Every data mark carries ``data-series``, ``data-value`` (the
summary's number, unchanged, so a test or a screen reader can check it against the
source) and a ``<title>`` with the same number in words a person reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

WIDTH = 640
HEIGHT = 240
MARGIN_LEFT = 56
MARGIN_RIGHT = 56
MARGIN_TOP = 28  # room for the legend
MARGIN_BOTTOM = 30

TEXT = "#334155"
GRID = "#e2e8f0"
MUTED = "#94a3b8"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Point = tuple[float, float]


def number(value: object) -> float | None:
    """The value as a float, or None when there is nothing to plot (missing, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def data_value(value: float) -> str:
    """A number as written in ``data-value``: integers without a trailing ``.0``."""
    return str(int(value)) if float(value).is_integer() else format(value, ".10g")


def count_text(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def percent_text(share: float, digits: int = 1) -> str:
    return f"{share * 100:.{digits}f}%"


def short_day(iso_day: str) -> str:
    """'2026-03-02' -> 'Mar 2'; locale-free so the page reads the same on every server."""
    try:
        day = date.fromisoformat(iso_day)
    except (TypeError, ValueError):
        return str(iso_day)
    return f"{_MONTHS[day.month - 1]} {day.day}"


def attrs(**values: object) -> str:
    """Escaped attributes; a trailing underscore is dropped (``class_``) and ``_`` becomes ``-``."""
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        name = name.rstrip("_").replace("_", "-")
        parts.append(f'{name}="{escape(str(value), quote=True)}"')
    return " ".join(parts)


def element(tag: str, **values: object) -> str:
    """An empty element: decoration (grid, legend keys, lines), not a data mark."""
    return f"<{tag} {attrs(**values)}/>"


def mark(tag: str, title: str, **values: object) -> str:
    return f"<{tag} {attrs(**values)}><title>{escape(title)}</title></{tag}>"


def text(x: float, y: float, content: str, **values: object) -> str:
    values.setdefault("fill", TEXT)
    values.setdefault("font_size", 11)
    return f'<text {attrs(x=f"{x:.1f}", y=f"{y:.1f}", **values)}>{escape(content)}</text>'


def svg_root(chart: str, label: str, body: str, *, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" '
        f'{attrs(viewBox=f"0 0 {width} {height}", role="img", aria_label=label, data_chart=chart)} '
        f'font-family="system-ui, sans-serif" width="100%" preserveAspectRatio="xMidYMid meet">'
        f"{body}</svg>"
    )


def no_data(chart: str, label: str, *, height: int = 120) -> str:
    body = text(WIDTH / 2, height / 2, "no data", text_anchor="middle", fill=MUTED, font_size=14)
    return svg_root(chart, f"{label}: no data", body, height=height)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


@dataclass(frozen=True)
class Scale:
    """Linear map from data values (``low``..``high``) onto pixels (``start``..``end``),
    with round tick marks every ``step``."""

    low: float
    high: float
    step: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.high == self.low:
            return self.start
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        count = round((self.high - self.low) / self.step)
        return [self.low + i * self.step for i in range(count + 1)]


def axis_range(low: float, high: float, *, whole: bool = False) -> tuple[float, float, float]:
    """Round axis bounds holding ``low..high`` and their step, about five steps apart.
    ``whole`` keeps the step at one or more, for counts (no '2.5 members' tick)."""
    if high <= low:
        high = low + max(abs(low) * 0.1, 1.0)
    step = nice_ceiling((high - low) / 5)
    if whole:
        step = 2.0 if step == 2.5 else max(1.0, step)
    bottom = math.floor(low / step + 1e-9) * step
    top = math.ceil(high / step - 1e-9) * step
    return bottom, max(top, bottom + step), step


@dataclass(frozen=True)
class Frame:
    """The plot area of a day-by-day chart: one equal slot per day, marks at slot centres."""

    days: Sequence[str]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def left(self) -> float:
        return MARGIN_LEFT

    @property
    def right(self) -> float:
        return self.width - MARGIN_RIGHT

    @property
    def top(self) -> float:
        return MARGIN_TOP

    @property
    def bottom(self) -> float:
        return self.height - MARGIN_BOTTOM

    @property
    def slot(self) -> float:
        return (self.right - self.left) / max(1, len(self.days))

    def x(self, index: int) -> float:
        return self.left + (index + 0.5) * self.slot

    def y_scale(self, low: float, high: float, step: float) -> Scale:
        return Scale(low, high, step, self.bottom, self.top)


def y_axis(frame: Frame, scale: Scale, label: Callable[[float], str], *, side: str = "left") -> str:
    """Tick labels on one side; the left axis also draws the horizontal grid."""
    parts = []
    for tick in scale.ticks():
        y = scale(tick)
        if side == "left":
            parts.append(element("line", x1=frame.left, x2=frame.right, y1=f"{y:.1f}", y2=f"{y:.1f}", stroke=GRID))
            parts.append(text(frame.left - 6, y + 4, label(tick), text_anchor="end"))
        else:
            parts.append(text(frame.right + 6, y + 4, label(tick), text_anchor="start"))
    return "".join(parts)


def x_axis(frame: Frame) -> str:
    """Day labels under the slots, thinned so a month of days stays legible."""
    step = max(1, math.ceil(len(frame.days) / 8))
    return "".join(
        text(frame.x(i), frame.bottom + 18, short_day(day), text_anchor="middle")
        for i, day in enumerate(frame.days)
        if i % step == 0
    )


def legend(entries: Iterable[tuple[str, str]], *, dashed: Iterable[str] = ()) -> str:
    """A row of colour keys above the plot; ``dashed`` names the entries drawn dashed."""
    dashed = set(dashed)
    parts, x = [], float(MARGIN_LEFT)
    for name, colour in entries:
        dash = "4 3" if name in dashed else None
        parts.append(element(
            "line", x1=x, x2=x + 16, y1=12, y2=12, stroke=colour, stroke_width=3, stroke_dasharray=dash,
        ))
        parts.append(text(x + 20, 16, name))
        x += 40 + 7 * len(name)
    return "".join(parts)


def line_runs(points: Sequence[Point | None]) -> list[list[Point]]:
    """Consecutive known points; a missing day ends a run so the line shows a gap."""
    runs: list[list[Point]] = [[]]
    for point in points:
        if point is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def polyline(points: Sequence[Point | None], colour: str, *, series: str, dashed: bool = False) -> str:
    """The line through a series' points, one ``<polyline>`` per unbroken run of days."""
    dash = "4 3" if dashed else None
    return "".join(
        element(
            "polyline", points=" ".join(f"{x:.1f},{y:.1f}" for x, y in run), fill="none", stroke=colour,
            stroke_width=2, stroke_dasharray=dash, data_line=series, aria_hidden="true",
        )
        for run in line_runs(points)
        if len(run) > 1  # a lone day keeps its point, with no line to draw
    )
