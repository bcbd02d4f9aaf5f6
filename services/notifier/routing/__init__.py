"""Routing: the routing YAML (``config``) and the Alertmanager-style tree walk (``tree``)."""

from services.notifier.routing.config import (
    Matcher,
    MatchOp,
    Route,
    RoutingConfig,
    RoutingConfigError,
    load_configured_routing,
    load_default_routing,
    load_routing,
    parse_duration,
    parse_matcher,
)
from services.notifier.routing.tree import MatchedRoute, match_route, receivers_for

__all__ = [
    "MatchOp",
    "MatchedRoute",
    "Matcher",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "load_configured_routing",
    "load_default_routing",
    "load_routing",
    "match_route",
    "parse_duration",
    "parse_matcher",
    "receivers_for",
]
