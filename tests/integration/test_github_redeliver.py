"""``redeliver_failed`` against a real local HTTP server speaking GitHub's hook-deliveries API.

The server paginates with ``Link`` headers (cursor, newest first, as GitHub does), checks the
authentication headers, answers one redelivery with a 429 + Retry-After first, and records
every request, so the test sees exactly what would have reached GitHub.
"""

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from services.ingest.github_redeliver import (
    RedeliveryError,
    app,
    parse_since,
    redeliver_failed,
)

TOKEN = "ghp_test_token_never_printed"
HOOK = "/repos/octo-org/Hello-World/hooks/292430182"
NOW = datetime.now(UTC).replace(microsecond=0)


def attempt(delivery_id: int, guid: str, status_code: int, ago: timedelta, *, redelivery: bool = False) -> dict:
    return {"id": delivery_id, "guid": guid, "delivered_at": (NOW - ago).isoformat().replace("+00:00", "Z"),
            "redelivery": redelivery, "duration": 0.27, "status": "OK" if 200 <= status_code < 300 else "Invalid HTTP Response: 500",
            "status_code": status_code, "event": "issue_comment", "action": "created", "installation_id": None,
            "repository_id": 1296269, "throttled_at": None}


# Newest first, three pages of three; the last page reaches past the cut-off.
DELIVERIES = [
    attempt(11, "guid-a", 200, timedelta(minutes=30), redelivery=True),   # a: failed, then recovered
    attempt(30, "guid-c", 202, timedelta(minutes=40)),                    # c: fine
    attempt(10, "guid-a", 500, timedelta(hours=1)),
    attempt(21, "guid-b", 0, timedelta(minutes=90), redelivery=True),     # b: failed twice (no response)
    attempt(20, "guid-b", 502, timedelta(hours=2)),
    attempt(50, "guid-e", 503, timedelta(hours=3)),                       # e: failed once
    attempt(60, "guid-f", 500, timedelta(hours=5)),                       # f: failed once, redelivery refused
    attempt(40, "guid-d", 404, timedelta(days=5)),                        # d: before the cut-off
    attempt(41, "guid-g", 500, timedelta(days=6)),
]
PAGE_SIZE = 3


class GitHub(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str, dict]]] = []
    rate_limited_once: ClassVar[set[int]] = set()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        ok = (self.headers.get("Authorization") == f"Bearer {TOKEN}"
              and self.headers.get("Accept") == "application/vnd.github+json"
              and self.headers.get("X-GitHub-Api-Version") == "2022-11-28")
        if not ok:
            self._send(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        return ok

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        type(self).requests.append(("GET", self.path, dict(self.headers)))
        if not self._authorized():
            return
        if url.path != f"{HOOK}/deliveries":
            return self._send(404, {"message": "Not Found"})
        query = parse_qs(url.query)
        assert query.get("per_page") == ["100"]
        start = int(query.get("cursor", ["0"])[0])
        page = DELIVERIES[start:start + PAGE_SIZE]
        headers = {}
        if start + PAGE_SIZE < len(DELIVERIES):
            host = f"http://{self.headers['Host']}"
            headers["Link"] = f'<{host}{HOOK}/deliveries?per_page=100&cursor={start + PAGE_SIZE}>; rel="next"'
        self._send(200, page, headers)

    def do_POST(self) -> None:
        type(self).requests.append(("POST", self.path, dict(self.headers)))
        if not self._authorized():
            return
        parts = urlsplit(self.path).path.removeprefix(f"{HOOK}/deliveries/").split("/")
        if len(parts) != 2 or parts[1] != "attempts":
            return self._send(404, {"message": "Not Found"})
        delivery_id = int(parts[0])
        if delivery_id == 50 and delivery_id not in self.rate_limited_once:
            self.rate_limited_once.add(delivery_id)
            return self._send(429, {"message": "You have exceeded a secondary rate limit"}, {"Retry-After": "1"})
        if delivery_id == 60:
            return self._send(422, {"message": "Validation Failed"})
        self._send(202, {})


@pytest.fixture
def github() -> Iterator[str]:
    GitHub.requests = []
    GitHub.rate_limited_once = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def posts() -> list[str]:
    return [path for method, path, _ in GitHub.requests if method == "POST"]


async def test_redelivers_each_failed_guid_once_and_leaves_recovered_ones(github):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with httpx.AsyncClient(timeout=10) as client:
        report = await redeliver_failed(client, api_url=github, hook_path=HOOK, token=TOKEN,
                                        since=NOW - timedelta(hours=72), sleep=sleep)

    # b is redelivered from its latest attempt; a recovered on its own; d and g are too old.
    assert sorted(posts()) == sorted([f"{HOOK}/deliveries/21/attempts", f"{HOOK}/deliveries/50/attempts",
                                      f"{HOOK}/deliveries/50/attempts", f"{HOOK}/deliveries/60/attempts"])
    assert slept == [1.0]  # the 429's Retry-After, honoured once
    by_guid = {r.guid: r for r in report.results}
    assert set(by_guid) == {"guid-b", "guid-e", "guid-f"}
    assert (by_guid["guid-b"].delivery_id, by_guid["guid-b"].failed_status, by_guid["guid-b"].redelivered) == (21, 0, True)
    assert by_guid["guid-e"].redelivered and by_guid["guid-e"].detail == "HTTP 202"
    assert not by_guid["guid-f"].redelivered and "422: Validation Failed" in by_guid["guid-f"].detail
    assert (report.scanned, report.recovered, report.ok) == (7, 1, False)
    # All three pages were read, and the cursor stopped at the page reaching past the cut-off.
    gets = [path for method, path, _ in GitHub.requests if method == "GET"]
    assert len(gets) == 3
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, _, headers in GitHub.requests)


