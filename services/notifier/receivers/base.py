"""What every receiver shares: the interface, the delivery receipt, the failure, backoff."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import UtcDatetime, utc_now
from schemas.incidents import Incident

__all__ = [
    "Attempts",
    "Backoff",
    "DeliveryFailed",
    "DeliveryReceipt",
    "DeliveryStatus",
    "Notification",
    "NotificationReason",
    "Receiver",
]


class DeliveryStatus(StrEnum):
    delivered = "delivered"
    partial = "partial"  # a receiver group where some integrations failed
    failed = "failed"


class NotificationReason(StrEnum):
    first = "first"
    """A group's first notification."""
    update = "update"
    """New incidents joined a group already notified."""
    repeat = "repeat"
    """A reminder: nothing new, nothing resolved, ``repeat_interval`` later."""
    escalation = "escalation"
    """An escalation policy's level: nobody acknowledged in time."""


@dataclass(frozen=True)
class Notification:
    """One message to one receiver: an aggregation group's flush or an escalation step.

    ``incidents`` come lead first: the new ones of an update, every active one of a first
    notification or a reminder. ``not_listed`` counts the group's active incidents that are
    not in ``incidents`` (past the group's cap, or no longer stored).
    """

    key: str
    """Idempotency key: the same for a resend of the same notification."""
    receiver: str
    incidents: tuple[Incident, ...]
    reason: NotificationReason = NotificationReason.first
    group_labels: dict[str, str] = field(default_factory=dict)
    active: int = 0
    """Unresolved incidents in the group, the listed ones included."""
    not_listed: int = 0
    escalation_level: int | None = None

    def __post_init__(self) -> None:
        if not self.incidents:
            raise ValueError("a notification needs at least one incident")

    @property
    def lead(self) -> Incident:
        return self.incidents[0]

    @property
    def others(self) -> tuple[Incident, ...]:
        return self.incidents[1:]

    @classmethod
    def of(cls, incident: Incident, receiver: str = "") -> Notification:
        """A notification of one incident (a group of one)."""
        return cls(key=incident.incident_id, receiver=receiver, incidents=(incident,), active=1)


class DeliveryReceipt(BaseModel):
    """The record of one delivery attempt chain to one receiver (every delivery is recorded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    receiver: str = Field(description="The receiver's name in the routing config.")
    kind: str = Field(description="slack, email, console, or group for several integrations.")
    incident_id: str = Field(description="The notification's lead incident.")
    notification_key: str = Field(default="", description="The notification's idempotency key.")
    status: DeliveryStatus
    attempts: int = Field(ge=0)
    detail: str = ""
    response_code: int | None = Field(
        default=None, description="The last HTTP status or SMTP reply code, when there was one."
    )
    parts: tuple[DeliveryReceipt, ...] = Field(
        default=(), description="One receipt per integration, for a group."
    )
    reference: str | None = Field(
        default=None,
        description="Where the message landed, when the receiver learns it: CHANNEL/ts for "
        "Slack's chat.postMessage (the message that buttons later update).",
    )
    started_at: UtcDatetime = Field(default_factory=utc_now)
    finished_at: UtcDatetime = Field(default_factory=utc_now)

    @property
    def ok(self) -> bool:
        return self.status is DeliveryStatus.delivered


class DeliveryFailed(Exception):
    """A delivery gave up: a permanent error, or retries exhausted. ``receipt`` says why."""

    def __init__(self, receipt: DeliveryReceipt) -> None:
        self.receipt = receipt
        super().__init__(
            f"delivery of incident {receipt.incident_id} to {receipt.kind} receiver "
            f"{receipt.receiver!r} failed after {receipt.attempts} attempt(s): {receipt.detail}"
        )


class Receiver(ABC):
    """Something that tells humans about an incident."""

    name: str
    kind: str

    @abstractmethod
    async def deliver(self, notification: Notification) -> DeliveryReceipt:
        """Deliver once (retrying transient failures); raise ``DeliveryFailed`` on giving up."""

    async def aclose(self) -> None:
        """Release connections the receiver owns."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind})>"


class Attempts:
    """One delivery's attempt count and last response code, and the receipt they make."""

    def __init__(self, receiver: Receiver, notification: Notification) -> None:
        self.receiver = receiver
        self.incident_id = notification.lead.incident_id
        self.notification_key = notification.key
        self.started = utc_now()
        self.count = 0
        self.code: int | None = None

    def next(self) -> int:
        self.count += 1
        return self.count

    def receipt(
        self, status: DeliveryStatus, detail: str, reference: str | None = None
    ) -> DeliveryReceipt:
        return DeliveryReceipt(
            receiver=self.receiver.name,
            kind=self.receiver.kind,
            incident_id=self.incident_id,
            notification_key=self.notification_key,
            status=status,
            attempts=self.count,
            detail=detail,
            response_code=self.code,
            reference=reference,
            started_at=self.started,
            finished_at=utc_now(),
        )


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential backoff: ``initial * 2**(n-1)``, capped at ``maximum``, with a
    little jitter (up to ``jitter`` of the delay, subtracted, so the cap holds)."""

    initial_s: float = 0.5
    maximum_s: float = 10.0
    jitter: float = 0.2

    def delay(self, failed_attempts: int) -> float:
        base = min(self.maximum_s, self.initial_s * 2 ** max(0, failed_attempts - 1))
        return base * (1 - random.uniform(0, self.jitter)) if self.jitter else base
