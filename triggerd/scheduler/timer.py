"""APScheduler 3.x as a precise timer, and nothing more.

APScheduler never computes a fire time here: the scheduler hands it instants computed by
:mod:`triggerd.cron`, one :class:`~apscheduler.triggers.date.DateTrigger` job per distinct
instant. Two corrections make the wake-ups land within a few milliseconds:

* The kernel lets a long ``epoll_wait`` overrun by about 0.1 %, so a one-minute wait ends
  30-80 ms late. The APScheduler job is therefore set to run early, by ``early`` plus
  ``early_ratio`` of the wait, and the job sleeps the rest with :func:`asyncio.sleep`,
  whose short wait is accurate to about a millisecond, and busy-waits the last 2 ms (the
  loop is blocked that long once per distinct instant).
* ``misfire_grace_time=None``: a job that runs late (a busy loop) still runs; whether a
  late instant still fires or is a misfire is the scheduler's decision, not APScheduler's.

The ``clock`` is the scheduler's (injectable) notion of now; APScheduler itself runs on the
real clock, so a run date is "the real now plus the wait measured on ``clock``".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Callback = Callable[[], Awaitable[None]]
Prepare = Callable[[], None]

DEFAULT_EARLY = timedelta(milliseconds=50)
DEFAULT_EARLY_RATIO = 0.002
SHUTDOWN_GRACE = 10.0
SPIN = 0.002  # seconds of busy waiting before an instant


class PreciseTimer:
    """Run an async callback at an instant, a few milliseconds late at most."""

    def __init__(
        self,
        *,
        clock: Clock,
        early: timedelta = DEFAULT_EARLY,
        early_ratio: float = DEFAULT_EARLY_RATIO,
    ) -> None:
        self._clock = clock
        self._early = early
        self._early_ratio = early_ratio
        # The APScheduler job of each timer that has not started yet. Each call_at gets a
        # job id of its own: a key set again while its earlier job is running (an instant
        # registered again after its callback took its groups) would otherwise share that
        # job's id, and APScheduler skips a job whose id still runs (max_instances=1).
        self._jobs: dict[str, str] = {}
        self._job_numbers = itertools.count()
        self._running: set[asyncio.Task[Any]] = set()
        self._sleeping: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
        )

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    @property
    def pending(self) -> int:
        """Timers set and not yet run."""
        return len(self._jobs)

    def start(self) -> None:
        """Start APScheduler on the running event loop."""
        if not self._scheduler.running:
            self._closed = False
            self._scheduler.start()

    async def shutdown(self) -> None:
        """Cancel the timers, let the callbacks already running finish (up to
        SHUTDOWN_GRACE seconds), then stop APScheduler."""
        self._closed = True
        self._scheduler.remove_all_jobs()
        self._jobs.clear()
        for task in self._sleeping:
            task.cancel()  # _run ends quietly: its callback never started
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=SHUTDOWN_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._scheduler.running:
            # APScheduler shuts down on the loop's next turn; let it.
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)

    def call_at(
        self, when: datetime, callback: Callback, *, key: str, prepare: Prepare | None = None
    ) -> None:
        """Run ``callback`` at ``when`` (tz-aware); ``key`` names the timer (one per key:
        setting a key again replaces it). ``prepare``, when given, runs when the timer
        wakes, some tens of milliseconds before ``when``: work that can be done ahead
        (building a large batch) is then off the instant's critical path. A key whose
        timer has already started gets a new timer beside it."""
        wait = when - self._clock()
        lead = self._early + max(wait, timedelta(0)) * self._early_ratio
        run_date = datetime.now(UTC) + wait - lead
        self.cancel(key)
        job_id = self._jobs[key] = f"{key}#{next(self._job_numbers)}"
        self._scheduler.add_job(
            self._run,
            trigger=DateTrigger(run_date=run_date, timezone=UTC),
            args=(when, callback, key, prepare, job_id),
            id=job_id,
            name=key,
        )

    def cancel(self, key: str) -> None:
        """Cancel the key's timer unless it has started."""
        job_id = self._jobs.pop(key, None)
        if job_id is not None:
            with contextlib.suppress(JobLookupError):  # starting right now
                self._scheduler.remove_job(job_id)

    def clear(self) -> None:
        """Cancel every timer that has not started yet."""
        self._scheduler.remove_all_jobs()
        self._jobs.clear()

    async def _run(
        self, when: datetime, callback: Callback, key: str, prepare: Prepare | None,
        job_id: str,
    ) -> None:
        if self._jobs.get(key) == job_id:
            del self._jobs[key]  # started: a new call_at for the key sets a timer of its own
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            if prepare is not None and not self._closed:
                try:
                    prepare()
                except Exception:  # the callback does the work itself then
                    logger.exception(
                        "timer preparation failed",
                        extra={"event": "cron_timer_prepare_failed", "timer": key},
                    )
            remaining = (when - self._clock()).total_seconds() - SPIN
            if remaining > 0:
                self._sleeping.add(task)
                try:
                    await asyncio.sleep(remaining)
                except asyncio.CancelledError:
                    if self._closed:
                        return  # shutdown cancelled the wait, not APScheduler's job
                    raise
                finally:
                    self._sleeping.discard(task)
            if self._closed:
                return
            # The last SPIN seconds on the CPU: epoll rounds its timeout up to the next
            # millisecond and a woken process waits for a CPU; a busy wait avoids both.
            give_up = time.monotonic() + 2 * SPIN  # a clock that stands still ends it too
            while self._clock() < when and time.monotonic() < give_up:
                pass
            await callback()
        except asyncio.CancelledError:
            if self._closed:
                return  # shutdown gave up waiting for the callback; do not alarm APScheduler
            raise
        except Exception:
            logger.exception(
                "timer callback failed", extra={"event": "cron_timer_failed", "timer": key}
            )
        finally:
            self._running.discard(task)
