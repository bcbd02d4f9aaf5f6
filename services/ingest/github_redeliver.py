"""Pull back GitHub webhook deliveries that failed: GitHub itself never retries one.

Uses the REST API for a hook's deliveries (repository, organization or GitHub App hooks):
``GET {hook}/deliveries`` (cursor pagination through the ``Link`` header, newest first) and
``POST {hook}/deliveries/{id}/attempts``. Attempts are grouped by their ``guid``: a GUID with
any 2xx attempt has arrived and is left alone; every other GUID seen since the given time is
redelivered once, from its latest attempt. Redelivered events reach ingest with the same
``X-GitHub-Delivery`` GUID, so the event id, and every effect downstream, stays the same.

GitHub keeps deliveries (and accepts redeliveries) for about three days only.

The lead mounts :data:`app` as ``steward github redeliver``.
"""

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
MAX_PAGES = 200  # 20,000 deliveries: far more than three days of any sane hook
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

Sleep = Callable[[float], Awaitable[Any]]


class RedeliveryError(RuntimeError):
    """Listing the deliveries failed; nothing after that point was attempted."""


@dataclass(frozen=True)
class RedeliveryResult:
    delivery_id: int
    guid: str
    event: str | None
    action: str | None
    delivered_at: datetime
    failed_status: int  # status_code of the failed attempt (0: no response at all)
    redelivered: bool
    detail: str  # what GitHub answered, or why it was not attempted


@dataclass
class RedeliveryReport:
    scanned: int = 0  # attempts listed since the cut-off
    recovered: int = 0  # GUIDs with a failed attempt but a later 2xx one: left alone
    results: list[RedeliveryResult] = field(default_factory=list)

    @property
    def redelivered(self) -> list[RedeliveryResult]:
        return [r for r in self.results if r.redelivered]

    @property
    def failed(self) -> list[RedeliveryResult]:
        return [r for r in self.results if not r.redelivered]

    @property
    def ok(self) -> bool:
        return not self.failed


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _is_success(status_code: Any) -> bool:
    return isinstance(status_code, int) and 200 <= status_code < 300


def _next_link(response: httpx.Response) -> str | None:
    match = _NEXT_LINK.search(response.headers.get("link", ""))
    return match.group(1) if match else None


