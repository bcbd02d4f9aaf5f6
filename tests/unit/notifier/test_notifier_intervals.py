"""Time intervals: Alertmanager's calendar semantics, route muting, and their validation."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notifier.routing import (
    NamedTimeInterval,
    RoutingConfig,
    RoutingConfigError,
    TimeInterval,
    is_active,
    load_routing,
    match_route,
    mute_reason,
    route_muted,
)

PARIS = ZoneInfo("Europe/Paris")
TWO_TO_THREE = {"start_time": "02:00", "end_time": "03:00"}


def interval(**fields: object) -> TimeInterval:
    return TimeInterval.model_validate(fields)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- calendar


def test_an_interval_without_fields_is_always_active() -> None:
    empty = TimeInterval()
    for at in (utc(2026, 1, 1), utc(2027, 7, 14, 23, 59, 59), utc(2028, 2, 29, 12)):
        assert is_active(empty, at)
    # a named interval is active when any of its intervals is: with none, never
    assert not is_active(NamedTimeInterval(name="never"), utc(2026, 1, 1))
    assert is_active(NamedTimeInterval(name="always", time_intervals=[empty]), utc(2026, 1, 1))


def test_times_are_start_inclusive_and_end_exclusive() -> None:
    office = interval(times=[{"start_time": "09:00", "end_time": "17:00"}])
    day = (2026, 5, 4)
    assert not is_active(office, utc(*day, 8, 59, 59))
    assert is_active(office, utc(*day, 9, 0))
    assert is_active(office, utc(*day, 16, 59, 59))
    assert not is_active(office, utc(*day, 17, 0))
    until_midnight = interval(times=[{"start_time": "22:00", "end_time": "24:00"}])
    assert is_active(until_midnight, utc(*day, 23, 59, 59))
    assert not is_active(until_midnight, utc(2026, 5, 5, 0, 0))


def test_several_times_are_alternatives() -> None:
    split = interval(
        times=[
            {"start_time": "00:00", "end_time": "06:00"},
            {"start_time": "22:00", "end_time": "24:00"},
        ]
    )
    assert is_active(split, utc(2026, 5, 4, 5, 59))
    assert not is_active(split, utc(2026, 5, 4, 12))
    assert is_active(split, utc(2026, 5, 4, 22))


def test_weekday_ranges_are_inclusive_and_sunday_based() -> None:
    weekdays = interval(weekdays=["monday:friday"])
    # 2026-03-23 is a Monday
    days = [utc(2026, 3, 23 + i) for i in range(7)]
    got = {day.strftime("%A"): is_active(weekdays, day) for day in days}
    assert got == {
        "Monday": True,
        "Tuesday": True,
        "Wednesday": True,
        "Thursday": True,
        "Friday": True,
        "Saturday": False,
        "Sunday": False,
    }
    weekend = interval(weekdays=["Saturday", "sunday"])  # names are case-insensitive
    assert is_active(weekend, utc(2026, 3, 28)) and is_active(weekend, utc(2026, 3, 29))
    assert not is_active(weekend, utc(2026, 3, 27))
    whole_week = interval(weekdays=["sunday:saturday"])
    assert all(is_active(whole_week, utc(2026, 3, 23 + i)) for i in range(7))


def test_weekday_is_taken_in_the_interval_location() -> None:
    friday_late_utc = utc(2026, 3, 27, 23, 30)  # already Saturday 00:30 in Paris
    assert is_active(interval(weekdays=["friday"]), friday_late_utc)
    assert not is_active(interval(weekdays=["friday"], location="Europe/Paris"), friday_late_utc)
    assert is_active(interval(weekdays=["saturday"], location="Europe/Paris"), friday_late_utc)


def test_negative_day_of_month_in_a_leap_february() -> None:
    last = interval(days_of_month=["-1"])
    assert is_active(last, utc(2028, 2, 29))
    assert not is_active(last, utc(2028, 2, 28))
    assert is_active(last, utc(2027, 2, 28))  # not a leap year
    assert is_active(last, utc(2028, 1, 31)) and not is_active(last, utc(2028, 1, 30))
    last_two = interval(days_of_month=["-2:-1"])
    assert [d for d in range(1, 30) if is_active(last_two, utc(2028, 2, d))] == [28, 29]
    assert [d for d in range(1, 29) if is_active(last_two, utc(2027, 2, d))] == [27, 28]
    mixed = interval(days_of_month=["20:-2"])  # from the 20th to the day before the last
    assert [d for d in range(1, 30) if is_active(mixed, utc(2028, 2, d))] == list(range(20, 29))
    assert [d for d in range(1, 29) if is_active(mixed, utc(2027, 2, d))] == list(range(20, 28))


def test_day_of_month_ranges_are_clamped_to_the_month() -> None:
    end_of_month = interval(days_of_month=["28:31"])
    assert [d for d in range(1, 29) if is_active(end_of_month, utc(2026, 2, d))] == [28]
    assert not is_active(end_of_month, utc(2026, 3, 1))  # nothing spills into March
    assert [d for d in range(1, 32) if is_active(end_of_month, utc(2026, 3, d))] == [28, 29, 30, 31]
    # a range starting after the end of a short month is no day of it at all
    late = interval(days_of_month=["30:31"])
    assert not any(is_active(late, utc(2026, 2, d)) for d in range(1, 29))
    assert not any(is_active(late, utc(2026, 3, d)) for d in (1, 2))
    assert is_active(late, utc(2026, 3, 30))
    # a negative start before the 1st of a short month is clamped to the 1st
    early = interval(days_of_month=["-31:-29"])
    assert [d for d in range(1, 30) if is_active(early, utc(2028, 2, d))] == [1]
    assert [d for d in range(1, 32) if is_active(early, utc(2026, 3, d))] == [1, 2, 3]


def test_month_ranges_do_not_wrap_so_winter_is_two_ranges() -> None:
    winter = interval(months=["november:december", "1:2"])
    assert [m for m in range(1, 13) if is_active(winter, utc(2026, m, 15))] == [1, 2, 11, 12]
    q1_and_december = interval(months=["january:march", "12"])
    assert [m for m in range(1, 13) if is_active(q1_and_december, utc(2026, m, 1))] == [1, 2, 3, 12]


def test_months_follow_the_location_at_a_month_boundary() -> None:
    new_year_paris = utc(2026, 12, 31, 23, 30)  # 00:30 on January 1st 2027 in Paris
    assert is_active(interval(months=["december"], years=["2026"]), new_year_paris)
    in_paris = interval(months=["january"], years=["2027"], location="Europe/Paris")
    assert is_active(in_paris, new_year_paris)
    assert not is_active(interval(months=["january"], years=["2027"]), new_year_paris)


def test_years_are_inclusive() -> None:
    years = interval(years=["2026:2027"])
    assert not is_active(years, utc(2025, 12, 31, 23, 59))
    assert is_active(years, utc(2026, 1, 1))
    assert is_active(years, utc(2027, 12, 31, 23, 59))
    assert not is_active(years, utc(2028, 1, 1))


def test_every_given_field_must_hold() -> None:
    spec = interval(
        times=[{"start_time": "09:00", "end_time": "17:00"}],
        weekdays=["monday:friday"],
        days_of_month=["1:7"],
        months=["march"],
        years=["2026"],
    )
    assert is_active(spec, utc(2026, 3, 2, 10))  # Monday March 2nd 2026, 10:00
    assert not is_active(spec, utc(2026, 3, 1, 10))  # a Sunday
    assert not is_active(spec, utc(2026, 3, 9, 10))  # day 9
    assert not is_active(spec, utc(2026, 3, 2, 18))  # after hours
    assert not is_active(spec, utc(2027, 3, 1, 10))  # 2027
    assert not is_active(spec, utc(2026, 4, 1, 10))  # April


def test_dst_start_in_paris() -> None:
    # 2026-03-29: Paris clocks jump from 02:00 CET to 03:00 CEST
    lost_hour = interval(times=[TWO_TO_THREE], location="Europe/Paris")
    day = utc(2026, 3, 28, 20)
    minutes = [day + timedelta(minutes=m) for m in range(12 * 60)]
    assert not any(is_active(lost_hour, at) for at in minutes)  # 02:xx never exists
    office = interval(times=[{"start_time": "09:00", "end_time": "17:00"}], location="Europe/Paris")
    assert not is_active(office, utc(2026, 3, 28, 7, 30))  # 08:30 CET the day before
    assert is_active(office, utc(2026, 3, 29, 7, 30))  # 09:30 CEST on the DST day
    assert is_active(office, utc(2026, 3, 29, 14, 59))  # 16:59 CEST
    assert not is_active(office, utc(2026, 3, 29, 15, 0))  # 17:00 CEST
    assert is_active(office, utc(2026, 3, 28, 15, 59))  # 16:59 CET the day before


def test_dst_end_in_paris_repeats_an_hour() -> None:
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 local happens twice
    repeated = interval(times=[TWO_TO_THREE], location="Europe/Paris")
    assert is_active(repeated, utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert is_active(repeated, utc(2026, 10, 25, 1, 30))  # 02:30 CET
    assert not is_active(repeated, utc(2026, 10, 25, 2, 0))  # 03:00 CET


def test_aware_datetimes_in_any_zone_name_the_same_instant() -> None:
    office = interval(times=[{"start_time": "09:00", "end_time": "17:00"}], location="Europe/Paris")
    at = datetime(2026, 6, 1, 16, 30, tzinfo=ZoneInfo("America/New_York"))  # 22:30 in Paris
    assert not is_active(office, at)
    assert is_active(office, datetime(2026, 6, 1, 9, 30, tzinfo=PARIS))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_active(TimeInterval(), datetime(2026, 1, 1))


# --------------------------------------------------------------------------- routes

ROUTES = """
receivers: [{name: c, console: {}}, {name: mods, console: {}}, {name: oncall, console: {}}]
time_intervals:
  - name: office-hours
    time_intervals:
      - times: [{start_time: 09:00, end_time: 17:00}]
        weekdays: [monday:friday]
        location: Europe/Paris
  - name: christmas
    time_intervals:
      - {months: [december], days_of_month: [24:26]}
