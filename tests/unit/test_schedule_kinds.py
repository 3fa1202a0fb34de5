"""Tables for the schedule kinds behind the one interface: cron lists, intervals (absolute
durations across DST), calendar filters (holidays of two countries, shift, DST, leap days)
and bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from triggerd.cron import fire_to_json, utc_iso
from triggerd.errors import Conflict
from triggerd.schedules import Schedule, schedule_of

MADRID = {"name": "madrid", "timezone": "Europe/Madrid",
          "holidays": {"country": "ES", "subdivision": "MD"}}
NEW_YORK = {"name": "ny", "timezone": "America/New_York",
            "holidays": {"country": "US", "subdivision": "NY"}}


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ats(fires: list[Any]) -> list[str]:
    return [utc_iso(f.at) for f in fires]


def nexts(schedule: Schedule, after: str, count: int) -> list[str]:
    out: list[str] = []
    at = z(after)
    for _ in range(count):
        fire = schedule.next_fire(at)
        if fire is None:
            break
        out.append(utc_iso(fire.at))
        at = fire.at
    return out


INTERVALS = [
    # every, offset, start_at, timezone, after, expected next fires
    ("6h", "5m", None, "UTC", "2027-01-01T00:00:00Z",
     ["2027-01-01T00:05:00Z", "2027-01-01T06:05:00Z", "2027-01-01T12:05:00Z"]),
    # An interval is an absolute duration: across Madrid's spring-forward the spacing stays
    # 6h and the local wall time moves from 01:05 to 08:05 (not 07:05).
    ("6h", "5m", None, "Europe/Madrid", "2027-03-27T23:00:00Z",
     ["2027-03-28T00:05:00Z", "2027-03-28T06:05:00Z"]),
    # Leap day: a daily interval passes through 29 February like any other day.
    ("1d", "12h", None, "UTC", "2028-02-28T12:00:00Z",
     ["2028-02-29T12:00:00Z", "2028-03-01T12:00:00Z"]),
    # Phase from start_at (not the epoch) when there is one; nothing before start_at.
    ("90m", "0s", "2027-05-01T10:10:00+00:00", "UTC", "2027-01-01T00:00:00Z",
     ["2027-05-01T10:10:00Z", "2027-05-01T11:40:00Z"]),
    ("7s", "0s", None, "UTC", "1970-01-01T00:00:00Z",
     ["1970-01-01T00:00:07Z", "1970-01-01T00:00:14Z"]),
]


@pytest.mark.parametrize(("every", "offset", "start_at", "tz", "after", "expected"), INTERVALS)
def test_interval_fires(every: str, offset: str, start_at: str | None, tz: str, after: str,
                        expected: list[str]) -> None:
    config: dict[str, Any] = {"every": every, "offset": offset, "timezone": tz}
    if start_at:
        config["start_at"] = start_at
    schedule = schedule_of("interval", config)
    assert nexts(schedule, after, len(expected)) == expected
    first, last = z(after), z(expected[-1])
    assert ats(schedule.fires_between(first, last)) == expected
    assert schedule.count_fires(first, last) == len(expected)
    assert ats(schedule.last_fires(first, last, 1)) == expected[-1:]


def test_interval_local_times_across_dst() -> None:
    schedule = schedule_of("interval", {"every": "6h", "offset": "5m",
                                        "timezone": "Europe/Madrid"})
    preview = [fire_to_json(f) for f in schedule.preview(z("2027-03-27T23:00:00Z"), 2)]
    assert [p["local"] for p in preview] == ["2027-03-28T01:05:00+01:00",
                                             "2027-03-28T08:05:00+02:00"]


def test_interval_key_is_shared_and_distinct() -> None:
    a = schedule_of("interval", {"every": "6h"})
    assert a.key == schedule_of("interval", {"every": "360m"}).key
    assert a.key != schedule_of("interval", {"every": "6h", "offset": "1m"}).key
    assert a.key != schedule_of("cron", {"cron": "0 */6 * * *"}).key


def test_cron_list_fires_a_coinciding_instant_once() -> None:
    # 2027-03-01 is a Monday: both expressions match 09:00 then.
    schedule = schedule_of("cron", {"cron": ["0 9 * * *", "0 9 * * 1", "30 9 1 * *"]})
    expected = ["2027-03-01T09:00:00Z", "2027-03-01T09:30:00Z", "2027-03-02T09:00:00Z"]
    assert nexts(schedule, "2027-02-28T12:00:00Z", 3) == expected
    assert ats(schedule.fires_between(z("2027-02-28T12:00:00Z"), z(expected[-1]))) == expected
    assert schedule.count_fires(z("2027-02-28T12:00:00Z"), z(expected[-1])) == 3
    assert ats(schedule.last_fires(z("2027-02-28T12:00:00Z"), z(expected[-1]), 2)) == expected[1:]


def test_a_one_item_cron_list_is_the_cron() -> None:
    assert (schedule_of("cron", {"cron": ["0 9 * * *"]}).key
            == schedule_of("cron", {"cron": "0 9 * * *"}).key)


CALENDARS = [
    # Constitution Day (Mon 6 Dec 2027) and Immaculate Conception (Wed 8 Dec) in Madrid.
    ("0 9 * * *", "Europe/Madrid", MADRID, {"only": "madrid"}, "2027-12-05T00:00:00Z",
     ["2027-12-07T08:00:00Z", "2027-12-09T08:00:00Z", "2027-12-10T08:00:00Z"]),
    # shift next: Monday's slot moves to Tuesday 09:00 and coincides with Tuesday's own.
    ("0 9 * * *", "Europe/Madrid", MADRID, {"only": "madrid", "shift": "next"},
     "2027-12-05T00:00:00Z",
     ["2027-12-07T08:00:00Z", "2027-12-09T08:00:00Z", "2027-12-10T08:00:00Z"]),
    # A monthly slot on a holiday moves to the previous working day.
    ("0 9 6 12 *", "Europe/Madrid", MADRID, {"only": "madrid", "shift": "previous"},
     "2027-11-01T00:00:00Z", ["2027-12-03T08:00:00Z", "2028-12-05T08:00:00Z"]),
    # New York: Independence Day 2027 (Sunday 4 July) and its observance on Monday 5;
    # `skip` removes only holidays (Saturday stays).
    ("0 12 * * *", "America/New_York", NEW_YORK, {"skip": "ny"}, "2027-07-03T00:00:00Z",
     ["2027-07-03T16:00:00Z", "2027-07-06T16:00:00Z", "2027-07-07T16:00:00Z"]),
    # Thanksgiving (Thu 25 Nov 2027) moves to Friday with shift next.
    ("0 12 25 11 *", "America/New_York", NEW_YORK, {"only": "ny", "shift": "next"},
     "2027-01-01T00:00:00Z", ["2027-11-26T17:00:00Z"]),
    # Leap day as an extra day off: shift previous lands on the 28th.
    ("0 8 29 2 *", "UTC", {"name": "c", "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat",
                                                       "sun"], "dates": ["2028-02-29"]},
     {"only": "c", "shift": "previous"}, "2027-01-01T00:00:00Z", ["2028-02-28T08:00:00Z"]),
    # DST: a Saturday 02:30 slot shifted to Sunday 28 March 2027 falls into Madrid's gap
    # (02:00 -> 03:00) and fires at the jump, 03:00 CEST, as the cron's own gap fire does
    # (it fired at 03:30, and a daily job ran twice that night).
    ("30 2 * * 6", "Europe/Madrid",
     {"name": "c", "timezone": "Europe/Madrid",
      "weekdays": ["sun", "mon", "tue", "wed", "thu", "fri"]},
     {"only": "c", "shift": "next"}, "2027-03-26T00:00:00Z", ["2027-03-28T01:00:00Z"]),
    ("30 2 * * *", "Europe/Madrid",
     {"name": "c", "timezone": "Europe/Madrid",
      "weekdays": ["sun", "mon", "tue", "wed", "thu", "fri"]},
     {"only": "c", "shift": "next"}, "2027-03-26T12:00:00Z",
     ["2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"]),
]


@pytest.mark.parametrize(("expr", "tz", "calendar", "ref", "after", "expected"), CALENDARS)
def test_calendar_filters(expr: str, tz: str, calendar: dict[str, Any], ref: dict[str, Any],
                          after: str, expected: list[str]) -> None:
    schedule = schedule_of("cron", {"cron": expr, "timezone": tz,
                                    "calendar": {**ref, "definition": calendar}})
    assert nexts(schedule, after, len(expected)) == expected
    first, last = z(after), z(expected[-1])
    assert ats(schedule.fires_between(first, last)) == expected
    assert schedule.count_fires(first, last) == len(expected)
    assert ats(schedule.last_fires(first, last, 2)) == expected[-2:]


def test_shifted_preview_names_the_nominal_instant() -> None:
    schedule = schedule_of("cron", {"cron": "0 9 6 12 *", "timezone": "Europe/Madrid",
                                    "calendar": {"only": "m", "shift": "previous",
                                                 "definition": MADRID}})
    [fire] = [fire_to_json(f) for f in schedule.preview(z("2027-11-01T00:00:00Z"), 1)]
    assert fire == {"at": "2027-12-03T08:00:00Z", "local": "2027-12-03T09:00:00+01:00",
                    "note": "shifted", "nominal": "2027-12-06T08:00:00Z"}


def test_excluded_days_are_listed_but_marked_in_previews() -> None:
    schedule = schedule_of("cron", {"cron": "0 9 * * *", "timezone": "Europe/Madrid",
                                    "calendar": {"only": "m", "definition": MADRID}})
    preview = [fire_to_json(f) for f in schedule.preview(z("2027-12-05T12:00:00Z"), 2)]
    assert [(p["at"], p["note"], p.get("reason")) for p in preview] == [
        ("2027-12-06T08:00:00Z", "excluded", "holiday: Constitution Day"),
        ("2027-12-07T08:00:00Z", None, None),
        ("2027-12-08T08:00:00Z", "excluded", "holiday: Immaculate Conception"),
        ("2027-12-09T08:00:00Z", None, None),
    ]


def test_a_weekend_shifted_to_monday_fires_once() -> None:
    schedule = schedule_of("cron", {"cron": "0 9 * * *", "calendar": {
        "only": "w", "shift": "next", "definition": {"name": "w"}}})
    # Mon 1 to Sun 7 March 2027 and Monday 8: Saturday's and Sunday's slots join Monday's.
    fires = schedule.fires_between(z("2027-03-01T00:00:00Z"), z("2027-03-08T23:00:00Z"))
    assert ats(fires)[-1] == "2027-03-08T09:00:00Z"
    assert len(fires) == 6


@pytest.mark.parametrize(("shift", "day"), [("next", "2026-03-30"), ("previous", "2026-03-27")])
def test_a_fire_a_dst_gap_moved_shifts_as_the_time_it_was_meant_for(shift: str, day: str) -> None:
    """Sunday 29 March 2026 springs forward in Madrid: its 02:30 fires at 03:00. Shifted as
    03:00 it landed beside the weekday's own 02:30, and that day ran twice."""
    schedule = schedule_of("cron", {"cron": "30 2 * * *", "timezone": "Europe/Madrid",
                                    "calendar": {"only": "w", "shift": shift, "definition": {
                                        "name": "w", "timezone": "Europe/Madrid",
                                        "weekdays": ["mon", "tue", "wed", "thu", "fri"]}}})
    fires = schedule.fires_between(z("2026-03-26T12:00:00Z"), z("2026-03-31T12:00:00Z"))
    on_day = [f.local.isoformat() for f in fires if f.local.date().isoformat() == day]
    assert on_day == [f"{day}T02:30:00+0{2 if shift == 'next' else 1}:00"]
    assert schedule.count_fires(z("2026-03-26T12:00:00Z"), z("2026-03-31T12:00:00Z")) == len(
        fires)


