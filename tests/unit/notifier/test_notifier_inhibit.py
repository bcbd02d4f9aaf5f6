"""Inhibition rules: Alertmanager semantics, and their validation in the routing YAML."""

import re

import pytest

from services.notifier.routing import (
    InhibitRule,
    RoutingConfigError,
    find_inhibition,
    inhibiting_rule,
    is_inhibited,
    load_default_routing,
    load_routing,
)
from services.notifier.routing.config import INCIDENT_LABELS, default_routing_path


def rule(source: list[str], target: list[str], equal: list[str] | None = None) -> InhibitRule:
    return InhibitRule(source_matchers=source, target_matchers=target, equal=equal or [])


def labels(**kw: str) -> dict[str, str]:
    base = {
        "community": "acme",
        "severity": "high",
        "category": "threat",
        "channel": "C1",
        "platform": "slack",
        "rule": "threshold:threat",
    }
    base.update(kw)
    return base


CRITICAL_MUTES_LOWER = rule(
    ['severity="critical"'], ['severity=~"low|medium|high"'], ["community", "channel", "rule"]
)

# --------------------------------------------------------------------------- matching


def test_critical_mutes_lower_severity_with_equal_labels() -> None:
    target = labels(severity="high")
    source = labels(severity="critical")
    assert inhibiting_rule(target, [source], [CRITICAL_MUTES_LOWER]) is CRITICAL_MUTES_LOWER
    assert is_inhibited(labels(severity="low"), [source], [CRITICAL_MUTES_LOWER])


@pytest.mark.parametrize(
    ("target", "source"),
    [
        (labels(severity="high"), labels(severity="critical", channel="C2")),  # other channel
        (labels(severity="high"), labels(severity="critical", rule="raid")),  # other rule
        (labels(severity="high"), labels(severity="critical", community="beta")),
        (labels(severity="high"), labels(severity="high")),  # source side does not match
        (labels(severity="critical"), labels(severity="critical", category="insult")),
    ],
)
def test_not_muted_without_a_matching_equal_source(
    target: dict[str, str], source: dict[str, str]
) -> None:
    assert inhibiting_rule(target, [source], [CRITICAL_MUTES_LOWER]) is None


def test_labels_outside_equal_may_differ() -> None:
    # category and platform are not in ``equal``: they do not need to agree
    source = labels(severity="critical", category="identity_attack", platform="discord")
    assert is_inhibited(labels(severity="medium"), [source], [CRITICAL_MUTES_LOWER])


def test_equal_label_missing_on_both_sides_counts_as_equal() -> None:
    r = rule(['severity="critical"'], ['severity="low"'], ["channel"])
    target = {"severity": "low"}
    assert is_inhibited(target, [{"severity": "critical"}], [r])
    # missing on one side is compared as "", as Alertmanager does
    assert is_inhibited(target, [{"severity": "critical", "channel": ""}], [r])
    assert not is_inhibited(target, [{"severity": "critical", "channel": "C1"}], [r])
    assert not is_inhibited({"severity": "low", "channel": "C1"}, [{"severity": "critical"}], [r])


def test_empty_equal_lets_any_matching_source_mute() -> None:
    r = rule(['severity="critical"'], ['severity="low"'])
    source = {"severity": "critical", "community": "elsewhere", "channel": "X"}
    assert is_inhibited(labels(severity="low"), [source], [r])


def test_no_sources_or_no_rules_mute_nothing() -> None:
    assert inhibiting_rule(labels(), [], [CRITICAL_MUTES_LOWER]) is None
    assert inhibiting_rule(labels(), [labels(severity="critical")], []) is None


def test_an_incident_never_inhibits_itself() -> None:
    # a rule whose sides overlap: a high incident matches both
    r = rule(['severity=~"high|critical"'], ['severity=~"medium|high"'], ["channel"])
    me = labels(severity="high")
    assert not is_inhibited(me, [me], [r])  # the very same object among the sources
    assert not is_inhibited(me, [dict(me)], [r])  # another incident with the same labels


