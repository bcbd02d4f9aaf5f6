from datetime import datetime, timedelta, timezone

import pytest

from schemas import CATEGORIES, Severity
from services.moderation.policy.evaluate import evaluate, evaluate_message
from services.moderation.policy.load import PolicyError, built_in_policy, parse_policy
from services.moderation.policy.trackers import OffenderWindow, RaidTracker, in_join_burst

QUIET = {c: 0.01 for c in CATEGORIES}

POLICY = """
version: rules-1
categories:
  insult: {threshold: 0.6, severity: medium}
  threat: {threshold: 0.5, severity: high}
  spam:   {threshold: 0.9, severity: low, shadow: true}
keywords:
  slurs:
    category: identity_attack
    severity: high
    words: [cunt, "go back home"]
    regexes: ['n[i1!]+gg\\w*']
    allowlist: [Scunthorpe]
  crypto:
    category: spam
    severity: low
    words: [airdrop]
    shadow: true
keyword_channels:
  trading:
    crypto: null
  quotes:
    slurs: {category: identity_attack, severity: low, words: [cunt]}
mention_spam: {max_mentions: 3, severity: medium}
link_spam: {max_links: 1, allowed_domains: [example.org], severity: low}
repeat_offenders: {flags: 3, window_s: 600}
raid: {joins: 3, join_window_s: 60, message_window_s: 300, severity: critical}
"""


@pytest.fixture(scope="module")
def policy():
    return parse_policy(POLICY, "rules.yaml")


def msg(policy, text="hello", scores=None, **kw):
    kw.setdefault("channel_id", "general")
    return evaluate_message(policy, scores or QUIET, text=text, member_id="m1", **kw)


def test_quiet_message_is_no_decision(policy):
    assert msg(policy, "what a lovely day in Scunthorpe") is None


def test_keyword_matches_whole_words_case_insensitively(policy):
    d = msg(policy, "You CUNT.")
    assert (d.rule, d.category, d.severity, d.shadow) == ("keyword:slurs", "identity_attack", Severity.high, False)
    assert d.categories == {"identity_attack": 1.0}
    assert msg(policy, "please GO  BACK home now").rule == "keyword:slurs"  # phrase, any whitespace
    assert msg(policy, "cunts") is None  # whole words only (regexes handle variants)


def test_allowlist_suppresses_a_match_inside_it(policy):
    assert msg(policy, "Scunthorpe United") is None
    assert msg(policy, "nigger") is not None
    # a real match outside the allowlisted phrase still fires
    assert msg(policy, "Scunthorpe, you cunt").rule == "keyword:slurs"


def test_regex_matches(policy):
    assert msg(policy, "n1ggaz everywhere").rule == "keyword:slurs"


def test_invalid_regex_is_refused_naming_it():
    bad = "version: x\ncategories: {}\nkeywords:\n  l: {category: spam, severity: low, regexes: ['a(b']}\n"
    with pytest.raises(PolicyError, match=r"keywords.l \(line 4\).*invalid regex 'a\(b'"):
        parse_policy(bad, "bad.yaml")


def test_unknown_keyword_category_is_refused():
    with pytest.raises(PolicyError, match="keywords.l.category"):
        parse_policy("version: x\ncategories: {}\nkeywords:\n  l: {category: rude, severity: low}\n", "bad.yaml")


def test_channel_override_for_keywords(policy):
    d = msg(policy, "you cunt", channel_id="quotes")
    assert (d.rule, d.severity) == ("channel:quotes:keyword:slurs", Severity.low)
    assert msg(policy, "free airdrop", channel_id="general").shadow_rules == ("keyword:crypto",)
    assert msg(policy, "free airdrop", channel_id="trading") is None  # switched off there


def test_mention_spam_counts_text_or_takes_the_count(policy):
    assert msg(policy, "@a @b @c hi") is None
    d = msg(policy, "@a @b @c <@123> hi")
    assert (d.rule, d.category, d.severity) == ("mention_spam", "spam", Severity.medium)
    assert msg(policy, "hi", mentions=10).rule == "mention_spam"
    assert msg(policy, "@a @b @c @d", mentions=0) is None
    assert msg(policy, "mail me at a@b.com, c@d.com, e@f.com, g@h.com") is None  # emails aren't mentions


def test_link_spam_with_domain_allowlist(policy):
    assert msg(policy, "see https://x.com/a") is None
    assert msg(policy, "https://x.com/a and www.y.net/b").rule == "link_spam"
    assert msg(policy, "https://example.org/a https://docs.example.org/b https://x.com") is None
    assert msg(policy, "hi", links=["https://a.com", "https://b.com"]).rule == "link_spam"


def test_most_severe_rule_decides_and_all_categories_are_listed(policy):
    d = msg(policy, "you cunt @a @b @c @d", scores={**QUIET, "insult": 0.8})
    assert d.rule == "keyword:slurs" and d.severity is Severity.high
    assert set(d.categories) == {"identity_attack", "spam", "insult"}
    assert d.categories["insult"] == 0.8


def test_shadow_rule_alone_gives_a_shadow_decision(policy):
    d = msg(policy, "free airdrop")
    assert d.shadow is True and d.rule == "keyword:crypto" and d.shadow_rules == ("keyword:crypto",)
    d = msg(policy, "x", scores={**QUIET, "spam": 0.95})
    assert d.shadow is True and d.rule == "threshold:spam"


