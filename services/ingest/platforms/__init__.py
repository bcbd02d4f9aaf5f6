"""One small module per platform: how its deliveries are verified and what they become.

Each module exposes ``SOURCE``, a :class:`WebhookSource`: data plus two small functions,
``verify(delivery, secret)`` and ``normalize(payload, delivery)``. Adding a platform is
adding a module with a ``SOURCE``; :func:`sources` finds it and the HTTP code stays as it is.
"""

import importlib
import pkgutil

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import MemberActivity


class MalformedPayload(ValueError):
    """The body is signed but is not a payload this platform sends (answered with 400)."""


@dataclass(frozen=True)
class Delivery:
    """One webhook request as an adapter sees it."""

    body: bytes
    headers: Mapping[str, str]  # case-insensitive
    now: float  # Unix seconds at arrival
    tolerance_s: int  # replay window for platforms that sign a timestamp

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True)
class Normalized:
    """What a delivery turned into: events to publish, and an optional direct answer."""

    events: list[MemberActivity] = field(default_factory=list)
    reply: dict | None = None
    ignored: str | None = None


@dataclass(frozen=True)
class WebhookSource:
    name: str  # also the route: POST /webhooks/{name}[/{connection}]
    summary: str
    verify: Callable[[Delivery, str], None]  # raises SignatureError with the reason
    normalize: Callable[[Any, Delivery], Normalized]  # raises MalformedPayload
    accepted_status: int = 202


def iso_timestamp(value: Any, what: str) -> datetime:
    """An ISO 8601 timestamp from a payload, in UTC (a zone-less one is taken as UTC)."""
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{what} is missing or not an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"{what} {value!r} is not an ISO 8601 timestamp") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def body_signature(header: str) -> Callable[[Delivery, str], None]:
    """A ``verify`` for platforms that send ``sha256=`` + HMAC of the raw body in ``header``."""
    from services.ingest.signatures import verify_body

    def verify(delivery: Delivery, secret: str) -> None:
        verify_body(secret, body=delivery.body, signature=delivery.header(header), header=header)

    return verify


def sources() -> dict[str, WebhookSource]:
    """Every module of this package that declares a ``SOURCE``, by platform name."""
    found = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        source = getattr(module, "SOURCE", None)
        if isinstance(source, WebhookSource):
            found[source.name] = source
    return found
