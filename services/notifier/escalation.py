"""Escalation policies: who is notified next when nobody acknowledges an incident.

PagerDuty-style: a policy has ordered levels, each with receivers and a timeout, and
``repeat`` (how many more times the whole sequence runs after its last level). An incident
starts at level 0; a level that times out unacknowledged hands over to the next one; after
the last level the sequence restarts at level 0, ``repeat`` times, then escalation stops.

An ``acknowledged``, ``resolved`` or ``false_positive`` decision stops it
(``STOPPING_ACTIONS``). Boundary rule: an acknowledgement at or before a level's deadline
wins; ``due`` escalates only strictly after the deadline.

The state keeps a snapshot of the policy's levels (and its fingerprint) from ``start``: a
running escalation finishes the policy it started with, whatever the config says later.

Pure: every function takes ``now``; no clock, no I/O. Each step is numbered (``step``):
``due`` gives the same ``Escalate`` until ``advanced`` records its delivery, so a crash in
between resends the step instead of skipping it, and recording it twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.feedback import FeedbackAction
from services.notifier.routing.config import EscalationLevel, EscalationPolicy

__all__ = [
    "STOPPING_ACTIONS",
    "Escalate",
    "EscalationLevel",
    "EscalationPolicy",
    "EscalationState",
    "acknowledge",
    "advanced",
    "due",
    "escalate_now",
    "is_current",
    "next_wakeup",
    "start",
]

STOPPING_ACTIONS = frozenset(
    {
        FeedbackAction.acknowledged,
        FeedbackAction.resolved,
        FeedbackAction.false_positive,
    }
)
"""Moderator decisions that count as an acknowledgement."""

DOCUMENT_VERSION = 1
_TICK = timedelta(microseconds=1)
"""datetime's resolution: the first instant strictly after a deadline is deadline + 1µs."""


