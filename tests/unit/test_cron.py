"""Cron semantics: parsing, cronie day rules, DST behaviour, counting.

Every expected instant in the tables below was worked out by hand from the 2026 calendar
(1 Jan 2026 is a Thursday, 1 Feb and 1 Mar are Sundays, 1 Apr a Wednesday) and the 2026
zone changes:

* America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT ->
  01:00 EST (06:00Z).
* Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST (01:00Z); 2026-10-25 02:00 BST -> 01:00
  GMT (01:00Z).
* America/Havana (midnight is skipped and repeated): 2026-03-08 00:00 CST -> 01:00 CDT
  (05:00Z); 2026-11-01 01:00 CDT -> 00:00 CST (05:00Z).
* America/Santiago: 2026-09-06 00:00 -04 -> 01:00 -03 (04:00Z); 2026-04-05 00:00 -03 ->
  2026-04-04 23:00 -04 (03:00Z).
* Asia/Beirut: 2026-03-29 00:00 EET -> 01:00 EEST (2026-03-28 22:00Z).
* Australia/Lord_Howe (half-hour shift): 2026-10-04 02:00 +10:30 -> 02:30 +11 (2026-10-03
  15:30Z); 2026-04-05 02:00 +11 -> 01:30 +10:30 (2026-04-04 15:00Z).
"""

from __future__ import annotations

import calendar
from bisect import bisect_right
from datetime import UTC, datetime, timedelta

import pytest

from triggerd.cron import (
    CronSchedule,
    Fire,
    count_fires,
    fire_to_json,
    fires_between,
    last_fires,
    next_fire,
    next_fires,
    parse_cron,
)
from triggerd.errors import CronError


def utc(text: str) -> datetime:
    """'2026-03-08T07:00' -> an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(expression: str, after: str, count: int, tz: str = "UTC") -> list[str]:
    """The next fires as compact 'at|local|note' strings."""
    schedule = parse_cron(expression, tz)
    return [_compact(f) for f in next_fires(schedule, utc(after), count)]


def _compact(fire: Fire) -> str:
    data = fire_to_json(fire)
    return f"{data['at']}|{data['local']}|{data['note'] or '-'}"


def ats(expression: str, after: str, count: int, tz: str = "UTC") -> list[str]:
    """The next fires' UTC instants only."""
    schedule = parse_cron(expression, tz)
    return [fire_to_json(f)["at"] or "" for f in next_fires(schedule, utc(after), count)]


# --- syntax and day rules (UTC) -----------------------------------------------------------

