"""Aggregation groups on a controllable clock: plain datetimes the tests advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.grouping import (
    Flush,
    FlushKind,
    GroupState,
    add,
    due,
    flushed,
    next_wakeup,
    resolve,
)
from services.notifier.routing.config import Matcher, MatchOp
from services.notifier.routing.tree import MatchedRoute

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
LABELS = {"community": "c1", "severity": "high", "category": "harassment"}


def route(
    group_wait: timedelta = 30 * S,
    group_interval: timedelta = 5 * M,
    repeat_interval: timedelta = 4 * 60 * M,
) -> MatchedRoute:
    return MatchedRoute(
        receiver="moderators",
        group_by=("community",),
        group_by_all=False,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=repeat_interval,
        continue_=False,
        path=(0,),
        matchers=((), (Matcher("severity", MatchOp.eq, "high"),)),
    )


def add_all(state: GroupState | None, ids: list[str], r: MatchedRoute, now: datetime):
    for incident_id in ids:
        state = add(state, incident_id, r, now, labels=LABELS)
    return state


def send(state: GroupState, now: datetime) -> tuple[GroupState, Flush]:
    """Deliver what is due at ``now`` (it must be due) and record it."""
    flush = due(state, now)
    assert flush is not None, f"nothing due at {now - T0}"
    return flushed(state, flush, now), flush


# --------------------------------------------------------------------------- timers


def test_group_wait_batches_a_burst_into_one_first_notification() -> None:
    r = route()
    state = add(None, "i1", r, T0, labels=LABELS)
    state = add(state, "i2", r, T0 + 10 * S, labels=LABELS)
    state = add(state, "i3", r, T0 + 29 * S, labels=LABELS)
    assert due(state, T0 + 29 * S) is None
    assert next_wakeup([state]) == T0 + 30 * S

    state, flush = send(state, T0 + 30 * S)
    assert flush.kind is FlushKind.first
    assert flush.new_incident_ids == ("i1", "i2", "i3")
    assert flush.active_incident_ids == ("i1", "i2", "i3")
    assert flush.sequence == 1 and flush.receiver == "moderators"
    assert flush.group_labels == {"community": "c1"}
    assert state.pending_ids == () and state.last_flush == T0 + 30 * S


def test_later_incidents_wait_for_the_next_group_interval_tick() -> None:
    r = route()
    state, _ = send(add(None, "i1", r, T0, labels=LABELS), T0 + 30 * S)
    first_flush = T0 + 30 * S

    state = add_all(state, ["i2"], r, first_flush + 1 * M)
    state = add_all(state, ["i3"], r, first_flush + 4 * M)
    assert next_wakeup([state]) == first_flush + 5 * M
    assert due(state, first_flush + 5 * M - S) is None

    state, flush = send(state, first_flush + 5 * M)
    assert flush.kind is FlushKind.update
    assert flush.new_incident_ids == ("i2", "i3")
    assert flush.active_incident_ids == ("i1", "i2", "i3")


def test_after_a_quiet_spell_a_new_incident_goes_at_the_next_aligned_tick() -> None:
    r = route(group_wait=timedelta(0), repeat_interval=10 * 60 * M)
    state, _ = send(add(None, "i1", r, T0, labels=LABELS), T0)
    state = add(state, "i2", r, T0 + 12 * M, labels=LABELS)
    # ticks at T0 + 5m, 10m, 15m: the first one not in the past
    assert next_wakeup([state]) == T0 + 15 * M


def test_repeat_after_repeat_interval_when_nothing_new() -> None:
    r = route(repeat_interval=60 * M)
    state, _ = send(add(None, "i1", r, T0, labels=LABELS), T0 + 30 * S)
    assert due(state, T0 + 30 * S + 59 * M) is None
    assert next_wakeup([state]) == T0 + 30 * S + 60 * M

    state, flush = send(state, T0 + 30 * S + 60 * M)
    assert flush.kind is FlushKind.repeat
    assert flush.new_incident_ids == () and flush.active_incident_ids == ("i1",)
    assert flush.sequence == 2
    assert next_wakeup([state]) == T0 + 30 * S + 120 * M


def test_no_repeat_once_every_incident_is_resolved() -> None:
    r = route(repeat_interval=60 * M)
    state = add_all(None, ["i1", "i2"], r, T0)
    state, _ = send(state, T0 + 30 * S)
    state = resolve(state, "i1", T0 + 10 * M)
    assert state is not None and state.incident_ids == ("i2",)
    # the group closes: nothing left to repeat
    assert resolve(state, "i2", T0 + 20 * M) is None
    assert next_wakeup([None]) is None


def test_resolving_the_only_new_incident_cancels_the_update() -> None:
    r = route(group_wait=timedelta(0), repeat_interval=60 * M)
    state, _ = send(add(None, "i1", r, T0, labels=LABELS), T0)
    state = add(state, "i2", r, T0 + M, labels=LABELS)
    assert state.next_flush_at == T0 + 5 * M
    state = resolve(state, "i2", T0 + 2 * M)
    # back to waiting for the repeat
    assert state is not None and state.next_flush_at == T0 + 60 * M
    assert due(state, T0 + 5 * M) is None


def test_resolved_before_the_first_flush_is_never_notified() -> None:
    r = route()
    state = add_all(None, ["i1", "i2"], r, T0)
    state = resolve(state, "i1", T0 + 5 * S)
    _, flush = send(state, T0 + 30 * S)
    assert flush.new_incident_ids == ("i2",) and flush.active_incident_ids == ("i2",)


def test_group_wait_zero_flushes_at_once() -> None:
    r = route(group_wait=timedelta(0))
    state = add(None, "i1", r, T0, labels=LABELS)
    assert next_wakeup([state]) == T0
    _, flush = send(state, T0)
    assert flush.kind is FlushKind.first and flush.new_incident_ids == ("i1",)


def test_a_redelivered_incident_is_not_new_again() -> None:
    r = route()
    state, _ = send(add(None, "i1", r, T0, labels=LABELS), T0 + 30 * S)
    again = add(state, "i1", r, T0 + M, labels=LABELS)
    assert again == state


def test_incidents_of_another_group_are_refused() -> None:
    r = route()
    state = add(None, "i1", r, T0, labels=LABELS)
    with pytest.raises(ValueError, match="belongs to"):
        add(state, "i2", r, T0, labels={**LABELS, "community": "c2"})


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add(None, "i1", route(), datetime(2025, 1, 1), labels=LABELS)


# --------------------------------------------------------------------------- crash safety


def test_a_crash_between_due_and_flushed_resends_the_same_notification() -> None:
    r = route()
    stored = add_all(None, ["i1", "i2"], r, T0)
    first = due(stored, T0 + 30 * S)
    assert first is not None
    # ... delivered, then the process dies before ``flushed`` is stored. After restart:
    replay = due(stored, T0 + 45 * S)
    assert replay == first and replay.key == first.key  # same ids, same sequence

    recorded = flushed(stored, replay, T0 + 45 * S)
    # recording twice is a no-op
    assert flushed(recorded, replay, T0 + 50 * S) == recorded
    assert flushed(recorded, first, T0 + 50 * S) == recorded
    assert due(recorded, T0 + 50 * S) is None


def test_incidents_arriving_during_delivery_stay_pending() -> None:
    r = route()
    state = add(None, "i1", r, T0, labels=LABELS)
    flush = due(state, T0 + 30 * S)
    assert flush is not None
    # arrives while the send is in flight
    state = add(state, "i2", r, T0 + 31 * S, labels=LABELS)
    state = flushed(state, flush, T0 + 32 * S)
    assert state.pending_ids == ("i2",)
    assert next_wakeup([state]) == T0 + 32 * S + 5 * M
    _, update = send(state, T0 + 32 * S + 5 * M)
    assert update.kind is FlushKind.update and update.new_incident_ids == ("i2",)


def test_flushed_refuses_a_flush_from_the_future() -> None:
    r = route()
    state = add(None, "i1", r, T0, labels=LABELS)
    flush = due(state, T0 + 30 * S)
    assert flush is not None
    skipped = Flush(**{**flush.__dict__, "sequence": 3})
    with pytest.raises(ValueError, match="skips"):
        flushed(state, skipped, T0 + 30 * S)


# --------------------------------------------------------------------------- storage & cap


def test_document_round_trip() -> None:
    r = route()
    state = add_all(None, ["i1", "i2"], r, T0)
    state, _ = send(state, T0 + 30 * S)
    state = add(state, "i3", r, T0 + M, labels=LABELS)
    doc = state.to_document()
    assert doc["_id"] == state.group_key
    assert doc["group_wait_ms"] == 30_000 and doc["pending_ids"] == ["i3"]
    assert GroupState.from_document(doc) == state


def test_document_read_back_with_naive_datetimes_is_utc() -> None:
    # pymongo without tz_aware gives naive UTC datetimes back
    state = add(None, "i1", route(), T0, labels=LABELS)
    doc = {
        k: (v.replace(tzinfo=None) if isinstance(v, datetime) else v)
        for k, v in state.to_document().items()
    }
    assert GroupState.from_document(doc) == state


def test_cap_counts_overflow_and_announces_it() -> None:
    r = route()
    state = None
    for n in range(5):
        state = add(state, f"i{n}", r, T0, labels=LABELS, cap=3)
    assert state is not None
    assert state.incident_ids == ("i0", "i1", "i2")
    assert state.overflow == 2 and state.pending_overflow == 2

    state, flush = send(state, T0 + 30 * S)
    assert flush.new_overflow == 2 and flush.overflow == 2
    assert state.pending_overflow == 0

    # still full: counted only
    state = add(state, "i5", r, T0 + M, labels=LABELS, cap=3)
    assert state.incident_ids == ("i0", "i1", "i2") and state.overflow == 3
    state, update = send(state, T0 + 30 * S + 5 * M)
    assert update.kind is FlushKind.update
    assert update.new_incident_ids == () and update.new_overflow == 1

    state = resolve(state, "i0", T0 + 10 * M)  # room again: the next one is kept
    assert state is not None
    state = add(state, "i6", r, T0 + 11 * M, labels=LABELS, cap=3)
    assert state.incident_ids == ("i1", "i2", "i6") and state.pending_ids == ("i6",)
    assert GroupState.from_document(state.to_document()) == state


# --------------------------------------------------------------------------- property

_IDS = [f"inc-{n}" for n in range(8)]
_COMMUNITIES = ["c1", "c2"]
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(_IDS)),
        st.tuples(st.just("resolve"), st.sampled_from(_IDS)),
        st.tuples(st.just("advance"), st.integers(min_value=0, max_value=900)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=_ops,
    group_wait_s=st.sampled_from([0, 10, 30]),
    group_interval_s=st.sampled_from([60, 300]),
    repeat_factor=st.integers(min_value=1, max_value=6),
)
def test_property_new_once_and_within_wait_plus_interval(
    ops: list[tuple[str, object]],
    group_wait_s: int,
    group_interval_s: int,
    repeat_factor: int,
) -> None:
    r = route(
        group_wait=group_wait_s * S,
        group_interval=group_interval_s * S,
        repeat_interval=repeat_factor * group_interval_s * S,
    )
    bound = r.group_wait + r.group_interval
    groups: dict[str, GroupState] = {}
    arrived: dict[str, datetime] = {}
    resolved: set[str] = set()
    notified_new: dict[str, datetime] = {}
    now = T0

    def labels_of(incident_id: str) -> dict[str, str]:
        return {**LABELS, "community": _COMMUNITIES[int(incident_id[-1]) % 2]}

    def run_until(target: datetime) -> None:
        # a prompt dispatcher: wake at every due time, deliver, record at once
        nonlocal now
        while (wake := next_wakeup(groups.values())) is not None and wake <= target:
            now = max(now, wake)
            for key, state in list(groups.items()):
                flush = due(state, now)
                if flush is None:
                    continue
                assert set(flush.new_incident_ids) <= set(flush.active_incident_ids)
                assert flush.active_incident_ids, "an empty group must not notify"
                for incident_id in flush.new_incident_ids:
                    assert incident_id not in notified_new, f"{incident_id} new twice"
                    notified_new[incident_id] = now
                for incident_id in flush.active_incident_ids:
                    assert incident_id not in resolved
                groups[key] = flushed(state, flush, now)
        now = max(now, target)

    for op, arg in ops:
        if op == "advance":
            run_until(now + int(arg) * S)  # type: ignore[call-overload]
            continue
        incident_id = str(arg)
        key = r.group_key(labels_of(incident_id))
        if op == "add":
            if incident_id in resolved:
                continue  # the caller never re-adds a resolved incident
            arrived.setdefault(incident_id, now)
            groups[key] = add(
                groups.get(key), incident_id, r, now, labels=labels_of(incident_id)
            )
        elif key in groups and incident_id in arrived:
            resolved.add(incident_id)
            state = resolve(groups[key], incident_id, now)
            if state is None:
                del groups[key]
            else:
                groups[key] = state
        run_until(now)  # group_wait 0 and overdue timers fire without time passing

    run_until(now + bound)
    for incident_id, at in arrived.items():
        if incident_id in notified_new:
            assert notified_new[incident_id] - at <= bound
        else:
            assert incident_id in resolved, f"{incident_id} was never notified"
