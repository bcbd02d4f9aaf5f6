"""The routing YAML: receivers and a routing tree, in the spirit of Prometheus Alertmanager.

    receivers:
      - name: console
        console: {}
      - name: moderators
        slack: {}                      # webhook_url falls back to STEWARD_SLACK_WEBHOOK_URL
        email: {to: [mods@example.org]}  # empty ``to`` falls back to STEWARD_EMAIL_TO
    route:
      receiver: console
      group_by: [community, category]
      routes:
        - matchers: ['severity=~"high|critical"']
          receiver: moderators

Matchers use Alertmanager syntax (``label="v"``, ``!=``, ``=~``, ``!~``; quotes optional;
regexes fully anchored). A label the incident lacks matches as the empty string.
``group_by``/``group_wait``/``group_interval``/``repeat_interval`` are inherited by children
and stored; grouping timers act on them in a later issue.

Two more top-level keys, both optional, as in Alertmanager:

    inhibit_rules:                     # see ``inhibit``: a source incident mutes targets
      - source_matchers: ['severity="critical"']
        target_matchers: ['severity=~"low|medium|high"']
        equal: [community, channel, rule]
    time_intervals:                    # see ``intervals``: named calendars
      - name: office-hours
        time_intervals:
          - times: [{start_time: "09:00", end_time: "17:00"}]
            weekdays: ["monday:friday"]
            location: Europe/Paris     # Alertmanager's key ``time_zone`` is accepted too

and routes name those calendars in ``mute_time_intervals`` / ``active_time_intervals``
(not inherited by child routes, as in Alertmanager; the root route may have neither).
Unlike YAML 1.1, ``17:00`` or ``1:5`` unquoted stay strings (not base-60 numbers).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "INCIDENT_LABELS",
    "MONTHS",
    "WEEKDAYS",
    "ConsoleConfig",
    "DayOfMonthRange",
    "EmailConfig",
    "InclusiveRange",
    "InhibitRule",
    "MatchOp",
    "Matcher",
    "MonthRange",
    "NamedTimeInterval",
    "ReceiverConfig",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "SlackConfig",
    "TimeInterval",
    "TimeRange",
    "WeekdayRange",
    "YearRange",
    "default_routing_path",
    "format_clock",
    "format_duration",
    "load_configured_routing",
    "load_default_routing",
    "load_routing",
    "parse_clock",
    "parse_duration",
    "parse_matcher",
]

DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)

GROUP_BY_ALL = "..."
"""``group_by: ['...']`` groups by every label, as in Alertmanager."""


class RoutingConfigError(ValueError):
    """The routing YAML is invalid; ``problems`` lists each one, with its line when known."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid routing config ({source}):\n{lines}")


# --------------------------------------------------------------------------- matchers


class MatchOp(StrEnum):
    eq = "="
    ne = "!="
    re = "=~"
    nre = "!~"


_LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER_RE = re.compile(
    rf"^\s*(?P<name>{_LABEL_NAME})\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$", re.DOTALL
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body, out, i = raw[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == '"':
                raise ValueError("unescaped '\"' inside a quoted value")
            if ch == "\\":
                if i + 1 >= len(body):
                    raise ValueError("dangling backslash at the end of a quoted value")
                nxt = body[i + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    if raw.startswith('"') or raw.endswith('"'):
        raise ValueError("unbalanced quotes in the value")
    return raw


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are anchored at both ends, as in Alertmanager."""

    name: str
    op: MatchOp
    value: str
    _pattern: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.op in (MatchOp.re, MatchOp.nre):
            try:
                re.compile(self.value)  # errors point into the user's text, not the wrapper
                pattern = re.compile(rf"^(?:{self.value})$")
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        else:
            pattern = None
        object.__setattr__(self, "_pattern", pattern)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.eq:
            return actual == self.value
        if self.op is MatchOp.ne:
            return actual != self.value
        hit = self._pattern.fullmatch(actual) is not None  # type: ignore[attr-defined]
        return hit if self.op is MatchOp.re else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse ``label="value"`` / ``label!="v"`` / ``label=~"re"`` / ``label!~"re"``."""
    if not isinstance(text, str):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error
        msg = f"a matcher must be a string like 'severity=\"high\"', got {text!r}"
        raise ValueError(msg)  # noqa: TRY004
    m = _MATCHER_RE.match(text)
    if m is None:
        raise ValueError(
            f"bad matcher {text!r}: expected label=\"value\", label!=\"value\", "
            f"label=~\"regex\" or label!~\"regex\""
        )
    try:
        value = _unquote(m["value"])
        return Matcher(m["name"], MatchOp(m["op"]), value)
    except ValueError as exc:
        raise ValueError(f"bad matcher {text!r}: {exc}") from None


def _validate_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    return parse_matcher(value)


MatcherField = Annotated[
    Matcher, PlainValidator(_validate_matcher), PlainSerializer(str, return_type=str)
]


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: str | float | timedelta) -> timedelta:
    """Prometheus-style durations: ``30s``, ``5m``, ``4h``, ``1h30m``, ``250ms``, ``1d``.

    A bare number is seconds.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")  # noqa: TRY004 (pydantic wants ValueError)
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        m = _DURATION_RE.match(text)
        if not text or m is None or not any(m.groupdict().values()):
            raise ValueError(
                f"invalid duration {value!r}: use e.g. 30s, 5m, 4h, 1h30m, 250ms, 1d"
            )
        seconds = sum(int(m[u]) * s for u, s in _UNIT_SECONDS.items() if m[u])
        result = timedelta(seconds=seconds, milliseconds=int(m["ms"] or 0))
    else:
        raise ValueError(f"invalid duration {value!r}")  # noqa: TRY004 (pydantic wants ValueError)
    if result < timedelta(0):
        raise ValueError(f"duration must not be negative: {value!r}")
    return result


def format_duration(value: timedelta) -> str:
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, ms = divmod(ms, secs * 1000)
        if n:
            parts.append(f"{n}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


# --------------------------------------------------------------------------- escalation policies


def _positive_duration(value: Any) -> timedelta:
    result = parse_duration(value)
    if result <= timedelta(0):
        raise ValueError("timeout must be greater than zero")
    return result


Timeout = Annotated[
    timedelta,
    PlainValidator(_positive_duration),
    PlainSerializer(format_duration, return_type=str),
]


class EscalationLevel(BaseModel):
    """One level: who is notified, and how long they have to acknowledge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receivers: tuple[str, ...] = Field(min_length=1)
    timeout: Timeout

    @model_validator(mode="before")
    @classmethod
    def _single_receiver(cls, data: Any) -> Any:
        # ``receiver: mods`` is the common case; accept it as ``receivers: [mods]``.
        if isinstance(data, Mapping) and "receiver" in data and "receivers" not in data:
            data = {**data, "receivers": [data["receiver"]]}
            del data["receiver"]
        return data


class EscalationPolicy(BaseModel):
    """PagerDuty-style: ordered levels with timeouts, run ``repeat`` more times (see
    ``services.notifier.escalation`` for the semantics)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    levels: tuple[EscalationLevel, ...] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0)
    """How many times the whole sequence runs again after its last level."""

    @property
    def fingerprint(self) -> str:
        """Identifies the levels and repeat count (not the name) of this version."""
        return _fingerprint(self.levels, self.repeat)


def _fingerprint(levels: Iterable[EscalationLevel], repeat: int) -> str:
    canonical = json.dumps(
        {
            "levels": [
                {"receivers": list(lv.receivers), "timeout_ms": round(lv.timeout.total_seconds() * 1000)}
                for lv in levels
            ],
            "repeat": repeat,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]



# --------------------------------------------------------------------------- receivers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SlackConfig(_Strict):
    """An incoming webhook (``webhook_url``), or, with ``channel``, chat.postMessage with the
    bot token of the settings (``slack_bot_token``), whose messages can then be updated."""

    webhook_url: str | None = Field(
        default=None, description="Incoming webhook; settings' slack_webhook_url when unset."
    )
    channel: str | None = Field(
        default=None,
        description="Channel id (or name) for chat.postMessage with the bot token; wins over a webhook.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http(s) URL, got {v!r}")
        return v

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c.isspace() for c in v)):
            raise ValueError(f"channel must be a Slack channel id or name without spaces, got {v!r}")
        return v


class EmailConfig(_Strict):
    to: list[str] = Field(
        default_factory=list, description="Recipients; settings' email_to when empty."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if "@" not in address or any(c in address for c in "\r\n,;"):
                raise ValueError(f"not an email address: {address!r}")
        return v


class ConsoleConfig(_Strict):
    pass


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    # absent integrations are left out of dumps: ``slack: null`` would read back as ``{}``
    slack: SlackConfig | None = Field(default=None, exclude_if=lambda v: v is None)
    email: EmailConfig | None = Field(default=None, exclude_if=lambda v: v is None)
    console: ConsoleConfig | None = Field(default=None, exclude_if=lambda v: v is None)

    @field_validator("slack", "email", "console", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        # ``slack:`` with nothing after it parses as None; treat it like ``slack: {}``.
        return {} if v is None else v

    @model_validator(mode="after")
    def _at_least_one(self) -> ReceiverConfig:
        if not self.kinds:
            raise ValueError(
                f"receiver {self.name!r} has no integration: give it slack, email or console"
            )
        return self

    @property
    def kinds(self) -> list[str]:
        return [k for k in ("slack", "email", "console") if getattr(self, k) is not None]


# --------------------------------------------------------------------------- inhibition

INCIDENT_LABELS = frozenset({"community", "severity", "category", "channel", "platform", "rule", "member"})
"""The labels ``Incident.labels()`` gives; ``equal`` may only name these (see below)."""


class InhibitRule(_Strict):
    """While an active incident matches ``source_matchers``, incidents matching
    ``target_matchers`` with the same values of every ``equal`` label are muted.

    Semantics (Alertmanager's) are in ``inhibit``. Empty matcher lists match everything.
    """

    source_matchers: list[MatcherField] = Field(default_factory=list)
    target_matchers: list[MatcherField] = Field(default_factory=list)
    equal: list[str] = Field(default_factory=list)

    @field_validator("equal")
    @classmethod
    def _equal_labels(cls, v: list[str]) -> list[str]:
        for label in v:
            if not re.fullmatch(_LABEL_NAME, label):
                raise ValueError(f"invalid label name in equal: {label!r}")
            # Alertmanager accepts any name, but a label no incident has is "missing on both
            # sides", hence always equal: ``equal: [member]`` would silently mute across every
            # member. Refused rather than over-muting moderation notifications.
            if label not in INCIDENT_LABELS:
                known = ", ".join(sorted(INCIDENT_LABELS))
                raise ValueError(
                    f"{label!r} is not an incident label (labels: {known}); a label that "
                    f"no incident has counts as equal everywhere and would widen the rule"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate labels in equal: {v}")
        return v


# --------------------------------------------------------------------------- time intervals

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
"""Alertmanager's numbering: sunday = 0 ... saturday = 6; a week range runs sunday to saturday."""
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
"""january = 1 ... december = 12 (index + 1)."""

_CLOCK_RE = re.compile(r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
_INT_RE = re.compile(r"^[+-]?[0-9]+$")


def parse_clock(value: Any) -> int:
    """``"HH:MM"`` (``00:00`` to ``24:00``, two-digit hours, as in Alertmanager) to minutes."""
    if isinstance(value, bool) or not isinstance(value, str):
        msg = f'invalid time {value!r}: write it as a string like "09:00"'
        raise ValueError(msg)  # noqa: TRY004 (pydantic wants ValueError)
    if not _CLOCK_RE.match(value):
        raise ValueError(
            f"invalid time {value!r}: use HH:MM with two-digit hours (like '09:00') from "
            f"00:00 to 23:59, or 24:00 for the end of the day"
        )
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


ClockTime = Annotated[
    int, PlainValidator(parse_clock), PlainSerializer(format_clock, return_type=str)
]


class TimeRange(_Strict):
    """Minutes of the day ``[start_time, end_time)``: the end minute is excluded."""

    start_time: ClockTime
    end_time: ClockTime

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start_time >= self.end_time:
            raise ValueError(
                f"end_time {format_clock(self.end_time)} must be after start_time "
                f"{format_clock(self.start_time)} (a range cannot cross midnight: split it "
                f"into two, ending at 24:00 and starting at 00:00)"
            )
        return self

    def __contains__(self, minute: int) -> bool:
        return self.start_time <= minute < self.end_time


@dataclass(frozen=True)
class InclusiveRange:
    """``begin:end``, both ends included; written ``"a:b"``, or ``"a"`` when one value."""

    begin: int
    end: int

    def __contains__(self, n: int) -> bool:
        return self.begin <= n <= self.end

    def _name(self, n: int) -> str:
        return str(n)

    def __str__(self) -> str:
        first = self._name(self.begin)
        return first if self.begin == self.end else f"{first}:{self._name(self.end)}"


class WeekdayRange(InclusiveRange):
    def _name(self, n: int) -> str:
        return WEEKDAYS[n]


class DayOfMonthRange(InclusiveRange):
    """Negative days count from the end of the month: ``-1`` is its last day."""

    def resolve(self, days_in_month: int) -> tuple[int, int]:
        """``(begin, end)`` as days of a month of that length. The day tested is always one
        of that month, so a range never spills over: ``"30:31"`` holds no day of February
        (not March 1st), ``"-31:-29"`` starts on the 1st of a short month."""
        begin = self.begin if self.begin > 0 else days_in_month + self.begin + 1
        end = self.end if self.end > 0 else days_in_month + self.end + 1
        return begin, end


class MonthRange(InclusiveRange):
    def _name(self, n: int) -> str:
        return MONTHS[n - 1]


class YearRange(InclusiveRange):
    pass


def _range_parts(value: Any, what: str, example: str) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, str | int):
        msg = f"invalid {what} {value!r}: expected a string like {example!r}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic wants ValueError)
    parts = str(value).strip().lower().split(":")
    if len(parts) > 2 or not all(p.strip() for p in parts):
        raise ValueError(
            f"invalid {what} {value!r}: expected one value or 'start:end', like {example!r}"
        )
    return [p.strip() for p in parts]


def _parse_weekdays(value: Any) -> WeekdayRange:
    if isinstance(value, WeekdayRange):
        return value
    days = []
    for part in _range_parts(value, "weekday range", "monday:friday"):
        if part not in WEEKDAYS:
            raise ValueError(f"unknown weekday {part!r} in {value!r} (use {', '.join(WEEKDAYS)})")
        days.append(WEEKDAYS.index(part))
    begin, end = days[0], days[-1]
    if begin > end:
        raise ValueError(
            f"weekday range {value!r} ends before it starts: weeks run sunday to saturday, "
            f"so write e.g. ['friday:saturday', 'sunday']"
        )
    return WeekdayRange(begin, end)


def _parse_days_of_month(value: Any) -> DayOfMonthRange:
    if isinstance(value, DayOfMonthRange):
        return value
    days = []
    for part in _range_parts(value, "day-of-month range", "1:5"):
        if not _INT_RE.match(part):
            raise ValueError(f"invalid day of the month {part!r} in {value!r}: expected a number")
        day = int(part)
        if day == 0 or not -31 <= day <= 31:
            where = f" in {value!r}" if str(value).strip() != part else ""
            raise ValueError(
                f"day of the month {day} out of range{where}: use 1 to 31, or -1 (the last "
                f"day) to -31"
            )
        days.append(day)
    begin, end = days[0], days[-1]
    if begin < 0 < end:
        raise ValueError(
            f"day-of-month range {value!r}: the end must be negative when the start is"
        )
    # as Alertmanager: with negative days, order is checked in the shortest (28-day) month
    if (begin if begin > 0 else 28 + begin) > (end if end > 0 else 28 + end):
        raise ValueError(f"day-of-month range {value!r} ends before it starts")
    return DayOfMonthRange(begin, end)


def _parse_months(value: Any) -> MonthRange:
    if isinstance(value, MonthRange):
        return value
    months = []
    for part in _range_parts(value, "month range", "january:march"):
        if part in MONTHS:
            months.append(MONTHS.index(part) + 1)
        elif _INT_RE.match(part) and 1 <= int(part) <= 12:
            months.append(int(part))
        else:
            raise ValueError(
                f"unknown month {part!r} in {value!r} (use january ... december, or 1 to 12)"
            )
    begin, end = months[0], months[-1]
    if begin > end:
        raise ValueError(
            f"month range {value!r} ends before it starts: a range cannot cross the new year, "
            f"so write e.g. ['november:december', 'january:february']"
        )
    return MonthRange(begin, end)


def _parse_years(value: Any) -> YearRange:
    if isinstance(value, YearRange):
        return value
    years = []
    for part in _range_parts(value, "year range", "2026:2027"):
        if not _INT_RE.match(part) or not 1 <= int(part) <= 9999:
            raise ValueError(f"invalid year {part!r} in {value!r}: expected 1 to 9999")
        years.append(int(part))
    if years[0] > years[-1]:
        raise ValueError(f"year range {value!r} ends before it starts")
    return YearRange(years[0], years[-1])


WeekdayRangeField = Annotated[
    WeekdayRange, PlainValidator(_parse_weekdays), PlainSerializer(str, return_type=str)
]
DayOfMonthRangeField = Annotated[
    DayOfMonthRange, PlainValidator(_parse_days_of_month), PlainSerializer(str, return_type=str)
]
MonthRangeField = Annotated[
    MonthRange, PlainValidator(_parse_months), PlainSerializer(str, return_type=str)
]
YearRangeField = Annotated[
    YearRange, PlainValidator(_parse_years), PlainSerializer(str, return_type=str)
]


class TimeInterval(_Strict):
    """One calendar spec; every field given must hold (lists are alternatives), and an
    interval with no field at all is always active. Evaluated in ``location`` (IANA name,
    UTC by default; Alertmanager's key ``time_zone`` is accepted as well)."""

    times: list[TimeRange] = Field(default_factory=list)
    weekdays: list[WeekdayRangeField] = Field(default_factory=list)
    days_of_month: list[DayOfMonthRangeField] = Field(default_factory=list)
    months: list[MonthRangeField] = Field(default_factory=list)
    years: list[YearRangeField] = Field(default_factory=list)
    location: str = Field(default="UTC", validation_alias=AliasChoices("location", "time_zone"))

    @model_validator(mode="before")
    @classmethod
    def _one_zone_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "location" in data and "time_zone" in data:
            raise ValueError("give 'location' or 'time_zone' (the same setting), not both")
        return data

    @field_validator("location")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}: use an IANA name like 'Europe/Paris' or 'UTC'"
            ) from None
        return v

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.location)  # ZoneInfo caches its instances by key


