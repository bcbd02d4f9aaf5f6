"""The weekly or monthly community health report: the metrics summary as one HTML page.

Pure rendering: the summary comes from the metrics read API, the page goes out as a single
self-contained file (inline CSS and SVG charts, no script, nothing fetched).
"""

from __future__ import annotations

from collections.abc import Mapping

from services.metrics.report.page import PERIOD_TITLES, render_page


def render_report(summary: Mapping[str, object], *, period: str) -> str:
    """The report page for ``summary``; ``period`` ("weekly" or "monthly") sets the wording."""
    if period not in PERIOD_TITLES:
        raise ValueError(f"period must be one of {sorted(PERIOD_TITLES)}, not {period!r}")
    return render_page(summary, period)


__all__ = ["render_report"]
