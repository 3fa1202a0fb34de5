"""Duration strings: the syntax, and the bounds every definition and setting shares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from triggerd.durations import MAX_DURATION, format_duration, parse_duration
from triggerd.errors import DurationError


@pytest.mark.parametrize(("text", "value"), [
    ("0s", timedelta(0)), ("500ms", timedelta(milliseconds=500)), ("1.5s", timedelta(seconds=1.5)),
    ("1h30m", timedelta(minutes=90)), ("36500d", MAX_DURATION), (" 7d ", timedelta(days=7)),
])
def test_durations_parse(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("36500d1ms", "jitter: '36500d1ms' is too long a duration (at most 36500d)"),
    ("999999999d", "jitter: '999999999d' is too long a duration (at most 36500d)"),
    ("9" * 400 + "d", "too long a duration (at most 36500d)"),
    # Digits of other scripts are not digits here (\\d took them).
    ("\u0663\u0660s", "is not a duration"),
    ("\uff13\uff10s", "is not a duration"),
    ("-5s", "is not a duration"), ("5", "is not a duration"), ("", "is not a duration"),
])
def test_bad_durations_are_named(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, what="jitter")
    assert message in info.value.message


def test_formatting_round_trips_up_to_the_limit() -> None:
    for value in (timedelta(0), timedelta(milliseconds=1), timedelta(days=1, seconds=1),
                  MAX_DURATION):
        assert parse_duration(format_duration(value)) == value
