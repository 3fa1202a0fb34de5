"""Cron expression semantics: parsing, next fire instants, time zones and DST.

Pure: no clock reads and no I/O; every instant is an argument. Semantics follow cronie
(the cron of Debian and Fedora) where cron implementations disagree:

* 5 fields, or 6 with a LEADING seconds field; lists, ranges, steps, month and day names
  (case-insensitive); ``L`` in day-of-month is the month's last day; ``D#N`` in
  day-of-week is the N-th such weekday of the month; 0 and 7 are Sunday; ``N/S`` means
  ``N-max/S``; ranges run forwards, except that a day-of-week range may end on Sunday
  (``FRI-SUN``, ``5-0``); aliases ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.
* Day-of-month and day-of-week: when both are restricted a day matches if EITHER does;
  when either field starts with ``*`` (``*/2`` too) BOTH must match.
* Time zones are IANA names (:mod:`zoneinfo`). A *fixed-time* schedule (neither the
  minute nor the hour field starts with ``*``) whose wall time falls in a skipped interval
  (spring forward) fires once, at the first instant after the jump (note ``dst-gap``);
  in a repeated interval (fall back) it fires once, at the first occurrence. Any other
  schedule fires at every real instant whose wall time matches: both passes of a
  repeated hour, nothing in a skipped one. Every fire whose wall time occurs twice is
  noted ``dst-fold``.

Fires are whole seconds and never repeat an instant: a fixed-time fire moved out of a
gap onto the instant that also matches regularly is one fire (without a note).

The matcher is our own (no croniter): a parsed schedule holds sorted value tuples and
the next match is found field by field with :func:`bisect.bisect_left`, some 10-20 µs
per fire (``bench/cron_compute.py``: 2-8 times croniter's ``get_next``). croniter 7
differs from cronie in several of the rules above (``8-8`` means every hour, ``*/2`` in
day-of-week is ORed with day-of-month, fixed-time jobs fire twice in a repeated hour).
"""

from __future__ import annotations

import calendar
import functools
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate, pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triggerd.errors import CronError

__all__ = [
    "CronSchedule",
    "Fire",
    "count_fires",
    "count_union",
    "day_times",
    "fire_to_json",
    "fires_between",
    "last_fires",
    "next_fire",
    "next_fires",
    "parse_cron",
    "utc_iso",
]

FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII digits only: int() would accept "٣"

_SECOND = timedelta(seconds=1)
_DAY_SECONDS = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Fires exist for wall times in years 1-9998 and instants from 0001-01-03: the margins
# keep every conversion between wall time and UTC inside what datetime can represent.
_MAX_YEAR = 9998
_FIRST_EPOCH = -62_135_424_000  # 0001-01-03T00:00:00Z
_WALL_END = 253_370_764_800  # 9999-01-01T00:00:00 as wall seconds since 1970

NOTE_GAP = "dst-gap"
NOTE_FOLD = "dst-fold"


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """A parsed, validated cron expression in a time zone. Build it with :func:`parse_cron`."""

    expression: str
    timezone: str
    # The six fields after alias expansion (seconds is "0" for a 5-field expression).
    fields: tuple[str, str, str, str, str, str]
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int]
    last_day_of_month: bool
    months: tuple[int, ...]
    days_of_week: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    nth_days_of_week: frozenset[tuple[int, int]]  # (weekday, n): the n-th such day of the month
    day_or: bool  # both day fields restricted: a day matches if either matches (cronie)
    zone: ZoneInfo = field(repr=False)

    @property
    def is_fixed_time(self) -> bool:
        """Neither the minute nor the hour field starts with ``*`` (cronie's DST rule)."""
        return not (self.fields[1].startswith("*") or self.fields[2].startswith("*"))

    @functools.cached_property
    def _every_day(self) -> bool:
        return not self.day_or and len(self.days_of_month) == 31 and len(self.days_of_week) == 7

    @functools.cached_property
    def _dom_sorted(self) -> tuple[int, ...]:
        return tuple(sorted(self.days_of_month))

    @functools.cached_property
    def _per_day(self) -> int:
        return len(self.hours) * len(self.minutes) * len(self.seconds)


@dataclass(frozen=True, kw_only=True)
class Fire:
    """One fire instant of a schedule."""

    at: datetime  # UTC, tz-aware
    local: datetime  # the same instant in the schedule's zone
    note: str | None = None  # None | "dst-gap" | "dst-fold" | "shifted" | "excluded"
    # Calendar filters: a shifted fire's scheduled instant before the shift, and why a
    # previewed instant is excluded ("holiday: Christmas Day"). Cron alone sets neither.
    nominal: datetime | None = None
    reason: str | None = None
    # A dst-gap fire's wall time as the expression says it (naive, in the schedule's zone:
    # 02:30 where the fire is at 03:00): a calendar's shift moves that time, not 03:00.
    wall: datetime | None = field(default=None, compare=False)


