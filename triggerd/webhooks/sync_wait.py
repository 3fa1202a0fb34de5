"""Sync mode: waiting for the executions of waiting webhook requests to finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from triggerd.errors import DatabaseUnavailable
from triggerd.store.webhooks import FinishedRun, finished_runs
from triggerd.tasks import cancel_and_wait

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)


class FinishWaiter:
    """Waits for executions to reach a final status: one poll for every waiting request
    every ``interval`` (one query, however many wait), woken early by the executor's
    ``triggerd_finished`` notifications."""

    def __init__(self, pool: asyncpg.Pool, *, interval: float = 0.05) -> None:
        self._pool = pool
        self._interval = interval
        self._waiting: dict[str, list[asyncio.Future[FinishedRun | None]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks-finish-waiter")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        # Waiting requests fall back to their 202 answer.
        for futures in list(self._waiting.values()):
            for future in futures:
                if not future.done():
                    future.set_result(None)

    def notify(self, execution_id: str) -> None:
        if execution_id in self._waiting:
            self._wake.set()

    async def wait(self, execution_id: str, within: float) -> FinishedRun | None:
        """The finished run, or ``None`` when it did not finish ``within`` seconds (or the
        ingress is stopping)."""
        if self._task is None:
            return None
        future: asyncio.Future[FinishedRun | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(execution_id, []).append(future)
        self._wake.set()
        try:
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(execution_id)
            if futures is not None:
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    del self._waiting[execution_id]

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            try:
                runs = await finished_runs(self._pool, list(self._waiting))
            except DatabaseUnavailable:
                runs = []  # waiters time out and fall back to 202
            except Exception:
                logger.exception(
                    "polling finished runs failed", extra={"event": "webhook_sync_poll_failed"}
                )
                runs = []
            for run in runs:
                for future in self._waiting.pop(run.execution_id, []):
                    if not future.done():
                        future.set_result(run)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

