"""A shifted calendar's count is computed per receiving day, not listed: it agrees with a
brute-force listing over random calendars (holidays, extra dates, weekdays, shift next
and previous, month and year ends, DST zones), and a year of minutely fires is counted
reading a bounded number of fires."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from triggerd.cron import Fire, parse_cron
from triggerd.schedules import CronList, CronPlan, schedule_of
from triggerd.schedules.calendars import WEEKDAYS, CalendarFiltered

ZONES = ("Europe/Madrid", "America/New_York", "America/Santiago", "Australia/Lord_Howe",
         "America/Havana", "UTC")
COUNTRIES = {"Europe/Madrid": "ES", "America/New_York": "US", "America/Santiago": "CL",
             "Australia/Lord_Howe": "AU", "America/Havana": "CU", "UTC": "GB"}
MINUTES = ("0", "30", "*/15", "0,45", "59", "*/20")
HOURS = ("*", "0", "1", "2", "23", "9-17", "*/6", "0-2,23")
DAYS = ("*", "*", "*", "1,15", "L", "25-31")
WEEKDAY_FIELDS = ("*", "*", "1-5", "0,6", "SUN#1")
# Windows start near month and year ends and near DST changes of the zones above.
ANCHORS = ("2026-12-31T12:00:00", "2026-03-29T00:00:00", "2026-10-25T00:00:00",
           "2026-03-08T05:00:00", "2026-11-01T05:00:00", "2026-04-05T03:00:00",
           "2026-09-06T04:00:00", "2026-10-03T15:00:00", "2026-04-30T20:00:00",
           "2027-02-28T10:00:00", "2026-12-24T00:00:00", "2026-08-14T00:00:00")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def random_config(rng: random.Random, zone: str) -> dict[str, Any]:
    expressions = [" ".join((rng.choice(MINUTES), rng.choice(HOURS), rng.choice(DAYS), "*",
                             rng.choice(WEEKDAY_FIELDS))) for _ in range(rng.randint(1, 3))]
    weekdays = [w for w in WEEKDAYS if rng.random() < 0.6]
    extra = [(date(2026, 1, 1) + timedelta(days=rng.randint(0, 450))).isoformat()
             for _ in range(rng.randint(0, 30))]
    definition: dict[str, Any] = {"name": "c", "timezone": zone, "weekdays": weekdays,
                                  "dates": extra}
    if rng.random() < 0.7:
        definition["holidays"] = {"country": COUNTRIES[zone]}
    mode = rng.choice(("only", "skip"))
    return {"cron": expressions if len(expressions) > 1 else expressions[0],
            "timezone": zone,
            "calendar": {mode: "c", "shift": rng.choice(("next", "previous")),
                         "definition": definition}}


@pytest.mark.parametrize("seed", range(30))
def test_shifted_counts_agree_with_the_listing(seed: int) -> None:
    rng = random.Random(seed)
    zone = ZONES[seed % len(ZONES)]
    for _ in range(4):
        config = random_config(rng, zone)
        schedule = schedule_of("cron", config)
        anchor = utc(rng.choice(ANCHORS)) + timedelta(seconds=rng.randint(-86_400, 86_400))
        start = anchor - timedelta(seconds=rng.randint(0, 20 * 86_400),
                                   microseconds=rng.choice((0, 0, 500_000)))
        end = anchor + timedelta(seconds=rng.randint(0, 20 * 86_400))
        expected = len(schedule.fires_between(start, end))
        assert schedule.count_fires(start, end) == expected, (config, start, end)


def test_a_year_of_shifted_minutely_fires_is_counted_without_listing_them() -> None:
    """Catch-up after a year down of a minutely cron on Madrid's working days, shifted:
    the count listed its 365,760 fires (10 s of CPU on the event loop); now only the
    window's ends and the DST nights, with the days shifted onto them, are listed."""
    reads: list[int] = []

    class Counting(CronPlan):
        def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                          ) -> list[Fire]:
            fires = super().fires_between(start, end, limit)
            reads.append(len(fires))
            return fires

    for shift in ("next", "previous"):
        config = {"cron": "* * * * *", "timezone": "Europe/Madrid", "calendar": {
            "only": "m", "shift": shift, "definition": {
                "name": "m", "timezone": "Europe/Madrid", "holidays": {"country": "ES"}}}}
        listed = schedule_of("cron", config)
        assert isinstance(listed, CalendarFiltered)
        counted = CalendarFiltered(Counting(parse_cron("* * * * *", "Europe/Madrid")),
                                   listed.calendar, listed.mode, listed.shift,
                                   listed.timezone)
        start, end = utc("2026-01-01T00:00:00"), utc("2027-01-01T00:00:00")
        reads.clear()
        # 254 working days of 2026 in Spain's national calendar, 1,440 minutes each (the
        # listing agrees: 10 s of CPU each way, left to the property test's shorter windows).
        assert counted.count_fires(start, end) == 365_760
        assert sum(reads) < 40_000, sum(reads)


