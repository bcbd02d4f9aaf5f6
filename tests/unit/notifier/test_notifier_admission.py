"""Admission, the pure decision on a new incident: silences, inhibition, muted routes, the
receivers it reaches once each, and the escalation policy it starts."""

from datetime import UTC, datetime, timedelta

from services.notifier.admission import admit
from services.notifier.routing.config import load_routing
from services.notifier.silences.models import Silence, silence_state

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday
HOUR = timedelta(hours=1)

ROUTING = load_routing("""
receivers:
  - {name: mods, console: {}}
  - {name: oncall, console: {}}
escalation_policies:
  - name: pager
    levels: [{receiver: oncall, timeout: 5m}]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity=~"low|medium|high"']
    equal: [community, member]
time_intervals:
  - name: weekdays
    time_intervals: [{weekdays: ["monday:friday"]}]
route:
  receiver: mods
  routes:
    - matchers: ['severity="critical"']
      receiver: oncall
      escalation_policy: pager
      continue: true
    - matchers: ['severity="critical"']
      receiver: oncall
      continue: true
    - matchers: ['category="spam"']
      receiver: mods
      active_time_intervals: [weekdays]
    - receiver: mods
""")


def labels(**changes: str) -> dict[str, str]:
    base = {"community": "c1", "severity": "high", "category": "threat", "channel": "C1",
            "platform": "slack", "rule": "threshold:threat", "member": "U1"}
    return {**base, **changes}


def silence(*matchers: str) -> Silence:
    return Silence(id="s1", matchers=list(matchers), starts_at=NOW - HOUR, ends_at=NOW + HOUR, created_by="alice",
                   comment="raid", created_at=NOW - HOUR, updated_at=NOW - HOUR,
                   state=silence_state(NOW - HOUR, NOW + HOUR, NOW))


def test_a_plain_incident_reaches_its_receiver() -> None:
    decision = admit(labels(), ROUTING, NOW)
    assert [r.receiver for r in decision.routes] == ["mods"]
    assert decision.held_back is None and decision.escalation_policy is None


def test_a_receiver_reached_by_two_routes_is_notified_once_and_the_policy_starts() -> None:
    decision = admit(labels(severity="critical"), ROUTING, NOW)
    assert [r.receiver for r in decision.routes] == ["oncall", "mods"]
    assert decision.escalation_policy == "pager"


def test_a_silence_holds_everything_back_and_says_whose_it_is() -> None:
    decision = admit(labels(severity="critical"), ROUTING, NOW, silences=[silence('community="c1"')])
    assert decision.held_back == "silenced" and decision.routes == ()
    assert "s1" in decision.detail and "alice" in decision.detail
    assert admit(labels(), ROUTING, NOW, silences=[silence('community="c2"')]).held_back is None


def test_an_active_critical_incident_inhibits_the_same_members_lower_ones_only() -> None:
    source = labels(severity="critical", rule="raid")
    decision = admit(labels(), ROUTING, NOW, active=[source])
    assert decision.held_back == "inhibited" and "member=U1" in decision.detail
    assert admit(labels(member="U2"), ROUTING, NOW, active=[source]).held_back is None
    assert admit(labels(severity="critical"), ROUTING, NOW, active=[source]).held_back is None


def test_a_route_muted_by_its_time_interval_is_reported_not_routed() -> None:
    decision = admit(labels(category="spam"), ROUTING, NOW)
    assert decision.routes == () and [receiver for receiver, _ in decision.muted] == ["mods"]
    monday = NOW + 2 * 24 * HOUR
    assert [r.receiver for r in admit(labels(category="spam"), ROUTING, monday).routes] == ["mods"]
