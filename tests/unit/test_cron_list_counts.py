"""A cron list's counts and newest fires are computed, not listed: they agree with a
brute-force listing of the union (random lists, DST zones, windows across the changes),
and a year of minutely missed fires is planned without walking its 525,600 slots."""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import CodeType, FrameType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from triggerd import cron
from triggerd.cron import Fire, count_union, fires_between, parse_cron
from triggerd.model import MisfirePolicy
from triggerd.planning import plan_catchup
from triggerd.schedules import CronList, CronPlan, Schedule, count_up_to, schedule_of

ZONES = ("UTC", "Europe/Madrid", "America/New_York")
# Field choices that make the lists dense enough to coincide and cross DST changes with
# both fixed-time (gap fire, first pass only) and repeating rules.
SECONDS = ("0", "0", "0", "0,30", "*/20")
MINUTES = ("*", "*/15", "0,30", "5-10", "0", "30", "*/7")
HOURS = ("*", "1", "2", "1-3", "*/6", "0-2,23", "2,14")
DAYS = ("*", "*", "1,15", "L", "25-31", "*/3")
MONTHS = ("*", "*", "3,10,11", "1-6")
WEEKDAYS = ("*", "*", "0", "1-5", "SUN#1", "SAT,SUN")
# Windows start near the 2026 and 2027 DST changes of both zones, and anywhere.
ANCHORS = ("2026-03-08T06:00:00", "2026-03-29T00:30:00", "2026-10-25T00:00:00",
           "2026-11-01T05:00:00", "2027-03-14T06:30:00", "2027-10-31T00:59:59",
           "2026-12-31T23:00:00", "2027-02-27T12:00:00")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def random_expression(rng: random.Random) -> str:
    fields = [rng.choice(MINUTES), rng.choice(HOURS), rng.choice(DAYS), rng.choice(MONTHS),
              rng.choice(WEEKDAYS)]
    if rng.random() < 0.3:
        fields.insert(0, rng.choice(SECONDS))
    return " ".join(fields)


def listed(plans: tuple[CronPlan, ...], start: datetime, end: datetime) -> list[datetime]:
    """The union by brute force: every expression's fires, merged."""
    return sorted({f.at for p in plans for f in fires_between(p.cron, start, end)})


@pytest.mark.parametrize("seed", range(40))
def test_counts_and_newest_fires_agree_with_the_listing(seed: int) -> None:
    rng = random.Random(seed)
    zone = ZONES[seed % len(ZONES)]
    for _ in range(6):
        expressions = list(dict.fromkeys(random_expression(rng)
                                         for _ in range(rng.randint(2, 4))))
        schedule = schedule_of("cron", {"cron": expressions, "timezone": zone})
        if not isinstance(schedule, CronList):
            continue
        anchor = utc(rng.choice(ANCHORS)) + timedelta(seconds=rng.randint(-7200, 7200))
        start = anchor - timedelta(seconds=rng.randint(0, 3 * 86_400),
                                   microseconds=rng.choice((0, 0, 500_000)))
        end = anchor + timedelta(seconds=rng.randint(0, 4 * 86_400))
        expected = listed(schedule.plans, start, end)
        case = (zone, expressions, start, end)
        assert schedule.count_fires(start, end) == len(expected), case
        for count in (1, 3, 50):
            newest = [f.at for f in schedule.last_fires(start, end, count)]
            assert newest == expected[-count:], (case, count)


# Offset changes that are not an hour at 02:00: Lord Howe moves 30 minutes, Santiago and
# Havana change at midnight (the skipped or repeated hour spans two dates), Troll moves two
# hours. Hours here include 0 and 23 so that fixed times fall inside those intervals.
HARD_ZONES = ("Australia/Lord_Howe", "America/Santiago", "America/Havana", "Antarctica/Troll")
HARD_HOURS = ("*", "0", "23", "0,1", "1-3", "2", "*/6", "0-2,23")
HARD_MINUTES = ("*", "*/15", "0,30", "30", "0", "45", "59", "*/7", "20-40")
# Dense second fields as well: an every-second expression is the case that listed 3,600
# fires per repeated hour.
HARD_SECONDS = ("*", "*/20", "0,30", "59", "0", "*/7")


