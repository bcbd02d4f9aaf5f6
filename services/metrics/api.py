"""The read API: KPIs per community, behind API keys or bearer tokens when any are configured.

Days are the community's calendar days (its configured time zone). Every range is checked
before any work: a bad date, ``from`` after ``to`` or a range over a year is a 400 that
says which.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, SecretStr, model_validator

from services.metrics.kpis.calendar import Day, iso, local_day, week_of
from services.metrics.reader import KpiReader
from services.metrics.rebuild import Rebuilds
from services.metrics.report import render_report
from services.runtime.auth import require_api_key

MAX_RANGE_DAYS = 366
MAX_PAGE = 500


def install_error_handlers(app: FastAPI) -> None:
    """Malformed parameters are the caller's mistake: a 400 naming each bad one."""

    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=400)

    app.add_exception_handler(RequestValidationError, bad_request)


class KpiGroup(StrEnum):
    activity = "activity"
    members = "members"
    volume = "volume"
    response = "response"
    safety = "safety"
    sentiment = "sentiment"


GROUP_FIELDS: dict[KpiGroup, tuple[str, ...]] = {
    KpiGroup.activity: ("dau", "wau", "mau", "stickiness"),
    KpiGroup.members: ("new_members", "total_members", "left_members", "engagement_rate"),
    KpiGroup.volume: ("messages", "replies", "reactions", "joins", "leaves", "edits", "deletes", "rsvps", "attended"),
    KpiGroup.response: ("questions", "answered", "response_median_s", "response_p90_s", "unanswered_24h_share"),
    KpiGroup.safety: ("classified", "flagged", "flagged_share", "incidents", "incidents_by_severity",
                      "incidents_by_category", "incidents_per_1000_dau", "moderator_precision", "acknowledged",
                      "time_to_ack_median_s", "time_to_ack_p90_s"),
    KpiGroup.sentiment: ("positive", "negative", "neutral", "sentiment"),
}

class Period(StrEnum):
    weekly = "weekly"
    monthly = "monthly"


PERIOD_DAYS = {Period.weekly: 7, Period.monthly: 30}


FromDay = Annotated[date | None, Query(alias="from", description="First day, inclusive (default: 6 days before 'to')")]
ToDay = Annotated[date | None, Query(description="Last day, inclusive (default: today in the community's zone)")]


