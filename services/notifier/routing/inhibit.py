"""Inhibition: an active incident mutes others, as Alertmanager's ``inhibit_rules`` do.

    inhibit_rules:
      - source_matchers: ['severity="critical"']
        target_matchers: ['severity=~"low|medium|high"']
        equal: [community, channel, rule]

A target incident is muted while some active *source* incident

* matches the rule's ``source_matchers``, while the target matches its ``target_matchers``;
* has the same value as the target for every label in ``equal`` (a label is compared as
  the empty string when missing, so a label missing on both sides counts as equal);
* and is not itself matched by ``target_matchers`` when the target is matched by
  ``source_matchers`` (Alertmanager's two-sided exclusion: two incidents that each match
  both sides do not mute each other). An incident therefore never inhibits itself, nor an
  incident with the very same labels.

Rules are tried in order; the first that mutes wins. Which incidents are active (firing,
not resolved) is the caller's business: pass their labels as ``sources``. A source that is
muted itself still inhibits, as in Alertmanager.

**Which labels ``equal`` can use.** The routing labels are those of ``Incident.labels()``:
community, severity, category, channel, platform, rule and member (the evidence's
author). SPEC's example, a critical incident muting the lower ones of the same member:

      - source_matchers: ['severity="critical"']
        target_matchers: ['severity=~"low|medium|high"']
        equal: [community, member]

and a raid muting the per-message threshold incidents in its channel:

      - source_matchers: ['rule="raid"']
        target_matchers: ['rule=~"(channel:.*:)?threshold:.*"', 'severity!="critical"']
        equal: [community, channel]

``equal`` may only name those labels (``config.INCIDENT_LABELS``): an unknown one, like
``author``, would be missing on both sides, hence always equal, and silently widen the
rule to every incident; ``load_routing`` refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from services.notifier.routing.config import InhibitRule, Matcher

__all__ = ["InhibitRule", "Inhibition", "find_inhibition", "inhibiting_rule", "is_inhibited"]


@dataclass(frozen=True)
class Inhibition:
    """Why a target is muted: the rule, and the source labels (the object passed in)."""

    rule: InhibitRule
    source: Mapping[str, str]


def _all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)  # type: ignore[arg-type]


def _equal(rule: InhibitRule, a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return all(a.get(name, "") == b.get(name, "") for name in rule.equal)


def find_inhibition(
    target_labels: Mapping[str, str],
    sources: Iterable[Mapping[str, str]],
    rules: Iterable[InhibitRule],
) -> Inhibition | None:
    """The first rule (in order) muting ``target_labels``, with the source that does it."""
    pool = sources if isinstance(sources, Sequence) else tuple(sources)
    for rule in rules:
        if not _all(rule.target_matchers, target_labels):
            continue
        two_sided = _all(rule.source_matchers, target_labels)
        for source in pool:
            if not _all(rule.source_matchers, source) or not _equal(rule, source, target_labels):
                continue
            if two_sided and _all(rule.target_matchers, source):
                continue
            return Inhibition(rule, source)
    return None


def inhibiting_rule(
    target_labels: Mapping[str, str],
    sources: Iterable[Mapping[str, str]],
    rules: Iterable[InhibitRule],
) -> InhibitRule | None:
    """The first rule muting ``target_labels`` while ``sources`` are active, or ``None``."""
    found = find_inhibition(target_labels, sources, rules)
    return found.rule if found is not None else None


def is_inhibited(
    target_labels: Mapping[str, str],
    sources: Iterable[Mapping[str, str]],
    rules: Iterable[InhibitRule],
) -> bool:
    return find_inhibition(target_labels, sources, rules) is not None