@dataclass(frozen=True)
class EscalationState:
    """One incident's escalation, as stored between wake-ups."""

    incident_id: str
    policy_name: str
    policy_fingerprint: str
    levels: tuple[EscalationLevel, ...]
    """The policy's levels when the escalation started (pinned against config changes)."""
    repeat: int
    started_at: datetime
    steps: int = 0
    """Levels notified so far, over every cycle; the next step has this number."""
    notified_at: datetime | None = None
    """When the current level (step ``steps - 1``) was notified."""
    acknowledged_at: datetime | None = None

    @property
    def total_steps(self) -> int:
        return len(self.levels) * (self.repeat + 1)

    @property
    def level(self) -> int | None:
        """Index of the level notified last, ``None`` before the first."""
        return (self.steps - 1) % len(self.levels) if self.steps else None

    @property
    def cycle(self) -> int | None:
        """Which pass through the levels (0 = the first), ``None`` before the first."""
        return (self.steps - 1) // len(self.levels) if self.steps else None

    @property
    def deadline(self) -> datetime | None:
        """Acknowledge at or before this to stop the next step."""
        if self.notified_at is None or self.level is None:
            return None
        return self.notified_at + self.levels[self.level].timeout

    @property
    def exhausted(self) -> bool:
        """Every level of every cycle was notified: nothing further will happen."""
        return self.steps >= self.total_steps

    @property
    def finished(self) -> bool:
        return self.acknowledged_at is not None or self.exhausted

    @property
    def escalate_at(self) -> datetime | None:
        """The first instant ``due`` returns a step, ``None`` when none will come."""
        if self.finished:
            return None
        if self.steps == 0:
            return self.started_at
        assert self.deadline is not None
        return self.deadline + _TICK

    def to_document(self) -> dict[str, Any]:
        """A plain dict for MongoDB; ``_id`` is the incident id. Timeouts in integer ms."""
        return {
            "_id": self.incident_id,
            "v": DOCUMENT_VERSION,
            "policy": self.policy_name,
            "policy_fingerprint": self.policy_fingerprint,
            "levels": [
                {"receivers": list(lv.receivers), "timeout_ms": _ms(lv.timeout)}
                for lv in self.levels
            ],
            "repeat": self.repeat,
            "started_at": self.started_at,
            "steps": self.steps,
            "notified_at": self.notified_at,
            "acknowledged_at": self.acknowledged_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> EscalationState:
        if doc.get("v", DOCUMENT_VERSION) != DOCUMENT_VERSION:
            raise ValueError(
                f"unsupported escalation document version {doc.get('v')!r}"
            )
        levels = tuple(
            EscalationLevel(
                receivers=tuple(lv["receivers"]),
                timeout=timedelta(milliseconds=lv["timeout_ms"]),
            )
            for lv in doc["levels"]
        )
        return cls(
            incident_id=doc["_id"],
            policy_name=doc["policy"],
            policy_fingerprint=doc["policy_fingerprint"],
            levels=levels,
            repeat=int(doc["repeat"]),
            started_at=_utc(doc["started_at"]),
            steps=int(doc.get("steps", 0)),
            notified_at=_utc_or_none(doc.get("notified_at")),
            acknowledged_at=_utc_or_none(doc.get("acknowledged_at")),
        )


@dataclass(frozen=True)
class Escalate:
    """Notify one level's receivers about an incident."""

    incident_id: str
    policy_name: str
    step: int
    level: int
    cycle: int
    receivers: tuple[str, ...]
    timeout: timedelta
    """How long these receivers get to acknowledge once notified."""

    @property
    def key(self) -> str:
        """Idempotency key of this notification: equal for a resend after a crash."""
        return f"{self.incident_id}#escalation-{self.step}"


def start(
    policy: EscalationPolicy, incident_id: str, now: datetime, *, notified: bool = False
) -> EscalationState:
    """Begin escalating ``incident_id`` under ``policy``: level 0 is due at once.

    ``notified=True`` when the caller already delivered level 0 at ``now`` (e.g. as the
    routing notification): its timeout then runs from ``now``.
    """
    _check_aware(now)
    state = EscalationState(
        incident_id=incident_id,
        policy_name=policy.name,
        policy_fingerprint=policy.fingerprint,
        levels=policy.levels,
        repeat=policy.repeat,
        started_at=now,
    )
    return replace(state, steps=1, notified_at=now) if notified else state


def acknowledge(state: EscalationState, now: datetime) -> EscalationState:
    """Stop escalating (a ``STOPPING_ACTIONS`` decision). ``now`` is the decision time.

    The first acknowledgement is kept; later ones change nothing. A step already delivered
    stays delivered: an acknowledgement only prevents the ones after it.
    """
    _check_aware(now)
    if state.acknowledged_at is not None:
        return state
    return replace(state, acknowledged_at=now)


def escalate_now(state: EscalationState, now: datetime) -> EscalationState:
    """A moderator pressed Escalate: the current level's time counts as spent, so the next
    step is due at ``now``. Nothing changes once the escalation is finished or when no
    level was notified yet (level 0 is due already)."""
    _check_aware(now)
    if state.finished or state.level is None:
        return state
    spent = now - state.levels[state.level].timeout - _TICK
    return replace(state, notified_at=min(state.notified_at or spent, spent))


def due(state: EscalationState, now: datetime) -> Escalate | None:
    """The level to notify at ``now``, or ``None``; the same answer until ``advanced``."""
    _check_aware(now)
    at = state.escalate_at
    if at is None or now < at:
        return None
    step = state.steps
    level = step % len(state.levels)
    return Escalate(
        incident_id=state.incident_id,
        policy_name=state.policy_name,
        step=step,
        level=level,
        cycle=step // len(state.levels),
        receivers=state.levels[level].receivers,
        timeout=state.levels[level].timeout,
    )


def advanced(
    state: EscalationState, escalate: Escalate, now: datetime
) -> EscalationState:
    """Record that ``escalate`` was delivered at ``now``: its level's timeout starts now.

    Call it only after delivery succeeded. Recording a step twice is a no-op. The deadline
    runs from the delivery, so after an outage each level still gets its full timeout.
    """
    _check_aware(now)
    if escalate.incident_id != state.incident_id:
        raise ValueError(
            f"step of {escalate.incident_id!r} applied to {state.incident_id!r}"
        )
    if escalate.step < state.steps:
        return state
    if escalate.step != state.steps:
        raise ValueError(
            f"step {escalate.step} of {state.incident_id!r} skips step {state.steps}"
        )
    return replace(state, steps=state.steps + 1, notified_at=now)


def is_current(state: EscalationState, policy: EscalationPolicy) -> bool:
    """Whether ``state`` runs the same version of ``policy`` as the config has now."""
    return (
        state.policy_name == policy.name
        and state.policy_fingerprint == policy.fingerprint
    )


def next_wakeup(states: Iterable[EscalationState | None]) -> datetime | None:
    """The earliest time any of ``states`` has a step due (``None`` entries skipped)."""
    times = (s.escalate_at for s in states if s is not None)
    return min((t for t in times if t is not None), default=None)


# --------------------------------------------------------------------------- helpers


def _check_aware(now: datetime) -> None:
    # Comparing naive and aware datetimes raises deep inside; fail at the door instead.
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")


def _utc(value: datetime) -> datetime:
    # pymongo returns naive datetimes (UTC) unless the client is tz_aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)
