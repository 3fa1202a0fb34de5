"""The documented pattern of a bounded number (an audit cursor) takes exactly the digits of
0 to its bound, as the API's own check does."""

from __future__ import annotations

import re

import pytest

from triggerd.storable import BIGINT_MAX, BIGINT_TEXT_PATTERN, at_most_pattern, is_bigint_text


@pytest.mark.parametrize("high", [0, 1, 9, 10, 19, 100, 101, 909, 2**31 - 1, BIGINT_MAX])
def test_the_pattern_takes_the_digits_of_zero_to_high_and_nothing_else(high: int) -> None:
    pattern = re.compile(at_most_pattern(high))
    size = len(str(high))
    values = {*range(min(high + 200, 3000)), high - 1, high, high + 1, 10**size - 1, 10**size}
    values |= {high - 10**k for k in range(size)} | {high + 10**k for k in range(size)}
    for value in sorted(v for v in values if v >= 0):
        for text in {str(value), str(value).zfill(size), str(value).zfill(size + 1)}:
            expected = len(text) <= size and int(text) <= high
            assert (pattern.fullmatch(text) is not None) is expected, (high, text)
    for text in ("", "-1", " 1", "1 ", "+1", "\u0661", "1_0", "1\n"):
        assert pattern.fullmatch(text) is None, (high, text)


def test_the_audit_cursor_pattern_is_the_bigint_check() -> None:
    pattern = re.compile(BIGINT_TEXT_PATTERN)
    for text in ("0", "9223372036854775807", "9223372036854775808", "0" * 19, "0" * 20,
                 "9999999999999999999", "\u00b2", "-1"):
        assert (pattern.fullmatch(text) is not None) is is_bigint_text(text), text
