"""Rate-limited log lines: a burst, then a steady rate, and one summary of what was dropped."""

from __future__ import annotations

import io
import json
import logging

import pytest

from triggerd.loglimit import LineLimiter, ThrottledLog
from triggerd.logs import setup_logging


def test_a_burst_passes_then_lines_are_counted_not_logged() -> None:
    limiter = LineLimiter(rate=1.0, burst=3)
    verdicts = [limiter.admit("k", 100.0) for _ in range(10)]
    assert [v.log for v in verdicts] == [True] * 3 + [False] * 7
    assert [v.suppressed for v in verdicts] == [0] * 10


def test_the_next_admitted_line_reports_what_was_dropped_before_it() -> None:
    limiter = LineLimiter(rate=1.0, burst=2)
    for _ in range(7):
        limiter.admit("k", 0.0)
    assert limiter.next_due(0.0) == pytest.approx(1.0)
    verdict = limiter.admit("k", 1.0)  # one token earned in the meantime
    assert (verdict.log, verdict.suppressed) == (True, 5)
    # Reported once: the next drop starts a new count.
    assert limiter.admit("k", 1.0).log is False
    assert limiter.admit("k", 2.0).suppressed == 1


def test_due_summaries_wait_for_a_token_and_take_none() -> None:
    limiter = LineLimiter(rate=0.5, burst=1)
    for _ in range(4):
        limiter.admit(("t", "bad_signature"), 10.0)
    assert limiter.due(10.0) == []
    assert limiter.due(11.9) == []
    assert limiter.due(12.0) == [(("t", "bad_signature"), 3)]
    assert limiter.due(12.0) == []  # reported once
    assert limiter.next_due(12.0) is None
    # The summary took no token: the next line is logged.
    assert limiter.admit(("t", "bad_signature"), 12.0).log is True


def test_keys_have_their_own_budget() -> None:
    limiter = LineLimiter(rate=1.0, burst=1)
    assert limiter.admit("a", 0.0).log is True
    assert limiter.admit("a", 0.0).log is False
    assert limiter.admit("b", 0.0).log is True


def test_a_clock_stepping_back_earns_nothing() -> None:
    limiter = LineLimiter(rate=1.0, burst=1)
    assert limiter.admit("k", 50.0).log is True
    assert limiter.admit("k", 10.0).log is False
    assert limiter.due(10.0) == []


def test_idle_keys_are_forgotten() -> None:
    limiter = LineLimiter(rate=1.0, burst=2)
    for n in range(100):
        limiter.admit(f"k{n}", 0.0)
    assert len(limiter.budgets) == 100
    limiter.due(5.0)  # every bucket is full again and nothing is owed
    assert limiter.budgets == {}


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_unusable_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        LineLimiter(rate=rate, burst=burst)


def test_throttled_log_writes_a_summary_line_for_the_dropped_ones() -> None:
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    now = [0.0]
    throttle = ThrottledLog(
        logging.getLogger("triggerd.test"), "thing_refused", key_fields=("trigger",),
        rate=1.0, burst=2, monotonic=lambda: now[0],
    )
    try:
        for n in range(50):
            throttle.log(("a/b",), logging.INFO, "refused", {"trigger": "a/b", "n": n})
        now[0] = 10.0
        assert throttle.flush() == 1
        assert throttle.flush() == 0
    finally:
        setup_logging("warning", "text")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["event"], x.get("n")) for x in lines] == [
        ("thing_refused", 0), ("thing_refused", 1), ("log_suppressed", None)
    ]
    summary = lines[-1]
    assert summary["level"] == "info"
    assert summary["suppressed_event"] == "thing_refused"
    assert summary["suppressed"] == 48
    assert summary["trigger"] == "a/b"
    assert summary["msg"] == "48 more thing_refused lines were not logged"


def test_throttled_log_does_nothing_below_the_logger_level() -> None:
    stream = io.StringIO()
    setup_logging("warning", "json", stream=stream)
    throttle = ThrottledLog(logging.getLogger("triggerd.test"), "quiet", rate=1.0, burst=1,
                            monotonic=lambda: 0.0)
    try:
        for _ in range(5):
            throttle.log((), logging.INFO, "x", {})
        assert throttle.flush() == 0
    finally:
        setup_logging("warning", "text")
    assert stream.getvalue() == ""
