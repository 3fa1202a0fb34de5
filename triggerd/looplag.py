"""The event loop's own lag: how much later than asked a short sleep wakes up. A loop
blocked by CPU work (or starved of CPU) shows here before it shows anywhere else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

LAG_INTERVAL = 0.25  # seconds between two samples


async def watch_event_loop_lag(
    observe: Callable[[float], None],
    *,
    interval: float = LAG_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Sample forever: each sample is the time a ``sleep(interval)`` overslept."""
    while True:
        asked = clock()
        await asyncio.sleep(interval)
        observe(max(0.0, clock() - asked - interval))