def _rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds GitHub asks us to wait, or None when this is not a rate-limit answer."""
    if response.status_code not in (403, 429):
        return None
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if response.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(response.headers.get("x-ratelimit-reset", "")) - now)
        except ValueError:
            return 60.0
    if response.status_code == 429:
        return 60.0  # GitHub's advice for secondary limits without a header: wait a minute
    return None  # a plain 403: permission denied, not a rate limit


async def _request(
    client: httpx.AsyncClient, method: str, url: str, *, headers: dict[str, str], max_wait_s: float,
    max_retries: int, sleep: Sleep,
) -> httpx.Response:
    """One request, waiting out rate limits while each wait is at most ``max_wait_s``."""
    for attempt in range(max_retries + 1):
        response = await client.request(method, url, headers=headers)
        wait = _rate_limit_wait(response, time.time())
        if wait is None or attempt == max_retries or wait > max_wait_s:
            return response
        await sleep(wait + 0.5 * attempt)
    return response  # pragma: no cover - the loop always returns


def _describe(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {response.status_code}" + (f": {message}" if message else "")


async def redeliver_failed(
    client: httpx.AsyncClient,
    *,
    api_url: str,
    hook_path: str,
    token: str,
    since: datetime,
    dry_run: bool = False,
    max_wait_s: float = 60.0,
    max_retries: int = 3,
    sleep: Sleep = asyncio.sleep,
) -> RedeliveryReport:
    """Redeliver every delivery GUID of the hook that failed since ``since`` and never succeeded.

    ``hook_path`` is ``/repos/{owner}/{repo}/hooks/{id}``, ``/orgs/{org}/hooks/{id}`` or
    ``/app/hook`` (the latter needs a GitHub App JWT as ``token``). Rate-limit answers (429,
    or 403 with ``x-ratelimit-remaining: 0``) are waited out when GitHub asks for at most
    ``max_wait_s`` seconds, ``max_retries`` times; otherwise the delivery is reported failed.
    """
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    base = api_url.rstrip("/") + "/" + hook_path.strip("/")
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
    }
    call = {"headers": headers, "max_wait_s": max_wait_s, "max_retries": max_retries, "sleep": sleep}

    attempts: list[dict[str, Any]] = []
    url: str | None = f"{base}/deliveries?per_page=100"
    for _ in range(MAX_PAGES):
        if url is None:
            break
        response = await _request(client, "GET", url, **call)
        if response.status_code != 200:
            raise RedeliveryError(f"listing deliveries at {url.split('?')[0]} failed: {_describe(response)}")
        page = response.json()
        if not isinstance(page, list):
            raise RedeliveryError("the deliveries listing is not a JSON array")
        reached_older = False
        for item in page:
            try:
                delivered_at = _parse_time(item["delivered_at"])
                item["id"], item["guid"]
            except (KeyError, TypeError, ValueError):
                raise RedeliveryError(f"a listed delivery lacks id, guid or delivered_at: {item!r:.200}") from None
            if delivered_at < since:
                reached_older = True  # newest first: everything after this is older too
                continue
            attempts.append({**item, "_at": delivered_at})
        url = None if reached_older else _next_link(response)

    report = RedeliveryReport(scanned=len(attempts))
    by_guid: dict[str, list[dict[str, Any]]] = {}
    for item in attempts:
        by_guid.setdefault(item["guid"], []).append(item)
    for guid, group in by_guid.items():
        if not any(not _is_success(a.get("status_code")) for a in group):
            continue
        if any(_is_success(a.get("status_code")) for a in group):
            report.recovered += 1
            continue
        latest = max(group, key=lambda a: (a["_at"], a["id"]))
        fields = {
            "delivery_id": latest["id"], "guid": guid, "event": latest.get("event"), "action": latest.get("action"),
            "delivered_at": latest["_at"], "failed_status": latest.get("status_code") or 0,
        }
        if dry_run:
            report.results.append(RedeliveryResult(**fields, redelivered=False, detail="dry run"))
            continue
        try:
            response = await _request(client, "POST", f"{base}/deliveries/{latest['id']}/attempts", **call)
        except httpx.HTTPError as error:
            report.results.append(RedeliveryResult(**fields, redelivered=False, detail=f"{type(error).__name__}"))
            continue
        done = response.status_code in (200, 201, 202)
        report.results.append(RedeliveryResult(**fields, redelivered=done, detail=_describe(response)))
    report.results.sort(key=lambda r: r.delivered_at)
    return report


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``24h``, ``90m``, ``3d`` (ago), or an ISO 8601 time (UTC when it names no zone)."""
    match = _DURATION.match(value)
    if match:
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        return _parse_time(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither an ISO 8601 time nor a duration like 24h") from None


app = typer.Typer(help="GitHub webhooks: pull back deliveries that failed (GitHub never retries).",
                  no_args_is_help=True)
console = Console()


@app.callback()
def _group() -> None:
    """GitHub webhook tools."""


@app.command()
def redeliver(
    hook: Annotated[str, typer.Option(
        help="The hook's API path: /repos/OWNER/REPO/hooks/ID, /orgs/ORG/hooks/ID or /app/hook.")],
    since: Annotated[str, typer.Option(help="ISO 8601 time, or a duration ago such as 24h or 3d.")] = "72h",
    api_url: Annotated[str, typer.Option(help="GitHub API base URL (GitHub Enterprise: https://HOST/api/v3).")]
    = DEFAULT_API_URL,
    token: Annotated[str | None, typer.Option(
        help="Token allowed to read and redeliver the hook's deliveries (default: $GITHUB_TOKEN).",
        envvar="GITHUB_TOKEN", show_default=False, show_envvar=True)] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be redelivered.")] = False,
) -> None:
    """Redeliver every delivery of HOOK that failed since SINCE and has not succeeded since."""
    token = token or os.environ.get("GITHUB_TOKEN")
    if not token:
        console.print("[red]no token: pass --token or set GITHUB_TOKEN[/red]")
        raise typer.Exit(2)
    cutoff = parse_since(since)

    async def run() -> RedeliveryReport:
        async with httpx.AsyncClient(timeout=30) as client:
            return await redeliver_failed(client, api_url=api_url, hook_path=hook, token=token, since=cutoff,
                                          dry_run=dry_run)

    try:
        report = asyncio.run(run())
    except (RedeliveryError, httpx.HTTPError) as error:
        console.print(f"[red]{type(error).__name__}: {error}[/red]")
        raise typer.Exit(1) from None

    table = Table(title=f"Failed deliveries since {cutoff.isoformat(timespec='seconds')}")
    for column in ("delivery", "guid", "event", "delivered at", "failed with", "redelivered", "answer"):
        table.add_column(column)
    for r in report.results:
        event = f"{r.event}.{r.action}" if r.action else (r.event or "")
        table.add_row(str(r.delivery_id), r.guid, event, r.delivered_at.isoformat(timespec="seconds"),
                      str(r.failed_status or "no response"), "yes" if r.redelivered else "no", r.detail)
    console.print(table)
    console.print(f"{report.scanned} attempts scanned, {len(report.redelivered)} redelivered, "
                  f"{len(report.failed)} not redelivered, {report.recovered} already recovered")
    if not report.ok and not dry_run:
        raise typer.Exit(1)