BOUNDS = [
    # start_at inclusive, end_at exclusive (half-open like every range)
    ({"start_at": "2027-01-01T09:00:00+00:00", "end_at": "2027-01-03T09:00:00+00:00"},
     "2026-12-30T00:00:00Z", ["2027-01-01T09:00:00Z", "2027-01-02T09:00:00Z"]),
    ({"end_at": "2027-01-02T09:00:01+00:00"}, "2027-01-01T00:00:00Z",
     ["2027-01-01T09:00:00Z", "2027-01-02T09:00:00Z"]),
]


@pytest.mark.parametrize(("bounds", "after", "expected"), BOUNDS)
def test_bounds(bounds: dict[str, str], after: str, expected: list[str]) -> None:
    schedule = schedule_of("cron", {"cron": "0 9 * * *", **bounds})
    assert nexts(schedule, after, 5) == expected
    far = z(after) + timedelta(days=30)
    assert ats(schedule.fires_between(z(after), far)) == expected
    assert schedule.count_fires(z(after), far) == len(expected)
    assert ats(schedule.last_fires(z(after), far, 1)) == expected[-1:]
    assert ats(schedule.preview(z(after), 5)) == expected


def test_webhooks_have_no_schedule() -> None:
    with pytest.raises(Conflict, match=r"^a webhook trigger has no schedule$"):
        schedule_of("webhook", {"path": "x"})


