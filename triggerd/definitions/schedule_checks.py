"""Checks of scheduled triggers (cron lists, intervals, bounds, calendars) and the
resolution of calendar names: a trigger's ``calendar: {only: NAME}`` gets the named
calendar's document copied in as ``definition`` at apply, so the stored config holds all
its schedule needs and a calendar edit changes the config text (which reloads the trigger).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from triggerd.cron import EARLIEST_AFTER, LATEST_AFTER, parse_cron
from triggerd.definitions.problems import JsonPath, Report, show, suggestion
from triggerd.durations import parse_duration
from triggerd.errors import CronError, DurationError, TriggerdError

SCHEDULED = ("cron", "interval")
_EXAMPLE = "2027-01-01T00:00:00+01:00"
_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, or None."""
    if not expression.strip():
        return "a cron expression must not be blank"
    try:
        parse_cron(expression, "UTC")
    except CronError as exc:
        return exc.message
    return None


def check_scheduled(trigger_type: Any, config: Mapping[str, Any], path: JsonPath,
                    report: Report) -> None:
    """Checks of the keys every scheduled kind shares, and of intervals and cron lists."""
    if trigger_type not in SCHEDULED:
        return
    expressions = config.get("cron")
    if trigger_type == "cron" and isinstance(expressions, list):
        if not expressions:
            report.add((*path, "cron"), "a cron list needs at least one expression")
        for index, expression in enumerate(expressions):
            if isinstance(expression, str) and expression:
                problem = cron_problem(expression)
                if problem is not None:
                    report.add((*path, "cron", index), problem)
    if trigger_type == "interval":
        _check_interval(config, path, report)
    bounds = {key: _instant(config.get(key), (*path, key), report)
              for key in ("start_at", "end_at")}
    start, end = bounds["start_at"], bounds["end_at"]
    if start is not None and end is not None and end <= start:
        report.add((*path, "end_at"),
                   f"end_at {show(config['end_at'])} is not after start_at"
                   f" {show(config['start_at'])}")
    calendar = config.get("calendar")
    if isinstance(calendar, dict) and isinstance(calendar.get("definition"), dict):
        check_calendar(calendar["definition"], (*path, "calendar", "definition"), report)


def _check_interval(config: Mapping[str, Any], path: JsonPath, report: Report) -> None:
    """``every`` at least 1s, and ``offset`` shorter than ``every`` (a longer one fired as
    ``offset mod every``: not what its reader expects)."""
    every, offset = config.get("every"), config.get("offset")
    period, shift = _duration_or_none(every), _duration_or_none(offset)
    if period is not None and period < timedelta(seconds=1):
        report.add((*path, "every"), f"every must be at least 1s, got {show(every)}")
    elif period is not None and shift is not None and shift >= period:
        report.add((*path, "offset"),
                   f"offset must be shorter than every ({show(every)}), got {show(offset)}")


def _duration_or_none(value: Any) -> timedelta | None:
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except DurationError:
        return None  # the schema said so


def _instant(value: Any, path: JsonPath, report: Report) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        report.add(path, f"{show(value)} is not an ISO instant such as {_EXAMPLE!r}")
        return None
    if instant.utcoffset() is None:
        report.add(path, f"{show(value)} has no UTC offset: write it like {_EXAMPLE!r}")
        return None
    # As `cron next --after`: the schedule's arithmetic (a day before, a zone's offset)
    # overflowed near year 1 or 9999, and the daemon then could not start.
    try:
        inside = EARLIEST_AFTER <= instant <= LATEST_AFTER
    except OverflowError:
        inside = False
    if not inside:
        report.add(path, f"{show(value)} is out of range (1900-01-01 to 9000-01-01)")
        return None
    return instant


@functools.cache
def _countries() -> Mapping[str, Sequence[str]]:
    import holidays

    return dict(holidays.list_supported_countries())


def check_calendar(doc: Mapping[str, Any], path: JsonPath, report: Report) -> None:
    dates = doc.get("dates")
    for index, day in enumerate(dates if isinstance(dates, list) else []):
        if not isinstance(day, str) or not _DATE_SHAPE.fullmatch(day):
            continue  # the schema's to report
        try:
            date.fromisoformat(day)
        except ValueError:  # the right shape, no such day: 2027-02-30, 2027-13-01
            report.add((*path, "dates", index), f"{show(day)} is not a date")
    timezone = doc.get("timezone")
    if isinstance(timezone, str) and timezone:
        try:
            parse_cron("* * * * *", timezone)
        except CronError as exc:
            report.add((*path, "timezone"), exc.message)
    found = doc.get("holidays")
    if not isinstance(found, dict):
        return
    country, subdivision = found.get("country"), found.get("subdivision")
    if not isinstance(country, str):
        return
    countries = _countries()
    if country not in countries:
        report.add((*path, "holidays", "country"),
                   f"unknown country {show(country)} in the holidays package"
                   f"{suggestion(country, countries)}")
    elif isinstance(subdivision, str) and subdivision not in countries[country]:
        known = ", ".join(countries[country][:12])
        report.add((*path, "holidays", "subdivision"),
                   f"unknown subdivision {show(subdivision)} of {country} in the holidays"
                   f" package (known: {known}{', ...' if len(countries[country]) > 12 else ''})")


