"""Calendar filters and start/end bounds, composed over any other schedule.

The day of an instant is its date in the calendar's time zone. ``only: C`` keeps the
instants on C's working days (a listed weekday that is neither a public holiday nor one of
C's extra ``dates``); ``skip: C`` removes the instants on C's holidays and extra dates
(weekends are not C's to skip). With ``shift: next`` (``previous``) a removed instant moves
to the same wall time, in the trigger's zone, on the next (previous) day that passes; a
wall time that does not exist that day (a DST gap) fires at the first instant after the
gap (02:30 on a spring-forward night fires at 03:00, as the cron's own fire does), an
ambiguous one at its first occurrence. An instant with no passing day within 31 days is
dropped. Instants that coincide after shifting fire once.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from triggerd import cron
from triggerd.cron import CronSchedule, Fire, wall_instant
from triggerd.errors import CronError
from triggerd.schedules.kinds import CronList, CronPlan
from triggerd.schedules.protocol import Schedule

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SHIFT_DAYS = 31
HORIZON = timedelta(days=366 * 40)
_TINY = timedelta(microseconds=1)
# Excluded instants a preview lists (with shift: none), the first ones.
EXCLUDED_SHOWN = 100
_FAR = datetime.max.replace(tzinfo=UTC) - timedelta(days=800)
# Nominal fires read at a time: a few after a skip, doubling up to _BATCH while they pass.
_FIRST_BATCH = 4
_BATCH = 256


@functools.lru_cache(maxsize=256)
def public_holidays(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """The public holidays of a country (and subdivision) in a year, by the ``holidays``
    package; raises ``NotImplementedError`` for an unknown country or subdivision."""
    import holidays

    table = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return {day: str(name) for day, name in sorted(table.items())}


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """A named business calendar: working weekdays, public holidays and extra days off."""

    name: str
    timezone: str = "UTC"
    weekdays: frozenset[int] = frozenset(range(5))  # 0 = Monday
    country: str | None = None
    subdivision: str | None = None
    dates: frozenset[date] = frozenset()

    @property
    def key(self) -> Hashable:
        return (self.name, self.timezone, tuple(sorted(self.weekdays)), self.country,
                self.subdivision, tuple(sorted(self.dates)))

    def day_off(self, day: date) -> str | None:
        """Why ``day`` is a holiday or an extra day off, else None (weekdays aside)."""
        if day in self.dates:
            return f"date off: {day.isoformat()}"
        if self.country is not None:
            name = public_holidays(self.country, self.subdivision, day.year).get(day)
            if name is not None:
                return f"holiday: {name}"
        return None

    def not_working(self, day: date) -> str | None:
        """Why ``day`` is not a working day, else None."""
        if day.weekday() not in self.weekdays:
            return f"weekday: {WEEKDAYS[day.weekday()]}"
        return self.day_off(day)


def calendar_from_json(doc: Mapping[str, object]) -> Calendar:
    """A calendar from its document (``name``, ``timezone``, ``weekdays``, ``holidays``,
    ``dates``), as written in a definition file."""
    weekdays = doc.get("weekdays", list(WEEKDAYS[:5]))
    holiday = doc.get("holidays")
    country = subdivision = None
    if isinstance(holiday, Mapping):
        country = str(holiday["country"])
        sub = holiday.get("subdivision")
        subdivision = None if sub is None else str(sub)
    dates = doc.get("dates", [])
    timezone = str(doc.get("timezone", "UTC"))
    name = str(doc.get("name"))
    # Checked at apply; a config stored by an older triggerd may still be wrong, and is
    # then refused like an invalid cron expression, not with an internal error.
    if not isinstance(weekdays, list) or not all(w in WEEKDAYS for w in weekdays):
        raise CronError(f"calendar {name!r}: weekdays must be a list of {', '.join(WEEKDAYS)}")
    if not isinstance(dates, list):
        raise CronError(f"calendar {name!r}: dates must be a list of YYYY-MM-DD dates")
    try:
        days = frozenset(date.fromisoformat(str(d)) for d in dates)
    except ValueError as exc:
        raise CronError(f"calendar {name!r}: a date is not one ({exc})") from None
    try:
        ZoneInfo(timezone)
    except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise CronError(f"calendar {name!r}: unknown time zone {timezone!r}") from exc
    return Calendar(
        name=name,
        timezone=timezone,
        weekdays=frozenset(WEEKDAYS.index(str(w)) for w in weekdays),
        country=country,
        subdivision=subdivision,
        dates=days,
    )


class Mode(enum.StrEnum):
    ONLY = "only"
    SKIP = "skip"


class Shift(enum.StrEnum):
    NONE = "none"
    NEXT = "next"
    PREVIOUS = "previous"


@dataclass(frozen=True, slots=True)
class CalendarFiltered:
    """Another schedule's instants, filtered (and maybe shifted) by a calendar."""

    inner: Schedule
    calendar: Calendar
    mode: Mode
    shift: Shift
    timezone: str  # the trigger's zone: a shift keeps the wall time in it

    @property
    def key(self) -> Hashable:
        return ("calendar", self.inner.key, self.calendar.key, self.mode.value,
                self.shift.value, self.timezone)

    # --- days ----------------------------------------------------------------------

    def _day(self, instant: datetime) -> date:
        return instant.astimezone(ZoneInfo(self.calendar.timezone)).date()

    def _excluded(self, day: date) -> str | None:
        if self.mode is Mode.ONLY:
            return self.calendar.not_working(day)
        return self.calendar.day_off(day)

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), ZoneInfo(self.calendar.timezone)).astimezone(UTC)

    def _place(self, fire: Fire) -> Fire | None:
        """Where a nominal fire lands: itself, shifted, or nowhere (None)."""
        if self._excluded(self._day(fire.at)) is None:
            return fire
        if self.shift is Shift.NONE:
            return None
        zone = ZoneInfo(self.timezone)
        # A fire a DST gap moved (02:30 -> 03:00) shifts as the wall time it was meant
        # for: shifted as 03:00, Sunday's fire met Monday's own 02:30 and ran beside it.
        wall = fire.wall if fire.wall is not None and fire.local.tzinfo == zone else (
            fire.at.astimezone(zone).replace(tzinfo=None))
        step = timedelta(days=1 if self.shift is Shift.NEXT else -1)
        for _ in range(MAX_SHIFT_DAYS):
            wall += step
            # As the cron places its own fires: an ambiguous time's first pass, and a time
            # in a gap at the jump (02:30 -> 03:00 after a spring-forward, where that
            # night's own fire is: read with the offset before it, it was 03:30 and the
            # night ran twice).
            at = wall_instant(zone, wall)
            if self._excluded(self._day(at)) is None:
                return Fire(at=at, local=at.astimezone(zone), note="shifted", nominal=fire.at)
        return None

    def _lower(self, start: datetime) -> datetime:
        """Where to start reading nominal fires so that every fire after ``start`` is seen:
        with ``shift: next`` a run of excluded days just before moves fires forward."""
        if self.shift is not Shift.NEXT:
            return start
        day = first = self._day(start)
        for _ in range(MAX_SHIFT_DAYS):
            if self._excluded(day - timedelta(days=1)) is None:
                break
            day -= timedelta(days=1)
        if day == first and self._excluded(first) is None:
            return start
        return min(start, self._midnight(day) - _TINY)

    def _upper(self, end: datetime) -> datetime:
        """Likewise, where to stop: ``shift: previous`` moves later fires back."""
        if self.shift is not Shift.PREVIOUS or end >= _FAR:
            return end
        day = first = self._day(end)
        for _ in range(MAX_SHIFT_DAYS):
            if self._excluded(day + timedelta(days=1)) is None:
                break
            day += timedelta(days=1)
        if day == first and self._excluded(first) is None:
            return end
        return max(end, self._midnight(day + timedelta(days=1)))

    def _unseen_from(self, read: datetime) -> datetime:
        """A bound under every fire placed from a nominal fire after ``read``. Only
        ``shift: previous`` moves fires back: onto the last passing day up to ``read``'s,
        or (on a passing day) onto that day when the next is excluded. Reading on for 32
        days past the limit (as the bound was) listed 2.7 million nominal fires of an
        every-second cron for one."""
        if self.shift is not Shift.PREVIOUS:
            return read
        day = self._day(read)
        same_zone = self.timezone == self.calendar.timezone
        if same_zone and self._excluded(day) is None:
            if self._excluded(day + timedelta(days=1)) is None:
                return read
            return self._midnight(day)
        for _ in range(MAX_SHIFT_DAYS + 1):
            if self._excluded(day) is None:
                break
            day -= timedelta(days=1)
        # The shift steps wall days of the trigger's zone: in another zone than the
        # calendar's, a step across an offset change may pass over a day.
        return self._midnight(day if same_zone else day - timedelta(days=1))

    # --- the interface -------------------------------------------------------------

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        placed: dict[datetime, Fire] = {}
        upper = self._upper(end)
        at = self._lower(start)
        size = _FIRST_BATCH
        while True:
            # Read nominal fires a window at a time so that `limit` stays cheap.
            batch = self.inner.fires_between(at, upper, size)
            skip_to: datetime | None = None
            for nominal in batch:
                if self.shift is Shift.NONE:
                    day = self._day(nominal.at)
                    if self._excluded(day) is not None:
                        # No fire in the rest of an excluded day, nor on the excluded days
                        # that follow it: read on from the end of that run of days (an
                        # every-second cron on Mondays only walked 518,000 instants from a
                        # Tuesday, seconds of CPU on the event loop).
                        day += timedelta(days=1)
                        while self._excluded(day) is not None and self._midnight(day) < upper:
                            day += timedelta(days=1)
                        skip_to = self._midnight(day) - _TINY
                        break
                fire = self._place(nominal)
                if fire is not None and start < fire.at <= end:
                    placed.setdefault(fire.at, fire)
            if skip_to is not None:
                if skip_to >= upper:
                    break
                at = skip_to
                # The fires after an excluded run may be excluded again at once: a batch
                # of 256 read for each one took 45 s to find that a weekday cron on a
                # weekends-only calendar never fires (check, apply and the scheduler).
                size = _FIRST_BATCH
            elif len(batch) < size:
                break
            else:
                at = batch[-1].at
                size = min(2 * size, _BATCH)
            if (limit is not None and len(placed) >= limit
                    and self._unseen_from(at) >= sorted(placed)[limit - 1]):
                break
        fires = [placed[k] for k in sorted(placed)]
        return fires if limit is None else fires[:limit]

    def next_fire(self, after: datetime) -> Fire | None:
        if self.mode is Mode.ONLY and not self.calendar.weekdays:
            return None  # no working day, ever
        # Widening windows: a schedule's next fire may be far (a yearly cron on a holiday);
        # past HORIZON without one, it has none.
        span = timedelta(days=8)
        end = after + span
        while span <= HORIZON:
            fires = self.fires_between(after, min(end, _FAR), 1)
            if fires:
                return fires[0]
            if self.inner.next_fire(min(end, _FAR)) is None or end >= _FAR:
                return None
            span *= 4
            end = after + span
        return None

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        if count <= 0 or end <= start:
            return []
        # Walk back in widening windows: readiness asks for the newest one or two.
        span = timedelta(days=8)
        low = max(start, end - span)
        while True:
            fires = self.fires_between(low, end)
            if len(fires) >= count or low <= start:
                return fires[-count:]
            span *= 4
            low = max(start, end - span)

    def count_fires(self, start: datetime, end: datetime) -> int:
        if end <= start:
            return 0
        if self.shift is not Shift.NONE:
            return self._count_shifted(start, end)
        # The inner schedule's count over each run of passing days: a minutely cron on
        # workdays down for a year listed its 360,000 fires to count them (seconds of CPU
        # on the event loop per trigger at the catch-up).
        total = 0
        run_start: date | None = None
        day, last = self._day(start), self._day(end)
        while day <= last:
            if self._excluded(day) is None:
                run_start = run_start or day
            elif run_start is not None:
                total += self._count_days(run_start, day, start, end)
                run_start = None
            day += timedelta(days=1)
        if run_start is not None:
            total += self._count_days(run_start, last + timedelta(days=1), start, end)
        return total

    def _count_days(self, first: date, stop: date, start: datetime, end: datetime) -> int:
        """The inner schedule's fires on the days ``[first, stop)`` within ``(start, end]``."""
        low = max(start, self._midnight(first) - _TINY)
        high = min(end, self._midnight(stop) - _TINY)
        return self.inner.count_fires(low, high) if low < high else 0

    def _count_shifted(self, start: datetime, end: datetime) -> int:
        """Fires in ``(start, end]`` with a shift, per receiving day: a passing day's fires
        are the wall times of its own and of the excluded days shifted onto it, merged
        (coinciding ones fire once). Listing a year of minutely fires took 10 s of CPU.

        Counted so only where wall times map one to one onto instants: a cron (list) in the
        calendar's zone, on days away from offset changes. Other days (the window's ends,
        DST nights and their neighbours) and other schedules are listed."""
        crons = _crons_of(self.inner)
        if crons is None or {c.timezone for c in crons} | {self.calendar.timezone} != {
                self.timezone}:
            return len(self.fires_between(start, end))
        total = 0
        day, last = self._day(start), self._day(end)
        first = day
        while day <= last:
            if self._excluded(day) is None:
                days = (day, *self._shifted_onto(day))
                if day in (first, last) or not all(self._steady(d) for d in days):
                    total += len(self.fires_between(max(start, self._midnight(day) - _TINY),
                                                    min(end, self._next_midnight(day))))
                else:
                    total += cron.day_times(crons, days)
            day += timedelta(days=1)
        return total

    def _next_midnight(self, day: date) -> datetime:
        return self._midnight(day + timedelta(days=1)) - _TINY

    def _shifted_onto(self, day: date) -> list[date]:
        """The excluded days whose fires a shift moves onto the passing ``day``: the run of
        excluded days before it (after it, for ``previous``), MAX_SHIFT_DAYS at most."""
        step = timedelta(days=-1 if self.shift is Shift.NEXT else 1)
        sources: list[date] = []
        source = day + step
        while len(sources) < MAX_SHIFT_DAYS and self._excluded(source) is not None:
            sources.append(source)
            source += step
        return sources

    def _steady(self, day: date) -> bool:
        """No offset change from a day before ``day`` to a day after it (in UTC, so the
        whole local day is covered in any zone): its wall times are its instants. Changes
        are days apart, so equal offsets at the four midnights mean none in between."""
        zone = ZoneInfo(self.timezone)
        midnight = datetime.combine(day, time(), UTC)
        offsets = {(midnight + timedelta(days=n)).astimezone(zone).utcoffset()
                   for n in range(-1, 3)}
        return len(offsets) == 1

    def preview(self, after: datetime, count: int) -> list[Fire]:
        """The next ``count`` fires plus, with ``shift: none``, the excluded instants among
        them (note ``excluded``, with the reason) so that a preview shows the gaps."""
        fires = self.fires_between(after, _FAR, count)
        if self.shift is not Shift.NONE or not fires:
            return fires
        zone = ZoneInfo(self.timezone)
        # At most EXCLUDED_SHOWN of them, the first: an every-second cron on Mondays only
        # listed every second of the days between (5.7 MB for a count of 1).
        excluded = [
            Fire(at=f.at, local=f.at.astimezone(zone), note="excluded",
                 reason=self._excluded(self._day(f.at)))
            for f in self.inner.fires_between(after, fires[-1].at, count + EXCLUDED_SHOWN)
            if self._excluded(self._day(f.at)) is not None
        ][:EXCLUDED_SHOWN]
        return sorted([*fires, *excluded], key=lambda f: f.at)


