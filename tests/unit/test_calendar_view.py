"""The trigger page's calendar rows: recorded outcomes by day, projected fires, excluded
days and DST notes, around a given today."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from triggerd.console.calendar_view import calendar_days
from triggerd.cron import Fire

MADRID = ZoneInfo("Europe/Madrid")
TODAY = date(2027, 3, 26)  # a Friday; Sunday the 28th is the spring DST change


def _fire(local: datetime, note: str | None = None, reason: str | None = None) -> Fire:
    return Fire(at=local.astimezone(UTC), local=local, note=note, reason=reason)


def test_past_days_count_outcomes_and_future_days_count_fires() -> None:
    recorded = {(TODAY - timedelta(days=1), "fired"): 23, (TODAY - timedelta(days=1),
                                                           "skipped_overlap"): 1,
                (TODAY, "fired"): 9, (TODAY - timedelta(days=9), "fired"): 5}
    fires = [_fire(datetime(2027, 3, 26, 18, tzinfo=MADRID)),
             _fire(datetime(2027, 3, 27, 9, tzinfo=MADRID)),
             _fire(datetime(2027, 3, 27, 18, tzinfo=MADRID)),
             _fire(datetime(2027, 3, 28, 3, 30, tzinfo=MADRID), note="dst-gap"),
             _fire(datetime(2027, 3, 29, 9, tzinfo=MADRID), note="excluded",
                   reason="holiday: Easter Monday")]
    rows = calendar_days(today=TODAY, recorded=recorded, fires=fires, fires_capped=False,
                         days_back=2, days_ahead=3)
    assert [r.day for r in rows] == [TODAY + timedelta(days=i) for i in range(-2, 4)]
    by_day = {r.day: r for r in rows}
    yesterday = by_day[TODAY - timedelta(days=1)]
    assert yesterday.past and yesterday.outcomes == (("fired", 23), ("skipped_overlap", 1))
    assert yesterday.projected == 0 and yesterday.recorded == 24
    today = by_day[TODAY]
    assert today.today and not today.past
    assert (today.outcomes, today.projected) == ((("fired", 9),), 1)
    assert by_day[TODAY + timedelta(days=1)].projected == 2
    sunday = by_day[TODAY + timedelta(days=2)]
    assert (sunday.projected, sunday.dst) == (1, ("dst-gap at 03:30",))
    monday = by_day[TODAY + timedelta(days=3)]
    assert (monday.projected, monday.excluded) == (0, ("holiday: Easter Monday",))
    # Older than the window: not shown.
    assert TODAY - timedelta(days=9) not in by_day


def test_a_capped_projection_marks_the_days_it_did_not_reach() -> None:
    fires = [_fire(datetime(2027, 3, 26, 23, 59, s, tzinfo=MADRID)) for s in range(3)]
    rows = calendar_days(today=TODAY, recorded={}, fires=fires, fires_capped=True,
                         days_back=0, days_ahead=2)
    assert [(r.projected, r.projected_more) for r in rows] == [(3, True), (0, True), (0, True)]
    uncapped = calendar_days(today=TODAY, recorded={}, fires=fires, fires_capped=False,
                             days_back=0, days_ahead=1)
    assert [(r.projected, r.projected_more) for r in uncapped] == [(3, False), (0, False)]


def test_the_projection_stops_at_the_rows_shown() -> None:
    # A daily trigger's page asked for 500 fires (well over a year of days, about a second
    # with a holiday calendar) to fill seven rows.
    from triggerd.console.pages import _projection
    from triggerd.schedules import schedule_of

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    daily = schedule_of("cron", {"cron": "0 9 * * *", "timezone": "UTC"})
    fires, capped = _projection(daily, now, now + timedelta(days=8))
    assert (len(fires), capped) == (9, False)  # 8 in the window, and the first after it
    every_minute = schedule_of("cron", {"cron": "* * * * *", "timezone": "UTC"})
    fires, capped = _projection(every_minute, now, now + timedelta(days=8))
    assert (len(fires), capped) == (500, True)
