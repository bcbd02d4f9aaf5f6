"""Silences on a real MongoDB-protocol server (nx-27017 locally), through the HTTP API:
create, list by state and community, match incident labels, expire, and the error answers.

nx-27017 shares collections across database names, so every test uses its own community
and checks silences by id."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from schemas.incidents import Incident
from services.notifier.silences import SilenceStore, build_silences_router, silencing
from services.runtime.mongo import make_mongo
from services.runtime.settings import RuntimeSettings

pytestmark = pytest.mark.integration
HOUR = timedelta(hours=1)


@dataclass
class Clock:
    now: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(microsecond=0)
    )

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Env:
    http: httpx.AsyncClient
    store: SilenceStore
    clock: Clock
    community: str
    make_incident: Callable[..., Incident]

    def body(self, **overrides) -> dict:
        body = {
            "matchers": [f'community="{self.community}"', 'severity=~"high|critical"'],
            "duration": "1h",
            "created_by": "alice",
            "comment": "raid in progress",
        }
        body.update(overrides)
        return body

    async def create(self, **overrides) -> dict:
        response = await self.http.post("/silences", json=self.body(**overrides))
        assert response.status_code == 201, response.text
        return response.json()

    async def ids(self, **params) -> list[str]:
        response = await self.http.get(
            "/silences", params={"community": self.community, **params}
        )
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["silences"]]

    def labels(self, **overrides) -> dict[str, str]:
        fields = {"community_id": self.community, "severity": "high", **overrides}
        return self.make_incident(**fields).labels()

    async def silenced_by(self, labels: dict[str, str]) -> str | None:
        current = await self.store.current(self.clock())
        found = silencing(labels, current, self.clock())
        return None if found is None else found.id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
async def env(backend, unique, make_incident):
    client = make_mongo(RuntimeSettings(mongo_uri=backend.mongo_uri))
    store = SilenceStore(client[f"test_{unique}"])
    await store.create_indexes()
    clock = Clock()
    app = FastAPI()
    app.include_router(build_silences_router(store, clock=clock))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Env(http, store, clock, f"c-{unique}", make_incident)
    finally:
        await client.close()


async def test_create_list_match_and_expire(env: Env) -> None:
    t0 = env.clock()
    created = await env.create()
    sid = created["id"]
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert created["state"] == "active"
    assert created["matchers"] == [f'community="{env.community}"', 'severity=~"high|critical"']
    assert at(created["starts_at"]) == t0
    assert at(created["ends_at"]) == t0 + HOUR
    assert (created["created_by"], created["comment"]) == ("alice", "raid in progress")

    read = await env.http.get(f"/silences/{sid}")
    assert read.status_code == 200
    assert read.json() == created  # what was stored reads back the same

    assert await env.ids(state="active") == [sid]
    assert await env.ids(state="pending") == []
    assert await env.ids(state="expired") == []
    assert await env.ids() == [sid]

    # a matching label set is silenced, others are not
    assert await env.silenced_by(env.labels()) == sid
    assert await env.silenced_by(env.labels(severity="critical")) == sid
    assert await env.silenced_by(env.labels(severity="low")) is None
    assert await env.silenced_by(env.labels(community_id=f"{env.community}-other")) is None

    # still active 59 minutes later, over at the hour
    env.clock.advance(timedelta(minutes=59))
    assert await env.silenced_by(env.labels()) == sid
    env.clock.advance(timedelta(minutes=1))
    assert await env.silenced_by(env.labels()) is None
    assert await env.ids(state="expired") == [sid]
    env.clock.now = t0 + timedelta(minutes=10)

    expired = await env.http.delete(f"/silences/{sid}")
    assert expired.status_code == 200, expired.text
    body = expired.json()
    assert body["id"] == sid and body["state"] == "expired"
    assert at(body["ends_at"]) == env.clock()
    assert at(body["starts_at"]) == t0
    assert at(body["updated_at"]) == env.clock()

    assert await env.silenced_by(env.labels()) is None
    assert sid not in [s.id for s in await env.store.current(env.clock())]
    assert await env.ids(state="active") == []
    assert await env.ids(state="expired") == [sid]
    assert (await env.http.get(f"/silences/{sid}")).json()["state"] == "expired"

    # expiring again changes nothing
    env.clock.advance(HOUR)
    again = await env.http.delete(f"/silences/{sid}")
    assert again.status_code == 200
    assert again.json() == body


async def test_a_pending_silence_starts_later_and_expiring_it_cancels_it(env: Env) -> None:
    t0 = env.clock()
    created = await env.create(starts_at=(t0 + HOUR).isoformat(), duration="30m")
    sid = created["id"]
    assert created["state"] == "pending"
    assert at(created["ends_at"]) == t0 + timedelta(minutes=90)
    assert await env.ids(state="pending") == [sid]
    assert await env.ids(state="active") == []
    assert await env.silenced_by(env.labels()) is None

    env.clock.advance(HOUR)
    assert await env.ids(state="active") == [sid]
    assert await env.silenced_by(env.labels()) == sid
    env.clock.now = t0

    cancelled = await env.http.delete(f"/silences/{sid}")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "expired"
    assert at(cancelled.json()["starts_at"]) == at(cancelled.json()["ends_at"]) == t0
    env.clock.advance(HOUR)
    assert await env.silenced_by(env.labels()) is None  # it never starts
    assert await env.ids(state="pending") == []


async def test_ends_at_and_a_past_start(env: Env) -> None:
    t0 = env.clock()
    created = await env.create(
        duration=None,
        starts_at=(t0 - HOUR).isoformat(),
        ends_at=(t0 + 2 * HOUR).isoformat(),
    )
    assert at(created["starts_at"]) == t0  # a start in the past becomes now
    assert at(created["ends_at"]) == t0 + 2 * HOUR
    assert created["state"] == "active"


async def test_list_filters_by_community_and_orders_by_end(env: Env) -> None:
    late = await env.create(duration="3h")
    soon = await env.create(duration="1h")
    regex = await env.create(matchers=[f'community=~"{env.community}|x"'])
    assert await env.ids(state="active") == [soon["id"], late["id"]]  # soonest-ending first
    everything = await env.http.get("/silences", params={"state": "active", "limit": 1000})
    found = [s["id"] for s in everything.json()["silences"]]
    assert {soon["id"], late["id"], regex["id"]} <= set(found)
    limited = await env.http.get("/silences", params={"community": env.community, "limit": 1})
    assert len(limited.json()["silences"]) == 1


async def test_unknown_ids_are_404(env: Env) -> None:
    for method in ("GET", "DELETE"):
        response = await env.http.request(method, "/silences/0123456789abcdef0123456789abcdef")
        assert response.status_code == 404
        assert response.json()["detail"] == (
            "no silence with id '0123456789abcdef0123456789abcdef'"
        )


async def test_a_silence_that_would_be_over_already_is_400(env: Env) -> None:
    t0 = env.clock()
    past = await env.http.post(
        "/silences", json=env.body(duration=None, ends_at=(t0 - HOUR).isoformat())
    )
    assert past.status_code == 400
    assert "not in the future" in past.json()["detail"]
    over = await env.http.post(
        "/silences", json=env.body(starts_at=(t0 - 2 * HOUR).isoformat(), duration="1h")
    )
    assert over.status_code == 400
    assert await env.ids() == []  # nothing was stored


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"matchers": ['community=~".*"']}, "would silence every incident"),
        ({"matchers": ['community=~".*"', 'severity!="low"']}, "would silence every incident"),
        ({"matchers": []}, "at least 1 item"),
        ({"matchers": ['community="c1', 'rule="x"']}, "unbalanced quotes"),
        ({"matchers": ['category=~"(x"']}, "invalid regex"),
        ({"ends_at": "2999-01-01T00:00:00Z"}, "give exactly one of ends_at"),
        ({"duration": None}, "give exactly one of ends_at"),
        ({"duration": "soon"}, "invalid duration 'soon'"),
        ({"duration": None, "ends_at": "2999-01-01T00:00:00"}, "timezone"),
        (
            {"starts_at": "2999-01-02T00:00:00Z", "duration": None,
             "ends_at": "2999-01-01T00:00:00Z"},
            "must be after starts_at",
        ),
        ({"comment": ""}, "comment"),
        ({"created_by": None}, "created_by"),
    ],
)
async def test_malformed_silences_are_422_with_a_clear_message(
    env: Env, overrides: dict, fragment: str
) -> None:
    response = await env.http.post("/silences", json=env.body(**overrides))
    assert response.status_code == 422, response.text
    assert fragment in response.text
    assert await env.ids() == []


async def test_a_bad_state_filter_is_422(env: Env) -> None:
    response = await env.http.get("/silences", params={"state": "muted"})
    assert response.status_code == 422
    assert "pending" in response.text


async def test_openapi_describes_the_routes(env: Env) -> None:
    schema = (await env.http.get("/openapi.json")).json()
    paths = schema["paths"]
    assert paths["/silences"]["post"]["summary"] == "Create a silence"
    assert "400" in paths["/silences"]["post"]["responses"]
    assert paths["/silences/{silence_id}"]["delete"]["summary"] == "Expire a silence"
    assert "404" in paths["/silences/{silence_id}"]["get"]["responses"]
