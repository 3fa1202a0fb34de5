"""cancel_and_wait ends tasks even when one swallows the first cancellation."""

from __future__ import annotations

import asyncio

from triggerd.tasks import cancel_and_wait


async def test_stubborn_task_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # what a racing wait_for can do on Python 3.11
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait([task], every=0.05)
    assert task.cancelled()
    assert swallowed == 2