def test_shadow_rule_beside_a_live_rule_is_listed_not_deciding(policy):
    d = msg(policy, "free airdrop, you cunt")
    assert d.shadow is False and d.rule == "keyword:slurs"
    assert d.shadow_rules == ("keyword:crypto",)
    assert "spam" not in d.categories


def test_whole_policy_in_shadow():
    shadow = parse_policy("version: s\nshadow: true\ncategories:\n  threat: {threshold: 0.5, severity: high}\n", "s")
    d = evaluate(shadow, {**QUIET, "threat": 0.9})
    assert d.shadow is True and d.severity is Severity.high and d.rule == "threshold:threat"
    assert evaluate_message(shadow, {**QUIET, "threat": 0.9}, text="", channel_id=None).shadow is True


def test_old_policies_decide_as_before():
    d = evaluate(built_in_policy(), {**QUIET, "threat": 0.6})
    assert (d.shadow, d.shadow_rules, d.escalated_by) == (False, (), ())
    assert evaluate_message(built_in_policy(), {**QUIET, "threat": 0.6}, text="@a " * 50, channel_id=None) == d


def test_repeat_offender_escalates_one_step_or_to_a_level(policy):
    scores = {**QUIET, "insult": 0.8}
    assert msg(policy, scores=scores, offender_count=1).severity is Severity.medium
    d = msg(policy, scores=scores, offender_count=2)
    assert d.severity is Severity.high and d.rule == "threshold:insult+repeat_offenders"
    assert d.escalated_by == ("repeat_offenders",)
    assert msg(policy, offender_count=5) is None  # nothing flagged, nothing to escalate
    fixed = parse_policy(POLICY.replace("window_s: 600}", "window_s: 600, escalate_to: critical}"), "r")
    assert msg(fixed, scores=scores, offender_count=2).severity is Severity.critical


def test_offender_window_counts_across_the_window_boundary():
    window = OffenderWindow(horizon_s=1000)
    assert window.record("m", 0) == 1
    assert window.record("m", 300) == 2
    assert window.count("m", 599, window_s=600) == 2
    assert window.count("m", 600, window_s=600) == 1  # the flag at 0 is out of (0, 600]
    assert window.record("m", 650, window_s=600) == 2
    assert window.count("other", 650) == 0
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    window.record("d", start)
    assert window.count("d", start + timedelta(seconds=10), window_s=60) == 1


def test_offender_window_is_bounded():
    window = OffenderWindow(horizon_s=100, max_members=3, max_per_member=5)
    for i in range(10):
        window.record(f"m{i}", i)
    assert len(window) == 3 and window.count("m0", 10) == 0 and window.count("m9", 10) == 1
    for t in range(20):
        window.record("busy", 100 + t)
    assert window.count("busy", 120) == 5


def test_join_burst_is_pure_and_exact():
    assert in_join_burst([0, 10, 20], 20, joins=3, window_s=20)
    assert not in_join_burst([0, 10, 20.5], 20.5, joins=3, window_s=20)
    assert in_join_burst([0, 10, 20, 500], 10, joins=3, window_s=20)
    assert not in_join_burst([0, 10, 20, 500], 500, joins=2, window_s=20)


def test_raid_members_flagged_messages_escalate_and_name_the_rule(policy):
    tracker = RaidTracker()
    settings = dict(joins=3, join_window_s=60, message_window_s=300)
    tracker.record_join("c", "old", 0)
    for i, who in enumerate(["r1", "r2", "r3"]):
        tracker.record_join("c", who, 1000 + i)
    tracker.record_join("other", "r4", 1001)
    assert tracker.is_raid_member("c", "r2", 1100, **settings)
    assert not tracker.is_raid_member("c", "r2", 1400, **settings)  # too long after joining
    assert not tracker.is_raid_member("c", "old", 1100, **settings)  # joined outside any burst
    assert not tracker.is_raid_member("other", "r4", 1100, **settings)
    assert not tracker.is_raid_member("c", "nobody", 1100, **settings)

    raid = tracker.is_raid_member("c", "r2", 1100, **settings)
    d = msg(policy, "you cunt", raid_member=raid)
    assert (d.rule, d.severity, d.escalated_by) == ("raid", Severity.critical, ("raid",))
    assert msg(policy, "hello", raid_member=True) is None  # only flagged messages count


def test_raid_in_shadow_only_lists_itself():
    shadowed = parse_policy(POLICY.replace("severity: critical}", "severity: critical, shadow: true}"), "r")
    d = msg(shadowed, "you cunt", raid_member=True)
    assert d.rule == "keyword:slurs" and d.severity is Severity.high and "raid" in d.shadow_rules


def test_raid_tracker_is_bounded():
    tracker = RaidTracker(horizon_s=100, max_communities=2, max_joins=10)
    for i in range(5):
        tracker.record_join(f"c{i}", "m", i)
    assert len(tracker._joins) == 2
    for t in range(50):
        tracker.record_join("c4", f"m{t}", 10 + t)
    assert len(tracker._joins["c4"]) == 10