def test_two_sided_matches_do_not_mute_each_other() -> None:
    # Alertmanager's exclusion: when the target also matches the source side, sources that
    # also match the target side are ignored, so two such incidents don't mute each other.
    r = rule(['severity=~"high|critical"'], ['severity=~"medium|high"'], ["channel"])
    high_a = labels(severity="high", rule="a")
    high_b = labels(severity="high", rule="b")
    assert not is_inhibited(high_a, [high_b], [r])
    assert not is_inhibited(high_b, [high_a], [r])
    # a source matching only the source side still mutes a two-sided target ...
    assert is_inhibited(high_a, [labels(severity="critical")], [r])
    # ... and a target matching only the target side is muted by a two-sided source
    assert is_inhibited(labels(severity="medium"), [high_b], [r])


def test_first_muting_rule_wins_and_later_rules_are_tried() -> None:
    first = rule(['severity="critical"'], ['severity="high"'], ["channel"])
    second = rule(['rule="raid"'], ['severity="high"'], ["community"])
    raid_elsewhere = labels(severity="high", rule="raid", channel="C9")
    critical_here = labels(severity="critical")
    target = labels(severity="high")
    assert inhibiting_rule(target, [raid_elsewhere, critical_here], [first, second]) is first
    assert inhibiting_rule(target, [critical_here, raid_elsewhere], [second, first]) is second
    # the first rule's target side matches but no source does: the second rule applies
    assert inhibiting_rule(target, [raid_elsewhere], [first, second]) is second


def test_sources_may_be_a_one_shot_iterator() -> None:
    first = rule(['severity="critical"'], ['severity="high"'], ["channel"])
    second = rule(['rule="raid"'], ['severity="high"'], ["community"])
    sources = (s for s in [labels(severity="low", rule="raid", channel="C9")])
    # the first rule looks at every source before the second rule needs them again
    assert inhibiting_rule(labels(severity="high"), sources, [first, second]) is second


def test_find_inhibition_names_the_source() -> None:
    quiet = labels(severity="critical", channel="C2")
    loud = labels(severity="critical")
    found = find_inhibition(labels(), [quiet, loud], [CRITICAL_MUTES_LOWER])
    assert found is not None
    assert found.rule is CRITICAL_MUTES_LOWER
    assert found.source is loud


def test_documented_examples_with_real_incident_labels(make_incident) -> None:
    cfg = load_routing(_uncommented_default_examples())
    member_rule, raid_rule = cfg.inhibit_rules
    raid_critical = make_incident(severity="critical", rule="raid").labels()
    same_member_high = make_incident(severity="high", rule="threshold:insult", incident_id="inc-2").labels()
    other = {"member_id": "U-other"}
    raid_high_other = make_incident(severity="high", rule="raid", incident_id="inc-3", evidence=other).labels()
    threat_high = make_incident(severity="high", rule="threshold:threat", evidence=other).labels()
    other_channel = make_incident(
        severity="high", rule="threshold:threat", channel_id="C7", evidence=other
    ).labels()
    sources = [raid_critical, same_member_high, raid_high_other, threat_high, other_channel]
    # a critical incident mutes the lower incidents of the same member (rule 1) ...
    assert inhibiting_rule(same_member_high, sources, cfg.inhibit_rules) is member_rule
    # ... not another member's raid incident (and rule 2 targets threshold rules only)
    assert inhibiting_rule(raid_high_other, sources, cfg.inhibit_rules) is None
    # a raid mutes the per-message threshold incidents of the same channel (rule 2) ...
    assert inhibiting_rule(threat_high, sources, cfg.inhibit_rules) is raid_rule
    assert is_inhibited(
        make_incident(rule="channel:C42:threshold:insult", severity="low", evidence=other).labels(),
        sources,
        cfg.inhibit_rules,
    )
    # ... but not those of another channel, nor a critical one, nor the critical raid itself
    assert inhibiting_rule(other_channel, sources, cfg.inhibit_rules) is None
    threat_critical = make_incident(severity="critical", rule="threshold:threat", evidence=other).labels()
    assert inhibiting_rule(threat_critical, sources, cfg.inhibit_rules) is None
    assert inhibiting_rule(raid_critical, sources, cfg.inhibit_rules) is None