def utc_iso(instant: datetime) -> str:
    """An instant as UTC ISO-8601 with a ``Z`` suffix: ``2026-03-08T07:00:00Z``."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fire_to_json(fire: Fire) -> dict[str, str | None]:
    """``{"at": "2026-03-08T07:00:00Z", "local": "2026-03-08T03:00:00-04:00", "note": ...}``,
    plus ``nominal`` (shifted fires) and ``reason`` (excluded ones) when they are set."""
    out: dict[str, str | None] = {
        "at": utc_iso(fire.at),
        "local": fire.local.isoformat(),
        "note": fire.note,
    }
    if fire.nominal is not None:
        out["nominal"] = utc_iso(fire.nominal)
    if fire.reason is not None:
        out["reason"] = fire.reason
    return out


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_SPECS = (
    _FieldSpec(name="second", low=0, high=59, names={}),
    _FieldSpec(name="minute", low=0, high=59, names={}),
    _FieldSpec(name="hour", low=0, high=23, names={}),
    _FieldSpec(name="day-of-month", low=1, high=31, names={}),
    _FieldSpec(name="month", low=1, high=12, names=_MONTH_NAMES),
    _FieldSpec(name="day-of-week", low=0, high=7, names=_DAY_NAMES),
)


@dataclass(frozen=True, kw_only=True)
class _Parsed:
    values: frozenset[int]
    last: bool = False
    nth: frozenset[tuple[int, int]] = frozenset()


def parse_cron(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Parse and validate ``expression`` in the IANA zone ``timezone``.

    Raises :class:`~triggerd.errors.CronError` with a message naming the field and value.
    Results are cached: the daemon parses each distinct expression and zone once.
    """
    if not isinstance(expression, str) or not isinstance(timezone, str):
        raise CronError(
            "a cron expression and its time zone must be strings,"
            f" got {type(expression).__name__} and {type(timezone).__name__}"
        )
    return _parse_cached(expression, timezone)


# Checking a definition parses (expression, UTC) and ("* * * * *", zone) besides the pair
# itself: 100,000 triggers of ~6,600 distinct pairs need ~10,000 entries, or every parse
# misses.
@functools.lru_cache(maxsize=32768)
def _parse_cached(expression: str, timezone: str) -> CronSchedule:
    zone = _zone(timezone)  # checked first: an unknown zone is the problem reported
    parsed = _parse_expression(expression)
    if timezone == parsed.timezone:
        return parsed
    return replace(parsed, timezone=timezone, zone=zone)


# The fields do not depend on the zone: the ~6,600 (expression, zone) pairs of 100,000
# realistic triggers have ~1,700 expressions, each parsed once (the daemon's start parses
# every pair).
@functools.lru_cache(maxsize=16384)
def _parse_expression(expression: str) -> CronSchedule:
    """``expression`` in UTC."""
    zone = _zone("UTC")
    timezone = "UTC"
    fields = _split(expression)
    parsed = [_parse_field(text, spec) for text, spec in zip(fields, _SPECS, strict=True)]
    second, minute, hour, dom, month, dow = parsed
    schedule = CronSchedule(
        expression=expression.strip(),
        timezone=timezone,
        fields=fields,
        seconds=tuple(sorted(second.values)),
        minutes=tuple(sorted(minute.values)),
        hours=tuple(sorted(hour.values)),
        days_of_month=dom.values,
        last_day_of_month=dom.last,
        months=tuple(sorted(month.values)),
        days_of_week=frozenset(v % 7 for v in dow.values),
        nth_days_of_week=frozenset((d % 7, n) for d, n in dow.nth),
        day_or=not (fields[3].startswith("*") or fields[5].startswith("*")),
        zone=zone,
    )
    if not _can_fire(schedule):
        raise CronError(
            f"{expression.strip()!r} never fires: no date matches its day-of-month,"
            " month and day-of-week fields"
        )
    return schedule


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # ValueError: keys such as "../x" or "/etc/x"; OSError: a directory like "America".
        raise CronError(f"unknown time zone {timezone!r}") from exc