class NamedTimeInterval(_Strict):
    """``{name, time_intervals}``: active when any of its ``time_intervals`` is (so an empty
    list is never active)."""

    name: str = Field(min_length=1)
    time_intervals: list[TimeInterval] = Field(default_factory=list)


# --------------------------------------------------------------------------- routes


class Route(_Strict):
    """A node of the routing tree; unset fields inherit from the parent, except the time
    intervals: ``mute_time_intervals`` / ``active_time_intervals`` apply to this node only
    (Alertmanager does not inherit them either)."""

    receiver: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    escalation_policy: str | None = None
    """Inherited: an incident this route notifies also starts this escalation policy."""

    @field_validator("group_by")
    @classmethod
    def _group_labels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if GROUP_BY_ALL in v and len(v) > 1:
            raise ValueError("group_by '...' (all labels) cannot be combined with other labels")
        for label in v:
            if label != GROUP_BY_ALL and not re.fullmatch(_LABEL_NAME, label):
                raise ValueError(f"invalid label name in group_by: {label!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate labels in group_by: {v}")
        return v

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be greater than zero")
        return v

    def walk(self, loc: tuple[str | int, ...] = ("route",)):
        """Yield ``(loc, node)`` depth-first; ``loc`` is the node's path in the YAML."""
        yield loc, self
        for i, child in enumerate(self.routes):
            yield from child.walk((*loc, "routes", i))