def test_fires_are_utc() -> None:
    fire = schedule_of("interval", {"every": "1h"}).next_fire(z("2027-01-01T00:30:00Z"))
    assert fire is not None and fire.at.tzinfo is not None
    assert fire.at.utcoffset() == UTC.utcoffset(None)


def _counting_inner_fires(schedule: Schedule) -> tuple[Schedule, list[int]]:
    """``schedule`` (a calendar filter) with its inner schedule wrapped so that every fire
    it lists is counted in the list returned beside it."""
    from dataclasses import replace

    read: list[int] = []
    inner = schedule.inner  # type: ignore[attr-defined]

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                          ) -> list[Any]:
            fires = inner.fires_between(start, end, limit)
            read.append(len(fires))
            return list(fires)

    counted: Schedule = replace(schedule, inner=Counting())  # type: ignore[type-var]
    return counted, read


def test_a_dense_schedule_skips_excluded_days_whole() -> None:
    """An every-second cron on Mondays only, asked from a Tuesday: the next fire is the
    next Monday's midnight, found without walking the 518,400 excluded seconds between
    (seconds of CPU on the event loop), and a preview lists the first EXCLUDED_SHOWN
    excluded instants, not all of them (5.7 MB for a count of 1)."""
    from triggerd.schedules.calendars import EXCLUDED_SHOWN

    schedule = schedule_of("cron", {"cron": "* * * * * *", "calendar": {
        "only": "m", "definition": {"name": "m", "weekdays": ["mon"]}}})
    counted, read = _counting_inner_fires(schedule)
    tuesday = z("2027-03-02T10:00:00Z")
    assert nexts(counted, "2027-03-02T10:00:00Z", 2) == [
        "2027-03-08T00:00:00Z", "2027-03-08T00:00:01Z"]
    assert sum(read) < 5_000, sum(read)
    preview = counted.preview(tuesday, 1)
    assert [fire_to_json(f)["at"] for f in preview if f.note is None] == ["2027-03-08T00:00:00Z"]
    excluded = [f for f in preview if f.note == "excluded"]
    assert len(excluded) == EXCLUDED_SHOWN
    assert fire_to_json(excluded[0])["at"] == "2027-03-02T10:00:01Z"


