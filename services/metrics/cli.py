"""``steward metrics``: rebuild a community's KPIs with a progress bar; write its health report."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from services.moderation.replay import parse_since

app = typer.Typer(help="Community KPIs: rebuild from the topics, health reports.", no_args_is_help=True)
console = Console()

UrlOption = Annotated[str, typer.Option(help="The metrics service.", envvar="STEWARD_METRICS_URL")]
KeyOption = Annotated[str | None, typer.Option(help="An API key of the metrics service.", envvar="STEWARD_METRICS_API_KEY")]
DEFAULT_URL = "http://127.0.0.1:8001"


def _client(url: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def _answer(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        detail = response.json().get("detail") if response.headers.get("content-type", "").startswith("application/json") else response.text
        console.print(f"[red]{response.status_code}: {detail}[/red]")
        raise typer.Exit(1)
    return response.json()


@app.command("backfill")
def backfill(
    community: Annotated[str, typer.Option(help="The community to rebuild.")],
    since: Annotated[str | None, typer.Option("--from-time", help="ISO time or 24h/7d ago: the first record at or after it.")] = None,
    from_offset: Annotated[int | None, typer.Option(min=0, help="This offset on every partition.")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Rebuild COMMUNITY's KPIs from the activity and verdict topics (from the beginning by
    default), beside the live numbers, and switch over when done."""
    if since and from_offset is not None:
        raise typer.BadParameter("give --from-time or --from-offset, not both")
    body = {"from_time": parse_since(since).isoformat() if since else None, "from_offset": from_offset}
    with _client(url, api_key) as client:
        job = _answer(client.post(f"/communities/{community}/rebuild", json=body))
        with Progress(TextColumn("rebuilding {task.fields[community]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[folded]} of its events"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("rebuild", total=None, community=community, folded=0)
            while job["state"] in ("starting", "running"):
                time.sleep(0.5)
                job = _answer(client.get(f"/communities/{community}/rebuild"))
                bar.update(task, total=job["total"] or None, completed=job["read"], folded=job["folded"])
    if job["state"] != "done":
        console.print(f"[red]rebuild failed: {job['error']}[/red]")
        raise typer.Exit(1)
    console.print(f"{community}: generation {job['generation']} is live ({job['folded']} events folded)")


@app.command("report")
def report(
    community: Annotated[str, typer.Option(help="The community.")],
    period: Annotated[str, typer.Option(help="weekly (7 days) or monthly (30 days).")] = "weekly",
    to: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (default: today in its zone).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the HTML (default: <community>-<period>-<to>.html).")] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = None,
) -> None:
    """Write COMMUNITY's weekly or monthly health report as one self-contained HTML file."""
    params = {"period": period, **({"to": to} if to else {})}
    with _client(url, api_key) as client:
        response = client.get(f"/communities/{community}/report", params=params)
    if response.status_code >= 400:
        _answer(response)
    target = out or Path(f"{community}-{period}-{to or date.today().isoformat()}.html")
    target.write_text(response.text, encoding="utf-8")
    console.print(f"wrote {target} ({len(response.text) // 1024} KiB)")