class RoutingConfig(_Strict):
    receivers: list[ReceiverConfig] = Field(min_length=1)
    route: Route
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    time_intervals: list[NamedTimeInterval] = Field(default_factory=list)
    escalation_policies: list[EscalationPolicy] = Field(default_factory=list)
    fallback_receiver: str | None = Field(
        default=None,
        description="Told when a delivery gives up after its retries (the console when unset).",
    )

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> RoutingConfig:
        if info.context and info.context.get("defer_reference_checks"):
            return self
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{_loc_str(loc)}: {msg}" for loc, msg in problems))
        return self

    def escalation_policy(self, name: str) -> EscalationPolicy:
        for policy in self.escalation_policies:
            if policy.name == name:
                return policy
        raise KeyError(name)

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def receiver_names(self) -> list[str]:
        return [r.name for r in self.receivers]

    @property
    def time_intervals_by_name(self) -> dict[str, NamedTimeInterval]:
        """The named time intervals, for ``intervals.route_muted``."""
        return {t.name: t for t in self.time_intervals}


Route.model_rebuild()


def reference_problems(config: RoutingConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-field checks: unique receiver and time interval names, known references, a
    well-formed root."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for i, r in enumerate(config.receivers):
        if r.name in seen:
            problems.append((("receivers", i, "name"), f"duplicate receiver name {r.name!r}"))
        seen.add(r.name)
    root = config.route
    if root.receiver is None:
        problems.append((("route",), "the root route must name a receiver (the default)"))
    if root.matchers:
        problems.append(
            (("route", "matchers"), "the root route must not have matchers: it matches everything")
        )
    if root.continue_:
        problems.append((("route", "continue"), "the root route cannot have 'continue: true'"))
    for key in ("mute_time_intervals", "active_time_intervals"):
        if getattr(root, key):
            problems.append(
                (
                    ("route", key),
                    f"the root route cannot have {key}: put them on a child route",
                )
            )
    intervals: set[str] = set()
    for i, t in enumerate(config.time_intervals):
        if t.name in intervals:
            problems.append(
                (("time_intervals", i, "name"), f"duplicate time interval name {t.name!r}")
            )
        intervals.add(t.name)
    known = ", ".join(sorted(seen)) or "none"
    known_intervals = ", ".join(sorted(intervals)) or "none"
    policies: set[str] = set()
    for i, policy in enumerate(config.escalation_policies):
        if policy.name in policies:
            problems.append(
                (("escalation_policies", i, "name"), f"duplicate escalation policy name {policy.name!r}")
            )
        policies.add(policy.name)
        for j, level in enumerate(policy.levels):
            for k, name in enumerate(level.receivers):
                if name not in seen:
                    problems.append(
                        (
                            ("escalation_policies", i, "levels", j, "receivers", k),
                            f"unknown receiver {name!r} (defined: {known})",
                        )
                    )
    known_policies = ", ".join(sorted(policies)) or "none"
    if config.fallback_receiver is not None and config.fallback_receiver not in seen:
        problems.append(
            (("fallback_receiver",), f"unknown receiver {config.fallback_receiver!r} (defined: {known})")
        )
    for loc, node in root.walk():
        if node.receiver is not None and node.receiver not in seen:
            problems.append(
                (
                    (*loc, "receiver"),
                    f"unknown receiver {node.receiver!r} (defined: {known})",
                )
            )
        if node.escalation_policy is not None and node.escalation_policy not in policies:
            problems.append(
                (
                    (*loc, "escalation_policy"),
                    f"unknown escalation policy {node.escalation_policy!r} (defined: {known_policies})",
                )
            )
        for key in ("mute_time_intervals", "active_time_intervals"):
            for j, name in enumerate(getattr(node, key)):
                if name not in intervals:
                    problems.append(
                        (
                            (*loc, key, j),
                            f"unknown time interval {name!r} (defined: {known_intervals})",
                        )
                    )
    return problems


# --------------------------------------------------------------------------- loading


def _loc_str(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _line_index(node: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """Map each YAML path to its 1-based line, from the composer's node marks."""
    index: dict[tuple[str | int, ...], int] = {}

    def visit(n: yaml.Node, path: tuple[str | int, ...]) -> None:
        index.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                if isinstance(key, yaml.ScalarNode):
                    # the key's line is the most useful place to point at
                    index[(*path, key.value)] = key.start_mark.line + 1
                    visit(value, (*path, key.value))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                visit(item, (*path, i))

    if node is not None:
        visit(node, ())
    return index


def _line_for(index: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in index:
            return index[loc[:cut]]
    return None


def _describe(index, loc, msg: str) -> str:
    line = _line_for(index, loc) if index else None
    where = f"line {line}: " if line else ""
    return f"{where}{_loc_str(loc)}: {msg}"


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` without YAML 1.1's base-60 numbers: ``17:00`` would otherwise load as
    the integer 1020 and ``1:5`` as 65. Such scalars stay strings, as in YAML 1.2."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        tag = super().resolve(kind, value, implicit)
        if (
            kind is yaml.ScalarNode
            and implicit[0]
            and ":" in value
            and tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
        ):
            return "tag:yaml.org,2002:str"
        return tag


def load_routing(source: str | Path) -> RoutingConfig:
    """Load and validate a routing config from YAML text or a file path.

    A ``Path``, or a one-line string naming an existing ``.yaml``/``.yml`` file, is read
    from disk; any other string is the YAML itself. Raises ``RoutingConfigError``.
    """
    if isinstance(source, Path) or (
        "\n" not in source
        and source.strip().endswith((".yaml", ".yml"))
        and Path(source.strip()).is_file()
    ):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RoutingConfigError(str(path), [f"cannot read: {exc}"]) from exc
        origin = str(path)
    else:
        text, origin = source, "<string>"

    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader
        root_node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RoutingConfigError(origin, [f"{where}YAML syntax error: {problem}"]) from exc
    if not isinstance(data, dict):
        raise RoutingConfigError(
            origin, ["the document must be a mapping with 'receivers' and 'route'"]
        )

    index = _line_index(root_node)
    try:
        config = RoutingConfig.model_validate(data, context={"defer_reference_checks": True})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}"
            problems.append(_describe(index, loc, msg))
        raise RoutingConfigError(origin, problems) from None
    problems = [_describe(index, loc, msg) for loc, msg in reference_problems(config)]
    if problems:
        raise RoutingConfigError(origin, problems)
    return config


def default_routing_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("default.yaml")))


def load_default_routing() -> RoutingConfig:
    """The built-in routing (``default.yaml`` beside this module)."""
    return load_routing(default_routing_path())


def load_configured_routing(routing_file: Path | None) -> RoutingConfig:
    """``NotifierSettings.routing_file`` when set, else the built-in default routing."""
    return load_routing(Path(routing_file)) if routing_file else load_default_routing()
