"""Routing config: matchers, durations, validation errors, and the tree walk."""

from datetime import timedelta
from pathlib import Path

import pytest

from services.notifier.routing import (
    MatchOp,
    RoutingConfigError,
    load_configured_routing,
    load_default_routing,
    load_routing,
    match_route,
    parse_duration,
    parse_matcher,
    receivers_for,
)
from services.notifier.routing.config import (
    Matcher,
    Route,
    RoutingConfig,
    format_duration,
)

# --------------------------------------------------------------------------- matchers


@pytest.mark.parametrize(
    ("text", "name", "op", "value"),
    [
        ('severity="high"', "severity", MatchOp.eq, "high"),
        ("severity=high", "severity", MatchOp.eq, "high"),
        ('  severity != "low" ', "severity", MatchOp.ne, "low"),
        ('category=~"threat|insult"', "category", MatchOp.re, "threat|insult"),
        ("category!~spam", "category", MatchOp.nre, "spam"),
        ('rule="say \\"hi\\""', "rule", MatchOp.eq, 'say "hi"'),
        ('channel=""', "channel", MatchOp.eq, ""),
        ('community="a,b=c"', "community", MatchOp.eq, "a,b=c"),
    ],
)
def test_parse_matcher(text: str, name: str, op: MatchOp, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.op, m.value) == (name, op, value)
    assert parse_matcher(str(m)) == m  # str() round-trips


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("severity", "bad matcher"),
        ('="high"', "bad matcher"),
        ('1sev="high"', "bad matcher"),
        ('sev="high', "unbalanced quotes"),
        ('sev="a"b"', "unescaped"),
        ('sev=~"("', "invalid regex"),
    ],
)
def test_bad_matchers_are_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_matcher(text)


def test_regex_matchers_are_fully_anchored() -> None:
    high = parse_matcher('severity=~"high"')
    assert high.matches({"severity": "high"})
    assert not high.matches({"severity": "highest"})
    assert not high.matches({"severity": "very high"})
    alt = parse_matcher('severity=~"high|critical"')
    # without anchoring around the whole alternation, "highx" would match "high"
    assert alt.matches({"severity": "critical"})
    assert not alt.matches({"severity": "highx"})
    assert not alt.matches({"severity": "xcritical"})
    not_spam = parse_matcher('category!~"spam|sexual"')
    assert not_spam.matches({"category": "threat"})
    assert not not_spam.matches({"category": "spam"})
    assert not_spam.matches({"category": "spammy"})


