"""The pure KPI core: member contributions, the fold, and the joined KPIs, without I/O."""

import itertools
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.metrics.codec import decode_member, encode_member
from services.metrics.kpis.bitmaps import (
    active_days_of,
    day_counts,
    from_bytes,
    retained,
    to_bytes,
)
from services.metrics.kpis.calendar import from_iso, iso, local_day, week_of
from services.metrics.kpis.facts import ActivityFact, VerdictFact
from services.metrics.kpis.fold import fold_activity, fold_verdicts
from services.metrics.kpis.members import (
    JOIN,
    LEAVE,
    MemberState,
    contributions,
    left_on,
)
from services.metrics.kpis.response import response_days
from services.metrics.kpis.safety import IncidentRecord, exposure_retention, safety_days
from services.metrics.kpis.segments import power_users
from services.metrics.kpis.stats import median, nearest_rank

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()  # a Monday
DAY = 86_400
D0 = local_day(T0)


def fact(n: int, member: str, kind: str = "message_posted", at: float = T0, **extra) -> ActivityFact:
    return ActivityFact(f"e{n}", "acme", member, kind, at, extra.pop("channel", "general"),
                        extra.pop("message_id", f"msg{n}"), **extra)


def scoped(facts):
    return [(f.community_id, f) for f in facts]


def metric(counts: Counter, name: str) -> dict[int, int]:
    return {day - D0: n for (m, day), n in counts.items() if m == name and n}


def bits(*members: int) -> int:
    return sum(1 << m for m in set(members))


def test_windows_from_day_bitmaps():
    days = {D0: bits(0, 1), D0 + 3: bits(1), D0 + 40: bits(2), D0 + 95: bits(0)}
    assert day_counts(days, D0) == {"dau": 2, "wau": 2, "mau": 2, "engaged": 2, "dormant": 0}
    assert day_counts(days, D0 + 6)["wau"] == 2 and day_counts(days, D0 + 7)["wau"] == 1
    assert day_counts(days, D0 + 29)["mau"] == 2 and day_counts(days, D0 + 33)["mau"] == 0
    assert day_counts(days, D0 + 40, left=bits(2))["engaged"] == 0  # in MAU but left
    # Dormant on D: active in D-89..D-30, not in D-29..D.
    assert day_counts(days, D0 + 30)["dormant"] == 1  # member 1 was back on D0+3
    assert day_counts(days, D0 + 33)["dormant"] == 2
    assert day_counts(days, D0 + 95)["dormant"] == 1  # member 2 (D0+40); member 0 came back
    assert retained(bits(0, 1, 2), days, week_of(D0)) == 2


def test_a_new_member_counts_once_from_its_first_day():
    counts = contributions(MemberState(T0))
    assert metric(counts, "new") == {0: 1}
    assert metric(counts, "total_delta") == {0: 1}


def test_leaving_ends_membership_and_a_tie_with_a_join_is_a_leave():
    state = MemberState(T0)
    state.observe(T0 + 2 * DAY, membership=JOIN)
    state.observe(T0 + 2 * DAY, membership=LEAVE)
    counts = contributions(state)
    assert metric(counts, "total_delta") == {0: 1, 2: -1}
    assert metric(counts, "left_delta") == {2: 1}
    assert left_on(state, D0 + 2, "UTC") and not left_on(state, D0 + 1, "UTC")


member_facts = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]),
              st.sampled_from(["message_posted", "reaction_added", "member_joined", "member_left", "message_edited"]),
              st.integers(0, 120 * DAY)),
    min_size=1, max_size=30,
)


def fold_in_batches(facts: list[ActivityFact], cuts: list[int]) -> tuple[Counter, dict, dict]:
    """Counters, day -> active members, and member -> cohort, after folding in batches."""
    states: dict = {}
    total: Counter = Counter()
    active: dict = {}
    cohorts: dict = {}
    bounds = sorted({0, len(facts), *[c % (len(facts) + 1) for c in cuts]})
    for start, end in itertools.pairwise(bounds):
        folded = fold_activity(scoped(facts[start:end]), states, lambda _: "Europe/Paris")
        total.update(folded.counters)
        states.update(folded.members)
        for key, members in folded.active.items():
            active.setdefault(key, set()).update(members)
        cohorts.update({member: new for member, (_, new) in folded.cohorts.items()})
    return Counter({k: n for k, n in total.items() if n}), active, cohorts