def _crons_of(schedule: Schedule) -> tuple[CronSchedule, ...] | None:
    """The expressions of a cron or cron list schedule, None for other kinds."""
    if isinstance(schedule, CronPlan):
        return (schedule.cron,)
    if isinstance(schedule, CronList):
        return tuple(p.cron for p in schedule.plans)
    return None


@dataclass(frozen=True, slots=True)
class Bounded:
    """Another schedule limited to ``start_at <= at < end_at`` (half-open, like every range)."""

    inner: Schedule
    start_at: datetime | None
    end_at: datetime | None

    @property
    def key(self) -> Hashable:
        return ("bounded", self.inner.key, self.start_at, self.end_at)

    def _clip(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        if self.start_at is not None:
            start = max(start, self.start_at - _TINY)
        if self.end_at is not None:
            end = min(end, self.end_at - _TINY)
        return start, end

    def next_fire(self, after: datetime) -> Fire | None:
        start, _ = self._clip(after, after)
        fire = self.inner.next_fire(start)
        if fire is None or (self.end_at is not None and fire.at >= self.end_at):
            return None
        return fire

    def fires_between(self, start: datetime, end: datetime, limit: int | None = None
                      ) -> list[Fire]:
        start, end = self._clip(start, end)
        return self.inner.fires_between(start, end, limit) if start < end else []

    def last_fires(self, start: datetime, end: datetime, count: int) -> list[Fire]:
        start, end = self._clip(start, end)
        return self.inner.last_fires(start, end, count) if start < end else []

    def count_fires(self, start: datetime, end: datetime) -> int:
        start, end = self._clip(start, end)
        return self.inner.count_fires(start, end) if start < end else 0

    def preview(self, after: datetime, count: int) -> list[Fire]:
        start, _ = self._clip(after, after)
        return [f for f in self.inner.preview(start, count)
                if self.end_at is None or f.at < self.end_at]
