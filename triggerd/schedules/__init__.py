"""The one schedule interface: every schedule kind (cron, lists of crons, intervals, calendar
filters, start/end bounds) answers the same questions, so planning, catch-up, overlap,
the slot ledger, previews, skip and backfill work the same for all of them.

Build a trigger's schedule with :func:`schedule_of`; never branch on the kind elsewhere.
Kinds compose: a base kind (:class:`CronPlan`, :class:`CronList`, :class:`IntervalPlan`),
then :class:`CalendarFiltered` when the trigger names a calendar, then :class:`Bounded`
when it has ``start_at`` or ``end_at``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from triggerd import cron
from triggerd.cron import Fire
from triggerd.durations import parse_duration
from triggerd.errors import Conflict
from triggerd.schedules.calendars import (
    Bounded,
    Calendar,
    CalendarFiltered,
    Mode,
    Shift,
    calendar_from_json,
)
from triggerd.schedules.kinds import EPOCH, CronList, CronPlan, IntervalPlan
from triggerd.schedules.protocol import Schedule

__all__ = [
    "SCHEDULED_TYPES",
    "Bounded",
    "Calendar",
    "CalendarFiltered",
    "CronList",
    "CronPlan",
    "Fire",
    "IntervalPlan",
    "Schedule",
    "count_up_to",
    "schedule_of",
]

# The trigger types that have a schedule (the scheduler loads these).
_FIRST_SPAN = timedelta(days=1)

SCHEDULED_TYPES = ("cron", "interval")


def _instant(value: object) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def schedule_of(trigger_type: str, config: Mapping[str, Any]) -> Schedule:
    """The schedule of a stored trigger (its type and config); :class:`Conflict` for a
    trigger that has none (webhook, manual). The config is a valid one (checked at apply)."""
    timezone = str(config.get("timezone", "UTC"))
    start_at = _instant(config.get("start_at"))
    end_at = _instant(config.get("end_at"))
    schedule: Schedule
    if trigger_type == "cron":
        expressions = config["cron"]
        if isinstance(expressions, str):
            schedule = CronPlan(cron.parse_cron(expressions, timezone))
        else:
            plans = tuple(dict.fromkeys(CronPlan(cron.parse_cron(str(e), timezone))
                                        for e in expressions))
            schedule = plans[0] if len(plans) == 1 else CronList(plans)
    elif trigger_type == "interval":
        offset = parse_duration(config.get("offset", "0s"))
        schedule = IntervalPlan(every=parse_duration(config["every"]),
                                anchor=(start_at or EPOCH) + offset, timezone=timezone)
    else:
        raise Conflict(f"a {trigger_type} trigger has no schedule")
    ref = config.get("calendar")
    if isinstance(ref, Mapping):
        mode = Mode.ONLY if "only" in ref else Mode.SKIP
        schedule = CalendarFiltered(
            inner=schedule,
            calendar=calendar_from_json(ref["definition"]),
            mode=mode,
            shift=Shift(ref.get("shift", "none")),
            timezone=timezone,
        )
    if start_at is not None or end_at is not None:
        schedule = Bounded(schedule, start_at, end_at)
    return schedule


def count_up_to(schedule: Schedule, start: datetime, end: datetime, cap: int) -> int:
    """``min(cap, schedule.count_fires(start, end))``, counted over windows that double from
    ``start`` until ``cap`` fires are seen: the runs ``max_runs`` leaves before a preview
    ``--after`` year 8999 need a day of a minutely schedule, not 7,000 years of it."""
    if cap <= 0 or end <= start:
        return 0
    span = _FIRST_SPAN
    while True:
        high = end if end - start <= span else start + span
        found = schedule.count_fires(start, high)
        if found >= cap or high == end:
            return min(found, cap)
        span *= 2