def test_a_weekday_cron_on_a_weekends_only_calendar_never_fires_found_cheaply() -> None:
    """Every nominal fire is excluded: each one read a batch of 256 more from the cron, and
    finding that it never fires (check, apply, the scheduler) read 2.8 million fires, 45 s
    on the event loop. Excluded days are now skipped as a run, and the batch after a skip
    is small."""
    schedule = schedule_of("cron", {"cron": "0 9 * * 1-5", "calendar": {
        "only": "w", "definition": {"name": "w", "weekdays": ["sat", "sun"]}}})
    counted, read = _counting_inner_fires(schedule)
    assert counted.next_fire(z("2027-03-02T10:00:00Z")) is None
    assert sum(read) < 20_000, sum(read)
    # A schedule that does fire is found as before: the first Monday that is a working day.
    mondays = schedule_of("cron", {"cron": "0 9 * * 1-5", "calendar": {
        "only": "w", "definition": {"name": "w", "weekdays": ["mon"]}}})
    assert nexts(mondays, "2027-03-02T10:00:00Z", 2) == [
        "2027-03-08T09:00:00Z", "2027-03-15T09:00:00Z"]


def test_a_calendar_filter_counts_without_listing_the_fires() -> None:
    """A catch-up counts the slots missed (plan_catchup): a minutely cron on Madrid's
    workdays down for a year listed its 360,000 fires to count them, seconds of CPU on the
    event loop per trigger; the count is the inner schedule's over each run of working
    days, and agrees with the listing across DST changes and holidays."""
    schedule = schedule_of("cron", {"cron": "* * * * *", "timezone": "Europe/Madrid",
                                    "calendar": {"only": "madrid", "definition": MADRID}})
    counted, read = _counting_inner_fires(schedule)
    # 2027 in Madrid, midnight to midnight: 1,440 fires on each working day.
    year = counted.count_fires(z("2026-12-31T23:00:00Z") - timedelta(microseconds=1),
                               z("2027-12-31T23:00:00Z") - timedelta(microseconds=1))
    assert read == []
    days = [date(2027, 1, 1) + timedelta(days=n) for n in range(365)]
    calendar = schedule.calendar  # type: ignore[attr-defined]
    assert year == 1440 * sum(calendar.not_working(d) is None for d in days) > 0
    for start, end in [("2027-03-26T10:00:30Z", "2027-03-30T08:15:00Z"),  # spring forward
                       ("2027-10-29T23:00:00Z", "2027-11-02T00:00:00Z"),  # fall back, 1 Nov
                       ("2027-01-05T22:59:59Z", "2027-01-07T23:00:00Z")]:  # Epiphany
        assert counted.count_fires(z(start), z(end)) == len(
            schedule.fires_between(z(start), z(end))), (start, end)
