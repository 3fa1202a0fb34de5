"""Stopping background tasks reliably.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives just as the
awaited future completes, so a loop that was cancelled once may keep running. Stopping
therefore cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, every: float = 1.0) -> None:
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every)


class Coalesced:
    """Runs ``work`` on request, one run at a time; requests that come while it runs are
    one more run after it (which sees the state as it is then), not one run each: twenty
    SIGHUPs a second queued twenty reloads a second, each holding a task for ever."""

    def __init__(self, work: Callable[[], Awaitable[Any]], *, name: str) -> None:
        self._work = work
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self.runs = 0  # started so far

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        while True:
            self._again = False
            self.runs += 1
            try:
                await self._work()
            except Exception:
                # Said now (a task's error is otherwise only said when it is collected), and
                # a request that came meanwhile still runs.
                logger.exception("%s failed", self._name,
                                 extra={"event": "task_failed", "task": self._name})
            if not self._again:
                return

    async def cancel(self) -> None:
        """Cancel the run in progress (and the one asked after it), and wait until it ended."""
        self._again = False
        if self._task is not None:
            await cancel_and_wait([self._task])
