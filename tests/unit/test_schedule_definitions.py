"""Definition files with the schedule kinds of the second round: interval triggers, cron
lists, calendars (resolved at apply), bounds, max_runs and catchup_rate. Each mistake is
reported with its exact message and JSON path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from triggerd.definitions import (
    check_documents,
    load_documents,
    parse_trigger_config,
    trigger_config_to_json,
)
from triggerd.errors import CronError
from triggerd.model import (
    CalendarMode,
    CalendarShift,
    CatchupRate,
    CronConfig,
    IntervalConfig,
    TriggerType,
)
from triggerd.schedules.calendars import calendar_from_json

Doc = dict[str, Any]
T = "$.workflows[0].triggers[0]"
MADRID: Doc = {"name": "madrid", "timezone": "Europe/Madrid",
               "holidays": {"country": "ES", "subdivision": "MD"}, "dates": ["2027-12-24"]}


def document(*triggers: Doc, calendars: list[Doc] | None = None) -> Doc:
    doc: Doc = {"workflows": [{"key": "wf", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
                               "triggers": list(triggers)}]}
    if calendars is not None:
        doc["calendars"] = calendars
    return doc


def found(doc: Doc) -> set[tuple[str, str]]:
    return {(p.path, p.message) for p in check_documents([("f.yaml", doc)], node_types=["noop"])}


def test_the_design_example_loads() -> None:
    doc = document(
        {"name": "run", "type": "cron", "cron": ["0 9 25 * *", "0 9 L * *"],
         "timezone": "Europe/Madrid", "calendar": {"only": "madrid", "shift": "previous"},
         "start_at": "2027-01-01T00:00:00+01:00", "end_at": "2027-12-31T23:59:59+01:00",
         "max_runs": 24, "catchup_rate": "5/s"},
        {"name": "sync", "type": "interval", "every": "6h", "offset": "5m"},
        calendars=[MADRID],
    )
    [spec] = load_documents([("f.yaml", doc)], node_types=["noop"])
    run, sync = spec.triggers
    assert isinstance(run.config, CronConfig)
    assert run.config.cron == ("0 9 25 * *", "0 9 L * *")
    assert run.config.calendar is not None
    assert (run.config.calendar.mode, run.config.calendar.name, run.config.calendar.shift) == (
        CalendarMode.ONLY, "madrid", CalendarShift.PREVIOUS)
    # The calendar is copied into the trigger: the stored config says everything.
    assert run.config.calendar.definition == MADRID
    assert run.config.max_runs == 24
    assert run.config.catchup_rate == CatchupRate(count=5, per=timedelta(seconds=1))
    assert run.config.start_at == datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert sync.type is TriggerType.INTERVAL
    assert sync.config == IntervalConfig(every=timedelta(hours=6), offset=timedelta(minutes=5))
    # Stored and read back, it is the same value.
    for trigger in (run, sync):
        stored = trigger_config_to_json(trigger.config)
        assert parse_trigger_config(trigger.type, stored) == trigger.config


def test_configs_stored_before_the_new_keys_keep_their_text() -> None:
    stored = {"cron": "0 2 * * *", "timezone": "UTC", "misfire": "latest",
              "catchup_window": "1h", "max_catchup": 100, "overlap": "skip", "jitter": "0s"}
    config = parse_trigger_config("cron", stored)
    assert trigger_config_to_json(config) == stored


PROBLEMS = [
    ({"type": "interval", "every": "6x"}, f"{T}.every",
     "'6x' is not a duration: use a non-negative number and a unit (ms, s, m, h, d), e.g."
     " '500ms', '30s', '6h'"),
    ({"type": "interval", "every": "500ms"}, f"{T}.every",
     "every must be at least 1s, got '500ms'"),
    ({"type": "interval", "every": "1h", "offset": "soon"}, f"{T}.offset",
     "'soon' is not a duration: use a non-negative number and a unit (ms, s, m, h, d), e.g."
     " '500ms', '30s', '6h'"),
    # An offset of a whole interval or more fired as offset mod every.
    ({"type": "interval", "every": "1h", "offset": "1h"}, f"{T}.offset",
     "offset must be shorter than every ('1h'), got '1h'"),
    ({"type": "interval", "every": "1h", "offset": "90m"}, f"{T}.offset",
     "offset must be shorter than every ('1h'), got '90m'"),
    ({"type": "cron", "cron": []}, f"{T}.cron", "a cron list needs at least one expression"),
    ({"type": "cron", "cron": 5}, f"{T}.cron", "expected a string or a list, got 5 (an integer)"),
    ({"type": "cron", "cron": ["0 9 * * *", ""]}, f"{T}.cron[1]", "must not be empty"),
    ({"type": "cron", "cron": ["0 9 * * *", "61 * * * *"]}, f"{T}.cron[1]",
     "minute: 61 is out of range 0-59"),
    ({"type": "cron", "cron": "0 9 * * *", "start_at": "2027-01-01T00:00:00"}, f"{T}.start_at",
     "'2027-01-01T00:00:00' has no UTC offset: write it like '2027-01-01T00:00:00+01:00'"),
    ({"type": "cron", "cron": "0 9 * * *", "end_at": "next year"}, f"{T}.end_at",
     "'next year' is not an ISO instant such as '2027-01-01T00:00:00+01:00'"),
    ({"type": "cron", "cron": "0 9 * * *", "start_at": "2027-02-01T00:00:00Z",
      "end_at": "2027-01-01T00:00:00Z"}, f"{T}.end_at",
     "end_at '2027-01-01T00:00:00Z' is not after start_at '2027-02-01T00:00:00Z'"),
    # Near year 1 or 9999 the schedule's arithmetic overflowed: the daemon could not start.
    ({"type": "cron", "cron": "* * * * *", "start_at": "0001-01-01T00:00:00Z"},
     f"{T}.start_at", "'0001-01-01T00:00:00Z' is out of range (1900-01-01 to 9000-01-01)"),
    ({"type": "cron", "cron": "* * * * *", "start_at": "0001-01-01T00:00:00+23:59"},
     f"{T}.start_at",
     "'0001-01-01T00:00:00+23:59' is out of range (1900-01-01 to 9000-01-01)"),
    ({"type": "interval", "every": "1h", "end_at": "9999-12-31T23:59:00-23:59"},
     f"{T}.end_at", "'9999-12-31T23:59:00-23:59' is out of range (1900-01-01 to 9000-01-01)"),
    ({"type": "cron", "cron": "0 9 * * *", "max_runs": 0}, f"{T}.max_runs",
     "must be at least 1, got 0"),
    ({"type": "cron", "cron": "0 9 * * *", "pause_after_failures": 0},
     f"{T}.pause_after_failures", "must be at least 1, got 0"),
    ({"type": "cron", "cron": "0 9 * * *", "pause_after_failures": 1001},
     f"{T}.pause_after_failures", "must be at most 1000, got 1001"),
    ({"type": "interval", "every": "1h", "monitor": "yes"}, f"{T}.monitor",
     "expected true or false, got 'yes' (a string)"),
    ({"type": "cron", "cron": "0 9 * * *", "catchup_rate": "fast"}, f"{T}.catchup_rate",
     "'fast' is not a rate: use a count per s, m or h, e.g. '5/s', '100/m'"),
    ({"type": "cron", "cron": "0 9 * * *", "calendar": {"only": "madird"}}, f"{T}.calendar.only",
     "unknown calendar 'madird' (did you mean 'madrid'?)"),
    ({"type": "cron", "cron": "0 9 * * *", "calendar": {"shift": "next"}}, f"{T}.calendar",
     "a calendar reference names exactly one of 'only' or 'skip'"),
    # Naming both, a calendar nobody defined was also reported unknown twice, and one
    # with no day looked for fires (never) as well.
    ({"type": "cron", "cron": "0 9 * * *", "calendar": {"only": "c", "skip": "c"}},
     f"{T}.calendar", "a calendar reference names exactly one of 'only' or 'skip'"),
    ({"type": "cron", "cron": "0 9 * * *", "calendar": {"only": "none", "skip": "none"}},
     f"{T}.calendar", "a calendar reference names exactly one of 'only' or 'skip'"),
    ({"type": "cron", "cron": "0 9 * * *", "calendar": {"only": "madrid", "shift": "later"}},
     f"{T}.calendar.shift", "'later' is not one of none, next, previous"),
    ({"type": "interval", "every": "1h", "cron": "* * * * *"}, f"{T}.cron",
     "'cron' applies to cron triggers, not to interval ones"),
    # An interval's zone dates only previews, but one that did not exist passed check
    # and apply, and then stopped every reload and the daemon's start.
    ({"type": "interval", "every": "1h", "timezone": "Nowhere/Zone"}, f"{T}.timezone",
     "unknown time zone 'Nowhere/Zone'"),
    ({"type": "cron", "cron": "   "}, f"{T}.cron", "a cron expression must not be blank"),
    ({"type": "cron", "cron": ["0 9 * * *", " \t"]}, f"{T}.cron[1]",
     "a cron expression must not be blank"),
]


@pytest.mark.parametrize(("fields", "path", "message"), PROBLEMS)
def test_schedule_problems(fields: Doc, path: str, message: str) -> None:
    calendars = [MADRID, {"name": "c", "weekdays": []}]
    assert found(document({"name": "t", **fields}, calendars=calendars)) == {(path, message)}


CALENDAR_PROBLEMS = [
    ({"name": "c", "holidays": {"country": "XX"}}, "$.calendars[0].holidays.country",
     "unknown country 'XX' in the holidays package"),
    ({"name": "c", "holidays": {"country": "ES", "subdivision": "ZZ"}},
     "$.calendars[0].holidays.subdivision",
     "unknown subdivision 'ZZ' of ES in the holidays package (known: AN, AR, AS, CB, CE, CL,"
     " CM, CN, CT, EX, GA, IB, ...)"),
    ({"name": "c", "timezone": "Mars/Olympus"}, "$.calendars[0].timezone",
     "unknown time zone 'Mars/Olympus'"),
    ({"name": "c", "dates": ["24/12/2027"]}, "$.calendars[0].dates[0]",
     "'24/12/2027' is not a date: use YYYY-MM-DD"),
    ({"name": "c", "weekdays": ["monday"]}, "$.calendars[0].weekdays[0]",
     "'monday' is not one of mon, tue, wed, thu, fri, sat, sun"),
    ({"name": "c", "weekdays": "mon"}, "$.calendars[0].weekdays",
     "expected a list, got 'mon' (a string)"),
    ({"name": "c", "dates": "2027-01-01"}, "$.calendars[0].dates",
     "expected a list, got '2027-01-01' (a string)"),
    ({"name": "c", "dates": ["2027-02-30"]}, "$.calendars[0].dates[0]",
     "'2027-02-30' is not a date"),
    ({"name": "c", "dates": ["2027-13-01"]}, "$.calendars[0].dates[0]",
     "'2027-13-01' is not a date"),
    ({"name": "c", "holidays": {"country": 5}}, "$.calendars[0].holidays.country",
     "expected a string, got 5 (an integer)"),
    ({"name": "c", "holidays": {"country": "ES", "subdivision": 7}},
     "$.calendars[0].holidays.subdivision", "expected a string, got 7 (an integer)"),
]


@pytest.mark.parametrize("used", [False, True], ids=["unused", "used by a trigger"])
@pytest.mark.parametrize(("calendar", "path", "message"), CALENDAR_PROBLEMS)
def test_calendar_problems(calendar: Doc, path: str, message: str, used: bool) -> None:
    # Used by a trigger, a bad calendar also went into the look for a next fire, which
    # crashed on it (exit 70) or, for 2027-02-30, passed and broke the trigger later.
    triggers = [{"name": "t", "type": "cron", "cron": "0 9 * * *", "calendar": {"only": "c"}}]
    problems = found(document(*(triggers if used else []), calendars=[calendar]))
    assert problems == {(path, message)}


@pytest.mark.parametrize(("definition", "message"), [
    ({"name": "c", "dates": ["2027-02-30"]}, "calendar 'c': a date is not one"),
    ({"name": "c", "timezone": "Nowhere/X"}, "calendar 'c': unknown time zone 'Nowhere/X'"),
    ({"name": "c", "weekdays": "mon"}, "calendar 'c': weekdays must be a list of mon,"),
])
def test_a_bad_calendar_stored_before_the_checks_is_a_cron_error(
    definition: Doc, message: str,
) -> None:
    # Stored by an older triggerd: `triggers show` and the API refuse it like an invalid
    # cron expression (exit 2, 422) instead of an internal error.
    with pytest.raises(CronError) as raised:
        calendar_from_json(definition)
    assert raised.value.message.startswith(message)


def test_a_schedule_that_never_fires_in_its_bounds() -> None:
    # Only weekends, and the bounds hold Monday to Friday.
    weekend = {"name": "weekend", "weekdays": ["sat", "sun"]}
    doc = document({"name": "t", "type": "cron", "cron": "0 9 * * *",
                    "calendar": {"only": "weekend"}, "start_at": "2027-03-01T00:00:00Z",
                    "end_at": "2027-03-06T00:00:00Z"}, calendars=[weekend])
    assert found(doc) == {(T, "the schedule never fires between start_at and end_at")}


def test_a_calendar_with_no_working_day_never_fires() -> None:
    doc = document({"name": "t", "type": "interval", "every": "1h",
                    "calendar": {"only": "none"}}, calendars=[{"name": "none", "weekdays": []}])
    assert found(doc) == {(T, "the schedule never fires")}


def test_a_calendar_edit_changes_the_stored_config() -> None:
    trigger = {"name": "t", "type": "cron", "cron": "0 9 * * *", "calendar": {"skip": "madrid"}}
    texts = []
    for dates in (["2027-12-24"], ["2027-12-24", "2027-12-31"]):
        [spec] = load_documents([("f.yaml", document(dict(trigger),
                                                     calendars=[{**MADRID, "dates": dates}]))],
                                node_types=["noop"])
        texts.append(trigger_config_to_json(spec.triggers[0].config))
    assert texts[0] != texts[1]
