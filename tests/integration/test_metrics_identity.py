"""Identity links on a real MongoDB-protocol server, through the HTTP API."""

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from schemas import MemberActivity
from services.metrics.codec import encode_member
from services.metrics.identity.store import (
    AlreadyLinked,
    ConcurrentChange,
    IdentityStore,
)
from services.metrics.identity.views import build_identity_router
from services.metrics.kpis.bitmaps import to_bytes
from services.metrics.kpis.members import MemberState
from services.metrics.reader import KpiReader
from services.metrics.store import MetricsStore
from services.runtime.mongo import make_mongo
from services.runtime.settings import RuntimeSettings

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 2)
D0 = DAY.toordinal()


@dataclass
class Env:
    http: httpx.AsyncClient
    identity: IdentityStore
    db: AsyncDatabase
    community: str

    def url(self, path: str = "") -> str:
        return f"/communities/{self.community}{path}"

    async def link(self, *members: tuple[str, str], person_id: str | None = None) -> httpx.Response:
        body = {"members": [{"platform": p, "member_id": m} for p, m in members]}
        if person_id:
            body["person_id"] = person_id
        return await self.http.post(self.url("/people"), json=body)


@pytest.fixture
async def env(backend, unique):
    client = make_mongo(RuntimeSettings(mongo_uri=backend.mongo_uri))
    db = client[f"test_{unique}"]
    identity = IdentityStore(db)
    await identity.create_indexes()
    app = FastAPI()
    metrics = MetricsStore(db)
    app.include_router(build_identity_router(identity, metrics, KpiReader(metrics, lambda _: "UTC")))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            yield Env(http, identity, db, f"c-{unique}")
    finally:
        await client.close()


def event(community: str, platform: str, member: str, n: int = 0, **attributes) -> MemberActivity:
    return MemberActivity(event_id=f"{platform}-{member}-{n}", platform=platform, community_id=community,
                          member_id=member, kind="member_joined",
                          occurred_at=datetime(2026, 3, 2, 12, tzinfo=UTC) + timedelta(minutes=n),
                          attributes=attributes)


async def test_link_add_conflict_and_unlink(env):
    created = await env.link(("discourse", "7"), ("telegram", "42"))
    assert created.status_code == 201, created.text
    person = created.json()["person_id"]
    assert created.json()["members"] == [{"platform": "discourse", "member_id": "7"},
                                         {"platform": "telegram", "member_id": "42"}]

    conflict = await env.link(("telegram", "42"), ("github", "5"))
    assert conflict.status_code == 409
    assert person in conflict.json()["detail"] and "'42'" in conflict.json()["detail"]
    assert await env.identity.person_of(env.community, ("github", "5")) is None  # nothing half-made

    for bad in ([("slack", "U1")], [("slack", "U1"), ("slack", "U1")], [("slack", str(i)) for i in range(51)]):
        answer = await env.link(*bad)
        assert answer.status_code == 400, (bad, answer.text)
    assert (await env.link(("myspace", "1"), ("slack", "2"))).status_code == 422

    added = await env.link(("github", "5"), person_id=person)
    assert added.status_code == 200 and len(added.json()["members"]) == 3
    assert (await env.link(("github", "5"), person_id=person)).json() == added.json()  # idempotent
    assert (await env.link(("github", "6"), person_id="nobody")).status_code == 404
    too_many = await env.link(*[("slack", str(i)) for i in range(48)], person_id=person)
    assert too_many.status_code == 400 and "50" in too_many.json()["detail"]
    assert await env.identity.person_of(env.community, ("github", "5")) == person

    members = env.url(f"/people/{person}/members")
    assert (await env.http.delete(f"{members}/github/5")).status_code == 204
    assert (await env.http.delete(f"{members}/github/5")).status_code == 404
    assert (await env.http.delete(env.url("/people/nobody/members/github/5"))).status_code == 404
    assert (await env.link(("github", "5"), ("slack", "U1"))).status_code == 201  # free again

    assert (await env.http.delete(f"{members}/discourse/7")).status_code == 204
    assert (await env.http.delete(f"{members}/telegram/42")).status_code == 204
    assert (await env.http.get(env.url(f"/people/{person}"))).status_code == 404  # gone with its last id