@settings(max_examples=200, deadline=None)
@given(member_facts, st.permutations(range(30)), st.lists(st.integers(0, 40), max_size=5))
def test_the_fold_does_not_depend_on_order_or_batching(raw, order, cuts):
    facts = [fact(n, m, k, T0 + s) for n, (m, k, s) in enumerate(raw)]
    shuffled = [facts[i] for i in order if i < len(facts)]
    assert fold_in_batches(shuffled, cuts) == fold_in_batches(facts, [])


def test_unchanged_members_are_not_rewritten_and_volume_is_per_channel():
    folded = fold_activity(scoped([fact(1, "a"), fact(2, "a", reply_to="msg1", channel="help")]), {}, lambda _: "UTC")
    assert folded.counters[("acme", "day", D0, None, "messages")] == 2
    assert folded.counters[("acme", "day", D0, None, "replies")] == 1
    assert folded.counters[("acme", "channel", D0, "help", "replies")] == 1
    assert folded.active == {("acme", D0): {"a"}}
    assert folded.cohorts == {("acme", "a"): (None, week_of(D0))}
    again = fold_activity(scoped([fact(3, "a", "message_edited")]), folded.members, lambda _: "UTC")
    assert again.members[("acme", "a")] == folded.members[("acme", "a")]  # state unchanged by an edit
    assert dict(again.counters) == {("acme", "day", D0, None, "edits"): 1}  # volume only
    assert not again.cohorts and not again.active


def test_verdicts_count_sentiment_and_flags_per_channel():
    verdicts = [VerdictFact("v1", "acme", "a", T0, "C1", "m1", True, "negative"),
                VerdictFact("v2", "acme", "b", T0, "C1", "m2", False, "positive")]
    counts = fold_verdicts(scoped(verdicts), lambda _: "UTC")
    assert counts[("acme", "day", D0, None, "classified")] == 2
    assert counts[("acme", "day", D0, None, "flagged")] == 1
    assert counts[("acme", "channel", D0, "C1", "flagged")] == 1
    assert counts[("acme", "day", D0, None, "positive")] == 1


def test_time_zones_move_events_across_midnight():
    late_evening_utc = datetime(2026, 3, 2, 23, 30, tzinfo=UTC).timestamp()
    assert iso(local_day(late_evening_utc, "UTC")) == "2026-03-02"
    assert iso(local_day(late_evening_utc, "Europe/Paris")) == "2026-03-03"
    assert iso(local_day(late_evening_utc, "Pacific/Chatham")) == "2026-03-03"
    assert iso(local_day(late_evening_utc, "America/Los_Angeles")) == "2026-03-02"
    assert iso(week_of(from_iso("2026-03-08"))) == "2026-03-02"  # Sunday belongs to Monday's week


def test_first_responses_by_another_member_within_the_window():
    question = fact(1, "asker", question=True)
    facts = [
        question,
        fact(2, "asker", at=T0 + 60, reply_to="msg1"),  # the asker's own reply is not a response
        fact(3, "helper", at=T0 + 600, reply_to="msg1"),
        fact(4, "other", at=T0 + 300, reply_to="msg1"),
        fact(5, "q2", at=T0 + 10, question=True),  # never answered
        fact(6, "q3", at=T0 + 20, question=True),
        fact(7, "helper", at=T0 + 20 + 8 * DAY, reply_to="msg6"),  # outside the 7-day window
    ]
    [day] = response_days(facts, D0, D0, tz="UTC", now=T0 + 30 * DAY).values()
    assert (day.questions, day.answered, day.median_s, day.p90_s) == (3, 1, 300, 300)
    assert day.as_dict()["unanswered_24h_share"] == round(2 / 3, 4)
    [fresh] = response_days(facts, D0, D0, tz="UTC", now=T0 + 3600).values()
    assert fresh.as_dict()["unanswered_24h_share"] is None  # no question's 24 h have passed


def test_order_statistics_follow_spec():
    assert median([4, 1, 3, 2]) == 2.5
    assert median([5, 1, 3]) == 3
    assert nearest_rank(list(range(1, 11)), 0.9) == 9
    assert nearest_rank([7], 0.9) == 7
    assert median([]) is None


