"""The report's two tables: activity per channel, and 4-week retention of members exposed
to flagged messages against the rest. Every cell from the data is escaped here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape

from services.metrics.report.svg import count_text, number, percent_text, short_day

Row = Mapping[str, object]
Column = tuple[str, str, Callable[[Row], str]]  # heading, css class, cell text


def _count(key: str) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        value = number(row.get(key))
        return "—" if value is None else count_text(value)

    return cell


def _share(key: str) -> Callable[[Row], str]:
    def cell(row: Row) -> str:
        value = number(row.get(key))
        return "—" if value is None else percent_text(value)

    return cell


def _flagged_share(row: Row) -> str:
    flagged, classified = number(row.get("flagged")), number(row.get("classified"))
    return percent_text(flagged / classified) if flagged is not None and classified else "—"


def _retention_gap(row: Row) -> str:
    """Exposed minus unexposed retention, in percentage points: negative means exposure hurts."""
    exposed, unexposed = number(row.get("exposed_retention")), number(row.get("unexposed_retention"))
    if exposed is None or unexposed is None:
        return "—"
    return f"{(exposed - unexposed) * 100:+.1f} pp"


def _week(row: Row) -> str:
    monday = row.get("monday")
    week = str(row.get("week") or "")
    return f"{week} (from {short_day(str(monday))})" if monday else week


CHANNEL_COLUMNS: list[Column] = [
    ("Channel", "text", lambda row: str(row.get("channel_id") or "—")),
    ("Messages", "num", _count("messages")),
    ("Replies", "num", _count("replies")),
    ("Reactions", "num", _count("reactions")),
    ("Joins", "num", _count("joins")),
    ("Leaves", "num", _count("leaves")),
    ("Classified", "num", _count("classified")),
    ("Flagged", "num", _count("flagged")),
    ("Flagged share", "num", _flagged_share),
]

EXPOSURE_COLUMNS: list[Column] = [
    ("Week", "text", _week),
    ("Exposed members", "num", _count("exposed")),
    ("Exposed retention", "num", _share("exposed_retention")),
    ("Unexposed members", "num", _count("unexposed")),
    ("Unexposed retention", "num", _share("unexposed_retention")),
    ("Difference", "num", _retention_gap),
]


def table(name: str, columns: Sequence[Column], rows: Sequence[Row]) -> str:
    head = "".join(f'<th class="{css}" scope="col">{escape(title)}</th>' for title, css, _ in columns)
    if rows:
        body = "".join(
            "<tr>" + "".join(f'<td class="{css}">{escape(cell(row))}</td>' for _, css, cell in columns) + "</tr>"
            for row in rows
        )
    else:
        body = f'<tr><td class="empty" colspan="{len(columns)}">no data</td></tr>'
    return f'<table data-table="{escape(name)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def channels_table(channels: Sequence[Row]) -> str:
    return table("channels", CHANNEL_COLUMNS, channels)


def exposure_table(exposure: Sequence[Row]) -> str:
    return table("exposure", EXPOSURE_COLUMNS, exposure)
