"""Aggregation groups: when the incidents of one (route, group labels) are notified.

Alertmanager semantics (``dispatch/dispatch.go``, ``notify.DedupStage``):

- an incident joins the group of its route and group labels (``MatchedRoute.group_key``);
- a new group is first flushed ``group_wait`` after its first incident, so a burst goes
  out as one notification (``group_wait`` 0: at once);
- later incidents are flushed at the next ``group_interval`` tick after the last flush
  (ticks at ``last_flush + k * group_interval``);
- with nothing new, the group is notified again ``repeat_interval`` after its last flush;
- resolved / false-positive incidents leave the group; an empty group is closed (``None``),
  so a group with nothing unresolved is never repeated.

Pure: every function takes ``now`` and returns a new ``GroupState``; no clock, no I/O. The
caller stores states (``to_document``), wakes at ``next_wakeup``, asks ``due`` and, only
after delivery succeeded, records it with ``flushed``. A crash in between leaves the stored
state as it was, so the same ``Flush`` (same ``sequence``) is produced again: it is resent,
never lost, and ``Flush.key`` lets a delivery log recognise the replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from services.notifier.routing.tree import MatchedRoute

__all__ = [
    "MAX_INCIDENTS_PER_GROUP",
    "Flush",
    "FlushKind",
    "GroupState",
    "add",
    "due",
    "flushed",
    "next_wakeup",
    "resolve",
]

MAX_INCIDENTS_PER_GROUP = 1000
"""Incident ids kept per group. Beyond it arrivals are only counted (``overflow``): a
runaway rule must not grow one MongoDB document past its 16 MiB limit."""

DOCUMENT_VERSION = 1


class FlushKind(StrEnum):
    first = "first"
    """The group's first notification, ``group_wait`` after its first incident."""
    update = "update"
    """New incidents since the last notification, at a ``group_interval`` tick."""
    repeat = "repeat"
    """Nothing new: a reminder ``repeat_interval`` after the last notification."""