route:
  receiver: c
  routes:
    - matchers: [severity=low]
      receiver: mods
      active_time_intervals: [office-hours]
      mute_time_intervals: [christmas]
    - matchers: [severity=high]
      receiver: mods
      mute_time_intervals: [christmas]
      routes:
        - matchers: [category=threat]
          receiver: oncall
"""


@pytest.fixture(scope="module")
def routes() -> RoutingConfig:
    return load_routing(ROUTES)


def test_unquoted_clock_times_and_day_ranges_stay_strings(routes: RoutingConfig) -> None:
    # YAML 1.1 would read 17:00 as 1020 and 24:26 as 1466 (base 60)
    office = routes.time_intervals_by_name["office-hours"].time_intervals[0]
    assert office.times[0].model_dump() == {"start_time": "09:00", "end_time": "17:00"}
    christmas = routes.time_intervals_by_name["christmas"].time_intervals[0]
    assert [str(d) for d in christmas.days_of_month] == ["24:26"]


def test_matched_route_carries_its_own_intervals_not_its_parents(routes: RoutingConfig) -> None:
    (low,) = match_route(routes.route, {"severity": "low"})
    assert low.active_time_intervals == ("office-hours",)
    assert low.mute_time_intervals == ("christmas",)
    (high,) = match_route(routes.route, {"severity": "high", "category": "spam"})
    assert high.mute_time_intervals == ("christmas",)
    (threat,) = match_route(routes.route, {"severity": "high", "category": "threat"})
    assert threat.receiver == "oncall"
    assert threat.mute_time_intervals == ()  # not inherited, as in Alertmanager
    assert threat.active_time_intervals == ()
    (root,) = match_route(routes.route, {"severity": "medium"})
    assert (root.mute_time_intervals, root.active_time_intervals) == ((), ())


def test_route_muted(routes: RoutingConfig) -> None:
    by_name = routes.time_intervals_by_name
    (low,) = match_route(routes.route, {"severity": "low"})
    (high,) = match_route(routes.route, {"severity": "high"})
    (threat,) = match_route(routes.route, {"severity": "high", "category": "threat"})
    tuesday_office = utc(2026, 12, 22, 10)  # 11:00 in Paris
    tuesday_night = utc(2026, 12, 22, 22)
    christmas_office = utc(2026, 12, 25, 10)  # a Friday
    assert not route_muted(low, by_name, tuesday_office)
    assert route_muted(low, by_name, tuesday_night)  # outside its active intervals
    assert route_muted(low, by_name, christmas_office)  # active, but a mute interval holds
    assert not route_muted(high, by_name, tuesday_night)  # no active intervals: always on
    assert route_muted(high, by_name, christmas_office)
    assert not route_muted(threat, by_name, christmas_office)  # the child does not inherit
    assert mute_reason(low, by_name, tuesday_night) == (
        "outside its active time intervals (office-hours)"
    )
    assert mute_reason(low, by_name, christmas_office) == "mute time interval 'christmas' is active"
    assert mute_reason(low, by_name, tuesday_office) is None


def test_active_intervals_any_of_several() -> None:
    cfg = load_routing(
        """
