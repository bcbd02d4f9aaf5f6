"""Rule evaluation: scores (and the message's facts) in, a decision out. No I/O, no clock.

``evaluate`` applies category thresholds only (the original entry point); ``evaluate_message``
adds keyword/regex lists, mention and link spam, repeat-offender and raid escalation. State the
latter two need (flag and join history) lives in ``services.moderation.policy.trackers``; the
caller passes in what the trackers say, so evaluation stays pure.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from schemas import Severity
from services.moderation.policy.model import Policy

_SEVERITIES = sorted(Severity, key=lambda s: s.rank)
_MENTION = re.compile(r"<@[!&]?\d+>|(?<![\w@])@[A-Za-z0-9_][\w.\-]*")
_LINK = re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+")
MAX_TEXT_CHARS = 20_000  # keyword/regex matching looks at no more than this much of a message


@dataclass(frozen=True)
class Decision:
    severity: Severity
    category: str
    categories: dict[str, float]
    rule: str
    # Shadow: computed and returned, but the caller records it and emits no incident. True when
    # the whole policy is in shadow, or when only shadow rules fired.
    shadow: bool = False
    # Shadow rules that fired (would have fired) on this message, whatever ``shadow`` is.
    shadow_rules: tuple[str, ...] = ()
    # Escalations applied on top of the deciding rule: "repeat_offenders", "raid".
    escalated_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Hit:
    rule: str
    category: str
    severity: Severity
    score: float
    shadow: bool


def _threshold_hits(policy: Policy, scores: dict[str, float], channel_id: str | None) -> list[_Hit]:
    overrides = policy.channels.get(channel_id or "", {})
    return [
        _Hit(
            rule=f"{'channel:' + str(channel_id) + ':' if category in overrides else ''}threshold:{category}",
            category=category,
            severity=rule.severity,
            score=scores[category],
            shadow=rule.shadow,
        )
        for category, rule in policy.rules_for(channel_id).items()
        if category in scores and scores[category] >= rule.threshold
    ]


def _decide(policy: Policy, hits: list[_Hit]) -> Decision | None:
    """The most severe live hit decides (ties: higher score, then first); with none live, the
    most severe shadow hit decides and the decision is shadow."""
    if not hits:
        return None
    live = [h for h in hits if not h.shadow]
    shadow_rules = tuple(h.rule for h in hits if h.shadow)
    deciding = live or hits
    top = max(deciding, key=lambda h: (h.severity.rank, h.score))
    categories: dict[str, float] = {}
    for hit in deciding:
        categories[hit.category] = max(categories.get(hit.category, 0.0), round(hit.score, 4))
    return Decision(
        severity=top.severity,
        category=top.category,
        categories=categories,
        rule=top.rule,
        shadow=policy.shadow or not live,
        shadow_rules=shadow_rules,
    )


def evaluate(policy: Policy, scores: dict[str, float], channel_id: str | None = None) -> Decision | None:
    """The incident a text calls for, or None.

    Every category over its threshold is evidence; the most severe one names the rule
    (ties go to the higher score) and sets the severity.
    """
    return _decide(policy, _threshold_hits(policy, scores, channel_id))


def count_mentions(text: str) -> int:
    """``@name`` and Discord-style ``<@123>`` mentions in a text."""
    return len(_MENTION.findall(text or ""))


def find_links(text: str) -> list[str]:
    return _LINK.findall(text or "")


def _domain_allowed(link: str, allowed: Sequence[str]) -> bool:
    if not allowed:
        return False
    url = link if "://" in link else f"http://{link}"
    try:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return False
    return any(host == d or host.endswith("." + d) for d in (a.lower().strip(".") for a in allowed))


def step_up(severity: Severity) -> Severity:
    return _SEVERITIES[min(severity.rank + 1, len(_SEVERITIES) - 1)]


def evaluate_message(
    policy: Policy,
    scores: dict[str, float],
    *,
    text: str | None,
    channel_id: str | None,
    member_id: str | None = None,
    mentions: int | None = None,
    links: Sequence[str] | None = None,
    offender_count: int = 0,
    raid_member: bool = False,
) -> Decision | None:
    """Every rule of ``policy`` applied to one message.

    ``mentions``: the platform's mention count, else counted in ``text``. ``links``: the message's
    URLs, else found in ``text``. ``offender_count``: this member's earlier (non-shadow) flags
    within the policy's repeat window (``OffenderWindow.count``). ``raid_member``: the member
    joined in a join burst recently enough (``RaidTracker.is_raid_member``). ``member_id`` is
    accepted for the caller's convenience; rules don't read it.
    """
    del member_id
    body = (text or "")[:MAX_TEXT_CHARS]
    hits = _threshold_hits(policy, scores, channel_id)

    for name, (keywords, overridden) in policy.keywords_for(channel_id).items():
        if keywords.first_match(body) is not None:
            scope = f"channel:{channel_id}:" if overridden else ""
            hits.append(_Hit(f"{scope}keyword:{name}", keywords.category, keywords.severity, 1.0, keywords.shadow))

    if (rule := policy.mention_spam) is not None:
        count = mentions if mentions is not None else count_mentions(body)
        if count > rule.max_mentions:
            hits.append(_Hit("mention_spam", rule.category, rule.severity, 1.0, rule.shadow))

    if (rule := policy.link_spam) is not None:
        found = list(links) if links is not None else find_links(body)
        counted = [link for link in found if not _domain_allowed(link, rule.allowed_domains)]
        if len(counted) > rule.max_links:
            hits.append(_Hit("link_spam", rule.category, rule.severity, 1.0, rule.shadow))

    decision = _decide(policy, hits)
    if decision is None:
        return None

    if (repeat := policy.repeat_offenders) is not None and offender_count + 1 >= repeat.flags:
        if repeat.shadow:
            decision = replace(decision, shadow_rules=decision.shadow_rules + ("repeat_offenders",))
        else:
            target = repeat.escalate_to or step_up(decision.severity)
            if target.rank > decision.severity.rank:
                decision = replace(
                    decision,
                    severity=target,
                    rule=f"{decision.rule}+repeat_offenders",
                    escalated_by=decision.escalated_by + ("repeat_offenders",),
                )

    if (raid := policy.raid) is not None and raid_member:
        if raid.shadow:
            decision = replace(decision, shadow_rules=decision.shadow_rules + ("raid",))
        else:
            decision = replace(
                decision,
                severity=raid.severity if raid.severity.rank > decision.severity.rank else decision.severity,
                rule="raid",
                escalated_by=decision.escalated_by + ("raid",),
            )
    return decision
