"""Identity hints, suggestions and person counts, checked against brute force."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import MemberActivity
from services.metrics.identity.links import (
    MAX_GROUP,
    SAME_EMAIL,
    SAME_USERNAME,
    Profile,
    person_adjustments,
    person_kpis,
    profile_of,
    suggest,
)
from services.metrics.kpis.bitmaps import MAU_DAYS, WAU_DAYS, day_counts
from services.metrics.kpis.members import MemberState

D0 = date(2026, 3, 2).toordinal()


def event(platform: str, member: str, **attributes) -> MemberActivity:
    return MemberActivity(event_id=f"{platform}-{member}", platform=platform, community_id="acme",
                          member_id=member, kind="member_joined",
                          occurred_at=datetime(2026, 3, 2, 12, tzinfo=UTC), attributes=attributes)


def profiles(*events: MemberActivity) -> list[Profile]:
    return [p for p in map(profile_of, events) if p is not None]


# --- profile_of ---------------------------------------------------------------------------

def test_profile_reads_username_login_and_verified_email_only():
    assert profile_of(event("discourse", "7", username="  @Alice ")).username == "alice"
    assert profile_of(event("github", "99", login="ALICE", actor="bob")).username == "alice"
    verified = profile_of(event("generic", "g1", email=" Alice@Example.COM ", email_verified=True))
    assert (verified.email, verified.username) == ("alice@example.com", None)
    assert profile_of(event("generic", "g2", email="alice@example.com")).email is None
    assert profile_of(event("generic", "g3", email="alice@example.com", email_verified="true")).email is None
    assert profile_of(event("generic", "g4", email="not-an-email", email_verified=True)).email is None
    assert profile_of(event("discourse", "8", username="Alice Smith")) is None  # a display name, not a handle
    assert profile_of(event("slack", "U1", subtype="x")) is None
    assert profile_of(event("github", "5", actor="maintainer")) is None  # the actor is someone else


def test_an_unverified_email_replaces_a_verified_one_and_silence_keeps_it():
    verified = profile_of(event("generic", "g1", email="a@x.org", email_verified=True, username="ann"))
    unverified = profile_of(event("generic", "g1", email="a@x.org"))
    silent = profile_of(event("generic", "g1", username="ann2"))
    assert unverified.over(verified).values == ("ann", None)
    assert silent.over(verified).values == ("ann2", "a@x.org")


# --- suggest ------------------------------------------------------------------------------

def test_same_verified_email_across_platforms_is_suggested_masked():
    found = suggest(profiles(event("generic", "g1", email="alice@example.com", email_verified=True),
                             event("discourse", "7", email="ALICE@example.com", email_verified=True)), {})
    assert [(s.reason, s.matched, s.members) for s in found] == [
        (SAME_EMAIL, "a***@example.com", (("discourse", "7", None), ("generic", "g1", None)))]


def test_unverified_email_is_not_suggested():
    assert suggest(profiles(event("generic", "g1", email="alice@example.com", email_verified=True),
                            event("discourse", "7", email="alice@example.com")), {}) == []


def test_usernames_match_case_insensitively_and_same_platform_is_not_suggested():
    found = suggest(profiles(event("discourse", "7", username="Alice"), event("telegram", "42", username="@alice"),
                             event("discourse", "8", username="bob"), event("discourse", "9", username="BOB")), {})
    assert [(s.reason, s.matched, [m[:2] for m in s.members]) for s in found] == [
        (SAME_USERNAME, "alice", [("discourse", "7"), ("telegram", "42")])]


def test_already_linked_pairs_are_skipped_but_a_new_id_is_suggested_with_its_person():
    hints = profiles(event("discourse", "7", username="alice"), event("telegram", "42", username="alice"))
    assert suggest(hints, {("discourse", "7"): "p1", ("telegram", "42"): "p1"}) == []
    # Linked to different persons: still news (they may be one person).
    assert len(suggest(hints, {("discourse", "7"): "p1", ("telegram", "42"): "p2"})) == 1
    more = hints + profiles(event("github", "5", login="Alice"))
    [found] = suggest(more, {("discourse", "7"): "p1", ("telegram", "42"): "p1"})
    assert found.members == (("discourse", "7", "p1"), ("github", "5", None), ("telegram", "42", "p1"))


def test_suggestions_come_in_a_stable_order_and_common_values_are_dropped():
    hints = profiles(event("telegram", "1", username="zed"), event("github", "2", login="zed"),
                     event("telegram", "3", username="amy"), event("github", "4", login="amy"),
                     event("generic", "5", email="zed@x.io", email_verified=True, username="zed"),
                     event("discourse", "6", email="zed@x.io", email_verified=True))
    found = suggest(hints, {})
    assert [(s.reason, s.matched) for s in found] == [
        (SAME_EMAIL, "z***@x.io"), (SAME_USERNAME, "amy"), (SAME_USERNAME, "zed")]
    assert suggest(list(reversed(hints)), {}) == found
    crowd = [Profile(p, str(i), username="admin") for i, p in
             enumerate(["slack", "discord", "github", "telegram", "discourse", "circle"] * 2)]
    assert len(crowd) > MAX_GROUP
    assert suggest(crowd, {}) == []


# --- person_adjustments -------------------------------------------------------------------

def in_window(state: MemberState, day: int, width: int) -> bool:
    return any(day - width < active <= day for active in state.active)


def brute_force(persons: list[list[MemberState]], first: int, last: int) -> dict[tuple[str, int], tuple[int, int]]:
    """(metric, day) -> (ids counted, persons counted), straight from the definitions."""
    out = {}
    for metric, width in (("dau", 1), ("wau", WAU_DAYS), ("mau", MAU_DAYS)):
        for day in range(first, last + 1):
            ids = sum(in_window(s, day, width) for states in persons for s in states)
            people = sum(any(in_window(s, day, width) for s in states) for states in persons)
            out[(metric, day)] = (ids, people)
    return out


member_states = st.builds(
    lambda days: MemberState(first_seen=1.0e9, active={D0 + d for d in days}),
    st.sets(st.integers(-40, 40), max_size=8))


@settings(max_examples=200, deadline=None)
@given(persons=st.lists(st.lists(member_states, min_size=1, max_size=4), max_size=5),
       first=st.integers(-10, 30), span=st.integers(0, 40))
def test_adjustments_turn_id_counts_into_person_counts(persons, first, span):
    first, last = D0 + first, D0 + first + span
    adjust = person_adjustments(persons, first, last)
    # The per-id counts as metrics reads them from its day bitmaps, one bit per id.
    days: dict[int, int] = {}
    for index, state in enumerate(s for states in persons for s in states):
        for day in state.active:
            days[day] = days.get(day, 0) | 1 << index
    for (metric, day), (ids, people) in brute_force(persons, first, last).items():
        assert day_counts(days, day)[metric] == ids
        assert ids - adjust[(metric, day)] == people, (metric, day)
    assert all(first <= day <= last and n > 0 for (_, day), n in adjust.items())


def test_one_person_active_through_two_ids_counts_once():
    a = MemberState(first_seen=1.0e9, active={D0, D0 + 3})
    b = MemberState(first_seen=1.0e9, active={D0, D0 + 10})
    adjust = person_adjustments([[a, b], [MemberState(active={D0})]], D0, D0 + 10)
    assert adjust[("dau", D0)] == 1 and adjust[("dau", D0 + 3)] == 0
    assert adjust[("wau", D0 + 6)] == 1 and adjust[("wau", D0 + 7)] == 0  # b's D0 leaves the week
    assert adjust[("mau", D0 + 10)] == 1


# --- person_kpis --------------------------------------------------------------------------

def test_person_kpis_merge_ids_and_break_down_by_platform():
    first_seen = datetime(2026, 1, 5, 8, 30, tzinfo=UTC).timestamp()
    kpis = person_kpis({
        ("discourse", "7"): MemberState(first_seen=first_seen + 86_400, active={D0 - 40, D0 - 5}),
        ("telegram", "42"): MemberState(first_seen=first_seen, active={D0 - 5, D0}),
        ("github", "5"): None,
    })
    assert kpis["linked_ids"] == 3
    assert kpis["first_seen"] == "2026-01-05T08:30:00+00:00"
    assert kpis["last_active_day"] == "2026-03-02"
    assert (kpis["active_days"], kpis["active_days_last_30"]) == (3, 2)
    assert kpis["platforms"]["discourse"] == {"ids": 1, "first_seen": "2026-01-06T08:30:00+00:00",
                                              "last_active_day": "2026-02-25", "active_days": 2,
                                              "active_days_last_30": 1}
    assert kpis["platforms"]["github"] == {"ids": 1, "first_seen": None, "last_active_day": None,
                                           "active_days": 0, "active_days_last_30": 0}
    assert [(m["platform"], m["member_id"]) for m in kpis["members"]] == [
        ("discourse", "7"), ("github", "5"), ("telegram", "42")]


@pytest.mark.parametrize("states", [{}, {("slack", "U1"): None}])
def test_person_kpis_without_activity(states):
    kpis = person_kpis(states)
    assert (kpis["first_seen"], kpis["last_active_day"], kpis["active_days"]) == (None, None, 0)
