"""The precise timer: its ``prepare`` hook runs when the timer wakes, before the callback,
and a failing preparation does not cost the callback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from triggerd.scheduler.timer import PreciseTimer


def now() -> datetime:
    return datetime.now(UTC)


async def test_prepare_runs_before_the_callback() -> None:
    timer = PreciseTimer(clock=now)
    timer.start()
    events: list[str] = []
    done = asyncio.Event()

    async def callback() -> None:
        events.append("callback")
        done.set()

    try:
        timer.call_at(now() + timedelta(milliseconds=200), callback, key="k",
                      prepare=lambda: events.append("prepare"))
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await timer.shutdown()
    assert events == ["prepare", "callback"]


async def test_a_failing_prepare_is_logged_and_the_callback_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timer = PreciseTimer(clock=now)
    timer.start()
    done = asyncio.Event()

    async def callback() -> None:
        done.set()

    def prepare() -> None:
        raise RuntimeError("boom")

    try:
        timer.call_at(now() + timedelta(milliseconds=100), callback, key="k", prepare=prepare)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await timer.shutdown()
    failed = [r for r in caplog.records if getattr(r, "event", None) == "cron_timer_prepare_failed"]
    assert [r.getMessage() for r in failed] == ["timer preparation failed"]
