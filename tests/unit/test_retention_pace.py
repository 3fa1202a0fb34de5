"""Retention's pace: at most half the time deleting, however long a round takes."""

from __future__ import annotations

from triggerd.executor.service import RETENTION_MIN_PAUSE, retention_pause


def test_a_round_is_followed_by_a_pause_at_least_as_long() -> None:
    assert retention_pause(0.0) == RETENTION_MIN_PAUSE
    assert retention_pause(RETENTION_MIN_PAUSE / 2) == RETENTION_MIN_PAUSE
    assert retention_pause(0.3) == 0.3
    assert retention_pause(2.5) == 2.5