class CheckedBeforeWritten:
    """The persons collection, holding the racers' first writes until all have checked for owners."""

    def __init__(self, collection, racers: int) -> None:
        self.collection, self.barrier, self.held = collection, asyncio.Barrier(racers), 0

    def __getattr__(self, name):
        return getattr(self.collection, name)

    async def _hold(self) -> None:
        if self.held < self.barrier.parties:  # a rollback after the race is not held
            self.held += 1
            await self.barrier.wait()

    async def insert_one(self, *args, **kwargs):
        await self._hold()
        return await self.collection.insert_one(*args, **kwargs)

    async def update_one(self, *args, **kwargs):
        await self._hold()
        return await self.collection.update_one(*args, **kwargs)


async def owners_of(env: Env, key: str) -> list[str]:
    return [d["person_id"] async for d in env.identity.persons.find({"community_id": env.community})
            if key in d["keys"]]


async def test_racing_creates_never_share_an_id(env):
    racers = 6
    env.identity.persons = CheckedBeforeWritten(env.identity.persons, racers)
    results = await asyncio.gather(
        *(env.identity.link(env.community, [("slack", "shared"), ("discord", str(i))]) for i in range(racers)),
        return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(f, (AlreadyLinked, ConcurrentChange)) for f in failures), failures
    owners = await owners_of(env, "slack|shared")
    assert len(owners) == racers - len(failures) <= 1
    if owners:
        assert await env.identity.person_of(env.community, ("slack", "shared")) == owners[0]


async def test_racing_adds_never_share_an_id(env):
    persons = [(await env.identity.link(env.community, [("slack", f"a{i}"), ("discord", f"b{i}")]))[0].person_id
               for i in range(2)]
    env.identity.persons = CheckedBeforeWritten(env.identity.persons, 2)
    results = await asyncio.gather(
        *(env.identity.link(env.community, [("github", "x")], person) for person in persons), return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(f, (AlreadyLinked, ConcurrentChange)) for f in failures), failures
    assert len(await owners_of(env, "github|x")) == 2 - len(failures) <= 1
    for i, person in enumerate(persons):  # a loser is left as it was
        keys = set((await env.identity.persons.find_one({"person_id": person}))["keys"])
        assert keys - {"github|x"} == {f"slack|a{i}", f"discord|b{i}"}


