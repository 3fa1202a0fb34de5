"""Group commit of run progress: node rows and final execution states from many concurrent
runs are written in one transaction, so throughput is bounded by PostgreSQL's commit rate
rather than by one round trip per node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from triggerd import db
from triggerd.errors import LeaseLost
from triggerd.store.executions import ExecutionUpdate, NodeRow, write_progress

logger = logging.getLogger(__name__)

MAX_BATCH = 1000


@dataclass(kw_only=True)
class _Pending:
    nodes: Sequence[NodeRow]
    finished: Sequence[ExecutionUpdate]
    done: asyncio.Future[set[str]]

    @property
    def runs(self) -> set[str]:
        return {n.execution_id for n in self.nodes} | {f.id for f in self.finished}


@dataclass(kw_only=True)
class ProgressWriter:
    """Writes queued rows in batches, a few transactions at a time. A run's writes commit
    in the order they were made: a write whose caller was canceled (a deadline, a cancel
    request, a drain) is still written, and the rows the run writes next (its CANCELED
    row, its final state) must not commit first in another worker's transaction, where the
    late write would undo them (its previous node's row left RUNNING for ever). So a
    worker takes no write of a run that another worker's batch holds, nor two writes of one
    run in one batch (one statement may not write a row twice)."""

    pool: asyncpg.Pool
    owner: str

    workers: int = 3
    _queued: deque[_Pending] = field(default_factory=deque)
    _busy: set[str] = field(default_factory=set)  # runs in the batches being written
    _idle: deque[asyncio.Future[None]] = field(default_factory=deque)
    _in_flight: int = 0
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        # A few writers in parallel: while one transaction commits, the next batch builds.
        self._workers = [
            asyncio.create_task(self._loop(), name=f"triggerd-progress-writer-{i}")
            for i in range(self.workers)
        ]

    async def stop(self, flush_within: float | None = None) -> None:
        """Stop once the queued and in-flight writes have landed, or after ``flush_within``
        seconds: then they are dropped (a transaction in flight rolls back), and the runs
        they were for are taken up again when their leases expire, as after a crash."""
        # Cancelling a worker in the middle of its transaction would roll back finished
        # runs' final states: only a database that takes nothing in time comes to that.
        deadline = None if flush_within is None else time.monotonic() + flush_within
        while self._queued or self._in_flight:
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning(
                    "progress writes dropped at stop: the database took none in time",
                    extra={"event": "progress_writes_dropped",
                           "queued": len(self._queued), "in_flight": self._in_flight,
                           "timeout_s": flush_within},
                )
                break
            await asyncio.sleep(0.01)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queued:
            _settle(self._queued.popleft())

    async def write(
        self, nodes: Sequence[NodeRow] = (), finished: Sequence[ExecutionUpdate] = ()
    ) -> set[str]:
        """Queue rows and wait until they are committed; returns the execution ids whose
        final state was written."""
        if not nodes and not finished:
            return set()
        done: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._queued.append(_Pending(nodes=nodes, finished=finished, done=done))
        self._wake_one()
        return await done

    def _wake_one(self) -> None:
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _idle_until_woken(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        await waiter

    async def _loop(self) -> None:
        while True:
            if not self._queued:
                await self._idle_until_woken()
                continue
            # One turn of the loop lets the other runs that are finishing right now queue
            # their rows too, so they share this commit.
            await asyncio.sleep(0)
            batch, rows, runs = self._take()
            if not batch:  # all queued writes wait for runs in other batches
                await self._idle_until_woken()
                continue
            self._in_flight += 1
            self._busy |= runs
            try:
                await self._write_batch(batch, rows)
            finally:
                self._in_flight -= 1
                self._busy -= runs
                if self._queued:
                    self._wake_one()  # writes that waited for these runs may go now

    def _take(self) -> tuple[list[_Pending], int, set[str]]:
        """The next batch: queued writes in order, up to MAX_BATCH rows, passing over (and
        keeping in order) those of runs held by another batch or already in this one."""
        batch: list[_Pending] = []
        rows = 0
        runs: set[str] = set()
        held: set[str] = set()
        kept: list[_Pending] = []
        queued = self._queued
        while queued and rows < MAX_BATCH:
            item = queued.popleft()
            item_runs = item.runs
            if item_runs & runs or item_runs & held or item_runs & self._busy:
                kept.append(item)
                held |= item_runs
                continue
            batch.append(item)
            runs |= item_runs
            rows += len(item.nodes) + len(item.finished)
        queued.extendleft(reversed(kept))
        return batch, rows, runs

    async def _write_batch(self, batch: list[_Pending], rows: int) -> None:
        try:
            await self._write_rows(batch, rows)
        finally:
            for p in batch:
                _settle(p)

    async def _write_rows(self, batch: list[_Pending], rows: int) -> None:
        nodes = [n for p in batch for n in p.nodes]
        finished = [f for p in batch for f in p.finished]
        lost: set[str] = set()
        try:
            async with self.pool.acquire() as conn:
                written = await write_progress(conn, self.owner, nodes, finished, lost)
        except Exception as exc:
            logger.warning(
                "progress write failed",
                extra={"event": "progress_write_failed", "error": str(exc), "rows": rows},
            )
            if len(batch) > 1 and not db.is_unavailable(exc):
                # The database refused one run's rows: write each run's rows on their own,
                # so only that run fails and the others in this batch are not held back.
                for p in batch:
                    await self._write_alone(p)
                return
            for p in batch:
                if not p.done.done():
                    p.done.set_exception(exc)
            return
        for p in batch:
            _resolve(p, written, lost)

    async def _write_alone(self, p: _Pending) -> None:
        lost: set[str] = set()
        try:
            async with self.pool.acquire() as conn:
                written = await write_progress(conn, self.owner, p.nodes, p.finished, lost)
        except Exception as exc:
            if not p.done.done():
                p.done.set_exception(exc)
            return
        _resolve(p, written, lost)


def _settle(p: _Pending) -> None:
    """The rows of ``p`` are written or never will be: one left unanswered (its worker
    canceled at stop) is answered as canceled, so its writer does not wait for ever."""
    if not p.done.done():
        p.done.cancel()


def _resolve(p: _Pending, written: set[str], lost: set[str]) -> None:
    """Answer a writer: the ids of its final states written, or :class:`LeaseLost` when its
    node rows were refused because this process no longer holds the run."""
    if p.done.done():
        return
    refused = lost.intersection(n.execution_id for n in p.nodes)
    if refused:
        p.done.set_exception(LeaseLost(f"the lease of {', '.join(sorted(refused))} is lost"))
    else:
        p.done.set_result({f.id for f in p.finished} & written)