def build_router(reader: KpiReader, keys: list[SecretStr]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key(keys))], tags=["kpis"])

    def days_of(community_id: str, first: date | None, last: date | None, default_days: int = 7) -> tuple[Day, Day]:
        end = last.toordinal() if last else local_day(time.time(), reader.timezone_of(community_id))
        start = first.toordinal() if first else end - default_days + 1
        if start > end:
            raise HTTPException(400, f"'from' ({iso(start)}) is after 'to' ({iso(end)})")
        if end - start + 1 > MAX_RANGE_DAYS:
            raise HTTPException(400, f"a range covers at most {MAX_RANGE_DAYS} days; this one covers {end - start + 1}")
        return start, end

    def envelope(community_id: str, first: Day, last: Day, **body) -> dict:
        return {"community_id": community_id, "timezone": reader.timezone_of(community_id),
                "from": iso(first), "to": iso(last), **body}

    @router.get("/communities/{community_id}/kpis", summary="Every daily KPI of a community")
    async def kpis(community_id: str, from_: FromDay = None, to: ToDay = None) -> dict:
        first, last = days_of(community_id, from_, to)
        return envelope(community_id, first, last, days=await reader.days(community_id, first, last))

    @router.get("/communities/{community_id}/kpis/{group}", summary="One group of daily KPIs",
                description="activity: DAU/WAU/MAU/stickiness; members: new, total, left, engagement; "
                "volume; response: questions and time to first response; safety; sentiment.")
    async def kpi_group(community_id: str, group: KpiGroup, from_: FromDay = None, to: ToDay = None) -> dict:
        first, last = days_of(community_id, from_, to)
        wanted = ("day", *GROUP_FIELDS[group])
        rows = await reader.days(community_id, first, last)
        return envelope(community_id, first, last, days=[{k: row[k] for k in wanted} for row in rows])

    @router.get("/communities/{community_id}/retention", summary="Weekly retention cohorts",
                description="Cohorts of the ISO weeks the range touches (default: the last 8 weeks); "
                "weeks[k] is the share of the cohort active in week W+k.")
    async def retention(community_id: str, from_: FromDay = None, to: ToDay = None) -> dict:
        first, last = days_of(community_id, from_, to, default_days=56)
        return envelope(community_id, first, last,
                        cohorts=await reader.retention(community_id, week_of(first), week_of(last)))

    @router.get("/communities/{community_id}/segments", summary="Member segments on a day",
                description="new (first seen within 30 days), power users (top 10% by 30-day activity), "
                "dormant (active 30-89 days ago, not since), left.")
    async def segments(community_id: str, day: Annotated[date | None, Query(description="Default: today")] = None) -> dict:
        _, last = days_of(community_id, None, day, default_days=1)
        return {"community_id": community_id, **await reader.segments(community_id, last)}

    @router.get("/communities/{community_id}/exposure", summary="Retention of members exposed to flagged messages",
                description="Per ISO week whose week +4 has ended: the 4-week retention of members who replied "
                "to a flagged message or posted in its thread, against the other active members.")
    async def exposure(community_id: str, from_: FromDay = None, to: ToDay = None) -> dict:
        first, last = days_of(community_id, from_, to, default_days=84)
        return envelope(community_id, first, last,
                        weeks=await reader.exposure(community_id, week_of(first), week_of(last)))

    @router.get("/communities/{community_id}/channels", summary="Volume and safety per channel",
                description="Channels by messages in the range, most first, a page at a time.")
    async def channels(
        community_id: str, from_: FromDay = None, to: ToDay = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> dict:
        first, last = days_of(community_id, from_, to)
        start = _cursor(cursor)
        rows = await reader.channels(community_id, first, last)
        page = rows[start:start + limit]
        following = start + limit if start + limit < len(rows) else None
        return envelope(community_id, first, last, channels=page,
                        next_cursor=None if following is None else str(following))

    @router.get("/communities/{community_id}/summary", summary="Everything a dashboard shows for a period")
    async def summary(community_id: str, from_: FromDay = None, to: ToDay = None) -> dict:
        first, last = days_of(community_id, from_, to)
        return await reader.summary(community_id, first, last)

    @router.get("/communities/{community_id}/report", summary="The weekly or monthly health report (HTML)",
                response_class=HTMLResponse)
    async def report(
        community_id: str,
        period: Annotated[Period, Query(description="weekly: 7 days; monthly: 30 days")] = Period.weekly,
        to: ToDay = None,
    ) -> HTMLResponse:
        first, last = days_of(community_id, None, to, default_days=PERIOD_DAYS[period])
        return HTMLResponse(render_report(await reader.summary(community_id, first, last), period=period))

    return router


class RebuildRequest(BaseModel):
    """Where the rebuild starts reading; from the beginning of what the topics hold when neither is given."""

    from_time: datetime | None = Field(default=None, description="The first record at or after this time")
    from_offset: int | None = Field(default=None, ge=0, description="This offset on every partition")

    @model_validator(mode="after")
    def _one_start(self) -> RebuildRequest:
        if self.from_time is not None and self.from_offset is not None:
            raise ValueError("give from_time or from_offset, not both")
        return self


def build_rebuild_router(rebuilds: Rebuilds, keys: list[SecretStr]) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_api_key(keys))], tags=["rebuild"])

    @router.post("/communities/{community_id}/rebuild", status_code=202,
                 summary="Rebuild a community's KPIs from the topics",
                 description="Folds the community's records into a new generation beside the live one and "
                 "switches over when done; poll GET for progress. 409 while one is running.")
    async def start(community_id: str, request: RebuildRequest) -> dict:
        if rebuilds.running(community_id):
            raise HTTPException(409, f"a rebuild of {community_id!r} is already running")
        job = await rebuilds.start(community_id, since=request.from_time, from_offset=request.from_offset)
        return job.as_dict()

    @router.get("/communities/{community_id}/rebuild", summary="Progress of the latest rebuild")
    async def status(community_id: str) -> dict:
        job = rebuilds.jobs.get(community_id)
        if job is None:
            raise HTTPException(404, f"no rebuild of {community_id!r} since this service started")
        return job.as_dict()

    return router


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise HTTPException(400, f"cursor {cursor!r} is not one this API gave out")
    return int(cursor)