_YEAR = re.compile(r"(19|2[0-9])[0-9]{2}")
# The instants previews start after and backfills plan from: the schedules' arithmetic
# needs room at both ends of the calendar (from year 1, hourly fires started on the 3rd of
# January and a backfill was an internal error; near 9999 some fires were missing).
EARLIEST_AFTER = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_AFTER = datetime(9000, 1, 1, tzinfo=UTC)


def _split(expression: str) -> tuple[str, str, str, str, str, str]:
    text = expression.strip()
    if text.startswith("@"):
        key = text.lower()
        if key == "@reboot":
            raise CronError("@reboot is not supported: a daemon's schedule needs instants")
        if key not in ALIASES:
            known = ", ".join(ALIASES)
            raise CronError(f"unknown alias {text!r} (use one of {known})")
        text = ALIASES[key]
    parts = text.split()
    if len(parts) == 5:
        parts.insert(0, "0")
    elif len(parts) == 7:
        raise CronError("expected 5 or 6 fields, got 7 (a year field, as Quartz has, is not"
                        " supported; 6 fields start with seconds)")
    elif len(parts) != 6:
        raise CronError(f"expected 5 or 6 fields, got {len(parts)}")
    elif _YEAR.fullmatch(parts[5]):
        # "0 0 1 1 * 2030" read as seconds-first: day-of-week 2030 said nothing helpful.
        raise CronError(f"day-of-week: {parts[5]} is out of range 0-7 (6 fields start with"
                        " seconds: a year field is not supported)")
    s, mi, h, dom, mo, dow = parts
    return s, mi, h, dom, mo, dow


def _parse_field(text: str, spec: _FieldSpec) -> _Parsed:
    values: set[int] = set()
    last = False
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"{spec.name}: empty list item in {text!r}")
        upper = item.upper()
        if upper == "L" and spec.name == "day-of-month":
            last = True
        elif spec.name in ("day-of-month", "day-of-week") and re.search(r"[LW]", upper) \
                and not re.search(r"[A-Z]{3}", upper):
            # Quartz's L-N, LW, 15W and 5L: "'L' is not a valid value" said L was wrong.
            raise CronError(
                f"{spec.name}: {item!r} is not supported (the only such form is L alone, the"
                " month's last day, in day-of-month; use 5#5 style for the nth weekday)")
        elif "#" in upper and spec.name == "day-of-week":
            nth.add(_parse_nth(item, spec))
        else:
            values.update(_parse_item(item, spec))
    return _Parsed(values=frozenset(values), last=last, nth=frozenset(nth))


def _parse_item(item: str, spec: _FieldSpec) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _NUMBER.fullmatch(step_text):
            raise CronError(f"{spec.name}: {step_text!r} is not a valid step")
        step = int(step_text)
        if step < 1:
            raise CronError(f"{spec.name}: step {step} must be at least 1")
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    low_text, dash, high_text = base.partition("-")
    if dash and not (low_text and high_text):
        raise CronError(f"{spec.name}: {base!r} is not a valid value")
    low = _value(low_text, spec)
    if not dash:
        # "N/S" is "N-max/S" (as croniter and Quartz read it); plain "N" is one value.
        return range(low, (spec.high if slash else low) + 1, step)
    high = _value(high_text, spec)
    if spec.name == "day-of-week" and high == 0 and low > 0:
        high = 7  # FRI-SUN: Sunday closes the week
    if high < low:
        raise CronError(f"{spec.name}: range {low}-{high} is backwards")
    return range(low, high + 1, step)


def _parse_nth(item: str, spec: _FieldSpec) -> tuple[int, int]:
    day_text, _, week_text = item.partition("#")
    day = _value(day_text, spec)
    if not _NUMBER.fullmatch(week_text):
        raise CronError(f"{spec.name}: {item!r} is not a valid value")
    week = int(week_text)
    if not 1 <= week <= 5:
        raise CronError(f"{spec.name}: week {week} in {item!r} is out of range 1-5")
    return day, week


def _value(text: str, spec: _FieldSpec) -> int:
    named = spec.names.get(text.upper())
    if named is not None:
        return named
    if not _NUMBER.fullmatch(text):
        raise CronError(f"{spec.name}: {text!r} is not a valid value")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise CronError(f"{spec.name}: {value} is out of range {spec.low}-{spec.high}")
    return value


def _can_fire(schedule: CronSchedule) -> bool:
    """Whether some real date matches the day fields.

    A month's matching days depend only on its length and the weekday of its first day;
    every month starts on every weekday within the 400-year Gregorian cycle, and so do
    leap Februaries. Fixed-time schedules fire on every matching day (gaps move them),
    and other schedules match at least one real wall time on all but gap days.
    """
    for month in schedule.months:
        lengths = (28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],)
        for length in lengths:
            for first_weekday in range(7):
                if _matching_days(schedule, length, first_weekday):
                    return True
    return False


