"""The metrics read API on the real stack: protected, validated, documented, and serving a
health report whose charts carry the KPIs; headline gauges with bounded labels."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from schemas import MemberActivity
from services.metrics.app import create_service
from services.runtime.broker import ensure_topics
from services.runtime.settings import MetricsSettings
from tests.integration.test_metrics_exactly_once import publish, wait_folded

pytestmark = pytest.mark.integration
KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NOW = datetime.now(UTC).replace(microsecond=0)


def posted(community: str, n: int, member: str, days_ago: int) -> MemberActivity:
    return MemberActivity(event_id=f"{community}-{n}", platform="generic", community_id=community,
                          channel_id=f"c{n % 3}", member_id=member, kind="message_posted",
                          message_id=f"{community}-m{n}", text="hello?" if n % 4 == 0 else "hi",
                          occurred_at=NOW - timedelta(days=days_ago, minutes=n))


@pytest.fixture(scope="module")
def api(local_stack):
    asyncio.run(ensure_topics(local_stack.endpoints.kafka))
    settings = MetricsSettings(
        kafka_bootstrap=local_stack.endpoints.kafka, mongo_uri=local_stack.endpoints.mongo_uri,
        mongo_db=f"metrics_api_{int(time.time())}", api_keys=[KEY], batch_wait_ms=50,
        gauge_communities=2, gauge_interval_s=0.3,
    )
    events = [posted(community, n, f"u{n % (5 + i)}", n % 9)
              for i, community in enumerate(["api-a", "api-b", "api-c"]) for n in range(40 * (3 - i))]
    with TestClient(create_service(settings).app) as client:
        asyncio.run(publish(settings.kafka_bootstrap, events, []))
        asyncio.run(wait_folded(settings))
        yield client


def test_keys_are_required_and_checked(api):
    missing = api.get("/communities/api-a/kpis")
    assert missing.status_code == 401 and "API key is required" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert api.get("/communities/api-a/kpis", headers={"Authorization": "Basic abc"}).status_code == 401
    wrong = api.get("/communities/api-a/kpis", headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and "not accepted" in wrong.json()["detail"]
    assert api.get("/communities/api-a/kpis", headers={"X-API-Key": KEY}).status_code == 200
    assert api.get("/communities/api-a/people", headers={"X-API-Key": "nope"}).status_code == 403


@pytest.mark.parametrize(("params", "says"), [
    ({"from": "2026-03-09", "to": "2026-03-01"}, "is after"),
    ({"from": "2024-01-01", "to": "2026-03-01"}, "at most 366 days"),
    ({"from": "yesterday"}, "from: "),
    ({"limit": 0}, "limit: "),
    ({"limit": 501}, "limit: "),
    ({"cursor": "abc"}, "is not one this API gave out"),
])
def test_bad_ranges_and_pages_are_clear_400s(api, params, says):
    response = api.get("/communities/api-a/channels", params=params, headers=AUTH)
    assert response.status_code == 400
    assert says in response.json()["detail"]


def test_channels_page_through_every_channel_once(api):
    first = api.get("/communities/api-a/channels", params={"limit": 2, "from": (NOW - timedelta(days=10)).date().isoformat()},
                    headers=AUTH).json()
    assert len(first["channels"]) == 2 and first["next_cursor"] == "2"
    rest = api.get("/communities/api-a/channels", headers=AUTH,
                   params={"limit": 2, "cursor": first["next_cursor"], "from": first["from"]}).json()
    assert rest["next_cursor"] is None
    names = [c["channel_id"] for c in first["channels"] + rest["channels"]]
    assert sorted(names) == ["c0", "c1", "c2"]
    assert sum(c["messages"] for c in first["channels"] + rest["channels"]) == 120


def test_groups_and_summary_agree(api):
    window = {"from": (NOW - timedelta(days=10)).date().isoformat(), "to": NOW.date().isoformat()}
    summary = api.get("/communities/api-a/summary", params=window, headers=AUTH).json()
    activity = api.get("/communities/api-a/kpis/activity", params=window, headers=AUTH).json()
    assert [d["dau"] for d in activity["days"]] == [d["dau"] for d in summary["days"]]
    assert set(activity["days"][0]) == {"day", "dau", "wau", "mau", "stickiness"}
    assert sum(d["messages"] for d in summary["days"]) == 120
    assert sum(d["questions"] for d in summary["days"]) == 30
    assert api.get("/communities/api-a/kpis/nonsense", headers=AUTH).status_code == 400


def test_openapi_documents_every_kpi_route(api):
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/communities/{community_id}/kpis", "/communities/{community_id}/kpis/{group}",
                 "/communities/{community_id}/retention", "/communities/{community_id}/segments",
                 "/communities/{community_id}/exposure", "/communities/{community_id}/channels",
                 "/communities/{community_id}/summary", "/communities/{community_id}/report",
                 "/communities/{community_id}/rebuild", "/communities/{community_id}/people"):
        assert path in paths, path
        for operation in paths[path].values():
            assert operation.get("summary"), path


class _Marks(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.marks: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "svg" and "data-chart" in attributes:
            self.charts.append(attributes["data-chart"])
        if "data-series" in attributes and "data-value" in attributes:
            self.marks.append(attributes)


def test_the_health_report_draws_the_kpis(api):
    to = NOW.date().isoformat()
    page = api.get("/communities/api-a/report", params={"period": "weekly", "to": to}, headers=AUTH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    summary = api.get("/communities/api-a/summary", headers=AUTH,
                      params={"from": (NOW.date() - timedelta(days=6)).isoformat(), "to": to}).json()
    parsed = _Marks()
    parsed.feed(page.text)
    assert {"growth", "activity", "retention", "response", "sentiment", "incidents", "segments"} <= set(parsed.charts)
    drawn = {m["data-day"]: float(m["data-value"]) for m in parsed.marks if m["data-series"] == "dau"}
    assert drawn == {d["day"]: d["dau"] for d in summary["days"]}
    assert max(drawn.values()) > 0
    assert api.get("/communities/api-a/report", params={"period": "yearly"}, headers=AUTH).status_code == 400


def test_headline_gauges_keep_to_the_busiest_communities(api):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        exposition = api.get("/metrics").text
        if 'steward_kpi_dau{community="api-a"}' in exposition:
            break
        time.sleep(0.2)
    labelled = set(re.findall(r'steward_kpi_dau\{community="([^"]+)"\}', exposition))
    # Two at most, the busiest first (other tests' communities may share the topic); api-c,
    # a third of api-a's events, is over the limit.
    assert len(labelled) == 2 and "api-a" in labelled and "api-c" not in labelled
    untracked = float(re.search(r"^steward_kpi_untracked_communities (\S+)$", exposition, re.M)[1])
    assert untracked >= 1
    today = api.get("/communities/api-a/kpis/activity", headers=AUTH).json()["days"][-1]
    for name in ("dau", "wau", "mau"):
        gauge = float(re.search(rf'^steward_kpi_{name}\{{community="api-a"\}} (\S+)$', exposition, re.M)[1])
        assert gauge == today[name], name
    assert "steward_mongo_commands_total{" in exposition


def test_response_times_are_sealed_once_final_and_outlive_their_facts(api):
    """Read after the response window closed: sealed. Facts expired: the sealed values stay,
    and a day that was never sealed reads as unknown rather than as zero."""
    from pymongo import AsyncMongoClient

    from services.metrics.kpis.calendar import local_day
    from services.metrics.reader import KpiReader
    from services.metrics.store import MetricsStore

    settings = api.app.state.service.settings
    today = local_day(time.time())
    # the events go back 8 days and up to 79 minutes: early in a UTC day that is the day before today - 8
    first, last = today - 9, today

    async def read(clock_days: float, delete_facts: bool = False):
        client = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
        try:
            store = MetricsStore(client[settings.mongo_db], facts_ttl_days=settings.facts_ttl_days)
            if delete_facts:
                await store.facts.delete_many({"g": "api-b@0"})
            reader = KpiReader(store, lambda _: "UTC", clock=lambda: time.time() + clock_days * 86_400)
            return await reader.responses("api-b@0", "UTC", first - 20, last)
        finally:
            await client.close()

    later = asyncio.run(read(10))  # every day's window has closed: computed and sealed
    assert sum(later[d]["questions"] for d in range(first, last + 1)) == 20
    much_later = asyncio.run(read(200, delete_facts=True))
    assert {d: much_later[d] for d in range(first, last + 1)} == {d: later[d] for d in range(first, last + 1)}
    assert much_later[first - 20]["questions"] is not None  # it was read (and sealed) at +10 days too
    asyncio.run(_drop_sealed_day(settings, first - 20))
    assert asyncio.run(read(200))[first - 20]["questions"] is None  # never sealed, facts gone: unknown


async def _drop_sealed_day(settings, day: int) -> None:
    from pymongo import AsyncMongoClient

    client = AsyncMongoClient(settings.mongo_uri)
    try:
        await client[settings.mongo_db]["metrics_sealed"].delete_one({"_id": f"api-b@0|response|{day}"})
    finally:
        await client.close()
