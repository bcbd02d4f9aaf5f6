"""Request and response bodies of the identity API."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from schemas.activity import Platform

PERSON_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_IDS_PER_PERSON = 50


class MemberRef(BaseModel):
    """A member id as one platform knows it, within the community of the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    platform: Platform
    member_id: str = Field(min_length=1, max_length=256)


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[MemberRef] = Field(
        description=f"The ids to link: at least 2 to create a person, at most {MAX_IDS_PER_PERSON} per person.")
    person_id: str | None = Field(
        default=None, pattern=PERSON_ID,
        description="Add the ids to this existing person; leave out to create a new person.")


class Person(BaseModel):
    community_id: str
    person_id: str
    members: list[MemberRef]


class MemberKpis(BaseModel):
    platform: Platform
    member_id: str
    first_seen: str | None = Field(description="ISO time of the id's earliest event, UTC")
    last_active_day: date | None
    active_days: int
    active_days_last_30: int


class PlatformKpis(BaseModel):
    ids: int
    first_seen: str | None
    last_active_day: date | None
    active_days: int
    active_days_last_30: int


class PersonKpis(BaseModel):
    linked_ids: int
    first_seen: str | None = Field(description="ISO time of the earliest event of any linked id, UTC")
    last_active_day: date | None = Field(description="The latest day any linked id was active")
    active_days: int = Field(description="Distinct days on which any linked id was active")
    active_days_last_30: int = Field(description="Active days among the 30 days ending on last_active_day")
    platforms: dict[str, PlatformKpis]
    members: list[MemberKpis]


class PersonWithKpis(Person):
    kpis: PersonKpis


class PersonPage(BaseModel):
    community_id: str
    persons: list[Person]
    next_cursor: str | None = Field(description="Pass as 'cursor' for the next page; null on the last page")


class SuggestedMember(MemberRef):
    person_id: str | None = Field(description="The person this id already belongs to, if any")


class Suggestion(BaseModel):
    reason: str = Field(description="'same verified email' or 'same username'")
    matched: str = Field(description="The shared value; an email is masked (a***@example.com)")
    members: list[SuggestedMember]


class SuggestionList(BaseModel):
    community_id: str
    suggestions: list[Suggestion]


class IdCounts(BaseModel):
    dau: int
    wau: int
    mau: int


class PersonKpiDay(BaseModel):
    day: date
    dau: int
    wau: int
    mau: int
    stickiness: float | None = Field(description="dau / mau, counting persons; null when mau is 0")
    ids: IdCounts = Field(description="The same counts per platform id, before linking")


class PersonKpiResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    community_id: str
    from_: date = Field(alias="from")
    to: date
    linked_persons: int = Field(description="Persons with more than one linked id")
    days: list[PersonKpiDay]