@functools.cache
def offset_changes(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants in ``year`` at which ``zone``'s UTC offset changes, to the second."""
    tz = ZoneInfo(zone)

    def offset(at: datetime) -> timedelta | None:
        return at.astimezone(tz).utcoffset()

    found: list[datetime] = []
    probe = datetime(year, 1, 1, tzinfo=UTC)
    while probe.year == year:
        low, high = probe, probe + timedelta(hours=6)
        if offset(low) != offset(high):
            while high - low > timedelta(seconds=1):
                middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
        probe += timedelta(hours=6)
    return tuple(found)


@pytest.mark.parametrize("seed", range(24))
def test_counts_agree_with_the_listing_at_the_hardest_offset_changes(seed: int) -> None:
    rng = random.Random(1000 + seed)
    zone = HARD_ZONES[seed % len(HARD_ZONES)]
    for _ in range(4):
        expressions = []
        for _ in range(rng.randint(2, 3)):
            fields = [rng.choice(HARD_MINUTES), rng.choice(HARD_HOURS), rng.choice(DAYS),
                      "*", rng.choice(WEEKDAYS)]
            if rng.random() < 0.6:
                fields.insert(0, rng.choice(HARD_SECONDS))
            expressions.append(" ".join(fields))
        schedule = schedule_of("cron", {"cron": list(dict.fromkeys(expressions)),
                                        "timezone": zone})
        if not isinstance(schedule, CronList):
            continue
        change = rng.choice(offset_changes(zone, rng.choice((2026, 2027))))
        anchor = change + timedelta(seconds=rng.choice((0, -1, 1, rng.randint(-5400, 5400))))
        start = anchor - timedelta(seconds=rng.randint(0, 3 * 3600))
        end = anchor + timedelta(seconds=rng.randint(0, 3 * 3600))
        expected = listed(schedule.plans, start, end)
        assert schedule.count_fires(start, end) == len(expected), (zone, expressions, start, end)


def calls_during(code: CodeType, action: Callable[[], object]) -> int:
    """How many times the function of ``code`` is entered while ``action`` runs (observed
    with a profile hook, not replaced)."""
    calls = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code is code:
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(previous)
    return calls


def test_a_repeated_hour_is_counted_without_listing_its_fires() -> None:
    """New York's fall-back night with an every-second expression and a fixed-time one:
    the second pass of 01:00-02:00 used to be listed (3,600 fires, 0.15 s of CPU per year
    counted); it is counted like the rest, so no fire is computed at all."""
    schedules = [parse_cron(e, "America/New_York") for e in ("* * * * * *", "30 1 * * *")]
    start, end = utc("2026-11-01T04:00:00"), utc("2026-11-01T08:00:00")
    counted: list[int] = []
    assert calls_during(cron.next_fire.__code__,
                        lambda: counted.append(count_union(schedules, start, end))) == 0
    # Every second of the four hours; 01:30 fires on the first pass, a second also matched.
    assert counted == [4 * 3600]


def test_an_instant_matched_by_several_expressions_counts_once() -> None:
    # Madrid's spring-forward night: 02:30 (fixed time) fires at the jump, the instant of
    # the hourly expression's 03:00: 01:00, 03:00, 04:00 and 05:00 local, four fires.
    spring = [parse_cron(e, "Europe/Madrid") for e in ("30 2 * * *", "0 * * * *")]
    assert count_union(spring, utc("2026-03-28T23:30:00"), utc("2026-03-29T03:00:00")) == 4
    # The fall-back night: "0 2" fires on the first pass of 02:00 only, "*/30 2" on both
    # passes of 02:00 and 02:30: four fires, the first coinciding.
    fall = [parse_cron(e, "Europe/Madrid") for e in ("0 2 * * *", "*/30 2 * * *")]
    assert count_union(fall, utc("2026-10-24T23:00:00"), utc("2026-10-25T03:00:00")) == 4


def test_schedules_in_different_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="one time zone"):
        count_union([parse_cron("0 * * * *", "UTC"), parse_cron("0 * * * *", "Europe/Madrid")],
                     utc("2026-01-01T00:00:00"), utc("2026-01-02T00:00:00"))


