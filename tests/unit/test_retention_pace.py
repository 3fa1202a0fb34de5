"""Retention's pace: at most a quarter of the time deleting, however long a round takes."""

from __future__ import annotations

from triggerd.executor.service import (
    LEDGER_RETENTION_BATCH,
    RETENTION_BATCH,
    RETENTION_MIN_PAUSE,
    retention_pause,
)


def test_a_round_is_followed_by_a_pause_three_times_as_long() -> None:
    assert retention_pause(0.0) == RETENTION_MIN_PAUSE == 0.15
    assert retention_pause(RETENTION_MIN_PAUSE / 4) == RETENTION_MIN_PAUSE
    assert retention_pause(0.5) == 1.5
    assert retention_pause(2.5) == 7.5


def test_a_round_goes_on_while_any_statement_filled_its_batch() -> None:
    from dataclasses import fields

    from triggerd.executor.service import RetentionRound

    assert not RetentionRound().full
    batches = {"runs": RETENTION_BATCH, "released_keys": 1000, "stale_resume_copies": 500,
               "slots": LEDGER_RETENTION_BATCH, "audit": 1000, "expired_memory": 1000,
               "test_runs": 100, "windows": 1000, "inbox": 500}
    assert set(batches) == {f.name for f in fields(RetentionRound)}
    for name, batch in batches.items():
        assert RetentionRound(**{name: batch}).full, name
        assert not RetentionRound(**{name: batch - 1}).full, name
    assert not RetentionRound(**{name: batch - 1 for name, batch in batches.items()}).full