receivers: [{name: c, console: {}}]
time_intervals:
  - {name: mornings, time_intervals: [{times: [{start_time: "06:00", end_time: "12:00"}]}]}
  - {name: evenings, time_intervals: [{times: [{start_time: "18:00", end_time: "22:00"}]}]}
  - {name: nowhere, time_intervals: []}
route:
  receiver: c
  routes: [{active_time_intervals: [mornings, evenings, nowhere]}]
"""
    )
    (m,) = match_route(cfg.route, {})
    by_name = cfg.time_intervals_by_name
    assert not route_muted(m, by_name, utc(2026, 1, 1, 7))
    assert route_muted(m, by_name, utc(2026, 1, 1, 14))
    assert not route_muted(m, by_name, utc(2026, 1, 1, 19))


# --------------------------------------------------------------------------- config


def test_intervals_round_trip_and_accept_alertmanagers_time_zone_key() -> None:
    cfg = load_routing(
        """
receivers: [{name: c, console: {}}]
route: {receiver: c}
time_intervals:
  - name: all-fields
    time_intervals:
      - times: [{start_time: "09:00", end_time: "24:00"}]
        weekdays: ["Monday:FRIDAY", sunday]
        days_of_month: ["1:5", -1, "-3:-2"]
        months: ["january:march", 12]
        years: [2026, "2027:2030"]
        time_zone: Europe/Paris