SYNTAX_CASES = [
    # A range N-N is one value (croniter 7 reads "8-8" as every hour).
    ("0 8-8 * * *", "2026-01-01T00:00", ["2026-01-01T08:00:00Z", "2026-01-02T08:00:00Z"]),
    (
        "*/15 * * * *",
        "2026-01-01T00:00",
        ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"],
    ),
    ("5/20 * * * *", "2026-01-01T00:00", ["2026-01-01T00:05:00Z", "2026-01-01T00:25:00Z"]),
    (
        "0 9-17/4 * * *",
        "2026-01-01T00:00",
        ["2026-01-01T09:00:00Z", "2026-01-01T13:00:00Z", "2026-01-01T17:00:00Z"],
    ),
    ("0 0 1,15 * *", "2026-01-01T00:00", ["2026-01-15T00:00:00Z", "2026-02-01T00:00:00Z"]),
    # L: the last day of each month.
    (
        "0 0 L * *",
        "2026-01-01T00:00",
        ["2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-31T00:00:00Z"],
    ),
    ("0 0 L 2 *", "2027-06-01T00:00", ["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"]),
    (
        "0 0 15,L * *",
        "2026-01-01T00:00",
        ["2026-01-15T00:00:00Z", "2026-01-31T00:00:00Z", "2026-02-15T00:00:00Z"],
    ),
    ("0 0 29 2 *", "2026-01-01T00:00", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
    # #: the n-th weekday of the month.
    (
        "0 0 * * 1#1",
        "2026-01-01T00:00",
        [
            "2026-01-05T00:00:00Z",
            "2026-02-02T00:00:00Z",
            "2026-03-02T00:00:00Z",
            "2026-04-06T00:00:00Z",
        ],
    ),
    (
        "0 0 * * mon#2",
        "2026-01-01T00:00",
        ["2026-01-12T00:00:00Z", "2026-02-09T00:00:00Z", "2026-03-09T00:00:00Z"],
    ),
    ("0 0 * * 5#5", "2026-01-01T00:00", ["2026-01-30T00:00:00Z", "2026-05-29T00:00:00Z"]),
    ("0 0 * * 7#1", "2026-01-01T00:00", ["2026-01-04T00:00:00Z", "2026-02-01T00:00:00Z"]),
    # 0 and 7 are Sunday; names in any case.
    ("0 0 * * 0", "2026-01-01T00:00", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("0 0 * * 7", "2026-01-01T00:00", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("0 0 * * Sun", "2026-01-01T00:00", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    (
        "0 0 * * FRI-SUN",
        "2026-01-01T00:00",
        [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-09T00:00:00Z",
        ],
    ),
    ("0 0 * * 5-7", "2026-01-03T00:00", ["2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z"]),
    ("0 0 1 jan,Jul *", "2026-01-01T00:00", ["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
    ("0 0 1 FEB-apr/2 *", "2026-01-01T00:00", ["2026-02-01T00:00:00Z", "2026-04-01T00:00:00Z"]),
    # cronie: both day fields restricted -> a day matches if EITHER does.
    (
        "0 0 13 * 5",
        "2026-01-01T00:00",
        [
            "2026-01-02T00:00:00Z",
            "2026-01-09T00:00:00Z",
            "2026-01-13T00:00:00Z",
            "2026-01-16T00:00:00Z",
        ],
    ),
    (
        "0 0 L * 1",
        "2026-01-20T00:00",
        ["2026-01-26T00:00:00Z", "2026-01-31T00:00:00Z", "2026-02-02T00:00:00Z"],
    ),
    (
        "0 0 1 * 1#1",
        "2026-01-01T00:00",
        [
            "2026-01-05T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-02T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-03-02T00:00:00Z",
        ],
    ),
    # cronie: either field starting with '*' (also '*/2') -> BOTH must match.
    # Day 1 on a Sunday, Tuesday, Thursday or Saturday: Feb 1 (Sun), Mar 1 (Sun), Aug 1 (Sat).
    (
        "0 0 1 * */2",
        "2026-01-01T00:00",
        ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-08-01T00:00:00Z"],
    ),
    # Odd days that are Mondays: Jan 5, Jan 19, Feb 9, Feb 23.
    (
        "0 0 */2 * 1",
        "2026-01-01T00:00",
        [
            "2026-01-05T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-02-09T00:00:00Z",
            "2026-02-23T00:00:00Z",
        ],
    ),
    ("0 0 * * 1", "2026-01-01T00:00", ["2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"]),
    ("0 0 13 * *", "2026-01-01T00:00", ["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"]),
    # Six fields: the LEADING one is seconds.
    (
        "15,45 0 12 * * *",
        "2026-01-01T00:00",
        ["2026-01-01T12:00:15Z", "2026-01-01T12:00:45Z", "2026-01-02T12:00:15Z"],
    ),
    (
        "*/20 * * * * *",
        "2026-01-01T00:00",
        ["2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"],
    ),
    # Aliases.
    ("@yearly", "2026-01-01T00:00", ["2027-01-01T00:00:00Z"]),
    ("@annually", "2026-01-01T00:00", ["2027-01-01T00:00:00Z"]),
    ("@monthly", "2026-01-01T00:00", ["2026-02-01T00:00:00Z"]),
    ("@weekly", "2026-01-01T00:00", ["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"]),
    ("@daily", "2026-01-01T00:00", ["2026-01-02T00:00:00Z"]),
    ("@midnight", "2026-01-01T00:00", ["2026-01-02T00:00:00Z"]),
    ("@hourly", "2026-01-01T00:00", ["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"]),
    ("@DAILY", "2026-01-01T00:00", ["2026-01-02T00:00:00Z"]),
    # Strictly after: an instant that is itself a fire is not returned.
    ("0 0 1 1 *", "2026-01-01T00:00", ["2027-01-01T00:00:00Z"]),
    ("*/15 * * * *", "2026-01-01T00:14:59.999999", ["2026-01-01T00:15:00Z"]),
    ("59 23 31 12 *", "2026-06-01T00:00", ["2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"]),
]


@pytest.mark.parametrize(("expression", "after", "expected"), SYNTAX_CASES)
def test_next_fires_utc(expression: str, after: str, expected: list[str]) -> None:
    assert ats(expression, after, len(expected)) == expected


def test_after_in_another_zone_is_the_same_instant() -> None:
    schedule = parse_cron("0 * * * *")
    after = datetime.fromisoformat("2026-01-01T05:30:00+05:30")  # 00:00Z
    fire = next_fire(schedule, after)
    assert fire is not None
    assert fire.at == utc("2026-01-01T01:00")
    assert fire.at.tzinfo is UTC


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        next_fire(parse_cron("* * * * *"), datetime(2026, 1, 1))


def test_no_fire_after_the_last_representable_year() -> None:
    assert next_fire(parse_cron("0 0 1 1 *", "America/New_York"), utc("9998-06-01T00:00")) is None
    got = next_fires(parse_cron("0 0 1 1 *"), utc("9997-06-01T00:00"), 5)
    assert [f.at for f in got] == [utc("9998-01-01T00:00")]


@pytest.mark.parametrize(
    ("expression", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 0-3 * * *", True),
        ("0,30 1 * * *", True),
        ("*/10 30 2 * * *", True),  # the seconds field does not count
        ("@daily", True),
        ("*/30 * * * *", False),
        ("0 * * * *", False),
        ("0 */2 * * *", False),
        ("* 2 * * *", False),
        ("@hourly", False),
    ],
)
def test_is_fixed_time(expression: str, fixed: bool) -> None:
    assert parse_cron(expression).is_fixed_time is fixed


def test_parsed_fields() -> None:
    schedule = parse_cron("  0 9-17/4 L,1 jan-mar mon,5#2,7 ", "Europe/London")
    assert schedule == CronSchedule(
        expression="0 9-17/4 L,1 jan-mar mon,5#2,7",
        timezone="Europe/London",
        fields=("0", "0", "9-17/4", "L,1", "jan-mar", "mon,5#2,7"),
        seconds=(0,),
        minutes=(0,),
        hours=(9, 13, 17),
        days_of_month=frozenset({1}),
        last_day_of_month=True,
        months=(1, 2, 3),
        days_of_week=frozenset({0, 1}),
        nth_days_of_week=frozenset({(5, 2)}),
        day_or=True,
        zone=schedule.zone,
    )
    assert schedule.zone.key == "Europe/London"


def test_parse_is_cached() -> None:
    assert parse_cron("1 2 3 4 *", "Asia/Tokyo") is parse_cron("1 2 3 4 *", "Asia/Tokyo")


def test_fire_to_json() -> None:
    fire = next_fire(parse_cron("30 2 * * *", "America/New_York"), utc("2026-03-07T12:00"))
    assert fire is not None
    assert fire_to_json(fire) == {
        "at": "2026-03-08T07:00:00Z",
        "local": "2026-03-08T03:00:00-04:00",
        "note": "dst-gap",
    }


# --- errors -------------------------------------------------------------------------------

ERROR_CASES = [
    ("61 * * * *", "UTC", "minute: 61 is out of range 0-59"),
    ("* x * * *", "UTC", "hour: 'x' is not a valid value"),
    ("* 24 * * *", "UTC", "hour: 24 is out of range 0-23"),
    ("* * 0 * *", "UTC", "day-of-month: 0 is out of range 1-31"),
    ("* * 32 * *", "UTC", "day-of-month: 32 is out of range 1-31"),
    ("* * * 13 *", "UTC", "month: 13 is out of range 1-12"),
    ("* * * FOO *", "UTC", "month: 'FOO' is not a valid value"),
    ("* * * * 8", "UTC", "day-of-week: 8 is out of range 0-7"),
    ("* * * * MON-FOO", "UTC", "day-of-week: 'FOO' is not a valid value"),
    ("* * * * JAN", "UTC", "day-of-week: 'JAN' is not a valid value"),
    ("* * * MON *", "UTC", "month: 'MON' is not a valid value"),
    # Quartz's forms: the message blamed L itself, which alone is valid.
    ("0 12 L-2 * *", "UTC", "day-of-month: 'L-2' is not supported (the only such form is L"
     " alone, the month's last day, in day-of-month; use 5#5 style for the nth weekday)"),
    ("0 12 15W * *", "UTC", "day-of-month: '15W' is not supported (the only such form is L"
     " alone, the month's last day, in day-of-month; use 5#5 style for the nth weekday)"),
    ("0 12 * * 5L", "UTC", "day-of-week: '5L' is not supported (the only such form is L"
     " alone, the month's last day, in day-of-month; use 5#5 style for the nth weekday)"),
    ("60 * * * * *", "UTC", "second: 60 is out of range 0-59"),
    ("* * * * * x", "UTC", "day-of-week: 'x' is not a valid value"),
    ("*/0 * * * *", "UTC", "minute: step 0 must be at least 1"),
    ("*/x * * * *", "UTC", "minute: 'x' is not a valid step"),
    ("0 5-2 * * *", "UTC", "hour: range 5-2 is backwards"),
    ("1,,2 * * * *", "UTC", "minute: empty list item in '1,,2'"),
    ("-1 * * * *", "UTC", "minute: '-1' is not a valid value"),
    ("1- * * * *", "UTC", "minute: '1-' is not a valid value"),
    ("٣ * * * *", "UTC", "minute: '٣' is not a valid value"),
    ("0 L * * *", "UTC", "hour: 'L' is not a valid value"),
    ("0 0 L/2 * *", "UTC", "day-of-month: 'L/2' is not supported (the only such form is L"
     " alone, the month's last day, in day-of-month; use 5#5 style for the nth weekday)"),
    ("0 0 * * L", "UTC", "day-of-week: 'L' is not supported (the only such form is L"
     " alone, the month's last day, in day-of-month; use 5#5 style for the nth weekday)"),
    ("0 0 ? * *", "UTC", "day-of-month: '?' is not a valid value"),
    ("0 0 1#1 * *", "UTC", "day-of-month: '1#1' is not a valid value"),
    ("0 0 * * 1#6", "UTC", "day-of-week: week 6 in '1#6' is out of range 1-5"),
    ("0 0 * * 1#0", "UTC", "day-of-week: week 0 in '1#0' is out of range 1-5"),
    ("0 0 * * 1#x", "UTC", "day-of-week: '1#x' is not a valid value"),
    ("0 0 * * 9#1", "UTC", "day-of-week: 9 is out of range 0-7"),
    ("* * * *", "UTC", "expected 5 or 6 fields, got 4"),
    ("* * * * * * *", "UTC", "expected 5 or 6 fields, got 7 (a year field, as Quartz has,"
     " is not supported; 6 fields start with seconds)"),
    # Six fields with a year last read as seconds-first; the message said only the range.
    ("0 0 1 1 * 2030", "UTC", "day-of-week: 2030 is out of range 0-7 (6 fields start with"
     " seconds: a year field is not supported)"),
    ("", "UTC", "expected 5 or 6 fields, got 0"),
    ("@reboot", "UTC", "@reboot is not supported: a daemon's schedule needs instants"),
    (
        "@every 5m",
        "UTC",
        "unknown alias '@every 5m' (use one of @yearly, @annually, @monthly, @weekly,"
        " @daily, @midnight, @hourly)",
    ),
    (
        "0 0 30 2 *",
        "UTC",
        "'0 0 30 2 *' never fires: no date matches its day-of-month, month and day-of-week fields",
    ),
    (
        "0 0 31 4,6,9,11 *",
        "UTC",
        "'0 0 31 4,6,9,11 *' never fires: no date matches its day-of-month, month and"
        " day-of-week fields",
    ),
    # '*/2' in day-of-week makes both fields count: still never.
    (
        "0 0 30 2 */2",
        "UTC",
        "'0 0 30 2 */2' never fires: no date matches its day-of-month, month and"
        " day-of-week fields",
    ),
    ("* * * * *", "Mars/Base", "unknown time zone 'Mars/Base'"),
    ("* * * * *", "", "unknown time zone ''"),
    ("* * * * *", "America", "unknown time zone 'America'"),
    ("* * * * *", "../etc/passwd", "unknown time zone '../etc/passwd'"),
]


@pytest.mark.parametrize(("expression", "tz", "message"), ERROR_CASES)
def test_errors(expression: str, tz: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression, tz)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "expression",
    ["0 0 31 4 1", "0 0 30 2 1", "0 0 29 2 *", "0 0 L 2 *", "0 0 29 2 */7", "0 0 * * 5#5"],
)
def test_rare_but_possible_days_are_accepted(expression: str) -> None:
    assert next_fire(parse_cron(expression), utc("2026-01-01T00:00")) is not None


def test_non_string_input_is_a_cron_error() -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(5, "UTC")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "a cron expression and its time zone must be strings, got int and str"
    )


def test_error_for_four_fields_is_a_cron_error() -> None:
    with pytest.raises(CronError, match=r"^expected 5 or 6 fields, got 4$"):
        parse_cron("0 0 31 4")


# --- DST: hand-checked instants -----------------------------------------------------------

NY = "America/New_York"
LONDON = "Europe/London"

DST_CASES = [
    # New York, spring forward: a fixed time in the gap fires once, at 03:00 EDT.
    (
        "30 2 * * *",
        NY,
        "2026-03-07T12:00",
        [
            "2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|dst-gap",
            "2026-03-09T06:30:00Z|2026-03-09T02:30:00-04:00|-",
        ],
    ),
    (
        "0 2 * * *",
        NY,
        "2026-03-07T12:00",
        ["2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|dst-gap"],
    ),
    # Two fixed times in the gap and the regular 03:00: one fire, at 07:00Z.
    (
        "0,30 2,3 * * *",
        NY,
        "2026-03-08T05:00",
        [
            "2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|-",
            "2026-03-08T07:30:00Z|2026-03-08T03:30:00-04:00|-",
            "2026-03-09T06:00:00Z|2026-03-09T02:00:00-04:00|-",
        ],
    ),
    ("0 3 * * *", NY, "2026-03-08T05:00", ["2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|-"]),
    # Non-fixed schedules fire at real instants only: nothing in the gap.
    (
        "*/30 * * * *",
        NY,
        "2026-03-08T06:15",
        [
            "2026-03-08T06:30:00Z|2026-03-08T01:30:00-05:00|-",
            "2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|-",
            "2026-03-08T07:30:00Z|2026-03-08T03:30:00-04:00|-",
        ],
    ),
    (
        "0 */2 * * *",
        NY,
        "2026-03-08T05:30",
        ["2026-03-08T08:00:00Z|2026-03-08T04:00:00-04:00|-"],
    ),
    # Midnight is real on both sides of the change: Mar 8, 9 and 10 (APScheduler 3.11
    # skips Mar 9).
    (
        "0 0 * * *",
        NY,
        "2026-03-07T06:00",
        [
            "2026-03-08T05:00:00Z|2026-03-08T00:00:00-05:00|-",
            "2026-03-09T04:00:00Z|2026-03-09T00:00:00-04:00|-",
            "2026-03-10T04:00:00Z|2026-03-10T00:00:00-04:00|-",
        ],
    ),
    # New York, fall back: a fixed time in the repeated hour fires once, the first time.
    (
        "30 1 * * *",
        NY,
        "2026-10-31T12:00",
        [
            "2026-11-01T05:30:00Z|2026-11-01T01:30:00-04:00|dst-fold",
            "2026-11-02T06:30:00Z|2026-11-02T01:30:00-05:00|-",
        ],
    ),
    (
        "30 1-2 * * *",
        NY,
        "2026-10-31T12:00",
        [
            "2026-11-01T05:30:00Z|2026-11-01T01:30:00-04:00|dst-fold",
            "2026-11-01T07:30:00Z|2026-11-01T02:30:00-05:00|-",
        ],
    ),
    # Asked from inside the repeated hour, the fixed time is not repeated.
    (
        "30 1 * * *",
        NY,
        "2026-11-01T05:45",
        ["2026-11-02T06:30:00Z|2026-11-02T01:30:00-05:00|-"],
    ),
    (
        "45 1 * * *",
        NY,
        "2026-11-01T05:30",
        ["2026-11-01T05:45:00Z|2026-11-01T01:45:00-04:00|dst-fold"],
    ),
    (
        "15 1 * * *",
        NY,
        "2026-11-01T06:05",
        ["2026-11-02T06:15:00Z|2026-11-02T01:15:00-05:00|-"],
    ),
    # Non-fixed schedules fire in both passes of the repeated hour.
    (
        "*/30 * * * *",
        NY,
        "2026-11-01T04:45",
        [
            "2026-11-01T05:00:00Z|2026-11-01T01:00:00-04:00|dst-fold",
            "2026-11-01T05:30:00Z|2026-11-01T01:30:00-04:00|dst-fold",
            "2026-11-01T06:00:00Z|2026-11-01T01:00:00-05:00|dst-fold",
            "2026-11-01T06:30:00Z|2026-11-01T01:30:00-05:00|dst-fold",
            "2026-11-01T07:00:00Z|2026-11-01T02:00:00-05:00|-",
        ],
    ),
    # ... also when asked from inside the first or the second pass.
    (
        "*/30 * * * *",
        NY,
        "2026-11-01T05:10",
        [
            "2026-11-01T05:30:00Z|2026-11-01T01:30:00-04:00|dst-fold",
            "2026-11-01T06:00:00Z|2026-11-01T01:00:00-05:00|dst-fold",
        ],
    ),
    (
        "*/30 * * * *",
        NY,
        "2026-11-01T05:45",
        [
            "2026-11-01T06:00:00Z|2026-11-01T01:00:00-05:00|dst-fold",
            "2026-11-01T06:30:00Z|2026-11-01T01:30:00-05:00|dst-fold",
        ],
    ),
    (
        "*/30 * * * *",
        NY,
        "2026-11-01T06:10",
        [
            "2026-11-01T06:30:00Z|2026-11-01T01:30:00-05:00|dst-fold",
            "2026-11-01T07:00:00Z|2026-11-01T02:00:00-05:00|-",
        ],
    ),
    (
        "0 * * * *",
        NY,
        "2026-11-01T04:30",
        [
            "2026-11-01T05:00:00Z|2026-11-01T01:00:00-04:00|dst-fold",
            "2026-11-01T06:00:00Z|2026-11-01T01:00:00-05:00|dst-fold",
            "2026-11-01T07:00:00Z|2026-11-01T02:00:00-05:00|-",
        ],
    ),
    # London, spring forward at 01:00 GMT.
    (
        "30 1 * * *",
        LONDON,
        "2026-03-28T12:00",
        [
            "2026-03-29T01:00:00Z|2026-03-29T02:00:00+01:00|dst-gap",
            "2026-03-30T00:30:00Z|2026-03-30T01:30:00+01:00|-",
        ],
    ),
    (
        "0 1 * * *",
        LONDON,
        "2026-03-28T12:00",
        [
            "2026-03-29T01:00:00Z|2026-03-29T02:00:00+01:00|dst-gap",
            "2026-03-30T00:00:00Z|2026-03-30T01:00:00+01:00|-",
        ],
    ),
    ("0 2 * * *", LONDON, "2026-03-28T12:00", ["2026-03-29T01:00:00Z|2026-03-29T02:00:00+01:00|-"]),
    # London, fall back at 02:00 BST.
    (
        "30 1 * * *",
        LONDON,
        "2026-10-24T12:00",
        [
            "2026-10-25T00:30:00Z|2026-10-25T01:30:00+01:00|dst-fold",
            "2026-10-26T01:30:00Z|2026-10-26T01:30:00+00:00|-",
        ],
    ),
    (
        "*/30 * * * *",
        LONDON,
        "2026-10-24T23:45",
        [
            "2026-10-25T00:00:00Z|2026-10-25T01:00:00+01:00|dst-fold",
            "2026-10-25T00:30:00Z|2026-10-25T01:30:00+01:00|dst-fold",
            "2026-10-25T01:00:00Z|2026-10-25T01:00:00+00:00|dst-fold",
            "2026-10-25T01:30:00Z|2026-10-25T01:30:00+00:00|dst-fold",
            "2026-10-25T02:00:00Z|2026-10-25T02:00:00+00:00|-",
        ],
    ),
    # Havana: midnight itself is skipped in spring and repeated in autumn.
    (
        "0 0 * * *",
        "America/Havana",
        "2026-03-06T12:00",
        [
            "2026-03-07T05:00:00Z|2026-03-07T00:00:00-05:00|-",
            "2026-03-08T05:00:00Z|2026-03-08T01:00:00-04:00|dst-gap",
            "2026-03-09T04:00:00Z|2026-03-09T00:00:00-04:00|-",
        ],
    ),
    (
        "0 0 * * *",
        "America/Havana",
        "2026-10-31T12:00",
        [
            "2026-11-01T04:00:00Z|2026-11-01T00:00:00-04:00|dst-fold",
            "2026-11-02T05:00:00Z|2026-11-02T00:00:00-05:00|-",
        ],
    ),
    (
        "*/20 0 * * *",
        "America/Havana",
        "2026-03-07T12:00",
        ["2026-03-09T04:00:00Z|2026-03-09T00:00:00-04:00|-"],
    ),
    # Santiago: midnight skipped on 6 Sep; 23:00-24:00 of 4 Apr repeated.
    (
        "0 0 * * *",
        "America/Santiago",
        "2026-09-05T12:00",
        [
            "2026-09-06T04:00:00Z|2026-09-06T01:00:00-03:00|dst-gap",
            "2026-09-07T03:00:00Z|2026-09-07T00:00:00-03:00|-",
        ],
    ),
    (
        "0 23 * * *",
        "America/Santiago",
        "2026-04-04T12:00",
        [
            "2026-04-05T02:00:00Z|2026-04-04T23:00:00-03:00|dst-fold",
            "2026-04-06T03:00:00Z|2026-04-05T23:00:00-04:00|-",
        ],
    ),
    (
        "0 0 * * *",
        "America/Santiago",
        "2026-04-03T12:00",
        [
            "2026-04-04T03:00:00Z|2026-04-04T00:00:00-03:00|-",
            "2026-04-05T04:00:00Z|2026-04-05T00:00:00-04:00|-",
        ],
    ),
    # Beirut: midnight skipped on 29 Mar.
    (
        "0 0 * * *",
        "Asia/Beirut",
        "2026-03-28T12:00",
        [
            "2026-03-28T22:00:00Z|2026-03-29T01:00:00+03:00|dst-gap",
            "2026-03-29T21:00:00Z|2026-03-30T00:00:00+03:00|-",
        ],
    ),
    # Lord Howe moves by half an hour.
    (
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T00:00",
        [
            "2026-10-03T15:30:00Z|2026-10-04T02:30:00+11:00|dst-gap",
            "2026-10-04T15:15:00Z|2026-10-05T02:15:00+11:00|-",
        ],
    ),
    (
        "45 1 * * *",
        "Australia/Lord_Howe",
        "2026-04-04T00:00",
        [
            "2026-04-04T14:45:00Z|2026-04-05T01:45:00+11:00|dst-fold",
            "2026-04-05T15:15:00Z|2026-04-06T01:45:00+10:30|-",
        ],
    ),
    # Seconds in a fixed-time job: the whole gap collapses into one fire.
    (
        "*/20 30 2 * * *",
        NY,
        "2026-03-08T06:00",
        [
            "2026-03-08T07:00:00Z|2026-03-08T03:00:00-04:00|dst-gap",
            "2026-03-09T06:30:00Z|2026-03-09T02:30:00-04:00|-",
        ],
    ),
]


@pytest.mark.parametrize(("expression", "tz", "after", "expected"), DST_CASES)
def test_dst(expression: str, tz: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, len(expected), tz) == expected


# --- DST: against a brute-force oracle ----------------------------------------------------


def _wall_matches(schedule: CronSchedule, wall: datetime) -> bool:
    """An independent, slow reading of the cronie rules for one wall time."""
    if not (
        wall.second in schedule.seconds
        and wall.minute in schedule.minutes
        and wall.hour in schedule.hours
        and wall.month in schedule.months
    ):
        return False
    length = calendar.monthrange(wall.year, wall.month)[1]
    weekday = wall.isoweekday() % 7
    dom = wall.day in schedule.days_of_month or (schedule.last_day_of_month and wall.day == length)
    dow = weekday in schedule.days_of_week or (
        (weekday, (wall.day - 1) // 7 + 1) in schedule.nth_days_of_week
    )
    return (dom or dow) if schedule.day_or else (dom and dow)


def _oracle(schedule: CronSchedule, start: datetime, end: datetime, step: int) -> list[Fire]:
    """Every instant in (start, end] on a `step`-second grid, judged one by one."""
    zone = schedule.zone
    found: list[Fire] = []
    instant = start + timedelta(seconds=step)
    while instant <= end:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        ambiguous = (
            wall.replace(tzinfo=zone, fold=0).utcoffset()
            != wall.replace(tzinfo=zone, fold=1).utcoffset()
        )
        regular = _wall_matches(schedule, wall)
        if schedule.is_fixed_time and ambiguous and local.fold == 1:
            regular = False
        moved = False
        before = (instant - timedelta(seconds=1)).astimezone(zone).utcoffset()
        after = local.utcoffset()
        assert before is not None and after is not None
        if schedule.is_fixed_time and after > before:
            skipped = (instant + before).replace(tzinfo=None)
            while skipped < wall:
                moved = moved or _wall_matches(schedule, skipped)
                skipped += timedelta(seconds=step)
        if regular or moved:
            note = "dst-fold" if ambiguous else None if regular else "dst-gap"
            found.append(Fire(at=instant, local=local, note=note))
        instant += timedelta(seconds=step)
    return found


ORACLE_WINDOWS = [
    (NY, "2026-03-07T18:00", "2026-03-09T06:00"),
    (NY, "2026-10-31T18:00", "2026-11-02T06:00"),
    (LONDON, "2026-03-28T12:00", "2026-03-30T00:00"),
    (LONDON, "2026-10-24T12:00", "2026-10-26T00:00"),
    ("America/Havana", "2026-03-07T12:00", "2026-03-09T00:00"),
    ("America/Havana", "2026-10-31T12:00", "2026-11-02T00:00"),
    ("America/Santiago", "2026-04-04T00:00", "2026-04-05T12:00"),
    ("America/Santiago", "2026-09-05T12:00", "2026-09-07T00:00"),
    ("Australia/Lord_Howe", "2026-04-04T00:00", "2026-04-05T12:00"),
    ("Australia/Lord_Howe", "2026-10-03T00:00", "2026-10-04T12:00"),
]
ORACLE_EXPRESSIONS = [
    "30 2 * * *",
    "0 0 * * *",
    "*/30 * * * *",
    "0 * * * *",
    "15 1-3 * * *",
    "*/20 0-2 * * *",
    "0,30 2,3 * * *",
    "45 1 * * *",
    "0 23 * * *",
    "*/7 * * * *",
    "10 0,2 * * 0",
]


@pytest.mark.parametrize(("tz", "start", "end"), ORACLE_WINDOWS)
def test_fires_match_the_oracle(tz: str, start: str, end: str) -> None:
    for expression in ORACLE_EXPRESSIONS:
        schedule = parse_cron(expression, tz)
        expected = _oracle(schedule, utc(start), utc(end), 60)
        got = fires_between(schedule, utc(start), utc(end))
        assert got == expected, expression
        assert count_fires(schedule, utc(start), utc(end)) == len(expected), expression


def test_seconds_schedule_matches_the_oracle_across_a_gap_and_a_fold() -> None:
    for expression in ("*/20 * 1-3 * * *", "5,55 59 1 * * *", "0 30 1 * * *"):
        schedule = parse_cron(expression, NY)
        for start, end in (
            ("2026-03-08T05:30", "2026-03-08T08:30"),
            ("2026-11-01T04:30", "2026-11-01T07:30"),
        ):
            expected = _oracle(schedule, utc(start), utc(end), 1)
            assert fires_between(schedule, utc(start), utc(end)) == expected, expression
            assert count_fires(schedule, utc(start), utc(end)) == len(expected), expression


# --- ranges and counting ------------------------------------------------------------------


def test_fires_between_bounds_and_limit() -> None:
    schedule = parse_cron("0 * * * *")
    got = fires_between(schedule, utc("2026-01-01T01:00"), utc("2026-01-01T04:00"))
    assert [f.at for f in got] == [
        utc("2026-01-01T02:00"),
        utc("2026-01-01T03:00"),
        utc("2026-01-01T04:00"),
    ]
    limited = fires_between(schedule, utc("2026-01-01T01:00"), utc("2026-01-01T04:00"), limit=2)
    assert [f.at for f in limited] == [utc("2026-01-01T02:00"), utc("2026-01-01T03:00")]
    assert fires_between(schedule, utc("2026-01-01T04:00"), utc("2026-01-01T01:00")) == []


@pytest.mark.parametrize(
    ("expression", "tz", "expected"),
    [
        # 365 days x 48, minus 02:00 and 02:30 on Mar 8, plus the repeated 01:00 and 01:30.
        ("*/30 * * * *", NY, 365 * 48),
        ("30 2 * * *", NY, 365),  # moved out of the gap, not dropped
        ("30 1 * * *", NY, 365),  # not repeated
        ("0,30 2,3 * * *", NY, 365 * 4 - 2),  # 02:00, 02:30 and 03:00 on Mar 8 are one fire
        ("0 * * * *", NY, 365 * 24),  # 02:00 lost in spring, 01:00 twice in autumn
        ("0 * * * *", "Asia/Kolkata", 365 * 24),
        ("0 0 * * 1#1", "UTC", 12),
        ("0 0 L * *", "UTC", 12),
        ("* * * * *", LONDON, 365 * 1440),
        ("*/10 * * * * *", "UTC", 365 * 8640),
    ],
)
def test_count_fires_over_2026(expression: str, tz: str, expected: int) -> None:
    schedule = parse_cron(expression, tz)
    assert count_fires(schedule, utc("2025-12-31T23:59:59"), utc("2026-12-31T23:59:59")) == (
        expected
    )


def test_count_fires_is_exclusive_at_start_and_inclusive_at_end() -> None:
    schedule = parse_cron("0 * * * *")
    assert count_fires(schedule, utc("2026-01-01T01:00"), utc("2026-01-01T03:00")) == 2
    assert count_fires(schedule, utc("2026-01-01T00:59:59.5"), utc("2026-01-01T03:00")) == 3
    assert count_fires(schedule, utc("2026-01-01T01:00"), utc("2026-01-01T02:59:59.9")) == 1
    assert count_fires(schedule, utc("2026-01-01T03:00"), utc("2026-01-01T01:00")) == 0


def test_count_agrees_with_enumeration_over_many_windows() -> None:
    expressions = ["*/30 * * * *", "30 2 * * *", "30 1 * * *", "0 1-3 * * 0", "0 0 L * *"]
    start = utc("2026-02-20T00:00")
    for expression in expressions:
        schedule = parse_cron(expression, NY)
        every = [f.at for f in fires_between(schedule, start, utc("2027-02-01T00:00"))]
        for offset in range(0, 330 * 24, 37):
            low = start + timedelta(hours=offset, minutes=13)
            high = low + timedelta(days=5, hours=offset % 29)
            expected = bisect_right(every, high) - bisect_right(every, low)
            assert count_fires(schedule, low, high) == expected, (expression, low, high)


def test_last_fires_are_the_newest_oldest_first() -> None:
    schedule = parse_cron("*/30 * * * *", NY)
    start, end = utc("2026-10-31T00:00"), utc("2026-11-01T07:00")
    every = fires_between(schedule, start, end)
    for count in (0, 1, 2, 5, 7, len(every), len(every) + 3):
        assert last_fires(schedule, start, end, count) == every[max(0, len(every) - count) :]


def test_last_fires_over_a_long_range_is_cheap() -> None:
    schedule = parse_cron("* * * * * *", LONDON)  # 31.5 million fires a year
    got = last_fires(schedule, utc("2025-01-01T00:00"), utc("2026-01-01T00:00"), 3)
    assert [f.at for f in got] == [
        utc("2025-12-31T23:59:58"),
        utc("2025-12-31T23:59:59"),
        utc("2026-01-01T00:00"),
    ]


@pytest.mark.parametrize("tz", ["UTC", NY, "Pacific/Kiritimati"])
def test_the_ends_of_time_agree_and_do_not_overflow(tz: str) -> None:
    # Fires exist for instants from 0001-01-03 and wall times up to the end of 9998.
    for expression in ("*/30 * * * *", "30 2 * * *"):
        schedule = parse_cron(expression, tz)
        for start, end in (
            (utc("9998-12-01T00:00"), datetime.max.replace(tzinfo=UTC)),
            (datetime.min.replace(tzinfo=UTC), utc("0001-02-01T00:00")),
        ):
            every = fires_between(schedule, start, end)
            assert len(every) > 20
            assert count_fires(schedule, start, end) == len(every)
            assert last_fires(schedule, start, end, 2) == every[-2:]
        assert next_fire(schedule, datetime.max.replace(tzinfo=UTC)) is None


def test_pairs_of_one_expression_share_its_fields_but_keep_their_zone() -> None:
    utc = parse_cron("30 9 * * 1-5", "UTC")
    madrid = parse_cron("30 9 * * 1-5", "Europe/Madrid")
    assert (madrid.timezone, madrid.zone.key) == ("Europe/Madrid", "Europe/Madrid")
    assert (utc.timezone, utc.zone.key) == ("UTC", "UTC")
    assert madrid.fields == utc.fields and madrid.minutes == utc.minutes
    after = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # a Monday
    assert next_fire(utc, after).at == datetime(2026, 12, 7, 9, 30, tzinfo=UTC)  # type: ignore[union-attr]
    assert next_fire(madrid, after).at == datetime(2026, 12, 7, 8, 30, tzinfo=UTC)  # type: ignore[union-attr]


def test_an_unknown_zone_is_reported_before_a_bad_expression() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Mars/Base'"):
        parse_cron("61 * * * *", "Mars/Base")
    with pytest.raises(CronError, match="never fires"):
        parse_cron("0 0 31 2 *", "Europe/Madrid")