def _workflow_triggers(document: Any) -> list[tuple[JsonPath, dict[str, Any]]]:
    found: list[tuple[JsonPath, dict[str, Any]]] = []
    workflows = document.get("workflows") if isinstance(document, dict) else None
    for index, workflow in enumerate(workflows if isinstance(workflows, list) else []):
        triggers = workflow.get("triggers") if isinstance(workflow, dict) else None
        for number, trigger in enumerate(triggers if isinstance(triggers, list) else []):
            if isinstance(trigger, dict):
                found.append((("workflows", index, "triggers", number), trigger))
    return found


def resolve_calendars(documents: Sequence[tuple[Report, Any]], now: datetime) -> None:
    """Check the top-level ``calendars`` of every document loaded together, copy each
    referenced calendar into its triggers (``definition``), and report references to no
    calendar and schedules that never fire."""
    calendars: dict[str, dict[str, Any]] = {}
    broken: set[str] = set()  # calendars with a problem: no look-ahead through them
    for report, document in documents:
        listed = document.get("calendars") if isinstance(document, dict) else None
        for index, calendar in enumerate(listed if isinstance(listed, list) else []):
            if not isinstance(calendar, dict) or not isinstance(calendar.get("name"), str):
                continue
            path: JsonPath = ("calendars", index)
            check_calendar(calendar, path, report)
            if any(found[:2] == path for found, _ in report.items):
                broken.add(calendar["name"])  # the schema's problems or check_calendar's
            if calendar["name"] in calendars:
                report.add((*path, "name"), f"duplicate calendar name {show(calendar['name'])}")
            calendars.setdefault(calendar["name"], calendar)
    for report, document in documents:
        for path, trigger in _workflow_triggers(document):
            if trigger.get("type") not in SCHEDULED:
                continue
            ref = trigger.get("calendar")
            if not isinstance(ref, dict):
                # Without a calendar or an end, a valid cron or interval always fires
                # again: the look-ahead is kept for those that may not, so 100,000 plain
                # triggers apply as fast as before.
                if "end_at" in trigger:
                    _check_fires(trigger, path, report, now)
                continue
            if ("only" in ref) == ("skip" in ref):
                # Both or neither: the schema said so, and which calendar would apply is
                # not known, so neither is looked up nor the fires looked for.
                continue
            usable = True
            for mode in ("only", "skip"):
                name = ref.get(mode)
                if not isinstance(name, str):
                    continue
                usable = usable and name not in broken
                if name in calendars:
                    # A new mapping: the caller's document may share the old one.
                    trigger["calendar"] = {**ref, "definition": dict(calendars[name])}
                elif "definition" not in ref:  # a stored config carries its own copy
                    report.add((*path, "calendar", mode),
                               f"unknown calendar {show(name)}{suggestion(name, calendars)}")
            if usable:
                _check_fires(trigger, path, report, now)


def _check_fires(trigger: dict[str, Any], path: JsonPath, report: Report, now: datetime
                 ) -> None:
    """A schedule that never fires (in its bounds, or from now on) is a mistake."""
    from triggerd.schedules import schedule_of

    config = {k: v for k, v in trigger.items() if k not in ("name", "type", "enabled")}
    try:
        schedule = schedule_of(str(trigger["type"]), config)
    except (TriggerdError, ValueError, KeyError, TypeError, NotImplementedError):
        return  # reported by the other checks
    start_text, end_text = config.get("start_at"), config.get("end_at")
    try:
        if isinstance(end_text, str):
            start = (datetime.fromisoformat(start_text) if isinstance(start_text, str)
                     else now) - timedelta(microseconds=1)
            end = datetime.fromisoformat(end_text)
            if start < end and not schedule.fires_between(start, end, 1):
                report.add(path, "the schedule never fires between"
                           f" {'start_at' if isinstance(start_text, str) else 'now'} and end_at")
        elif schedule.next_fire(now) is None:
            report.add(path, "the schedule never fires")
    except (ValueError, TypeError, OverflowError):
        return


def utc_now() -> datetime:
    return datetime.now(UTC)