"""
    )
    spec = cfg.time_intervals[0].time_intervals[0]
    assert spec.location == "Europe/Paris"
    assert spec.model_dump() == {
        "times": [{"start_time": "09:00", "end_time": "24:00"}],
        "weekdays": ["monday:friday", "sunday"],
        "days_of_month": ["1:5", "-1", "-3:-2"],
        "months": ["january:march", "december"],
        "years": ["2026", "2027:2030"],
        "location": "Europe/Paris",
    }
    assert RoutingConfig.model_validate(cfg.model_dump(by_alias=True)) == cfg
    assert TimeInterval().location == "UTC"


HEAD = "receivers: [{name: c, console: {}}]\n"  # line 1


def _interval_yaml(field_lines: str) -> str:
    # the interval's fields start on line 6
    return (
        HEAD
        + "route: {receiver: c}\n"
        + "time_intervals:\n"
        + "  - name: t\n"
        + "    time_intervals:\n"
        + field_lines
    )


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        (
            _interval_yaml('      - times: [{start_time: "09:00", end_time: "25:00"}]\n'),
            ["line 6:", "times[0].end_time", "invalid time '25:00'"],
        ),
        (
            _interval_yaml(
                "      - times:\n          - {start_time: '17:00', end_time: '09:00'}\n"
            ),
            ["line 7:", "times[0]", "end_time 09:00 must be after start_time 17:00"],
        ),
        (
            _interval_yaml("      - times: [{start_time: '09:00', end_time: '09:00'}]\n"),
            ["line 6:", "must be after"],
        ),
        (
            _interval_yaml("      - times: [{start_time: '9:00', end_time: '17:00'}]\n"),
            ["line 6:", "invalid time '9:00'", "two-digit hours"],
        ),
        (
            _interval_yaml("      - times: [{start_time: '09:00'}]\n"),
            ["line 6:", "times[0].end_time", "Field required"],
        ),
        (
            _interval_yaml("      - weekdays: [monday:fryday]\n"),
            ["line 6:", "weekdays[0]", "unknown weekday 'fryday'"],
        ),
        (
            _interval_yaml("      - weekdays: [saturday:sunday]\n"),
            ["line 6:", "ends before it starts", "weeks run sunday to saturday"],
        ),
        (
            _interval_yaml("      - months: [janury]\n"),
            ["line 6:", "months[0]", "unknown month 'janury'"],
        ),
        (
            _interval_yaml("      - months: [13]\n"),
            ["line 6:", "unknown month '13'"],
        ),
        (
            _interval_yaml("      - months: [november:february]\n"),
            ["line 6:", "month range 'november:february' ends before it starts"],
        ),
        (
            _interval_yaml("      - days_of_month: [0]\n"),
            ["line 6:", "day of the month 0 out of range"],
        ),
        (
            _interval_yaml("      - days_of_month: [1:32]\n"),
            ["line 6:", "day of the month 32 out of range"],
        ),
        (
            _interval_yaml("      - days_of_month: [-5:3]\n"),
            ["line 6:", "the end must be negative"],
        ),
        (
            _interval_yaml("      - days_of_month: [10:5]\n"),
            ["line 6:", "ends before it starts"],
        ),
        (
            # as Alertmanager: empty in a 28-day month, so refused ("27:-2" is the 27th..26th)
            _interval_yaml("      - days_of_month: ['27:-2']\n"),
            ["line 6:", "ends before it starts"],
        ),
        (
            _interval_yaml("      - days_of_month: [1:2:3]\n"),
            ["line 6:", "expected one value or 'start:end'"],
        ),
        (
            _interval_yaml("      - years: [2027:2026]\n"),
            ["line 6:", "year range '2027:2026' ends before it starts"],
        ),
        (
            _interval_yaml("      - location: Mars/Olympus_Mons\n"),
            ["line 6:", "unknown time zone 'Mars/Olympus_Mons'"],
        ),
        (
            _interval_yaml("      - time_zone: ../../etc/passwd\n"),
            ["line 6:", "unknown time zone"],
        ),
        (
            _interval_yaml("      - location: UTC\n        time_zone: UTC\n"),
            ["line 6:", "not both"],
        ),
        (
            _interval_yaml("      - hours: ['09:00']\n"),
            ["line 6:", "unknown field 'hours'"],
        ),
    ],
)
def test_bad_time_intervals_are_refused_with_their_line(
    yaml_text: str, fragments: list[str]
) -> None:
    with pytest.raises(RoutingConfigError) as info:
        load_routing(yaml_text)
    (problem,) = info.value.problems
    for fragment in fragments:
        assert fragment in problem, problem


ROUTE_REFS = (
    HEAD
    + "time_intervals:\n"  # line 2
    + "  - {name: nights, time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]}\n"
    + "route:\n"  # line 4
    + "  receiver: c\n"
    + "  routes:\n"
    + "    - matchers: [severity=low]\n"  # line 7
    + "      mute_time_intervals: [nights, weekends]\n"  # line 8
    + "      routes:\n"
    + "        - active_time_intervals:\n"  # line 10
    + "            - nights\n"
    + "            - office\n"  # line 12
)


def test_unknown_interval_names_in_routes_are_refused_with_their_line() -> None:
    with pytest.raises(RoutingConfigError) as info:
        load_routing(ROUTE_REFS)
    assert info.value.problems == [
        (
            "line 8: route.routes[0].mute_time_intervals[1]: "
            "unknown time interval 'weekends' (defined: nights)"
        ),
        (
            "line 12: route.routes[0].routes[0].active_time_intervals[1]: "
            "unknown time interval 'office' (defined: nights)"
        ),
    ]


def test_root_route_cannot_have_time_intervals_and_names_are_unique() -> None:
    text = (
        HEAD
        + "time_intervals:\n"
        + "  - {name: nights}\n"
        + "  - {name: nights}\n"  # line 4
        + "route:\n"
        + "  receiver: c\n"
        + "  active_time_intervals: [nights]\n"  # line 7
    )
    with pytest.raises(RoutingConfigError) as info:
        load_routing(text)
    problems = info.value.problems
    assert problems == [
        (
            "line 7: route.active_time_intervals: "
            "the root route cannot have active_time_intervals: put them on a child route"
        ),
        "line 4: time_intervals[1].name: duplicate time interval name 'nights'",
    ]


def test_model_validation_outside_the_loader_checks_interval_names() -> None:
    with pytest.raises(ValueError, match="unknown time interval 'x'"):
        RoutingConfig.model_validate(
            {
                "receivers": [{"name": "a", "console": {}}],
                "route": {"receiver": "a", "routes": [{"mute_time_intervals": ["x"]}]},
            }
        )


def test_clock_times_must_be_strings_outside_yaml_too() -> None:
    with pytest.raises(ValueError, match="write it as a string"):
        TimeInterval.model_validate({"times": [{"start_time": 540, "end_time": "17:00"}]})
