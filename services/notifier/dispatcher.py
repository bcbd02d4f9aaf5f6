"""The notifier's engine: admits incidents into aggregation groups and escalations, applies
moderators' decisions, and sends whatever is due, on any number of replicas.

State lives in MongoDB only (``store``, ``state``), so a restart resends nothing and forgets
nothing: a notification is recorded as sent before its group's timer moves on, and a timer
whose sender died is taken over when its lease runs out. A crash between a delivery and its
record can repeat that one notification (at least once); nothing is ever skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from schemas import Incident
from schemas.feedback import FeedbackAction, ModeratorFeedback
from services.notifier import escalation, grouping
from services.notifier.admission import admit
from services.notifier.delivery import Deliverer, DeliveryMetrics
from services.notifier.receivers.base import Notification, NotificationReason
from services.notifier.routing.config import RoutingConfig
from services.notifier.routing.tree import match_route
from services.notifier.silences.store import SilenceStore
from services.notifier.state import NotificationLog, expired
from services.notifier.store import Leased, escalation_timers, group_timers

__all__ = ["Dispatcher"]

log = logging.getLogger("steward.notifier")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        db: AsyncDatabase,
        routing: RoutingConfig,
        deliverer: Deliverer,
        notifications: NotificationLog,
        silences: SilenceStore,
        metrics: DeliveryMetrics,
        *,
        clock: Clock = utc_now,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        active_for: timedelta = timedelta(hours=24),
        poll: timedelta = timedelta(seconds=1),
        concurrency: int = 32,
        prefix: str = "notifier",
        silence_refresh: timedelta = timedelta(seconds=1),
    ) -> None:
        self.routing = routing
        self.deliverer = deliverer
        self.notifications = notifications
        self.silences = silences
        self.metrics = metrics
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.groups = group_timers(db[f"{prefix}_groups"], self.owner)
        self.escalations = escalation_timers(db[f"{prefix}_escalations"], self.owner)
        self.lease = lease
        self.active_for = active_for
        self.poll = poll
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self.silence_refresh = silence_refresh
        self._silences: tuple[float, list] = (-1e18, [])

    async def create_indexes(self) -> None:
        await self.notifications.create_indexes()
        await self.groups.create_indexes()
        await self.escalations.create_indexes()

    # ------------------------------------------------------------------ incoming

    async def admit(self, incident: Incident, traceparent: str | None = None) -> None:
        """Take in an incident (idempotent: a redelivered one changes nothing)."""
        await self.admit_many([(incident, traceparent)])

    async def admit_many(self, batch: Sequence[tuple[Incident, str | None]]) -> None:
        """Take in a batch of incidents, each with its traceparent, in a few round trips.
        Idempotent: a redelivered incident changes nothing. The groups that are due at once
        (``group_wait`` 0) are sent from here, under the lease they were written with."""
        now = self.clock()
        batch = list({incident.incident_id: (incident, tp) for incident, tp in batch}.values())
        new = await self.notifications.remember_incidents(batch, now)
        known = [incident.incident_id for incident, _ in batch if incident.incident_id not in new]
        if known:  # redelivered: go on only with those still active (a crash may have cut them short)
            stored = await self.notifications.load(known)
            closed = {i for i in known if i not in stored or not stored[i][1]["active"]}
            batch = [(incident, tp) for incident, tp in batch if incident.incident_id not in closed]
        if not batch:
            return
        silences = await self._current_silences(now)
        sources = await self._possible_sources([incident.labels() for incident, _ in batch], now)
        held: list[tuple[str, str, str]] = []
        changes: dict[str, list] = {}
        escalations: list[tuple[Incident, str]] = []
        for incident, _ in batch:
            labels = incident.labels()
            decision = admit(labels, self.routing, now, silences=silences,
                             active=[s for s in sources if s != labels])
            if decision.held_back is not None:
                self.metrics.suppressed.labels(decision.held_back).inc()
                held.append((incident.incident_id, "", decision.detail))
                continue
            for receiver, reason in decision.muted:
                self.metrics.suppressed.labels("muted").inc()
                held.append((incident.incident_id, receiver, reason))
            for route in decision.routes:
                changes.setdefault(route.group_key(labels), []).append((route, incident.incident_id, labels))
            if decision.escalation_policy is not None:
                escalations.append((incident, decision.escalation_policy))
        await self.notifications.suppressed(held)
        leased = await self.groups.change_many(
            {key: _adding(items, now) for key, items in changes.items()},
            now=now.timestamp(), lease_s=self.lease.total_seconds())
        for incident, name in escalations:
            policy = self.routing.escalation_policy(name)
            await self.escalations.change(
                incident.incident_id,
                lambda state, incident=incident, policy=policy: state or escalation.start(policy, incident.incident_id, now))
        admitted = {incident.incident_id: (incident, {"active": True, "traceparent": tp, "raised_epoch": now.timestamp()})
                    for incident, tp in batch}
        for key, held_lease in leased.items():
            self._start(f"group:{key}", self._flush_group(key, held_lease, admitted))
        self._wake.set()

    async def _current_silences(self, now: datetime) -> list:
        """Silences not over, read at most once per ``silence_refresh``: a silence takes effect
        on every replica within that time."""
        fetched, cached = self._silences
        if time.monotonic() - fetched >= self.silence_refresh.total_seconds():
            cached = await self.silences.current(now)
            self._silences = (time.monotonic(), cached)
        return cached

    async def _possible_sources(self, targets: Sequence[dict[str, str]], now: datetime) -> list[dict[str, str]]:
        """The active incidents that could inhibit any of ``targets``: none to look up when no
        rule targets them, and only those sharing the labels every such rule wants equal.
        The targets themselves are among the sources (a critical one in the same batch)."""
        alike = []
        for labels in targets:
            rules = [r for r in self.routing.inhibit_rules if all(m.matches(labels) for m in r.target_matchers)]
            if rules:
                shared = set.intersection(*(set(r.equal) for r in rules))
                same = {name: labels.get(name, "") for name in sorted(shared)}
                if same not in alike:
                    alike.append(same)
        if not alike:
            return []
        return [*await self.notifications.active_labels(now - self.active_for, alike), *targets]

    async def decide(self, feedback: ModeratorFeedback) -> None:
        """Apply a moderator's decision: stop its escalation, close it, or escalate now."""
        now = self.clock()
        incident_id = feedback.incident_id
        if feedback.action in escalation.STOPPING_ACTIONS:
            await self.escalations.change(
                incident_id, lambda s: escalation.acknowledge(s, feedback.decided_at) if s else None)
        if feedback.action in (FeedbackAction.resolved, FeedbackAction.false_positive):
            await self._close(incident_id, feedback.action.value, now)
        if feedback.action is FeedbackAction.escalated:
            await self.escalations.change(incident_id, lambda s: escalation.escalate_now(s, now) if s else None)
        self._wake.set()

    async def _close(self, incident_id: str, why: str, now: datetime) -> None:
        await self.notifications.close_incident(incident_id, why)
        found = await self.notifications.load([incident_id])
        if not found:
            return
        incident, _ = found[incident_id]
        labels = incident.labels()
        for route in match_route(self.routing.route, labels):
            await self.groups.change(route.group_key(labels),
                                     lambda s: grouping.resolve(s, incident_id, now) if s else None)

    # ------------------------------------------------------------------ sending

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is due until ``stop`` is set; sleeps until the next timer or a wake-up."""
        while not stop.is_set():
            try:
                await self.send_due()
                wait = await self._until_next()
            except asyncio.CancelledError:
                raise
            except Exception:  # a store outage: keep the loop alive, try again shortly
                log.exception("notifier scheduler pass failed; retrying")
                wait = self.poll.total_seconds()
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self.drain()

    async def drain(self) -> None:
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def send_due(self) -> None:
        """Start a sender for every due group and escalation not already being sent."""
        now = self.clock().timestamp()
        for kind, store, send in (("group", self.groups, self._flush_group),
                                  ("escalation", self.escalations, self._escalate)):
            for key in await store.due_keys(now):
                slot = f"{kind}:{key}"
                if slot not in self._in_flight:
                    self._start(slot, send(key))

    async def _guarded(self, send: Awaitable[None], slot: str) -> None:
        async with self._slots:
            try:
                await send
            except asyncio.CancelledError:
                raise
            except Exception:  # the lease runs out and the next pass retries it
                log.exception("sending %s failed; it stays due", slot)

    async def _until_next(self) -> float:
        now = self.clock().timestamp()
        times = [t for t in (await self.groups.next_due(now), await self.escalations.next_due(now)) if t is not None]
        poll = self.poll.total_seconds()
        return max(0.0, min([poll, *(t - now for t in times)])) if times else poll

    def _start(self, slot: str, send: Awaitable[None]) -> None:
        task = asyncio.create_task(self._guarded(send, slot))
        self._in_flight[slot] = task
        task.add_done_callback(lambda _: self._in_flight.pop(slot, None))

    async def _flush_group(self, key: str, held: Leased | None = None,
                           known: Mapping[str, tuple[Incident, Mapping]] | None = None) -> None:
        """Send the group's due notification. ``held``: the lease this replica wrote the group
        with just now (its first notification, which nobody can have sent); ``known``: the
        incidents as just admitted, so they need not be read back."""
        now = self.clock()
        fresh = held is not None
        if held is None:
            held = await self.groups.lease(key, now.timestamp(), self.lease.total_seconds())
            if held is None:
                return
        flush = grouping.due(held.state, now)
        if flush is None:
            await self.groups.change(key, lambda s: s, release=True)
            return
        found = dict(known or {})
        missing = [i for i in flush.active_incident_ids if i not in found]
        if missing:
            found.update(await self.notifications.load(missing))
        ids = (flush.new_incident_ids if flush.kind is grouping.FlushKind.update else ()) or flush.active_incident_ids
        gone = [i for i in flush.active_incident_ids
                if i not in found or not found[i][1]["active"] or expired(found[i][1]["raised_epoch"], now, self.active_for)]
        if gone:  # closed meanwhile, or too old to remind anyone of: they leave the group
            for incident_id in gone:
                if incident_id in found and found[incident_id][1]["active"]:
                    await self.notifications.close_incident(incident_id, "expired")
            await self.groups.change(key, lambda s: _without(s, gone, now), release=True)
            self._wake.set()
            return
        listed = tuple(found[i][0] for i in ids if i in found)
        notification = Notification(
            key=flush.key, receiver=flush.receiver, incidents=listed, reason=NotificationReason(flush.kind.value),
            group_labels=flush.group_labels, active=len(flush.active_incident_ids) + flush.overflow,
            not_listed=flush.new_overflow if flush.kind is grouping.FlushKind.update else flush.overflow)
        await self.deliverer.send(notification, found[listed[0].incident_id][1]["traceparent"], fresh=fresh)
        await self.groups.change(key, lambda s: grouping.flushed(s, flush, self.clock()) if s else None,
                                 release=True, held=held)

    async def _escalate(self, incident_id: str) -> None:
        now = self.clock()
        held = await self.escalations.lease(incident_id, now.timestamp(), self.lease.total_seconds())
        if held is None:
            return
        step = escalation.due(held.state, now)
        found = await self.notifications.load([incident_id])
        if step is None or incident_id not in found:
            await self.escalations.change(incident_id, lambda s: s, release=True)
            return
        incident, extra = found[incident_id]
        for receiver in step.receivers:
            notification = Notification(
                key=step.key, receiver=receiver, incidents=(incident,), reason=NotificationReason.escalation,
                active=1, escalation_level=step.level)
            await self.deliverer.send(notification, extra["traceparent"])
        await self.escalations.change(
            incident_id, lambda s: escalation.advanced(s, step, self.clock()) if s else None, release=True, held=held)


def _adding(items, now: datetime):
    def apply(state: grouping.GroupState | None) -> grouping.GroupState:
        for route, incident_id, labels in items:
            state = grouping.add(state, incident_id, route, now, labels=labels)
        return state
    return apply


def _without(state: grouping.GroupState | None, incident_ids, now: datetime) -> grouping.GroupState | None:
    for incident_id in incident_ids:
        if state is None:
            return None
        state = grouping.resolve(state, incident_id, now)
    return state
