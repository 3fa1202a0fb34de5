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


async def test_a_key_set_again_while_its_callback_runs_gets_its_own_run() -> None:
    # The scheduler sets "cron:<instant>" again when a group is registered for an instant
    # whose callback has already taken its groups and is still writing them (a start or a
    # rebuild that loaded for longer than the instant was away). That second timer used
    # to share the first one's APScheduler job id: APScheduler skipped it ("maximum
    # number of running instances reached") and its groups never fired again.
    timer = PreciseTimer(clock=now)
    timer.start()
    first_started, release, second_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        first_started.set()
        await release.wait()

    async def second() -> None:
        second_ran.set()

    try:
        timer.call_at(now() + timedelta(milliseconds=100), first, key="k")
        await asyncio.wait_for(first_started.wait(), 10)
        timer.call_at(now(), second, key="k")
        assert timer.pending == 1
        await asyncio.wait_for(second_ran.wait(), 10)
        assert timer.pending == 0
    finally:
        release.set()
        await timer.shutdown()


async def test_a_key_set_again_before_its_time_replaces_the_timer() -> None:
    timer = PreciseTimer(clock=now)
    timer.start()
    ran: list[str] = []
    done = asyncio.Event()

    async def record(name: str) -> None:
        ran.append(name)
        done.set()

    try:
        timer.call_at(now() + timedelta(milliseconds=300), lambda: record("old"), key="k")
        timer.call_at(now() + timedelta(milliseconds=100), lambda: record("new"), key="k")
        assert timer.pending == 1
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.4)  # past the old timer's time: it was replaced, not kept
        timer.cancel("k")  # a started (or finished) timer is no longer cancellable
    finally:
        await timer.shutdown()
    assert ran == ["new"]
