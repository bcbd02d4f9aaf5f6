"""Silences, in the spirit of Prometheus Alertmanager: a set of label matchers and a time
window during which matching incidents are not notified.

- ``SilenceIn`` is what a caller posts. Its shape is checked on parsing (a 422 from the API):
  at least one matcher, each in Alertmanager syntax (``label="v"``, ``!=``, ``=~``, ``!~``);
  exactly one of ``ends_at`` or ``duration``; ``ends_at`` after ``starts_at``; timestamps
  with a timezone; and matchers that would silence every incident are refused, as
  Alertmanager does (at least one matcher must not match the empty string, the value of a
  missing label). ``SilenceIn.window(now)`` then checks the rules that depend on the time
  (a 400 from the API): the silence must end in the future; a start in the past becomes now.
- ``Silence`` is a stored silence, with its ``state`` (pending / active / expired) computed
  against a given time: active while ``starts_at <= now < ends_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from services.notifier.routing.config import Matcher, parse_duration, parse_matcher

__all__ = [
    "MAX_COMMENT_LENGTH",
    "MAX_CREATED_BY_LENGTH",
    "MAX_MATCHERS",
    "MAX_MATCHER_LENGTH",
    "Silence",
    "SilenceIn",
    "SilenceList",
    "SilenceState",
    "SilenceWindowError",
    "as_utc",
    "silence_state",
]

MAX_MATCHERS = 32
MAX_MATCHER_LENGTH = 1024
MAX_COMMENT_LENGTH = 1000
MAX_CREATED_BY_LENGTH = 256

MATCH_ALL_MESSAGE = (
    "these matchers would silence every incident: they all match the empty string "
    "(a missing label), so at least one must not, e.g. community=\"c1\" or severity=~\"low|medium\""
)


class SilenceState(StrEnum):
    pending = "pending"
    active = "active"
    expired = "expired"


class SilenceWindowError(ValueError):
    """The silence's time window breaks a rule at the time of the request."""


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one (as a client without ``tz_aware`` reads) is UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def silence_state(starts_at: datetime, ends_at: datetime, now: datetime) -> SilenceState:
    """Expired once ``ends_at <= now``; pending before ``starts_at``; active in between."""
    if ends_at <= now:
        return SilenceState.expired
    if now < starts_at:
        return SilenceState.pending
    return SilenceState.active


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat().replace("+00:00", "Z")


def _canonical_matcher(text: str) -> str:
    # canonical text (label="value"): stored matchers read the same whatever the input
    return str(parse_matcher(text))


MatcherText = Annotated[
    str, Field(min_length=1, max_length=MAX_MATCHER_LENGTH), AfterValidator(_canonical_matcher)
]


class SilenceIn(BaseModel):
    """A new silence. Give ``ends_at`` or ``duration`` (e.g. ``"1h"``, ``"30m"``), not both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "matchers": ['community="c1"', 'category=~"spam|flood"'],
                    "duration": "2h",
                    "created_by": "alice",
                    "comment": "raid in progress, handled in #mods",
                }
            ]
        },
    )

    matchers: list[MatcherText] = Field(
        min_length=1,
        max_length=MAX_MATCHERS,
        description=(
            'Alertmanager matchers on incident labels: label="v", label!="v", label=~"re", '
            'label!~"re" (regexes fully anchored; a missing label is the empty string). '
            "All must match for the silence to apply."
        ),
    )
    starts_at: AwareDatetime | None = Field(
        default=None,
        description="When it starts (RFC 3339 with an offset); now when omitted or in the past.",
    )
    ends_at: AwareDatetime | None = Field(
        default=None, description="When it ends (RFC 3339 with an offset); or give duration."
    )
    duration: str | None = Field(
        default=None,
        description='How long from starts_at, e.g. "30m", "1h", "1h30m", "2d"; or give ends_at.',
    )
    created_by: str = Field(min_length=1, max_length=MAX_CREATED_BY_LENGTH)
    comment: str = Field(min_length=1, max_length=MAX_COMMENT_LENGTH)

    @field_validator("duration")
    @classmethod
    def _check_duration(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if parse_duration(value) <= timedelta(0):
            raise ValueError(f"duration must be positive, got {value!r}")
        return value.strip()

    @field_validator("created_by", "comment")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @model_validator(mode="after")
    def _check(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError(
                "give exactly one of ends_at (a timestamp) or duration (e.g. \"1h\"), "
                + ("not both" if self.ends_at is not None else "neither was given")
            )
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError(
                f"ends_at ({_iso(self.ends_at)}) must be after starts_at ({_iso(self.starts_at)})"
            )
        if all(m.matches({}) for m in self.parsed_matchers()):
            raise ValueError(MATCH_ALL_MESSAGE)
        return self

    def parsed_matchers(self) -> list[Matcher]:
        return [parse_matcher(text) for text in self.matchers]

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """``(starts_at, ends_at)`` of the silence created at ``now``.

        A start in the past (or none) becomes ``now``, as in Alertmanager; the end must be
        in the future, otherwise ``SilenceWindowError``.
        """
        now = as_utc(now)
        starts_at = self.starts_at or now
        if self.ends_at is not None:
            ends_at = self.ends_at
        else:
            assert self.duration is not None  # the model validator saw to it
            ends_at = starts_at + parse_duration(self.duration)
        if ends_at <= now:
            raise SilenceWindowError(
                f"the silence would end at {_iso(ends_at)}, which is not in the future "
                f"(now is {_iso(now)}): a silence must end after it is created"
            )
        return max(starts_at, now), ends_at


class Silence(BaseModel):
    """A stored silence; ``state`` is as of the time it was read."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="32 hex digits (a uuid4).")
    matchers: list[str] = Field(description='Canonical matchers, e.g. community="c1".')
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    updated_at: datetime = Field(description="When it was created or last expired.")
    state: SilenceState = Field(description="pending, active or expired, as of the request.")

    _parsed: tuple[Matcher, ...] = PrivateAttr(default=())

    def model_post_init(self, context: object, /) -> None:
        self._parsed = tuple(parse_matcher(text) for text in self.matchers)

    @property
    def parsed_matchers(self) -> tuple[Matcher, ...]:
        return self._parsed

    def state_at(self, now: datetime) -> SilenceState:
        return silence_state(self.starts_at, self.ends_at, now)

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def at(self, now: datetime) -> Silence:
        """The same silence with its state as of ``now``."""
        return self.model_copy(update={"state": self.state_at(now)})

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches ``labels`` (regardless of the time)."""
        plain = dict(labels)
        return all(m.matches(plain) for m in self._parsed)


class SilenceList(BaseModel):
    silences: list[Silence]
