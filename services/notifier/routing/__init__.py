"""Routing: the routing YAML (``config``), the Alertmanager-style tree walk (``tree``),
inhibition (``inhibit``) and time intervals (``intervals``)."""

from services.notifier.routing.config import (
    InhibitRule,
    Matcher,
    MatchOp,
    NamedTimeInterval,
    Route,
    RoutingConfig,
    RoutingConfigError,
    TimeInterval,
    load_configured_routing,
    load_default_routing,
    load_routing,
    parse_duration,
    parse_matcher,
)
from services.notifier.routing.inhibit import (
    Inhibition,
    find_inhibition,
    inhibiting_rule,
    is_inhibited,
)
from services.notifier.routing.intervals import is_active, mute_reason, route_muted
from services.notifier.routing.tree import MatchedRoute, match_route, receivers_for

__all__ = [
    "InhibitRule",
    "Inhibition",
    "MatchOp",
    "MatchedRoute",
    "Matcher",
    "NamedTimeInterval",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "TimeInterval",
    "find_inhibition",
    "inhibiting_rule",
    "is_active",
    "is_inhibited",
    "load_configured_routing",
    "load_default_routing",
    "load_routing",
    "match_route",
    "mute_reason",
    "parse_duration",
    "parse_matcher",
    "receivers_for",
    "route_muted",
]
