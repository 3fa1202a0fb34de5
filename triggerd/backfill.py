"""The backfill runner: a component of every daemon that starts the slots of running
backfills at their rate.

Each tick it claims the running backfills it may work (a lease: one daemon per backfill;
a dead daemon's lease runs out and another takes over) and starts as many slots as each
one's rate allows since the last tick, through :func:`triggerd.store.backfills.start_slots`
(progress moves in the same transaction as the runs start). Under any overlap policy but
``allow`` a backfill starts a slot only when the trigger has no run in flight, one at a
time. Exactly once per slot does not depend on the lease: the ledger row and the dedupe
key decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from triggerd.component import BaseComponent
from triggerd.cron import utc_iso
from triggerd.db import is_unavailable
from triggerd.store import backfills as store

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.25
LEASE = timedelta(seconds=15)
MAX_CHUNK = 200  # slots per backfill per tick: one transaction stays short
# Seconds a stop waits for the database to take the release of this process's backfills.
RELEASE_TIMEOUT = 3.0


class BackfillRunner(BaseComponent):
    name = "backfill"

    def __init__(self, pool: Any, *, owner: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._credit: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="triggerd-backfill")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            # A lock on a backfill row (or an outage) must not hold the stop: unreleased,
            # the backfill goes on under another process once its lease expires.
            async with asyncio.timeout(RELEASE_TIMEOUT):
                await store.release_backfills(self._pool, self.owner)
        except TimeoutError:
            logger.warning(
                "backfills not released at stop: the database took no answer in time; they"
                " go on when their leases expire",
                extra={"event": "backfills_not_released", "timeout_s": RELEASE_TIMEOUT})
        except Exception:  # noqa: S110 - the same: their leases expire
            pass

    async def _loop(self) -> None:
        last = self._clock()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = self._clock()
            try:
                await self.work_once(now - last)
            except Exception as exc:
                if not is_unavailable(exc):
                    logger.exception("backfill runner: a tick failed",
                                     extra={"event": "backfill_tick_failed"})
            last = now

    async def work_once(self, elapsed: float) -> int:
        """Start what ``elapsed`` seconds of each claimed backfill's rate allow; returns
        how many runs started."""
        claimed = await store.claim_backfills(self._pool, self.owner, LEASE)
        total = 0
        for backfill in claimed:
            # A new backfill starts its first slot at once; credit never piles up beyond
            # a second's worth (a stalled tick must not become a burst).
            if backfill.id in self._credit:
                credit = self._credit[backfill.id] + backfill.rate_per_second * elapsed
                credit = min(credit, max(1.0, backfill.rate_per_second))
            else:
                credit = 1.0
            count = min(int(credit), MAX_CHUNK)
            one_at_a_time = backfill.overlap != "allow"
            if one_at_a_time:
                count = min(count, 1)
            if count < 1:
                self._credit[backfill.id] = credit
                continue
            async with self._pool.acquire() as conn:
                started, skipped, done = await store.start_slots(
                    conn, backfill, self.owner, count, utc_iso(datetime.now(UTC)),
                    one_at_a_time=one_at_a_time)
            total += started
            if done:
                self._credit.pop(backfill.id, None)
                logger.info("backfill finished", extra={"event": "backfill_done",
                                                        "backfill": backfill.id})
            else:
                self._credit[backfill.id] = credit - (started + skipped)
        return total
