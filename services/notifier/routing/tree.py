"""Walking the routing tree: which receivers an incident's labels reach.

Alertmanager semantics (``dispatch/route.go``): the node given is the root and always
matches; children are tried in order, depth-first; a matching child's deepest matches
win; a matching child without ``continue: true`` stops its later siblings; when no child
matches, the node itself is the match. Unset receiver / group_by / timings are inherited;
``mute_time_intervals`` / ``active_time_intervals`` are not: a ``MatchedRoute`` carries those of
the node it stopped at only, as Alertmanager does (``intervals.route_muted`` reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from services.notifier.routing.config import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    GROUP_BY_ALL,
    Matcher,
    Route,
)

__all__ = ["MatchedRoute", "match_route", "receivers_for"]


@dataclass(frozen=True)
class MatchedRoute:
    """A route an incident reached, with the settings in effect there (after inheritance)."""

    receiver: str
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool
    path: tuple[int, ...]
    """Child indices from the root: ``()`` is the root, ``(1, 0)`` its 2nd child's 1st."""
    matchers: tuple[tuple[Matcher, ...], ...]
    """The matchers of each node from the root down to this one."""
    mute_time_intervals: tuple[str, ...] = ()
    """This node's own (never inherited): notifications are muted while one is active."""
    active_time_intervals: tuple[str, ...] = ()
    """This node's own (never inherited): when set, notifications are muted outside them."""
    escalation_policy: str | None = None
    """Inherited: the escalation policy an incident notified on this route starts."""

    @property
    def key(self) -> str:
        """A stable id of the route, like Alertmanager's: ``{}/{severity=~"high"}``."""
        return "/".join("{" + ",".join(str(m) for m in ms) + "}" for ms in self.matchers)

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that identify the group an incident falls in on this route."""
        if self.group_by_all:
            return dict(sorted(labels.items()))
        return {name: labels.get(name, "") for name in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Route key, receiver and group labels: incidents with the same key are notified
        together. The receiver is part of it so that a reload pointing a route elsewhere
        opens new groups instead of feeding ones pinned to the old receiver."""
        inner = ",".join(f"{k}={v!r}" for k, v in self.group_labels(labels).items())
        return f"{self.key}:{self.receiver}:{{{inner}}}"


@dataclass(frozen=True)
class _Effective:
    receiver: str
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    escalation_policy: str | None = None

    def under(self, node: Route) -> _Effective:
        return _Effective(
            receiver=node.receiver if node.receiver is not None else self.receiver,
            escalation_policy=node.escalation_policy
            if node.escalation_policy is not None
            else self.escalation_policy,
            group_by=tuple(node.group_by) if node.group_by is not None else self.group_by,
            group_wait=node.group_wait if node.group_wait is not None else self.group_wait,
            group_interval=node.group_interval
            if node.group_interval is not None
            else self.group_interval,
            repeat_interval=node.repeat_interval
            if node.repeat_interval is not None
            else self.repeat_interval,
        )


def _matches(node: Route, labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in node.matchers)  # type: ignore[arg-type]


def _walk(
    node: Route,
    labels: Mapping[str, str],
    inherited: _Effective,
    path: tuple[int, ...],
    chain: tuple[tuple[Matcher, ...], ...],
) -> list[MatchedRoute]:
    eff = inherited.under(node)
    chain = (*chain, tuple(node.matchers))
    found: list[MatchedRoute] = []
    for i, child in enumerate(node.routes):
        if not _matches(child, labels):
            continue
        found.extend(_walk(child, labels, eff, (*path, i), chain))
        if not child.continue_:
            break
    if not found:
        found.append(
            MatchedRoute(
                receiver=eff.receiver,
                group_by=tuple(g for g in eff.group_by if g != GROUP_BY_ALL),
                group_by_all=GROUP_BY_ALL in eff.group_by,
                group_wait=eff.group_wait,
                group_interval=eff.group_interval,
                repeat_interval=eff.repeat_interval,
                continue_=node.continue_,
                path=path,
                matchers=chain,
                mute_time_intervals=tuple(node.mute_time_intervals),
                active_time_intervals=tuple(node.active_time_intervals),
                escalation_policy=eff.escalation_policy,
            )
        )
    return found


def match_route(route: Route, labels: Mapping[str, str]) -> list[MatchedRoute]:
    """The routes ``labels`` reach, in tree order; ``route`` is the root and always matches.

    Never empty when the root names a receiver (``RoutingConfig`` guarantees it).
    """
    if route.receiver is None:
        raise ValueError("the root route must name a receiver")
    root = _Effective(
        receiver=route.receiver,
        group_by=(),
        group_wait=DEFAULT_GROUP_WAIT,
        group_interval=DEFAULT_GROUP_INTERVAL,
        repeat_interval=DEFAULT_REPEAT_INTERVAL,
    )
    # the root's own matchers are ignored (validation forbids them): the root matches all
    return _walk(route, labels, root, (), ())


def receivers_for(route: Route, labels: Mapping[str, str]) -> list[str]:
    """Receiver names ``labels`` reach, in order, each once (until grouping exists, two
    routes to the same receiver would otherwise notify it twice)."""
    return list(dict.fromkeys(m.receiver for m in match_route(route, labels)))