@dataclass(frozen=True)
class GroupState:
    """One aggregation group, as stored between wake-ups."""

    group_key: str
    receiver: str
    route_key: str
    group_labels: dict[str, str]
    # the timings are pinned when the group opens: a config reload that changes them
    # usually changes the route key too, and then opens new groups anyway
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    first_seen: datetime
    next_flush_at: datetime
    incident_ids: tuple[str, ...]
    """The unresolved incidents of the group, oldest first (at most the cap)."""
    pending_ids: tuple[str, ...]
    """Those of ``incident_ids`` not notified yet."""
    overflow: int = 0
    """Arrivals counted but not kept because the group was full (not deduplicated)."""
    pending_overflow: int = 0
    """Of ``overflow``, those not announced in a notification yet."""
    last_flush: datetime | None = None
    flushes: int = 0
    """Notifications recorded so far; the next one has ``sequence = flushes + 1``."""

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_ids) or self.pending_overflow > 0

    def to_document(self) -> dict[str, Any]:
        """A plain dict for MongoDB; ``_id`` is the group key. Durations in integer ms."""
        return {
            "_id": self.group_key,
            "v": DOCUMENT_VERSION,
            "receiver": self.receiver,
            "route_key": self.route_key,
            "group_labels": dict(self.group_labels),
            "group_wait_ms": _ms(self.group_wait),
            "group_interval_ms": _ms(self.group_interval),
            "repeat_interval_ms": _ms(self.repeat_interval),
            "first_seen": self.first_seen,
            "next_flush_at": self.next_flush_at,
            "last_flush": self.last_flush,
            "flushes": self.flushes,
            "incident_ids": list(self.incident_ids),
            "pending_ids": list(self.pending_ids),
            "overflow": self.overflow,
            "pending_overflow": self.pending_overflow,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> GroupState:
        if doc.get("v", DOCUMENT_VERSION) != DOCUMENT_VERSION:
            raise ValueError(f"unsupported group document version {doc.get('v')!r}")
        return cls(
            group_key=doc["_id"],
            receiver=doc["receiver"],
            route_key=doc["route_key"],
            group_labels=dict(doc["group_labels"]),
            group_wait=timedelta(milliseconds=doc["group_wait_ms"]),
            group_interval=timedelta(milliseconds=doc["group_interval_ms"]),
            repeat_interval=timedelta(milliseconds=doc["repeat_interval_ms"]),
            first_seen=_utc(doc["first_seen"]),
            next_flush_at=_utc(doc["next_flush_at"]),
            last_flush=_utc(doc["last_flush"])
            if doc.get("last_flush") is not None
            else None,
            flushes=int(doc.get("flushes", 0)),
            incident_ids=tuple(doc["incident_ids"]),
            pending_ids=tuple(doc["pending_ids"]),
            overflow=int(doc.get("overflow", 0)),
            pending_overflow=int(doc.get("pending_overflow", 0)),
        )


@dataclass(frozen=True)
class Flush:
    """One notification to send for a group."""

    group_key: str
    receiver: str
    group_labels: dict[str, str]
    kind: FlushKind
    sequence: int
    """1 for the group's first notification, then +1 each; a replay keeps its number."""
    new_incident_ids: tuple[str, ...]
    active_incident_ids: tuple[str, ...]
    """Every unresolved incident kept in the group, the new ones included."""
    due_at: datetime
    """When it became due (``next_flush_at``); the send may come later."""
    new_overflow: int = 0
    """Arrivals past the cap since the last notification (counted, not listed)."""
    overflow: int = 0
    opened_at: datetime | None = None
    """When the group opened (its ``first_seen``)."""

    @property
    def key(self) -> str:
        """Idempotency key of this notification: equal for a resend after a crash, and
        different for a group that closed and opened again with the same labels."""
        opened = round(self.opened_at.timestamp() * 1000) if self.opened_at else 0
        return f"{self.group_key}@{opened}#{self.sequence}"


def add(
    state: GroupState | None,
    incident_id: str,
    route: MatchedRoute,
    now: datetime,
    *,
    labels: Mapping[str, str],
    cap: int = MAX_INCIDENTS_PER_GROUP,
) -> GroupState:
    """Put ``incident_id`` (with routing ``labels``) in its group on ``route``.

    ``state`` is the group's stored state, ``None`` when it has none yet. Adding an id
    already in the group is a no-op (a redelivered incident). The caller must not add an
    incident it knows is resolved: the group does not remember ids that left it.
    """
    _check_aware(now)
    group_key = route.group_key(labels)
    if state is None:
        return GroupState(
            group_key=group_key,
            receiver=route.receiver,
            route_key=route.key,
            group_labels=route.group_labels(labels),
            group_wait=route.group_wait,
            group_interval=route.group_interval,
            repeat_interval=route.repeat_interval,
            first_seen=now,
            next_flush_at=now + route.group_wait,
            incident_ids=(incident_id,),
            pending_ids=(incident_id,),
        )
    if state.group_key != group_key:
        raise ValueError(
            f"incident {incident_id!r} belongs to {group_key!r}, not {state.group_key!r}"
        )
    if incident_id in state.incident_ids:
        return state
    if len(state.incident_ids) >= cap:
        grown = replace(
            state,
            overflow=state.overflow + 1,
            pending_overflow=state.pending_overflow + 1,
        )
    else:
        grown = replace(
            state,
            incident_ids=(*state.incident_ids, incident_id),
            pending_ids=(*state.pending_ids, incident_id),
        )
    # Already waiting for a flush: the earliest pending arrival set the time, keep it.
    if state.has_pending:
        return grown
    return replace(grown, next_flush_at=_schedule(grown, now))


def resolve(state: GroupState, incident_id: str, now: datetime) -> GroupState | None:
    """Take a resolved (or false-positive) incident out; ``None`` when the group closes.

    An id the group does not hold (or one counted only as overflow) changes nothing.
    """
    _check_aware(now)
    if incident_id not in state.incident_ids:
        return state
    remaining = tuple(i for i in state.incident_ids if i != incident_id)
    if not remaining:
        return None
    shrunk = replace(
        state,
        incident_ids=remaining,
        pending_ids=tuple(i for i in state.pending_ids if i != incident_id),
    )
    # If the last pending incident went, the group is waiting for a repeat, not an update.
    if state.has_pending and not shrunk.has_pending:
        return replace(shrunk, next_flush_at=_schedule(shrunk, now))
    return shrunk


def due(state: GroupState, now: datetime) -> Flush | None:
    """The notification to send at ``now``, or ``None`` when nothing is due yet.

    Asking twice without ``flushed`` in between gives the same answer (same ``sequence``).
    """
    _check_aware(now)
    if now < state.next_flush_at:
        return None
    if state.last_flush is None:
        kind = FlushKind.first
    elif state.has_pending:
        kind = FlushKind.update
    else:
        kind = FlushKind.repeat
    return Flush(
        group_key=state.group_key,
        receiver=state.receiver,
        group_labels=dict(state.group_labels),
        kind=kind,
        sequence=state.flushes + 1,
        new_incident_ids=state.pending_ids,
        active_incident_ids=state.incident_ids,
        new_overflow=state.pending_overflow,
        overflow=state.overflow,
        due_at=state.next_flush_at,
        opened_at=state.first_seen,
    )


def flushed(state: GroupState, flush: Flush, now: datetime) -> GroupState:
    """Record that ``flush`` was delivered at ``now`` and set the next timer.

    Call it only after delivery succeeded. Recording the same flush twice is a no-op.
    Incidents that arrived between ``due`` and now stay pending for the next tick.
    """
    _check_aware(now)
    if flush.group_key != state.group_key:
        raise ValueError(f"flush of {flush.group_key!r} applied to {state.group_key!r}")
    if flush.sequence <= state.flushes:
        return state  # already recorded: a replayed acknowledgement of the delivery
    if flush.sequence != state.flushes + 1:
        raise ValueError(
            f"flush #{flush.sequence} of {state.group_key!r} skips #{state.flushes + 1}"
        )
    sent = set(flush.new_incident_ids)
    after = replace(
        state,
        pending_ids=tuple(i for i in state.pending_ids if i not in sent),
        pending_overflow=max(0, state.pending_overflow - flush.new_overflow),
        last_flush=now,
        flushes=state.flushes + 1,
    )
    return replace(after, next_flush_at=_schedule(after, now))


def next_wakeup(states: Iterable[GroupState | None]) -> datetime | None:
    """The earliest time any of ``states`` has something due (``None`` entries skipped)."""
    return min((s.next_flush_at for s in states if s is not None), default=None)


# --------------------------------------------------------------------------- helpers


def _schedule(state: GroupState, now: datetime) -> datetime:
    """When the group next has something due, given its contents at ``now``."""
    if state.last_flush is None:
        return state.first_seen + state.group_wait
    repeat_at = state.last_flush + state.repeat_interval
    if not state.has_pending:
        return repeat_at
    # The first group_interval tick after the last flush that is not in the past; a group
    # idle for hours still sends new incidents at most one interval after they arrive.
    elapsed = now - state.last_flush
    ticks = max(1, -(-elapsed // state.group_interval))
    return min(repeat_at, state.last_flush + ticks * state.group_interval)


def _check_aware(now: datetime) -> None:
    # Comparing naive and aware datetimes raises deep inside; fail at the door instead.
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")


def _utc(value: datetime) -> datetime:
    # pymongo returns naive datetimes (UTC) unless the client is tz_aware.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)
