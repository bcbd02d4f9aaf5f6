from datetime import date

from schemas import ActivityKind as K
from services.metrics.kpis.daily import ActivityFact, VerdictFact, daily_kpis

D1, D2 = date(2026, 3, 2), date(2026, 3, 3)


def test_active_members_and_volume():
    facts = [
        ActivityFact(D1, "a", K.message_posted),
        ActivityFact(D1, "a", K.message_posted, reply_to="m0"),
        ActivityFact(D1, "b", K.reaction_added),
        ActivityFact(D1, "c", K.message_edited),
        ActivityFact(D1, "d", K.member_joined),
        ActivityFact(D1, "e", K.event_attended),
        ActivityFact(D2, "f", K.member_left),
    ]
    day1, day2 = daily_kpis(D1, D2, facts)
    # Edits, joins and leaves do not make a member active (SPEC).
    assert day1.dau == 3
    assert (day1.messages, day1.replies, day1.reactions, day1.joins) == (2, 1, 1, 1)
    assert (day2.dau, day2.leaves) == (0, 1)


def test_every_day_of_the_range_is_present_and_facts_outside_are_ignored():
    rows = daily_kpis(D1, date(2026, 3, 8), [ActivityFact(date(2026, 3, 9), "a", K.message_posted)])
    assert [r.day.day for r in rows] == list(range(2, 9))
    assert sum(r.messages for r in rows) == 0


def test_flagged_share():
    [row] = daily_kpis(D1, D1, [], [VerdictFact(D1, True, "negative"), VerdictFact(D1, False, "neutral")])
    assert (row.classified, row.flagged, row.flagged_share) == (2, 1, 0.5)
    [empty] = daily_kpis(D2, D2, [])
    assert empty.flagged_share is None