def test_power_users_include_ties_at_the_boundary():
    facts = [fact(n, member) for n, member in enumerate("aaaaabbbbbcdefghijklmnop")]
    result = power_users(facts)
    # 16 active members: the top ceil(1.6) = 2 have 5 events each.
    assert (result.members, result.threshold) == (2, 5)
    assert result.activity_share == round(10 / 24, 4)
    assert power_users([]).members == 0


def test_incident_precision_and_time_to_acknowledge():
    records = [
        IncidentRecord("i1", T0, T0 + 5, "high", "threat", acknowledged_at=T0 + 65),
        IncidentRecord("i2", T0, T0 + 5, "low", "spam", acknowledged_at=T0 + 305, false_positive=True),
        IncidentRecord("i3", None, None, None, None, acknowledged_at=T0),  # feedback before its incident
    ]
    [day] = safety_days(records, "UTC").values()
    row = day.as_dict(dau=400)
    assert row["incidents"] == 2 and row["incidents_by_severity"] == {"high": 1, "low": 1}
    assert row["moderator_precision"] == 0.5
    assert row["time_to_ack_median_s"] == 180 and row["time_to_ack_p90_s"] == 300
    assert row["incidents_per_1000_dau"] == 5.0


def test_exposure_compares_members_who_met_a_flagged_message():
    week = week_of(D0)
    activity = [
        fact(1, "troll", at=T0),
        fact(2, "victim", at=T0 + 60, reply_to="msg1"),
        fact(3, "bystander", at=T0 + 120),
        fact(4, "thread", at=T0 + 30, message_id="root"),
        fact(5, "troll", at=T0 + 40, reply_to="root", message_id="bad2"),
        fact(6, "thread", at=T0 + 50, reply_to="root"),  # in the flagged reply's thread, after it
        fact(7, "bystander", at=T0 + 28 * DAY),
        fact(8, "victim", "reaction_added", at=T0 + 29 * DAY),
    ]
    verdicts = [VerdictFact("v1", "acme", "troll", T0, "general", "msg1", True, "negative"),
                VerdictFact("v5", "acme", "troll", T0 + 40, "general", "bad2", True, "negative")]
    [row] = exposure_retention(activity, verdicts, [week], tz="UTC")
    assert (row.exposed, row.exposed_retained) == (2, 1)  # victim (back in week 4) and thread (not)
    assert (row.unexposed, row.unexposed_retained) == (2, 1)  # troll and bystander


@given(st.sets(st.integers(0, 5000), max_size=200))
def test_bitmaps_survive_their_bytes(members):
    bitmap = sum(1 << m for m in members)
    assert from_bytes(to_bytes(bitmap)) == bitmap
    assert active_days_of({D0: bitmap}, 7) == ({D0} if 7 in members else set())


def test_member_documents_round_trip():
    state = MemberState(T0, [(T0, JOIN), (T0 + DAY, LEAVE)], 12)
    document = encode_member(state)
    assert document["left"] is True
    assert decode_member(document) == state


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_local_days_are_calendar_days(zone):
    assert local_day(T0, zone) == date(2026, 3, 2).toordinal()
    assert local_day(T0 + timedelta(hours=11, minutes=59).total_seconds(), "UTC") == D0


def test_records_past_a_rebuild_fence_go_to_both_generations():
    from services.metrics.store import Generation

    idle = Generation("acme", current=2)
    assert idle.targets("community.activity.v1", 0, 10) == ["acme@2"]
    rebuilding = Generation("acme", current=2, building=3, fence={"community.activity.v1:0": 100})
    assert rebuilding.targets("community.activity.v1", 0, 99) == ["acme@2"]  # the rebuild reads it
    assert rebuilding.targets("community.activity.v1", 0, 100) == ["acme@2", "acme@3"]
    assert rebuilding.targets("community.activity.v1", 1, 10**9) == ["acme@2"]  # no fence yet: not ours


@given(st.integers(0, 4_000_000_000), st.sampled_from(["UTC", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kathmandu",
                                                     "America/St_Johns", "Pacific/Chatham"]))
def test_the_cached_local_day_is_the_calendar_day(epoch_s, zone):
    from zoneinfo import ZoneInfo

    assert local_day(epoch_s, zone) == datetime.fromtimestamp(epoch_s, ZoneInfo(zone)).date().toordinal()