async def test_a_narrow_window_stops_paginating_early(github):
    async with httpx.AsyncClient(timeout=10) as client:
        report = await redeliver_failed(client, api_url=github, hook_path=HOOK, token=TOKEN,
                                        since=NOW - timedelta(minutes=75))
    assert len([m for m, _, _ in GitHub.requests if m == "GET"]) == 2
    assert report.results == []  # only a (recovered) and c (fine) lie in the window
    assert report.recovered == 1


async def test_dry_run_posts_nothing(github):
    async with httpx.AsyncClient(timeout=10) as client:
        report = await redeliver_failed(client, api_url=github, hook_path=HOOK, token=TOKEN,
                                        since=NOW - timedelta(hours=72), dry_run=True)
    assert posts() == []
    assert {r.guid for r in report.results} == {"guid-b", "guid-e", "guid-f"}


async def test_bad_credentials_stop_before_anything_is_posted(github):
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(RedeliveryError, match="401: Bad credentials"):
            await redeliver_failed(client, api_url=github, hook_path=HOOK, token="wrong",
                                   since=NOW - timedelta(hours=72))
    assert posts() == []


def test_cli_prints_a_table_and_never_the_token(github):
    result = CliRunner().invoke(app, ["redeliver", "--hook", HOOK, "--since", "72h", "--api-url", github],
                                env={"GITHUB_TOKEN": TOKEN, "COLUMNS": "200"})
    assert result.exit_code == 1, result.output  # guid-f could not be redelivered
    assert "guid-b" in result.output and "guid-e" in result.output and "guid-f" in result.output
    assert "7 attempts scanned, 2 redelivered, 1 not redelivered, 1 already recovered" in result.output
    assert TOKEN not in result.output
    assert sorted(set(posts())) == [f"{HOOK}/deliveries/{i}/attempts" for i in (21, 50, 60)]


def test_cli_without_a_token_refuses(github):
    result = CliRunner().invoke(app, ["redeliver", "--hook", HOOK, "--api-url", github], env={"GITHUB_TOKEN": ""})
    assert result.exit_code == 2
    assert "no token" in result.output
    assert GitHub.requests == []


def test_since_accepts_durations_and_iso_times():
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2025, 3, 4, 10, 30, tzinfo=UTC)
    assert parse_since("2025-03-02T00:00:00Z") == datetime(2025, 3, 2, tzinfo=UTC)
    assert parse_since("2025-03-02T02:00:00+02:00") == datetime(2025, 3, 2, tzinfo=UTC)
