"""The event-loop lag monitor reports a blocked loop."""

from __future__ import annotations

import asyncio
import contextlib
import time

from triggerd.looplag import watch_event_loop_lag


async def test_a_blocked_loop_is_observed_as_lag() -> None:
    samples: list[float] = []
    task = asyncio.create_task(watch_event_loop_lag(samples.append, interval=0.01))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # block the loop: the sample in flight oversleeps at least this much
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert samples
    assert all(s >= 0 for s in samples)
    assert max(samples) >= 0.29  # a lower bound only: a busy machine can only add to it
