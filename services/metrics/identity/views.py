"""The identity API: link a member's ids across platforms, and read KPIs that count persons.

Metrics key member state by ``member_id`` within a community (not by platform), so the
person KPIs read one state per distinct member id of a person.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from schemas.activity import Platform
from services.metrics.identity.links import WINDOWS, person_adjustments, person_kpis
from services.metrics.identity.models import (
    MAX_IDS_PER_PERSON,
    PERSON_ID,
    LinkRequest,
    Person,
    PersonKpiResponse,
    PersonPage,
    PersonWithKpis,
    SuggestionList,
)
from services.metrics.identity.store import (
    IN_CHUNK,
    AlreadyLinked,
    ConcurrentChange,
    IdentityError,
    IdentityStore,
    InvalidLink,
    StoredPerson,
    UnknownMember,
    UnknownPerson,
)
from services.metrics.kpis.bitmaps import MAU_DAYS
from services.metrics.kpis.calendar import Day, iso, local_day
from services.metrics.kpis.members import MemberState
from services.metrics.reader import KpiReader
from services.metrics.store import MetricsStore, generation_key

MAX_RANGE_DAYS = 366
PERSON_HISTORY_DAYS = 400  # a person's activity is read back this far
STATUS = {InvalidLink: 400, AlreadyLinked: 409, ConcurrentChange: 409, UnknownPerson: 404, UnknownMember: 404}
ERRORS = {400: {"description": "The request breaks a rule (the message says which)"},
          404: {"description": "No such person, or the id is not linked to it"},
          409: {"description": "An id already belongs to another person, or the person kept changing (retry)"}}

CommunityId = Annotated[str, Path(min_length=1, max_length=256)]
PersonId = Annotated[str, Path(pattern=PERSON_ID)]


def _http(error: IdentityError) -> HTTPException:
    return HTTPException(STATUS.get(type(error), 400), str(error))


def _person(person: StoredPerson) -> dict:
    return {"community_id": person.community_id, "person_id": person.person_id,
            "members": [{"platform": p, "member_id": m} for p, m in person.members]}


def encode_cursor(person_id: str) -> str:
    return base64.urlsafe_b64encode(person_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        person_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        person_id = ""
    if not re.fullmatch(PERSON_ID, person_id):
        raise HTTPException(400, "'cursor' is not one this API returned: pass next_cursor unchanged")
    return person_id


async def _states(metrics: MetricsStore, generation: str, member_ids: Iterable[str],
                  active_between: tuple[Day, Day]) -> dict[str, MemberState]:
    ids = sorted(set(member_ids))
    out: dict[str, MemberState] = {}
    for start in range(0, len(ids), IN_CHUNK):
        found = await metrics.member_states([(generation, m) for m in ids[start:start + IN_CHUNK]],
                                            active_between=active_between)
        out.update({member_id: state for (_, member_id), state in found.items()})
    return out


async def _generation(metrics: MetricsStore, community_id: str) -> str:
    generations = await metrics.generations([community_id])
    return generation_key(community_id, generations[community_id].current)


def build_identity_router(store: IdentityStore, metrics: MetricsStore, reader: KpiReader) -> APIRouter:
    router = APIRouter(tags=["identity"])

    @router.post(
        "/communities/{community_id}/people", response_model=Person, responses={201: {"model": Person}, **ERRORS},
        summary="Link member ids into a person",
        description=(
            "Without `person_id`, creates a person from at least 2 ids (201). With `person_id`, adds the "
            "ids to that person (200; ids it already holds are ignored). A person holds at most "
            f"{MAX_IDS_PER_PERSON} ids. 409 when an id already belongs to another person: unlink it first."),
    )
    async def link(community_id: CommunityId, body: LinkRequest, response: Response) -> dict:
        members = [(str(m.platform), m.member_id) for m in body.members]
        try:
            person, created = await store.link(community_id, members, body.person_id)
        except IdentityError as error:
            raise _http(error) from None
        if created:
            response.status_code = 201
        return _person(person)

    @router.delete(
        "/communities/{community_id}/people/{person_id}/members/{platform}/{member_id}",
        status_code=204, responses={404: ERRORS[404], 409: ERRORS[409]}, summary="Unlink one id from a person",
        description="The person is deleted with its last id. 404 when the person or the link is unknown.",
    )
    async def unlink(community_id: CommunityId, person_id: PersonId, platform: Platform,
                     member_id: Annotated[str, Path(min_length=1, max_length=256)]) -> Response:
        try:
            await store.unlink(community_id, person_id, (str(platform), member_id))
        except IdentityError as error:
            raise _http(error) from None
        return Response(status_code=204)

    @router.get(
        "/communities/{community_id}/people/{person_id}", response_model=PersonWithKpis, responses={404: ERRORS[404]},
        summary="A person, with per-person KPIs",
        description=("First seen, last active day, active days (all, and in the 30 days ending on the last "
                     "active day) over all the person's ids, per platform and per id."),
    )
    async def get_person(community_id: CommunityId, person_id: PersonId) -> dict:
        person = await store.get_person(community_id, person_id)
        if person is None:
            raise HTTPException(404, f"no person {person_id!r} in community {community_id!r}")
        today = local_day(time.time(), reader.timezone_of(community_id))
        states = await _states(metrics, await _generation(metrics, community_id), (m for _, m in person.members),
                               (today - PERSON_HISTORY_DAYS, today))
        return {**_person(person), "kpis": person_kpis({(p, m): states.get(m) for p, m in person.members})}

    @router.get(
        "/communities/{community_id}/people", response_model=PersonPage, summary="List persons",
        description="Persons ordered by id, a page at a time: pass `next_cursor` as `cursor` for the next page.",
        responses={400: ERRORS[400]},
    )
    async def list_persons(
        community_id: CommunityId,
        limit: Annotated[int, Query(ge=1, le=500, description="Persons per page, 1..500")] = 100,
        cursor: Annotated[str | None, Query(max_length=128, description="next_cursor of the previous page")] = None,
    ) -> dict:
        after = decode_cursor(cursor) if cursor else None
        page, last = await store.list_persons(community_id, limit, after)
        return {"community_id": community_id, "persons": [_person(p) for p in page],
                "next_cursor": encode_cursor(last) if last else None}

    @router.get(
        "/communities/{community_id}/identity-suggestions", response_model=SuggestionList,
        summary="Ids that look like one person",
        description=("Ids of different platforms sharing a verified email (masked here) or a username, not "
                     "already linked together. Suggestions only: link them with POST .../people."),
    )
    async def suggestions(
        community_id: CommunityId,
        limit: Annotated[int, Query(ge=1, le=500, description="At most this many suggestions")] = 100,
    ) -> dict:
        found = await store.suggestions(community_id, limit)
        return {"community_id": community_id, "suggestions": [
            {"reason": s.reason, "matched": s.matched,
             "members": [{"platform": p, "member_id": m, "person_id": owner} for p, m, owner in s.members]}
            for s in found]}

    @router.get(
        "/communities/{community_id}/person-kpis", response_model=PersonKpiResponse, responses={400: ERRORS[400]},
        summary="DAU, WAU and MAU counting persons",
        description=("The per-platform-id counts of each day, less the overlap of linked ids: a person active "
                     "through 2 ids counts once. `ids` keeps the per-id counts."),
    )
    async def kpis(
        community_id: CommunityId,
        from_: Annotated[date | None, Query(alias="from", description="First day, YYYY-MM-DD (default: 6 days before 'to')")] = None,
        to: Annotated[date | None, Query(description="Last day, inclusive, YYYY-MM-DD (default: today, UTC)")] = None,
    ) -> dict:
        last_date = to or datetime.now(UTC).date()
        first_date = from_ or last_date - timedelta(days=6)
        if first_date > last_date:
            raise HTTPException(400, f"'from' ({first_date}) is after 'to' ({last_date})")
        if (last_date - first_date).days + 1 > MAX_RANGE_DAYS:
            raise HTTPException(400, f"a range covers at most {MAX_RANGE_DAYS} days")
        first, last = first_date.toordinal(), last_date.toordinal()
        generation = await _generation(metrics, community_id)
        rows = await reader.member_days(generation, reader.timezone_of(community_id), first, last)
        persons = [p async for p in store.all_persons(community_id) if len(p.members) > 1]
        states = await _states(metrics, generation, (m for p in persons for _, m in p.members),
                               (first - MAU_DAYS + 1, last))
        # One state per distinct member id: two platforms' ids that metrics already merged count once.
        adjust = person_adjustments(
            [[states[m] for m in {m for _, m in p.members} if m in states] for p in persons], first, last)
        return {"community_id": community_id, "from": first_date, "to": last_date,
                "linked_persons": len(persons), "days": [_day(day, rows.get(day, Counter()), adjust)
                                                         for day in range(first, last + 1)]}

    return router


def _day(day: Day, ids: Counter, adjust: Counter) -> dict:
    # Clamped: without transactions (a standalone mongod) a crash can leave bitmaps behind member states.
    persons = {metric: max(0, ids.get(metric, 0) - adjust[(metric, day)]) for metric in WINDOWS}
    return {"day": iso(day), **persons, "stickiness": persons["dau"] / persons["mau"] if persons["mau"] else None,
            "ids": {metric: ids.get(metric, 0) for metric in WINDOWS}}
