"""Identity hints, link suggestions and person-level KPIs: pure functions, no I/O.

Attributes read from ``MemberActivity.attributes`` (what the ingest adapters keep):
- a username: ``username`` (Discourse, Telegram, the generic source), else ``login``
  (GitHub's author login; never ``actor``, who is someone else acting on the message).
  Compared after NFKC normalization, trimming, dropping a leading ``@`` and case folding;
  a value holding whitespace is a display name, not a handle, and is ignored.
- an email: ``email``, used only when ``email_verified`` is the JSON boolean ``true``
  (the generic source's field; no platform adapter sends emails today). Compared trimmed
  and case folded. An event carrying ``email`` without the flag says the member's current
  email is unverified, so an earlier verified one stops matching.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.activity import MemberActivity
from services.metrics.kpis.bitmaps import MAU_DAYS, WAU_DAYS
from services.metrics.kpis.calendar import Day, iso
from services.metrics.kpis.members import MemberState

USERNAME_ATTRIBUTES = ("username", "login")
EMAIL_ATTRIBUTE = "email"
EMAIL_VERIFIED_ATTRIBUTE = "email_verified"

SAME_EMAIL = "same verified email"
SAME_USERNAME = "same username"
REASONS = (SAME_EMAIL, SAME_USERNAME)  # strongest first: the order suggestions come in

# A value shared by more ids than this (a team mailbox, "admin") identifies nobody.
MAX_GROUP = 10
MAX_USERNAME_LENGTH = 256
MAX_EMAIL_LENGTH = 320
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

WINDOWS = {"dau": 1, "wau": WAU_DAYS, "mau": MAU_DAYS}

MemberKey = tuple[str, str]  # (platform, member_id): a member within one community


@dataclass(frozen=True)
class Profile:
    """The identity hints known for one member of a community."""

    platform: str
    member_id: str
    username: str | None = None
    email: str | None = None  # verified, normalized
    states_email: bool = False  # the source said something about the email, verified or not

    @property
    def key(self) -> MemberKey:
        return (self.platform, self.member_id)

    @property
    def values(self) -> tuple[str | None, str | None]:
        return (self.username, self.email)

    def over(self, older: Profile | None) -> Profile:
        """This newer profile on top of an older one: what it does not state, the older still says."""
        if older is None:
            return self
        return Profile(
            self.platform, self.member_id, self.username or older.username,
            self.email if self.states_email else older.email, self.states_email or older.states_email,
        )


@dataclass(frozen=True)
class Suggestion:
    reason: str  # one of REASONS
    matched: str  # the shared value, an email masked
    members: tuple[tuple[str, str, str | None], ...]  # (platform, member_id, person it is linked to)


def normalize_username(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFKC", value).strip().lstrip("@").casefold()
    if not text or len(text) > MAX_USERNAME_LENGTH or any(ch.isspace() for ch in text):
        return None
    return text


def normalize_email(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().casefold()
    return text if len(text) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(text) else None


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: enough to recognise, not to harvest."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def profile_of(event: MemberActivity) -> Profile | None:
    """The identity hints an event carries, or None when it carries none."""
    attributes = event.attributes
    if not attributes:
        return None  # most events: nothing to read, and this runs for every one
    username = next((name for name in map(normalize_username, (attributes.get(a) for a in USERNAME_ATTRIBUTES))
                     if name), None)
    states_email = EMAIL_ATTRIBUTE in attributes
    verified = attributes.get(EMAIL_VERIFIED_ATTRIBUTE) is True
    email = normalize_email(attributes.get(EMAIL_ATTRIBUTE)) if verified else None
    if username is None and not states_email:
        return None
    return Profile(str(event.platform), event.member_id, username, email, states_email)


def suggest(profiles: Iterable[Profile], linked: Mapping[MemberKey, str], *,
            max_group: int = MAX_GROUP) -> list[Suggestion]:
    """Members of different platforms sharing a verified email or a username.

    ``linked`` maps a member to the person it already belongs to; a group whose members
    are all in one person already is no news. Ordered by reason, then value."""
    groups: dict[tuple[int, str], set[MemberKey]] = defaultdict(set)
    for profile in profiles:
        if profile.email:
            groups[(0, profile.email)].add(profile.key)
        if profile.username:
            groups[(1, profile.username)].add(profile.key)
    out = []
    for (rank, value), members in sorted(groups.items()):
        if not 2 <= len(members) <= max_group or not _links_something_new(members, linked):
            continue
        out.append(Suggestion(
            REASONS[rank], mask_email(value) if REASONS[rank] == SAME_EMAIL else value,
            tuple((platform, member, linked.get((platform, member))) for platform, member in sorted(members)),
        ))
    return out


def _links_something_new(members: set[MemberKey], linked: Mapping[MemberKey, str]) -> bool:
    """Some two of them are on different platforms and not already in the same person."""
    ordered = sorted(members)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if a[0] != b[0] and (linked.get(a) is None or linked.get(a) != linked.get(b)):
                return True
    return False


def _window_days(active: set[Day], width: int, first: Day, last: Day) -> set[Day]:
    """The days of first..last whose window of ``width`` days ending on them holds an active day."""
    return {day + offset for day in active if first - width < day <= last
            for offset in range(width) if first <= day + offset <= last}


def person_adjustments(persons: list[list[MemberState]], first: Day, last: Day) -> Counter:
    """(metric, day) -> how many to subtract from the per-id DAU/WAU/MAU to count persons.

    Per-id counts count a person once per linked id in the window; a person counts once,
    so each person with several ids removes (its ids in the window) - 1 on every day."""
    out: Counter = Counter()
    for states in persons:
        if len(states) < 2:
            continue
        for metric, width in WINDOWS.items():
            ids_in_window: Counter = Counter()
            for state in states:
                ids_in_window.update(_window_days(state.active, width, first, last))
            for day, n in ids_in_window.items():
                if n > 1:
                    out[(metric, day)] += n - 1
    return out


def _summary(states: list[MemberState]) -> dict:
    seen = [s.first_seen for s in states if s.first_seen is not None]
    days: set[Day] = set().union(*(s.active for s in states))
    last = max(days, default=None)
    return {
        "first_seen": datetime.fromtimestamp(min(seen), UTC).isoformat() if seen else None,
        "last_active_day": iso(last) if last is not None else None,
        "active_days": len(days),
        # Relative to the person's own latest activity, so a lapsed member still shows
        # how active they were when they were around.
        "active_days_last_30": sum(1 for day in days if day > last - MAU_DAYS) if last is not None else 0,
    }


def person_kpis(states: Mapping[MemberKey, MemberState | None]) -> dict:
    """One person's KPIs from the states of its linked ids (None: an id never seen)."""
    by_platform: dict[str, list[MemberState]] = defaultdict(list)
    ids_per_platform: Counter = Counter()
    members = []
    for (platform, member_id), state in sorted(states.items()):
        ids_per_platform[platform] += 1
        if state is not None:
            by_platform[platform].append(state)
        members.append({"platform": platform, "member_id": member_id,
                        **_summary([state] if state is not None else [])})
    return {
        "linked_ids": len(states),
        **_summary([s for s in states.values() if s is not None]),
        "platforms": {platform: {"ids": n, **_summary(by_platform[platform])}
                      for platform, n in sorted(ids_per_platform.items())},
        "members": members,
    }