def test_a_year_of_missed_minutely_fires_is_planned_without_listing_them() -> None:
    """Catch-up after a year down of a 2-expression minutely list: the count used to list
    all 525,600 instants (8 s of CPU on the event loop); each expression's fires are now
    read a bounded number of times, whatever the downtime."""
    reads = 0

    class Counting(CronPlan):
        def next_fire(self, after: datetime) -> Fire | None:
            nonlocal reads
            reads += 1
            return super().next_fire(after)

        def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                          ) -> list[Fire]:
            nonlocal reads
            fires = super().fires_between(start, end, limit)
            reads += len(fires)
            return fires

        def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
            nonlocal reads
            fires = super().last_fires(start, end, count)
            reads += len(fires)
            return fires

    plans = tuple(Counting(parse_cron(e, "Europe/Madrid")) for e in ("* * * * *", "30 2 * * *"))
    schedule = CronList(plans)
    now = utc("2027-06-01T12:00:30")
    plan = plan_catchup(schedule, misfire=MisfirePolicy.ALL, catchup_window=timedelta(hours=6),
                        max_catchup=10, last_slot=now - timedelta(days=365),
                        enabled_since=now - timedelta(days=400), now=now)
    assert len(plan) == 21
    # Every instant of the year is a minute (the daily 02:30 always coincides with one),
    # less the 20 listed: the newest 10 run, the 10 before them are skipped one by one.
    assert plan[0].detail == ("525580 older slots skipped, from 2026-06-01T12:01:00Z"
                              " to 2027-06-01T11:40:00Z")
    assert [d.fire for d in plan].count(True) == 10
    assert reads < 200, reads


@pytest.mark.parametrize("config", [
    {"cron": ["0 9 25 * *", "0 9 L * *"], "timezone": "Europe/Madrid"},
    {"cron": "*/10 * * * *", "timezone": "America/New_York"},
    {"every": "7h", "timezone": "UTC"},
])
def test_a_capped_count_is_the_count_up_to_the_cap(config: dict[str, Any]) -> None:
    schedule = schedule_of("interval" if "every" in config else "cron", config)
    start, end = utc("2026-01-10T08:00:00"), utc("2027-03-01T00:00:00")
    total = schedule.count_fires(start, end)
    for cap in (0, 1, 5, total - 1, total, total + 1, 10**9):
        assert count_up_to(schedule, start, end, cap) == max(0, min(cap, total)), cap
    assert count_up_to(schedule, end, start, 5) == 0


def test_runs_left_before_a_far_preview_are_counted_near_the_start() -> None:
    """``triggers next --after 8999-...`` of a trigger with max_runs: whether its runs are
    used up by then was a count of every fire until then (17 s of CPU for a minutely
    list); now the count stops at a window holding the runs left."""
    schedule = schedule_of("cron", {"cron": ["* * * * *", "30 2 * * *"],
                                    "timezone": "Europe/Madrid"})
    spans: list[timedelta] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(schedule, name)

        def count_fires(self, start: datetime, end: datetime) -> int:
            spans.append(end - start)
            return schedule.count_fires(start, end)

    recording: Schedule = Recording()
    now = utc("2026-06-01T00:00:00")
    assert count_up_to(recording, now, utc("8999-12-31T00:00:00"), 24) == 24
    assert max(spans) <= timedelta(days=1), spans
