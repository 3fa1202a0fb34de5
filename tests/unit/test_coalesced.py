"""Requests that come while the work runs are one more run after it, not one each."""

from __future__ import annotations

import asyncio

import pytest

from triggerd.tasks import Coalesced


async def test_requests_during_a_run_make_one_more_run() -> None:
    started: list[int] = []
    release = asyncio.Event()

    async def work() -> None:
        started.append(len(started))
        await release.wait()

    runs = Coalesced(work, name="work")
    runs.request()
    await asyncio.sleep(0)
    assert started == [0]
    for _ in range(20):  # a SIGHUP storm during the first run
        runs.request()
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == [0, 1]  # the twenty made one run after it
    runs.request()  # idle again: a request runs at once
    for _ in range(5):
        await asyncio.sleep(0)
    assert started == [0, 1, 2] and runs.runs == 3


async def test_cancel_ends_the_run_and_drops_the_one_asked_after_it() -> None:
    ended: list[str] = []
    release = asyncio.Event()

    async def work() -> None:
        try:
            await release.wait()
        except asyncio.CancelledError:
            ended.append("canceled")
            raise
        ended.append("done")

    runs = Coalesced(work, name="work")
    runs.request()
    await asyncio.sleep(0)
    runs.request()
    await runs.cancel()
    assert ended == ["canceled"] and runs.runs == 1
    await runs.cancel()  # nothing running: a no-op


async def test_a_run_that_fails_is_logged_and_the_one_asked_meanwhile_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[int] = []
    release = asyncio.Event()

    async def work() -> None:
        started.append(len(started))
        if len(started) == 1:
            await release.wait()
            raise RuntimeError("the database went away")

    runs = Coalesced(work, name="triggerd-reload")
    runs.request()
    await asyncio.sleep(0)
    runs.request()  # a SIGHUP during the run that fails
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == [0, 1]
    [record] = [r for r in caplog.records if r.__dict__.get("event") == "task_failed"]
    assert record.getMessage() == "triggerd-reload failed" and record.exc_info is not None