def test_missing_label_matches_as_empty_string() -> None:
    assert parse_matcher('channel=""').matches({})
    assert not parse_matcher('channel="C1"').matches({})
    assert parse_matcher('channel!="C1"').matches({})
    assert parse_matcher('channel=~"C.*|"').matches({})


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("1d", timedelta(days=1)),
        ("0s", timedelta(0)),
        (45, timedelta(seconds=45)),
    ],
)
def test_parse_duration(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5x", "1.5h", "-1s", "m", "5 m", "h1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("30s", "5m", "4h", "1h30m", "250ms", "1d"):
        assert format_duration(parse_duration(text)) == text


# --------------------------------------------------------------------------- tree walk

TREE = """
receivers:
  - {name: default, console: {}}
  - {name: audit, console: {}}
  - {name: acme-mods, console: {}}
  - {name: acme-oncall, console: {}}
  - {name: threats, console: {}}
  - {name: spam-bin, console: {}}
route:
  receiver: default
  group_by: [community]
  group_wait: 30s
  routes:
    - receiver: audit
      matchers: ['severity="critical"']
      continue: true
    - matchers: [community="acme"]
      receiver: acme-mods
      group_by: [community, category]
      group_wait: 5s
      routes:
        - matchers: ['severity=~"high|critical"', 'category!="spam"']
          receiver: acme-oncall
          repeat_interval: 1h
    - matchers: ['category=~"threat|identity_attack"']
      receiver: threats
    - matchers: [category=spam]
      receiver: spam-bin
"""


@pytest.fixture(scope="module")
def tree() -> RoutingConfig:
    return load_routing(TREE)


def labels(**kw: str) -> dict[str, str]:
    base = {"community": "other", "severity": "low", "category": "toxicity", "channel": ""}
    base.update(kw)
    return base


def test_no_child_matches_falls_back_to_the_root(tree: RoutingConfig) -> None:
    matched = match_route(tree.route, labels())
    assert [m.receiver for m in matched] == ["default"]
    assert matched[0].path == ()
    assert matched[0].group_by == ("community",)
    assert matched[0].group_wait == timedelta(seconds=30)


def test_first_matching_sibling_stops_the_walk(tree: RoutingConfig) -> None:
    # acme + threat matches both the acme branch and the threats route: acme comes first
    got = receivers_for(tree.route, labels(community="acme", category="threat"))
    assert got == ["acme-mods"]


def test_deepest_match_wins_and_inherits(tree: RoutingConfig) -> None:
    matched = match_route(tree.route, labels(community="acme", severity="high", category="threat"))
    assert [m.receiver for m in matched] == ["acme-oncall"]
    m = matched[0]
    assert m.path == (1, 0)
    assert m.group_by == ("community", "category")  # from its parent
    assert m.group_wait == timedelta(seconds=5)  # from its parent
    assert m.group_interval == timedelta(minutes=5)  # Alertmanager default via the root
    assert m.repeat_interval == timedelta(hours=1)  # its own
    assert m.key == '{}/{community="acme"}/{severity=~"high|critical",category!="spam"}'
    assert m.group_labels({"community": "acme", "category": "threat", "x": "y"}) == {
        "community": "acme",
        "category": "threat",
    }


def test_parent_is_the_match_when_no_grandchild_matches(tree: RoutingConfig) -> None:
    matched = match_route(tree.route, labels(community="acme", severity="high", category="spam"))
    assert [(m.receiver, m.path) for m in matched] == [("acme-mods", (1,))]


def test_continue_lets_later_siblings_match(tree: RoutingConfig) -> None:
    got = match_route(tree.route, labels(community="acme", severity="critical", category="threat"))
    assert [m.receiver for m in got] == ["audit", "acme-oncall"]
    assert got[0].continue_ is True
    # without the continue route matching, only the later sibling is reached
    assert receivers_for(tree.route, labels(severity="high", category="threat")) == ["threats"]
    assert receivers_for(tree.route, labels(severity="critical", category="spam")) == [
        "audit",
        "spam-bin",
    ]


def test_receiver_inherited_from_parent_when_unset() -> None:
    cfg = load_routing(
        """
receivers: [{name: root, console: {}}, {name: mid, console: {}}]
route:
  receiver: root
  routes:
    - matchers: [community=acme]
      receiver: mid
      routes:
        - matchers: [severity=high]
          group_by: ['...']
"""
    )
    got = match_route(cfg.route, {"community": "acme", "severity": "high", "b": "2", "a": "1"})
    assert [(m.receiver, m.group_by_all) for m in got] == [("mid", True)]
    assert list(got[0].group_labels({"b": "2", "a": "1"})) == ["a", "b"]


def test_root_always_matches_and_receivers_are_deduplicated() -> None:
    cfg = load_routing(
        """
receivers: [{name: r, console: {}}, {name: s, console: {}}]
route:
  receiver: r
  routes:
    - {receiver: s, continue: true}
    - {receiver: s, continue: true, matchers: [severity=high]}
"""
    )
    assert [m.receiver for m in match_route(cfg.route, {"severity": "high"})] == ["s", "s"]
    assert receivers_for(cfg.route, {"severity": "high"}) == ["s"]
    assert receivers_for(cfg.route, {}) == ["s"]


def test_match_route_needs_a_root_receiver() -> None:
    with pytest.raises(ValueError, match="root route"):
        match_route(Route(), {})


def test_default_routing_sends_medium_and_up_to_moderators_and_all_to_console(
    make_incident,
) -> None:
    cfg = load_default_routing()
    assert {r.name for r in cfg.receivers} >= {"console", "moderators"}
    for sev, expected in [
        ("low", ["console"]),
        ("medium", ["moderators", "console"]),
        ("high", ["moderators", "console"]),
        ("critical", ["moderators", "console"]),
    ]:
        assert receivers_for(cfg.route, make_incident(severity=sev).labels()) == expected
    moderators = cfg.receiver("moderators")
    assert moderators.kinds == ["slack", "email"]


# --------------------------------------------------------------------------- validation

GOOD_RECEIVERS = """receivers:
  - name: console
    console: {}
"""


def _error(text: str) -> RoutingConfigError:
    with pytest.raises(RoutingConfigError) as info:
        load_routing(text)
    return info.value


def test_unknown_receiver_is_reported_with_its_line() -> None:
    err = _error(
        GOOD_RECEIVERS
        + """route:
  receiver: console
  routes:
    - matchers: [severity=high]
      receiver: pager
"""
    )
    assert len(err.problems) == 1
    problem = err.problems[0]
    assert "unknown receiver 'pager'" in problem
    assert "defined: console" in problem
    assert "route.routes[0].receiver" in problem
    assert problem.startswith("line 8:")


def test_bad_matcher_is_reported_with_its_line() -> None:
    err = _error(
        GOOD_RECEIVERS
        + """route:
  receiver: console
  routes:
    - receiver: console
      matchers:
        - severity=high
        - 'category=~"(threat"'
"""
    )
    (problem,) = err.problems
    assert problem.startswith("line 10:")
    assert "route.routes[0].matchers[1]" in problem
    assert "invalid regex" in problem


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        (
            "receivers:\n  - {name: a, console: {}}\n  - {name: a, console: {}}\n"
            "route: {receiver: a}\n",
            ["line 3", "duplicate receiver name 'a'"],
        ),
        (
            "receivers:\n  - name: a\nroute: {receiver: a}\n",
            ["line 2", "no integration"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  matchers: [severity=high]\n",
            ["line 6", "root route must not have matchers"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  matchers: []\n",
            ["root route must name a receiver"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  group_wiat: 5s\n",
            ["line 6", "unknown field 'group_wiat'"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  repeat_interval: 0s\n",
            ["line 6", "repeat_interval", "greater than zero"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  group_wait: soon\n",
            ["line 6", "invalid duration 'soon'"],
        ),
        (
            "receivers:\n  - name: e\n    email: {to: [not-an-address]}\nroute: {receiver: e}\n",
            ["line 3", "not an email address"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  routes: [{receiver: console\n",
            ["YAML syntax error"],
        ),
        (
            GOOD_RECEIVERS + "route:\n  receiver: console\n  escalation_policy: pager\n",
            ["line 6", "unknown escalation policy 'pager'"],
        ),
        (
            GOOD_RECEIVERS + "escalation_policies:\n  - name: pager\n    levels:\n"
            "      - {receiver: nobody, timeout: 5m}\nroute: {receiver: console}\n",
            ["line 7", "unknown receiver 'nobody'"],
        ),
        (
            GOOD_RECEIVERS + "escalation_policies:\n  - name: pager\n    levels:\n"
            "      - {receiver: console, timeout: 0s}\nroute: {receiver: console}\n",
            ["timeout must be greater than zero"],
        ),
        (
            GOOD_RECEIVERS + "fallback_receiver: pager\nroute: {receiver: console}\n",
            ["line 4", "unknown receiver 'pager'"],
        ),
        ("- just\n- a list\n", ["must be a mapping"]),
        ("receivers: []\nroute: {receiver: x}\n", ["receivers"]),
    ],
)
def test_invalid_configs_name_the_problem(yaml_text: str, fragments: list[str]) -> None:
    message = str(_error(yaml_text))
    for fragment in fragments:
        assert fragment in message, message


def test_model_validation_outside_the_loader_also_checks_references() -> None:
    with pytest.raises(ValueError, match="unknown receiver 'nope'"):
        RoutingConfig.model_validate(
            {"receivers": [{"name": "a", "console": {}}], "route": {"receiver": "nope"}}
        )


def test_load_from_path_and_receiver_fallback_shapes(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "receivers:\n"
        "  - name: mods\n"
        "    slack:\n"  # empty value: a Slack integration using the settings' URL
        "    email: {to: mods@example.org}\n"
        "route: {receiver: mods}\n"
    )
    for source in (path, str(path)):
        cfg = load_routing(source)
        mods = cfg.receiver("mods")
        assert mods.slack is not None and mods.slack.webhook_url is None
        assert mods.email is not None and mods.email.to == ["mods@example.org"]
    err = _error(str(tmp_path / "missing.yaml"))  # not a file: parsed as YAML text
    assert "must be a mapping" in str(err)
    with pytest.raises(RoutingConfigError, match="cannot read"):
        load_routing(tmp_path / "missing.yaml")


def test_config_round_trips_through_its_dump() -> None:
    cfg = load_routing(TREE)
    again = RoutingConfig.model_validate(cfg.model_dump(by_alias=True))
    assert again == cfg
    assert isinstance(again.route.routes[1].routes[0].matchers[0], Matcher)


def test_load_configured_routing(tmp_path: Path) -> None:
    assert load_configured_routing(None) == load_default_routing()
    path = tmp_path / "r.yaml"
    path.write_text("receivers: [{name: only, console: {}}]\nroute: {receiver: only}\n")
    assert load_configured_routing(path).receiver_names == ["only"]


def test_the_documented_recipe_sends_critical_to_email_and_the_rest_to_slack() -> None:
    import re

    docs = (Path(__file__).resolve().parents[3] / "docs" / "notifier.md").read_text()
    recipe = re.search(r"Save this as `routing.yaml`:\n\n```yaml\n(.*?)```", docs, re.S)
    assert recipe, "docs/notifier.md lost its routing recipe"
    config = load_routing(recipe.group(1))
    labels = {"community": "acme", "category": "threat", "severity": "critical"}
    assert receivers_for(config.route, labels) == ["oncall-email"]
    for severity in ("low", "medium", "high"):
        assert receivers_for(config.route, {**labels, "severity": severity}) == ["mods-slack"]
    assert {r.name: r.kinds for r in config.receivers} == {"oncall-email": ["email"], "mods-slack": ["slack"]}
