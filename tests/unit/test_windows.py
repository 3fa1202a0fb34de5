"""A list's time window: reversed is bad input, empty is an empty answer (the API answered
no items and the CLI exit 2 for both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from triggerd.errors import UsageError
from triggerd.windows import check_window

AT = datetime(2027, 1, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(("since", "until"), [
    (None, None), (AT, None), (None, AT), (AT, AT + timedelta(microseconds=1)),
    # Empty, but a window: the same instant written with another offset too.
    (AT, AT), (AT, AT.astimezone(timezone(timedelta(hours=1)))),
])
def test_windows_that_are_not_reversed_pass(since: datetime | None,
                                            until: datetime | None) -> None:
    check_window(since, until)


def test_a_reversed_window_names_both_ends_in_utc() -> None:
    later = datetime(2027, 1, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(UsageError) as caught:
        check_window(later, AT, names=("--since", "--until"))
    assert str(caught.value) == (
        "--since 2027-01-01T09:30:00Z is after --until 2027-01-01T09:00:00Z (swapped?)")
