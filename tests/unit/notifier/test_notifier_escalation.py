"""Escalation policies on a controllable clock: plain datetimes the tests advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.feedback import FeedbackAction
from services.notifier.escalation import (
    STOPPING_ACTIONS,
    Escalate,
    EscalationPolicy,
    EscalationState,
    acknowledge,
    advanced,
    due,
    escalate_now,
    is_current,
    next_wakeup,
    start,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)
TICK = timedelta(microseconds=1)


def policy(repeat: int = 0, **changes: object) -> EscalationPolicy:
    data: dict[str, object] = {
        "name": "critical",
        "levels": [
            {"receiver": "on-call", "timeout": "5m"},
            {"receivers": ["leads", "email-leads"], "timeout": "10m"},
        ],
        "repeat": repeat,
    }
    return EscalationPolicy.model_validate({**data, **changes})


def step(state: EscalationState, now: datetime) -> tuple[EscalationState, Escalate]:
    """Deliver the step due at ``now`` (it must be due) and record it."""
    escalate = due(state, now)
    assert escalate is not None, f"nothing due at {now - T0}"
    return advanced(state, escalate, now), escalate


# --------------------------------------------------------------------------- policy model


def test_policy_parses_durations_and_single_receiver() -> None:
    p = policy()
    assert p.levels[0].receivers == ("on-call",)
    assert p.levels[0].timeout == 5 * M and p.levels[1].timeout == 10 * M
    assert p.model_dump(mode="json")["levels"][1] == {
        "receivers": ["leads", "email-leads"],
        "timeout": "10m",
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"levels": []},
        {"repeat": -1},
        {"name": ""},
        {"levels": [{"receiver": "x", "timeout": "0s"}]},
        {"levels": [{"receiver": "x", "timeout": "soon"}]},
        {"levels": [{"receivers": [], "timeout": "5m"}]},
        {"levels": [{"receiver": "x", "timeout": "5m", "extra": 1}]},
    ],
)
def test_policy_rejects_invalid(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        policy(**changes)


def test_stopping_actions() -> None:
    assert FeedbackAction.escalated not in STOPPING_ACTIONS
    assert STOPPING_ACTIONS == {
        FeedbackAction.acknowledged,
        FeedbackAction.resolved,
        FeedbackAction.false_positive,
    }


# --------------------------------------------------------------------------- timers


def test_level_zero_is_due_at_start_and_timeout_moves_to_the_next_level() -> None:
    state = start(policy(), "inc-1", T0)
    assert next_wakeup([state]) == T0
    state, first = step(state, T0)
    assert (first.level, first.cycle, first.receivers) == (0, 0, ("on-call",))
    assert state.deadline == T0 + 5 * M

    assert due(state, T0 + 5 * M) is None
    assert next_wakeup([state]) == T0 + 5 * M + TICK
    state, second = step(state, T0 + 5 * M + TICK)
    assert (second.level, second.cycle) == (1, 0)
    assert second.receivers == ("leads", "email-leads")
    assert state.deadline == T0 + 5 * M + TICK + 10 * M


def test_already_notified_start_runs_the_first_timeout_at_once() -> None:
    state = start(policy(), "inc-1", T0, notified=True)
    assert due(state, T0) is None and state.level == 0
    assert next_wakeup([state]) == T0 + 5 * M + TICK


def test_acknowledgement_stops_escalation() -> None:
    state, _ = step(start(policy(repeat=3), "inc-1", T0), T0)
    state = acknowledge(state, T0 + 2 * M)
    assert state.finished and state.acknowledged_at == T0 + 2 * M
    assert due(state, T0 + 60 * M) is None
    assert next_wakeup([state]) is None
    assert acknowledge(state, T0 + 3 * M) == state  # the first acknowledgement is kept


def test_acknowledgement_exactly_at_the_deadline_wins() -> None:
    # Documented rule: acknowledged at or before the deadline stops the next level.
    state, _ = step(start(policy(), "inc-1", T0), T0)
    deadline = T0 + 5 * M
    assert due(state, deadline) is None  # not yet escalated at the deadline itself
    acked = acknowledge(state, deadline)
    assert due(acked, deadline + M) is None
    # one microsecond later it would have escalated
    assert due(state, deadline + TICK) is not None


def test_repeat_n_times_then_stop() -> None:
    state = start(policy(repeat=2), "inc-1", T0)
    now = T0
    seen: list[tuple[int, int]] = []
    while (wake := next_wakeup([state])) is not None:
        now = wake
        state, escalate = step(state, now)
        seen.append((escalate.cycle, escalate.level))
    assert seen == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert state.exhausted and state.finished
    assert due(state, now + 24 * 60 * M) is None


def test_late_wakeup_notifies_one_level_at_a_time() -> None:
    # after an outage each level still gets its full timeout: no level is skipped
    state, _ = step(start(policy(), "inc-1", T0), T0)
    state, escalate = step(state, T0 + 60 * M)
    assert escalate.level == 1
    assert due(state, T0 + 60 * M + 9 * M) is None


def test_config_change_mid_escalation_does_not_alter_it() -> None:
    old = policy()
    state, _ = step(start(old, "inc-1", T0), T0)
    new = policy(
        levels=[
            {"receiver": "someone-else", "timeout": "1m"},
            {"receiver": "x", "timeout": "1m"},
            {"receiver": "y", "timeout": "1m"},
        ],
        repeat=5,
    )
    assert new.fingerprint != old.fingerprint
    assert is_current(state, old) and not is_current(state, new)

    assert due(state, T0 + 2 * M) is None  # still the old 5m timeout
    state, escalate = step(state, T0 + 5 * M + TICK)
    assert escalate.receivers == ("leads", "email-leads")
    assert next_wakeup([state]) is None  # the old policy had no repeat: it ends here


def test_fingerprint_ignores_the_name_and_follows_the_levels() -> None:
    assert policy().fingerprint == policy(name="other").fingerprint
    assert policy().fingerprint != policy(repeat=1).fingerprint


# --------------------------------------------------------------------------- crash safety


def test_a_crash_between_due_and_advanced_resends_the_same_step() -> None:
    stored, _ = step(start(policy(), "inc-1", T0), T0)
    escalate = due(stored, T0 + 6 * M)
    assert escalate is not None
    # ... delivered, then the process dies before ``advanced`` is stored. After restart:
    replay = due(stored, T0 + 7 * M)
    assert replay == escalate and replay.key == "inc-1#escalation-1"
    recorded = advanced(stored, replay, T0 + 7 * M)
    assert advanced(recorded, replay, T0 + 8 * M) == recorded


def test_advanced_refuses_a_skipped_step() -> None:
    state = start(policy(), "inc-1", T0)
    escalate = due(state, T0)
    assert escalate is not None
    with pytest.raises(ValueError, match="skips"):
        advanced(state, Escalate(**{**escalate.__dict__, "step": 1}), T0)


# --------------------------------------------------------------------------- storage


def test_document_round_trip() -> None:
    state, _ = step(start(policy(repeat=1), "inc-1", T0), T0)
    state = acknowledge(state, T0 + M)
    doc = state.to_document()
    assert doc["_id"] == "inc-1" and doc["policy"] == "critical"
    assert doc["levels"][1] == {
        "receivers": ["leads", "email-leads"],
        "timeout_ms": 600_000,
    }
    assert EscalationState.from_document(doc) == state

    fresh = start(policy(), "inc-2", T0)
    assert EscalationState.from_document(fresh.to_document()) == fresh


def test_document_read_back_with_naive_datetimes_is_utc() -> None:
    state, _ = step(start(policy(), "inc-1", T0), T0)
    doc = {
        k: (v.replace(tzinfo=None) if isinstance(v, datetime) else v)
        for k, v in state.to_document().items()
    }
    assert EscalationState.from_document(doc) == state


# --------------------------------------------------------------------------- property


@settings(max_examples=200, deadline=None)
@given(
    repeat=st.integers(min_value=0, max_value=3),
    ack_after_min=st.one_of(st.none(), st.integers(min_value=0, max_value=120)),
)
def test_property_steps_follow_the_policy_until_acknowledged(
    repeat: int, ack_after_min: int | None
) -> None:
    p = policy(repeat=repeat)
    ack_at = None if ack_after_min is None else T0 + ack_after_min * M
    state = start(p, "inc-1", T0)
    steps: list[Escalate] = []
    while (wake := next_wakeup([state])) is not None:
        if ack_at is not None and ack_at < wake:
            state = acknowledge(state, ack_at)
            continue
        state, escalate = step(state, wake)
        steps.append(escalate)
    assert [s.step for s in steps] == list(range(len(steps)))
    assert len(steps) <= len(p.levels) * (repeat + 1)
    for s in steps:
        assert s.receivers == p.levels[s.level].receivers
    if ack_at is None:
        assert len(steps) == len(p.levels) * (repeat + 1)


# --------------------------------------------------------------------------- the Escalate button


def test_escalate_now_makes_the_next_level_due_at_once() -> None:
    state, _ = step(start(policy(), "inc-1", T0), T0)
    assert due(state, T0 + M) is None
    pressed = escalate_now(state, T0 + M)
    escalate = due(pressed, T0 + M)
    assert escalate is not None and escalate.level == 1
    after, _ = step(pressed, T0 + M)
    assert after.deadline == T0 + M + 10 * M, "the next level gets its full timeout from its page"


def test_escalate_now_changes_nothing_before_the_first_page_or_after_the_end() -> None:
    fresh = start(policy(), "inc-1", T0)
    assert escalate_now(fresh, T0 + M) == fresh
    acked = acknowledge(step(fresh, T0)[0], T0 + M)
    assert escalate_now(acked, T0 + 2 * M) == acked