async def test_persons_are_listed_page_by_page(env):
    made = {(await env.link(("slack", f"u{i}"), ("discord", f"d{i}"))).json()["person_id"] for i in range(7)}
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await env.http.get(env.url("/people"), params=params)).json()
        seen += [p["person_id"] for p in page["persons"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(made)
    for limit in (0, 501, "many"):
        assert (await env.http.get(env.url("/people"), params={"limit": limit})).status_code == 422
    assert (await env.http.get(env.url("/people"), params={"cursor": "!!"})).status_code == 400


async def test_profiles_are_written_once_for_repeated_events(env):
    batch = [event(env.community, "discourse", "7", n, username="Alice") for n in range(3)]
    batch.append(event(env.community, "slack", "U1"))  # no identity hints
    assert await env.identity.observe(batch) == 1
    assert await env.identity.observe(batch) == 0  # steady traffic: nothing written
    assert await IdentityStore(env.db).observe(batch) == 0  # a restarted store reads rather than rewrites
    doc = await env.identity.profiles.find_one({"community_id": env.community})
    assert (doc["platform"], doc["member_id"], doc["username"], doc["email"]) == ("discourse", "7", "alice", None)
    assert await env.identity.profiles.count_documents({"community_id": env.community}) == 1

    verified = event(env.community, "discourse", "7", 9, email="A@x.org", email_verified=True)
    assert await env.identity.observe([verified]) == 1
    doc = await env.identity.profiles.find_one({"_id": doc["_id"]})
    assert (doc["username"], doc["email"]) == ("alice", "a@x.org")  # the username kept


async def test_suggestions_come_from_observed_events_and_go_once_linked(env):
    await env.identity.observe([
        event(env.community, "discourse", "7", username="Alice"),
        event(env.community, "telegram", "42", username="alice"),
        event(env.community, "telegram", "43", username="bob"),
        event(env.community, "generic", "g1", email="bob@example.com", email_verified=True),
        event(env.community, "github", "5", email="bob@example.com", email_verified=True),
        event(env.community, "circle", "c1", email="bob@example.com"),  # unverified: no match
    ])
    found = (await env.http.get(env.url("/identity-suggestions"))).json()["suggestions"]
    assert [(s["reason"], s["matched"], [(m["platform"], m["member_id"]) for m in s["members"]]) for s in found] == [
        ("same verified email", "b***@example.com", [("generic", "g1"), ("github", "5")]),
        ("same username", "alice", [("discourse", "7"), ("telegram", "42")]),
    ]
    assert (await env.link(("discourse", "7"), ("telegram", "42"))).status_code == 201
    found = (await env.http.get(env.url("/identity-suggestions"))).json()["suggestions"]
    assert [s["reason"] for s in found] == ["same verified email"]


async def write_metrics(db: AsyncDatabase, community: str, states: dict[str, MemberState]) -> None:
    """Member documents and day bitmaps as the metrics store writes them (one partition)."""
    generation = f"{community}@0"
    days: dict[int, int] = {}
    for index, (member, state) in enumerate(states.items()):
        state.index = index
        for day in state.active:
            days[day] = days.get(day, 0) | 1 << index
    await db["metrics_members"].insert_many([
        {"_id": f"{generation}|{m}", "g": generation, "m": m, "p": 0, **encode_member(s)} for m, s in states.items()])
    await db["metrics_bitmaps"].insert_many([
        {"_id": f"{generation}|active|{day}|0", "g": generation, "kind": "active", "key": day, "p": 0,
         "bits": to_bytes(bits)} for day, bits in days.items()])


async def test_person_kpis_count_a_linked_person_once(env):
    seen = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    await write_metrics(env.db, env.community, {
        "7": MemberState(seen, [], active={D0, D0 + 1}),  # discourse
        "42": MemberState(seen - 86_400, [], active={D0, D0 + 9}),  # telegram: the same person
        "U9": MemberState(seen, [], active={D0}),  # one slack id, also known on discord under the same id
        "X": MemberState(seen, [], active={D0 + 1}),
    })
    person = (await env.link(("discourse", "7"), ("telegram", "42"))).json()["person_id"]
    assert (await env.link(("slack", "U9"), ("discord", "U9"))).status_code == 201

    answer = await env.http.get(env.url("/person-kpis"), params={"from": DAY.isoformat(), "to": "2026-03-11"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["linked_persons"] == 2 and body["from"] == "2026-03-02" and len(body["days"]) == 10
    days = {d["day"]: d for d in body["days"]}
    first, second, last = days["2026-03-02"], days["2026-03-03"], days["2026-03-11"]
    assert (first["ids"]["dau"], first["dau"]) == (3, 2)  # 7 and 42 are one person; U9 is one metrics id
    assert (second["ids"]["dau"], second["dau"]) == (2, 2)
    assert (second["ids"]["wau"], second["wau"]) == (4, 3)
    assert (last["ids"]["mau"], last["mau"]) == (4, 3)
    assert last["ids"]["wau"] == last["wau"] == 1  # only 42 within the week
    assert first["stickiness"] == pytest.approx(2 / 2)

    kpis = (await env.http.get(env.url(f"/people/{person}"))).json()["kpis"]
    assert kpis["first_seen"] == "2026-01-31T00:00:00+00:00"  # 42's, the earlier of the two
    assert (kpis["last_active_day"], kpis["active_days"], kpis["linked_ids"]) == ("2026-03-11", 3, 2)
    assert kpis["platforms"]["discourse"]["last_active_day"] == "2026-03-03"


@pytest.mark.parametrize(("params", "status"), [
    ({"from": "2026-03-05", "to": "2026-03-01"}, 400),
    ({"from": "2025-01-01", "to": "2026-03-01"}, 400),
    ({"from": "yesterday"}, 422),
])
async def test_person_kpis_refuse_bad_ranges(env, params, status):
    answer = await env.http.get(env.url("/person-kpis"), params=params)
    assert answer.status_code == status, answer.text
