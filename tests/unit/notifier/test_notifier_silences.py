"""Silences: model validation (matchers, time windows, duration vs ends_at, match-all) and
the pure matching of a label set against silences at a time."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from schemas.incidents import Incident
from services.notifier.silences import (
    Silence,
    SilenceIn,
    SilenceState,
    SilenceWindowError,
    matching_silences,
    silence_state,
    silencing,
)
from services.notifier.silences.models import MAX_COMMENT_LENGTH
from services.notifier.silences.store import community_of

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def new(**overrides) -> SilenceIn:
    body = {
        "matchers": ['community="c1"'],
        "duration": "1h",
        "created_by": "alice",
        "comment": "raid",
    }
    body.update(overrides)
    return SilenceIn.model_validate(body)


def errors_of(**overrides) -> str:
    with pytest.raises(ValidationError) as caught:
        new(**overrides)
    return str(caught.value)


def silence(
    *matchers: str,
    starts: datetime = NOW - HOUR,
    ends: datetime = NOW + HOUR,
    id: str = "s1",
) -> Silence:
    return Silence(
        id=id,
        matchers=list(matchers),
        starts_at=starts,
        ends_at=ends,
        created_by="alice",
        comment="test",
        created_at=starts,
        updated_at=starts,
        state=silence_state(starts, ends, NOW),
    )


# --------------------------------------------------------------------------- matchers


def test_matchers_are_parsed_and_stored_canonically() -> None:
    s = new(matchers=["community=c1", ' severity =~ "high|critical" ', "rule!~spam.*"])
    assert s.matchers == ['community="c1"', 'severity=~"high|critical"', 'rule!~"spam.*"']
    assert [m.name for m in s.parsed_matchers()] == ["community", "severity", "rule"]


@pytest.mark.parametrize(
    ("matcher", "fragment"),
    [
        ("community", "bad matcher 'community'"),
        ("community=~c1)", "invalid regex"),
        ('community="c1', "unbalanced quotes"),
        ('category=~"(unclosed"', "invalid regex"),
        ('1abc="x"', "bad matcher"),
    ],
)
def test_bad_matcher_syntax_is_refused_with_the_matcher_in_the_message(
    matcher: str, fragment: str
) -> None:
    message = errors_of(matchers=['community="c1"', matcher])
    assert fragment in message
    assert "matchers.1" in message  # which one


def test_at_least_one_matcher() -> None:
    assert "at least 1 item" in errors_of(matchers=[])
    assert "matchers" in errors_of(matchers=None)


@pytest.mark.parametrize(
    "matchers",
    [
        ['community=~".*"'],
        ['community=~".*"', 'severity!="critical"'],
        ['channel=""'],
        ['category!~"spam"'],
        ['rule=~"x|"'],
    ],
)
def test_matchers_that_match_everything_are_refused(matchers: list[str]) -> None:
    message = errors_of(matchers=matchers)
    assert "would silence every incident" in message
    assert "at least one must not" in message


@pytest.mark.parametrize(
    "matchers",
    [
        ['community=~".+"'],
        ['community=~".*"', 'severity="low"'],
        ['category!~""'],
    ],
)
def test_one_matcher_that_needs_a_value_is_enough(matchers: list[str]) -> None:
    assert new(matchers=matchers).matchers


# --------------------------------------------------------------------------- time windows


def test_duration_starts_now_when_no_start_is_given() -> None:
    assert new(duration="1h30m").window(NOW) == (NOW, NOW + timedelta(minutes=90))


def test_duration_counts_from_a_future_start() -> None:
    start = NOW + 2 * HOUR
    assert new(starts_at=start.isoformat(), duration="30m").window(NOW) == (
        start,
        start + timedelta(minutes=30),
    )


def test_ends_at_is_taken_as_given_and_converted_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    s = new(duration=None, ends_at=datetime(2026, 3, 2, 16, 0, tzinfo=plus2).isoformat())
    assert s.window(NOW) == (NOW, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert s.ends_at is not None and s.ends_at.utcoffset() == timedelta(0)


def test_a_start_in_the_past_becomes_now() -> None:
    s = new(starts_at=(NOW - 3 * HOUR).isoformat(), duration=None, ends_at=(NOW + HOUR).isoformat())
    assert s.window(NOW) == (NOW, NOW + HOUR)


def test_a_silence_that_would_already_be_over_is_refused() -> None:
    with pytest.raises(SilenceWindowError, match="not in the future"):
        new(duration=None, ends_at=(NOW - timedelta(seconds=1)).isoformat()).window(NOW)
    with pytest.raises(SilenceWindowError, match="not in the future"):
        new(duration=None, ends_at=NOW.isoformat()).window(NOW)
    with pytest.raises(SilenceWindowError):  # started 2h ago for 1h: over already
        new(starts_at=(NOW - 2 * HOUR).isoformat(), duration="1h").window(NOW)


def test_exactly_one_of_ends_at_and_duration() -> None:
    assert "not both" in errors_of(ends_at=(NOW + HOUR).isoformat(), duration="1h")
    assert "neither was given" in errors_of(duration=None)


def test_ends_at_must_be_after_starts_at() -> None:
    message = errors_of(
        starts_at=(NOW + 2 * HOUR).isoformat(), duration=None, ends_at=(NOW + HOUR).isoformat()
    )
    assert "must be after starts_at" in message
    assert "must be after" in errors_of(
        starts_at=NOW.isoformat(), duration=None, ends_at=NOW.isoformat()
    )


@pytest.mark.parametrize("duration", ["0s", "1 hour", "-1h", "h", ""])
def test_bad_durations_are_refused(duration: str) -> None:
    assert "duration" in errors_of(duration=duration)


def test_timestamps_need_a_timezone() -> None:
    assert "timezone" in errors_of(duration=None, ends_at="2026-03-02T13:00:00")


def test_created_by_and_comment_are_required_and_bounded() -> None:
    assert "created_by" in errors_of(created_by=None)
    assert "must not be blank" in errors_of(comment="   ")
    assert "at most" in errors_of(comment="x" * (MAX_COMMENT_LENGTH + 1))
    assert new(comment="  spaced  ").comment == "spaced"


def test_unknown_fields_are_refused() -> None:
    assert "endsAt" in errors_of(endsAt="2026-03-02T13:00:00Z")


# --------------------------------------------------------------------------- state


@pytest.mark.parametrize(
    ("starts", "ends", "state"),
    [
        (NOW - HOUR, NOW + HOUR, SilenceState.active),
        (NOW, NOW + HOUR, SilenceState.active),  # starts_at is inclusive
        (NOW + HOUR, NOW + 2 * HOUR, SilenceState.pending),
        (NOW - 2 * HOUR, NOW - HOUR, SilenceState.expired),
        (NOW - HOUR, NOW, SilenceState.expired),  # ends_at is exclusive
    ],
)
def test_state_against_now(starts: datetime, ends: datetime, state: SilenceState) -> None:
    s = silence('community="c1"', starts=starts, ends=ends)
    assert s.state is state and s.state_at(NOW) is state
    assert s.is_active(NOW) is (state is SilenceState.active)


def test_state_moves_with_the_clock() -> None:
    s = silence('community="c1"', starts=NOW + HOUR, ends=NOW + 2 * HOUR)
    assert s.at(NOW).state is SilenceState.pending
    assert s.at(NOW + HOUR).state is SilenceState.active
    assert s.at(NOW + 2 * HOUR).state is SilenceState.expired
    assert s.at(NOW + HOUR).matches({"community": "c1"})  # copies keep their matchers


# --------------------------------------------------------------------------- matching


LABELS = {"community": "c1", "severity": "high", "category": "threat", "channel": "C42"}


def test_an_active_silence_whose_matchers_all_match_silences() -> None:
    s = silence('community="c1"', 'severity=~"high|critical"')
    assert silencing(LABELS, [s], NOW) is s


@pytest.mark.parametrize(
    "matchers",
    [
        ('community="c2"',),
        ('community="c1"', 'severity="low"'),  # one of two fails
        ('community=~"c"',),  # regexes are anchored
        ('community="c1"', 'category!~"threat|insult"'),
        ('community="c1"', 'platform="slack"'),  # a missing label is the empty string
    ],
)
def test_a_silence_with_a_failing_matcher_does_not_silence(matchers: tuple[str, ...]) -> None:
    assert silencing(LABELS, [silence(*matchers)], NOW) is None


def test_a_missing_label_matches_as_the_empty_string() -> None:
    s = silence('community="c1"', 'platform=""', 'rule!="spam"')
    assert silencing(LABELS, [s], NOW) is s


def test_only_active_silences_silence() -> None:
    pending = silence('community="c1"', starts=NOW + HOUR, ends=NOW + 2 * HOUR, id="p")
    expired = silence('community="c1"', starts=NOW - 2 * HOUR, ends=NOW - HOUR, id="e")
    ends_now = silence('community="c1"', starts=NOW - HOUR, ends=NOW, id="n")
    assert silencing(LABELS, [pending, expired, ends_now], NOW) is None
    assert silencing(LABELS, [pending], NOW + HOUR) is pending
    assert silencing(LABELS, [expired], NOW - HOUR - timedelta(seconds=1)) is expired


def test_the_silence_that_ends_last_is_reported() -> None:
    short = silence('community="c1"', ends=NOW + HOUR, id="a")
    long = silence('severity="high"', ends=NOW + 3 * HOUR, id="b")
    other = silence('community="c9"', ends=NOW + 9 * HOUR, id="c")
    assert silencing(LABELS, [short, long, other], NOW) is long
    assert matching_silences(LABELS, [short, long, other], NOW) == [short, long]
    assert silencing(LABELS, [], NOW) is None


def test_incident_labels_are_matched(make_incident: Callable[..., Incident]) -> None:
    labels = make_incident(community_id="c1", severity="critical").labels()
    s = silence(f'community="{labels["community"]}"', f'severity="{labels["severity"]}"')
    assert silencing(labels, [s], NOW) is s
    assert silencing({**labels, "severity": "other"}, [s], NOW) is None


def test_community_of_takes_the_first_equality_matcher() -> None:
    assert community_of(['severity="high"', 'community="c1"']) == "c1"
    assert community_of(['community=~"c1|c2"', 'community!="c3"']) is None
    assert community_of(['rule="x"']) is None
