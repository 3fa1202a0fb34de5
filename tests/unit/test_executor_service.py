"""The executor's shielded write of a canceled run's finished nodes: it goes on when the run
is canceled, and its failure after a second cancel (the lease lost meanwhile) is consumed,
not reported as a task exception nobody retrieved (an error line in the log)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from triggerd.errors import LeaseLost
from triggerd.executor.service import write_shielded


async def test_a_write_that_fails_after_its_caller_was_canceled_is_not_reported() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    wrote = asyncio.Event()

    async def write() -> set[str]:
        await asyncio.sleep(0.05)
        wrote.set()
        raise LeaseLost("the lease of x is lost")

    async def run() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await write_shielded(write())
            raise

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    task.cancel()  # the cancel request
    await asyncio.sleep(0.01)
    task.cancel()  # the lease lost while the write was under way
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(wrote.wait(), 5)  # the write went on past both cancels
    await asyncio.sleep(0.01)
    del task
    gc.collect()
    await asyncio.sleep(0)
    assert [c.get("message") for c in reported] == []