# --- the calendar matcher (naive wall times) ----------------------------------------------


def _month_days(schedule: CronSchedule, year: int, month: int) -> tuple[int, ...]:
    python_weekday, length = calendar.monthrange(year, month)
    return _matching_days(schedule, length, (python_weekday + 1) % 7)


def _matching_days(schedule: CronSchedule, length: int, first_weekday: int) -> tuple[int, ...]:
    """Matching days of a month of ``length`` days whose 1st is ``first_weekday`` (0=Sun)."""
    return _matching_days_cached(
        schedule._every_day,
        schedule.day_or,
        schedule._dom_sorted,
        schedule.last_day_of_month,
        schedule.days_of_week,
        schedule.nth_days_of_week,
        length,
        first_weekday,
    )


@functools.lru_cache(maxsize=65_536)
def _matching_days_cached(
    every_day: bool,
    day_or: bool,
    dom: tuple[int, ...],
    last: bool,
    dow: frozenset[int],
    nth: frozenset[tuple[int, int]],
    length: int,
    first_weekday: int,
) -> tuple[int, ...]:
    # Only 14 month shapes exist, so this cache stays small per distinct day pattern.
    if every_day:
        return tuple(range(1, length + 1))
    days: list[int] = []
    for day in range(1, length + 1):
        weekday = (first_weekday + day - 1) % 7
        dom_ok = day in dom or (last and day == length)
        dow_ok = weekday in dow or (weekday, (day + 6) // 7) in nth
        if (dom_ok or dow_ok) if day_or else (dom_ok and dow_ok):
            days.append(day)
    return tuple(days)


def _time_at_or_after(
    schedule: CronSchedule, hour: int, minute: int, second: int
) -> tuple[int, int, int] | None:
    """The first matching time of day at or after hour:minute:second, if any."""
    hours, minutes, seconds = schedule.hours, schedule.minutes, schedule.seconds
    for h in hours[bisect_left(hours, hour) :]:
        if h != hour:
            return h, minutes[0], seconds[0]
        for m in minutes[bisect_left(minutes, minute) :]:
            if m != minute:
                return h, m, seconds[0]
            i = bisect_left(seconds, second)
            if i < len(seconds):
                return h, m, seconds[i]
    return None


def _next_match(schedule: CronSchedule, wall: datetime, *, inclusive: bool) -> datetime | None:
    """The first matching naive wall time after ``wall`` (or at it, when ``inclusive``)."""
    start = wall.replace(microsecond=0)
    if wall.microsecond or not inclusive:
        start += _SECOND
    year, month, day = start.year, start.month, start.day
    hour, minute, second = start.hour, start.minute, start.second
    months = schedule.months
    while year <= _MAX_YEAR:
        i = bisect_left(months, month)
        if i == len(months):
            year, month, day, hour, minute, second = year + 1, months[0], 1, 0, 0, 0
            continue
        if months[i] != month:
            month, day, hour, minute, second = months[i], 1, 0, 0, 0
        days = _month_days(schedule, year, month)
        for d in days[bisect_left(days, day) :]:
            if d != day:
                hour = minute = second = 0
            found = _time_at_or_after(schedule, hour, minute, second)
            if found is not None:
                return datetime(year, month, d, *found)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        day, hour, minute, second = 1, 0, 0, 0
    return None


def _wall_matches(schedule: CronSchedule, wall: datetime) -> bool:
    return (
        wall.microsecond == 0
        and _contains(schedule.seconds, wall.second)
        and _contains(schedule.minutes, wall.minute)
        and _contains(schedule.hours, wall.hour)
        and _contains(schedule.months, wall.month)
        and wall.day in _month_days(schedule, wall.year, wall.month)
    )


def _contains(values: tuple[int, ...], value: int) -> bool:
    i = bisect_left(values, value)
    return i < len(values) and values[i] == value


# --- time zones ---------------------------------------------------------------------------


def _offsets(zone: ZoneInfo, wall: datetime) -> tuple[timedelta, timedelta]:
    """UTC offsets of a naive wall time read with fold=0 and fold=1.

    Equal: the wall time exists once. fold=0 larger: it exists twice (a repeated interval).
    fold=0 smaller: it does not exist (a skipped interval); PEP 495.
    """
    first = wall.replace(tzinfo=zone).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return first, second


def _offset_at(zone: ZoneInfo, epoch: int) -> int:
    offset = datetime.fromtimestamp(epoch, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _transition(zone: ZoneInfo, before: int, after: int) -> int:
    """The instant (epoch seconds) in (before, after] where the zone's offset changes.

    Assumes one change between the two instants; tzdata keeps changes days apart and
    makes them at whole seconds.
    """
    target = _offset_at(zone, after)
    while after - before > 1:
        middle = (before + after) // 2
        if _offset_at(zone, middle) == target:
            after = middle
        else:
            before = middle
    return after


def _utc(wall: datetime, offset: timedelta) -> datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _epoch(instant: datetime) -> int:
    return math.floor(instant.timestamp())


def _from_epoch(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _gap_instant(zone: ZoneInfo, wall: datetime, before: timedelta, after: timedelta) -> int:
    """The first instant after the jump over the skipped wall time ``wall``."""
    return _transition(zone, _epoch(_utc(wall, after)), _epoch(_utc(wall, before)))


def wall_instant(zone: ZoneInfo, wall: datetime) -> datetime:
    """The instant of naive wall time ``wall`` in ``zone`` by the rules a fire follows: a
    repeated time is its first pass, and a time a DST jump skips is the first instant after
    the jump (02:30 on a spring-forward night is 03:00, as the cron's own fire is)."""
    first, second = _offsets(zone, wall)
    if first >= second:
        return _utc(wall, first)
    return _from_epoch(_gap_instant(zone, wall, first, second))


# --- next fires ---------------------------------------------------------------------------


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")


def _fire(schedule: CronSchedule, at: datetime, note: str | None,
          wall: datetime | None = None) -> Fire:
    return Fire(at=at, local=at.astimezone(schedule.zone), note=note, wall=wall)


def next_fire(schedule: CronSchedule, after: datetime) -> Fire | None:
    """The first fire strictly after ``after``; None past the year 9998."""
    _require_aware(after, "after")
    try:
        return _next_fire(schedule, max(after.astimezone(UTC), _from_epoch(_FIRST_EPOCH)))
    except OverflowError:
        return None


def _next_fire(schedule: CronSchedule, after: datetime) -> Fire | None:
    zone = schedule.zone
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None, fold=0)
    first, second = _offsets(zone, wall)
    if first <= second:
        return _scan(schedule, wall, inclusive=False)
    # `after` lies in a repeated interval [fold_start, fold_end) of wall time: instants of
    # its first pass come before every instant of its second pass.
    change = _from_epoch(_transition(zone, _epoch(_utc(wall, first)), _epoch(_utc(wall, second))))
    fold_start = (change + second).replace(tzinfo=None)
    fold_end = (change + first).replace(tzinfo=None)
    repeats = not schedule.is_fixed_time
    if local.fold == 0:
        match = _next_match(schedule, wall, inclusive=False)
        if match is not None and match < fold_end:
            return _fire(schedule, _utc(match, first), NOTE_FOLD)
        if repeats:
            match = _next_match(schedule, fold_start, inclusive=True)
            if match is not None and match < fold_end:
                return _fire(schedule, _utc(match, second), NOTE_FOLD)
    elif repeats:
        match = _next_match(schedule, wall, inclusive=False)
        if match is not None and match < fold_end:
            return _fire(schedule, _utc(match, second), NOTE_FOLD)
    return _scan(schedule, fold_end, inclusive=True)


def _scan(schedule: CronSchedule, wall: datetime, *, inclusive: bool) -> Fire | None:
    """The first fire from wall time ``wall``, which is not inside a repeated interval."""
    zone = schedule.zone
    match = _next_match(schedule, wall, inclusive=inclusive)
    while match is not None:
        first, second = _offsets(zone, match)
        if first == second:
            return _fire(schedule, _utc(match, first), None)
        if first > second:  # the first pass of a repeated interval
            return _fire(schedule, _utc(match, first), NOTE_FOLD)
        change = _from_epoch(_gap_instant(zone, match, first, second))
        gap_end = (change + second).replace(tzinfo=None)
        if schedule.is_fixed_time:
            regular = _wall_matches(schedule, gap_end)
            return (_fire(schedule, change, None) if regular
                    else _fire(schedule, change, NOTE_GAP, wall=match))
        match = _next_match(schedule, gap_end, inclusive=True)
    return None


def next_fires(schedule: CronSchedule, after: datetime, count: int) -> list[Fire]:
    """The next ``count`` fires strictly after ``after``, oldest first."""
    return list(_iter_fires(schedule, after, count))


def _iter_fires(schedule: CronSchedule, after: datetime, count: int | None) -> Iterator[Fire]:
    produced = 0
    while count is None or produced < count:
        fire = next_fire(schedule, after)
        if fire is None:
            return
        yield fire
        produced += 1
        after = fire.at


def fires_between(
    schedule: CronSchedule, start: datetime, end: datetime, limit: int | None = None
) -> list[Fire]:
    """Fires with ``start < at <= end``, oldest first, at most ``limit`` of them."""
    _require_aware(end, "end")
    fires: list[Fire] = []
    for fire in _iter_fires(schedule, start, limit):
        if fire.at > end:
            break
        fires.append(fire)
    return fires


# --- counting -----------------------------------------------------------------------------
#
# Counting walks offset segments (stretches between two changes of the zone's UTC offset):
# inside one, fires are the matching wall times, counted per month and per time of day
# without enumerating them. Fixed-time schedules then add one fire per skipped interval
# holding a match and drop the second pass of repeated intervals, as next_fire does.


def count_fires(schedule: CronSchedule, start: datetime, end: datetime) -> int:
    """How many fires have ``start < at <= end``, without enumerating them."""
    first, stop = _span(start, end)
    return _count(schedule, first, stop) if first < stop else 0


def _span(start: datetime, end: datetime) -> tuple[int, int]:
    """``start < t <= end`` as ``first <= t < stop`` in whole epoch seconds (fires are whole
    seconds), clamped to the instants that can have fires."""
    _require_aware(start, "start")
    _require_aware(end, "end")
    first = max(_epoch(start), _FIRST_EPOCH) + 1
    stop = min(_epoch(end), _WALL_END + 2 * _DAY_SECONDS) + 1
    return first, stop


def _by_offset(zone: ZoneInfo, first: int, stop: int, count_wall: Callable[[int, int], int]
               ) -> tuple[int, list[tuple[int, int, int]]]:
    """``count_wall`` summed over the stretches of [first, stop) between the zone's offset
    changes, each as wall seconds; and the changes (the callers correct at each)."""
    changes = _changes(zone, first - 2 * _DAY_SECONDS, stop)
    total = 0
    bounds = [first, *(c for c, _, _ in changes if first < c < stop), stop]
    for low, high in pairwise(bounds):
        offset = _offset_at(zone, low)
        total += count_wall(low + offset, high + offset)
    return total, changes


def _count(schedule: CronSchedule, first: int, stop: int) -> int:
    total, changes = _by_offset(schedule.zone, first, stop,
                                lambda low, high: _count_wall(schedule, low, high))
    return total + _dst_correction((schedule,), changes, first, stop)


def _dst_correction(members: tuple[CronSchedule, ...], changes: list[tuple[int, int, int]],
                    first: int, stop: int) -> int:
    """What the fires of ``members`` in [first, stop) differ from their matching wall times
    by at the zone's offset changes; arithmetic, so a change costs the same whatever the
    expressions (listing a fold hour of an every-second expression was 3,600 fires)."""
    fixed = tuple(s for s in members if s.is_fixed_time)
    if not fixed:
        return 0
    repeating = tuple(s for s in members if not s.is_fixed_time)
    total = 0
    for change, before, after in changes:
        if after > before and first <= change < stop:
            total += _gap_fire(members, fixed, change + before, change + after)
        elif after < before:
            # The second pass of a repeated interval: instants [change, change + length).
            low, high = max(change, first), min(change + before - after, stop)
            if low < high:
                total -= _first_pass_only(members, repeating, low + after, high + after)
    return total


def _gap_fire(members: tuple[CronSchedule, ...], fixed: tuple[CronSchedule, ...],
              gap_start: int, gap_end: int) -> int:
    """1 when a fixed-time expression matches in the skipped wall times [gap_start, gap_end)
    and so fires at the jump instant, unless some expression matches that instant's own
    wall time (``gap_end``): it is then counted already, and fires are distinct instants."""
    if not any(_count_wall(s, gap_start, gap_end) for s in fixed):
        return 0
    jump = _wall_datetime(gap_end)
    return 0 if any(_wall_matches(s, jump) for s in members) else 1


def _first_pass_only(members: tuple[CronSchedule, ...], repeating: tuple[CronSchedule, ...],
                     low: int, high: int) -> int:
    """Wall times in [low, high) of a repeated interval's second pass that only fixed-time
    expressions match: those fire on the first pass alone, so the second pass lacks them."""
    return _union_wall(members, low, high) - _union_wall(repeating, low, high)


def _wall_datetime(wall: int) -> datetime:
    days, seconds = divmod(wall, _DAY_SECONDS)
    hour, rest = divmod(seconds, 3600)
    day = date.fromordinal(_EPOCH_ORDINAL + days)
    return datetime(day.year, day.month, day.day, hour, *divmod(rest, 60))


def _wall_days(low: int, high: int) -> tuple[date, int, date, int] | None:
    """[low, high) in wall seconds since 1970-01-01 00:00 as (first day, seconds into it,
    last day, seconds into it); None when empty (or past the last wall time counted)."""
    high = min(high, _WALL_END)
    if high <= low:
        return None
    low_day, low_time = divmod(low, _DAY_SECONDS)
    high_day, high_time = divmod(high, _DAY_SECONDS)
    return (date.fromordinal(_EPOCH_ORDINAL + low_day), low_time,
            date.fromordinal(_EPOCH_ORDINAL + high_day), high_time)


def _count_wall(schedule: CronSchedule, low: int, high: int) -> int:
    """Matching wall times in [low, high), both wall seconds since 1970-01-01 00:00."""
    days = _wall_days(low, high)
    if days is None:
        return 0
    low_date, low_time, high_date, high_time = days
    total = schedule._per_day * _count_days(schedule, low_date, high_date)
    if _day_matches(schedule, low_date):
        total -= _times_before(schedule, low_time)
    if high_time and _day_matches(schedule, high_date):
        total += _times_before(schedule, high_time)
    return total


def _day_matches(schedule: CronSchedule, day: date) -> bool:
    return _contains(schedule.months, day.month) and _contains(
        _month_days(schedule, day.year, day.month), day.day
    )


def _count_days(schedule: CronSchedule, low: date, high: date) -> int:
    """Matching days in [low, high)."""
    total = 0
    year, month = low.year, low.month
    while (year, month) <= (high.year, high.month):
        if _contains(schedule.months, month):
            days = _month_days(schedule, year, month)
            start = low.day if (year, month) == (low.year, low.month) else 1
            end = high.day if (year, month) == (high.year, high.month) else 32
            total += bisect_left(days, end) - bisect_left(days, start)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return total


def _times_before(schedule: CronSchedule, seconds_of_day: int) -> int:
    """Matching times of day strictly before ``seconds_of_day``."""
    hour, rest = divmod(seconds_of_day, 3600)
    minute, second = divmod(rest, 60)
    hours, minutes, seconds = schedule.hours, schedule.minutes, schedule.seconds
    total = bisect_left(hours, hour) * len(minutes) * len(seconds)
    if _contains(hours, hour):
        total += bisect_left(minutes, minute) * len(seconds)
        if _contains(minutes, minute):
            total += bisect_left(seconds, second)
    return total


def _changes(zone: ZoneInfo, low: int, high: int) -> list[tuple[int, int, int]]:
    """Offset changes (instant, offset before, offset after) with low <= instant < high."""
    changes: list[tuple[int, int, int]] = []
    low = max(low, _FIRST_EPOCH - _DAY_SECONDS)
    for year in range(_from_epoch(low).year, _from_epoch(high).year + 1):
        changes.extend(c for c in _year_changes(zone, year) if low <= c[0] < high)
    return changes


@functools.lru_cache(maxsize=4096)
def _year_changes(zone: ZoneInfo, year: int) -> tuple[tuple[int, int, int], ...]:
    """A zone's offset changes in one UTC year, found by probing once a day.

    Daily probes see every change: tzdata keeps consecutive changes at least four days
    apart (checked over every zone for 2026 data).
    """
    start = max(_epoch(datetime(year, 1, 1, tzinfo=UTC)), _FIRST_EPOCH - _DAY_SECONDS)
    end = _epoch(datetime(year + 1, 1, 1, tzinfo=UTC)) if year < _MAX_YEAR else start
    changes: list[tuple[int, int, int]] = []
    previous, offset = start, _offset_at(zone, start)
    probe = start
    while probe < end:
        probe = min(probe + _DAY_SECONDS, end)
        probed = _offset_at(zone, probe)
        if probed != offset:
            changes.append((_transition(zone, previous, probe), offset, probed))
        previous, offset = probe, probed
    return tuple(changes)


def count_union(schedules: Sequence[CronSchedule], start: datetime, end: datetime) -> int:
    """How many distinct instants ``start < at <= end`` any of ``schedules`` fires at (a
    list of expressions: an instant matched by several counts once), without enumerating
    them. The schedules share one time zone (:class:`ValueError` otherwise).

    Away from the zone's offset changes every fire is a matching wall time, so the union
    is counted per day: the times of day of the expressions matching that day, merged. At
    each change the fixed-time rules are applied by counting too (a gap's jump instant, a
    fold's second pass without the fixed-time expressions' times): nothing is listed.
    """
    if not schedules:
        return 0
    zone = schedules[0].zone
    if any(s.timezone != schedules[0].timezone for s in schedules):
        raise ValueError("count_union needs schedules in one time zone")
    first, stop = _span(start, end)
    if stop <= first:
        return 0
    members = tuple(schedules)
    total, changes = _by_offset(zone, first, stop,
                                lambda low, high: _union_wall(members, low, high))
    return total + _dst_correction(members, changes, first, stop)


def day_times(schedules: Sequence[CronSchedule], days: Sequence[date]) -> int:
    """How many distinct times of day ``schedules`` have on any of ``days`` (each schedule
    on the days it matches): the wall times of those days' fires, merged onto one day."""
    members = tuple(s for s in schedules if any(_day_matches(s, day) for day in days))
    return _union_times(members)[2][-1]


def _union_wall(schedules: tuple[CronSchedule, ...], low: int, high: int) -> int:
    """Wall times in [low, high) (wall seconds since 1970) that any schedule matches."""
    days = _wall_days(low, high)
    if days is None:
        return 0
    low_date, low_time, high_date, high_time = days
    total = 0
    year, month = low_date.year, low_date.month
    while (year, month) <= (high_date.year, high_date.month):
        python_weekday, length = calendar.monthrange(year, month)
        lo = low_date.day if (year, month) == (low_date.year, low_date.month) else 1
        hi = high_date.day if (year, month) == (high_date.year, high_date.month) else length + 1
        total += _union_month(schedules, month, length, (python_weekday + 1) % 7, lo, hi)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    total -= _union_before(_members_on(schedules, low_date), low_time)
    if high_time:
        total += _union_before(_members_on(schedules, high_date), high_time)
    return total


def _members_on(schedules: tuple[CronSchedule, ...], day: date) -> tuple[CronSchedule, ...]:
    return tuple(s for s in schedules if _day_matches(s, day))


@functools.lru_cache(maxsize=4096)
def _union_month(schedules: tuple[CronSchedule, ...], month: int, length: int,
                 first_weekday: int, lo: int, hi: int) -> int:
    """Matching wall times of the days [lo, hi) of a month of this shape."""
    days = [_matching_days(s, length, first_weekday) if _contains(s.months, month) else ()
            for s in schedules]
    total = 0
    for day in range(lo, hi):
        members = tuple(s for s, matching in zip(schedules, days, strict=True)
                        if day in matching)
        total += _union_times(members)[2][-1]
    return total


@functools.lru_cache(maxsize=1024)
def _union_times(members: tuple[CronSchedule, ...]
                 ) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The merged times of day of ``members``: the minutes of the day that have some, the
    seconds of each, and how many times come before each minute (plus the day's total)."""
    slots: dict[int, set[int]] = {}
    for s in members:
        for hour in s.hours:
            for minute in s.minutes:
                slots.setdefault(hour * 60 + minute, set()).update(s.seconds)
    minutes = tuple(sorted(slots))
    seconds = tuple(tuple(sorted(slots[m])) for m in minutes)
    return minutes, seconds, tuple(accumulate((len(x) for x in seconds), initial=0))


def _union_before(members: tuple[CronSchedule, ...], seconds_of_day: int) -> int:
    """Merged times of day of ``members`` strictly before ``seconds_of_day``."""
    minutes, seconds, before = _union_times(members)
    minute, second = divmod(seconds_of_day, 60)
    i = bisect_left(minutes, minute)
    total = before[i]
    if i < len(minutes) and minutes[i] == minute:
        total += bisect_left(seconds[i], second)
    return total


def last_fires(schedule: CronSchedule, start: datetime, end: datetime, count: int) -> list[Fire]:
    """The newest ``count`` fires with ``start < at <= end``, oldest first.

    Costs a binary search over :func:`count_fires`, not an enumeration of the range.
    """
    first, stop = _span(start, end)
    if count <= 0:
        return []
    if stop <= first or _count(schedule, first, stop) <= count:
        return fires_between(schedule, start, end)
    # Find the latest `low` with at least `count` fires in (low, end]. Fires are distinct
    # whole seconds, so moving `low` by one second drops at most one fire, and (low, end]
    # then holds exactly `count`.
    low, high = first - 1, stop - 1
    while high - low > 1:
        middle = (low + high) // 2
        if _count(schedule, middle + 1, stop) >= count:
            low = middle
        else:
            high = middle
    return fires_between(schedule, _from_epoch(low), end, count)
