"""Where croniter is right (UTC, no DST, no `N-N` ranges, no mixed day fields), our
instants must equal croniter's: an independent check of the common cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from croniter import croniter

from triggerd.cron import next_fires, parse_cron

EXPRESSIONS = [
    "* * * * *",
    "*/5 * * * *",
    "0 * * * *",
    "15,45 8-18 * * *",
    "0 2 * * *",
    "30 6 * * 1-5",
    "0 0 1 * *",
    "0 0 L * *",
    "0 12 * * MON",
    "0 9 * JAN,JUL *",
    "0 0 29 2 *",
    "0 0 * * 0",
    "0 0 * * 7",
    "*/10 3 * * 6",
    "5 4 13 * *",
    "0 0 1 1 *",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "0 18 * * 5#3",
]
STARTS = [
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 2, 27, 23, 59, 30, tzinfo=UTC),
    datetime(2027, 12, 31, 23, 0, tzinfo=UTC),
    datetime(2028, 2, 28, 12, 0, tzinfo=UTC),
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_same_instants_as_croniter_in_utc(expression: str) -> None:
    schedule = parse_cron(expression, "UTC")
    for start in STARTS:
        ours = [fire.at for fire in next_fires(schedule, start, 25)]
        reference = croniter(expression, start)
        theirs = [reference.get_next(datetime) for _ in range(25)]
        assert ours == theirs, (expression, start)