def test_a_cron_list_shifted_counts_coinciding_instants_once() -> None:
    # Saturday's and Sunday's 09:00 move onto Monday's own 09:00: one fire; Sunday's
    # 10:00 (the second expression) adds one.
    schedule = schedule_of("cron", {"cron": ["0 9 * * *", "0 10 * * 0"], "timezone": "UTC",
                                    "calendar": {"only": "w", "shift": "next",
                                                 "definition": {"name": "w"}}})
    assert isinstance(schedule, CalendarFiltered) and isinstance(schedule.inner, CronList)
    # Tuesday 2026-06-02 to Tuesday 2026-06-09: Wed-Fri one each, Monday two, Tuesday one.
    assert schedule.count_fires(utc("2026-06-02T12:00:00"), utc("2026-06-09T12:00:00")) == 6


@pytest.mark.parametrize("seed", range(30))
def test_a_limited_listing_is_the_start_of_the_full_one(seed: int) -> None:
    """A listing with a limit (next fire, previews, a backfill's range) stops reading once
    no later nominal fire can land before its last fire: it is the full listing's start,
    with the calendar in the trigger's zone or in another."""
    rng = random.Random(1000 + seed)
    zone = ZONES[seed % len(ZONES)]
    for _ in range(4):
        config = random_config(rng, zone)
        if rng.random() < 0.4:
            config["calendar"]["definition"]["timezone"] = rng.choice(ZONES)
        schedule = schedule_of("cron", config)
        start = utc(rng.choice(ANCHORS)) + timedelta(seconds=rng.randint(-86_400, 86_400))
        end = start + timedelta(days=45)
        full = schedule.fires_between(start, end)
        for limit in (1, 2, 7, 40):
            assert schedule.fires_between(start, end, limit) == full[:limit], (
                config, start, limit)


@pytest.mark.parametrize("shift", ["next", "previous"])
def test_a_shifted_every_second_cron_reads_few_fires_for_its_next_ones(shift: str) -> None:
    """The next fire, a preview and a backfill's first 10,001 slots of an every-second cron
    on working days, shifted, from a Tuesday: the listing read on for 32 days past its last
    fire (2.7 million nominal fires for one, hours of CPU for a backfill), in the API's
    event loop too."""
    reads: list[int] = []

    class Counting(CronPlan):
        def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                          ) -> list[Fire]:
            fires = super().fires_between(start, end, limit)
            reads.append(len(fires))
            return fires

    config = {"cron": "* * * * * *", "timezone": "Europe/Madrid", "calendar": {
        "only": "m", "shift": shift, "definition": {
            "name": "m", "timezone": "Europe/Madrid", "holidays": {"country": "ES"}}}}
    listed = schedule_of("cron", config)
    assert isinstance(listed, CalendarFiltered)
    counted = CalendarFiltered(Counting(parse_cron("* * * * * *", "Europe/Madrid")),
                               listed.calendar, listed.mode, listed.shift, listed.timezone)
    tuesday = utc("2026-03-03T10:00:00")
    fire = counted.next_fire(tuesday)
    assert fire is not None and fire.at == tuesday + timedelta(seconds=1)
    assert [f.at for f in counted.preview(tuesday, 3)] == [
        tuesday + timedelta(seconds=n) for n in (1, 2, 3)]
    fires = counted.fires_between(tuesday, utc("2026-04-03T00:00:00"), 10_001)
    assert len(fires) == 10_001 and fires[-1].at == tuesday + timedelta(seconds=10_001)
    assert sum(reads) < 30_000, sum(reads)