def test_incident_labels_are_the_ones_equal_may_use(make_incident) -> None:
    assert set(make_incident().labels()) == INCIDENT_LABELS


# --------------------------------------------------------------------------- config


def _uncommented_default_examples() -> str:
    """default.yaml with its commented ``inhibit_rules:`` / ``time_intervals:`` examples on."""
    out, in_block = [], False
    for line in default_routing_path().read_text().splitlines():
        if line in ("# inhibit_rules:", "# time_intervals:"):
            in_block = True
        elif line == "inhibit_rules:" or (in_block and line.startswith("  ")):
            in_block = True  # an active list whose commented entries continue it
            out.append(line)
            continue
        elif not line.startswith("#  "):
            in_block = False
        out.append(line[2:] if in_block else line)
    return "\n".join(out) + "\n"


def test_default_routing_has_the_spec_inhibit_rule_and_documents_another() -> None:
    assert [r.equal for r in load_default_routing().inhibit_rules] == [["community", "member"]]
    cfg = load_routing(_uncommented_default_examples())
    assert [r.equal for r in cfg.inhibit_rules] == [
        ["community", "member"],
        ["community", "channel"],
    ]
    assert [t.name for t in cfg.time_intervals] == ["office-hours"]


def test_inhibit_rules_load_from_yaml_and_round_trip() -> None:
    cfg = load_routing(
        """
receivers: [{name: c, console: {}}]
route: {receiver: c}
inhibit_rules:
  - source_matchers: ['severity="critical"', category=~"threat|identity_attack"]
    target_matchers: [severity!=critical]
    equal: [community, channel]
  - target_matchers: [severity=low]
"""
    )
    first, second = cfg.inhibit_rules
    assert [str(m) for m in first.source_matchers] == [
        'severity="critical"',
        'category=~"threat|identity_attack"',
    ]
    assert second.source_matchers == [] and second.equal == []
    assert type(cfg).model_validate(cfg.model_dump(by_alias=True)) == cfg


GOOD = "receivers: [{name: c, console: {}}]\nroute: {receiver: c}\ninhibit_rules:\n"


@pytest.mark.parametrize(
    ("rules_yaml", "fragments"),
    [
        (
            (
                "  - source_matchers: [severity=critical]\n"
                "    target_matchers:\n"
                "      - severity=low\n"
                "      - 'category=~\"(threat\"'\n"
            ),
            ["line 7:", "inhibit_rules[0].target_matchers[1]", "invalid regex"],
        ),
        (
            "  - source_matchers: [severity=critical]\n  - source_matchers: [severity]\n",
            ["line 5:", "inhibit_rules[1].source_matchers[0]", "bad matcher"],
        ),
        (
            "  - source_matchers: [severity=critical]\n    equal: [community, author]\n",
            ["line 5:", "inhibit_rules[0].equal", "'author' is not an incident label"],
        ),
        (
            "  - equal: [channel, channel]\n",
            ["line 4:", "duplicate labels in equal"],
        ),
        (
            "  - equal: ['1abc']\n",
            ["line 4:", "invalid label name in equal"],
        ),
        (
            "  - source_matchers: [severity=critical]\n    source_match: {severity: critical}\n",
            ["line 5:", "unknown field 'source_match'"],
        ),
    ],
)
def test_bad_inhibit_rules_are_refused_with_their_line(
    rules_yaml: str, fragments: list[str]
) -> None:
    with pytest.raises(RoutingConfigError) as info:
        load_routing(GOOD + rules_yaml)
    (problem,) = info.value.problems
    for fragment in fragments:
        assert fragment in problem, problem
    assert re.match(r"line \d+: ", problem)
