"""Group commit of run progress: node rows and final execution states from many concurrent
runs are written in one transaction, so throughput is bounded by PostgreSQL's commit rate
rather than by one round trip per node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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


@dataclass(kw_only=True)
class ProgressWriter:
    pool: asyncpg.Pool
    owner: str
    _queue: asyncio.Queue[_Pending] = field(default_factory=asyncio.Queue)

    workers: int = 3
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
        while not self._queue.empty() or self._in_flight:
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning(
                    "progress writes dropped at stop: the database took none in time",
                    extra={"event": "progress_writes_dropped",
                           "queued": self._queue.qsize(), "in_flight": self._in_flight,
                           "timeout_s": flush_within},
                )
                break
            await asyncio.sleep(0.01)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            _settle(self._queue.get_nowait())

    async def write(
        self, nodes: Sequence[NodeRow] = (), finished: Sequence[ExecutionUpdate] = ()
    ) -> set[str]:
        """Queue rows and wait until they are committed; returns the execution ids whose
        final state was written."""
        if not nodes and not finished:
            return set()
        done: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        # Queued rows are written even if their writer is canceled meanwhile: the rows it
        # writes next may then commit first, in another worker's transaction (the store
        # keeps a late RUNNING row from reopening a node row that ended).
        self._queue.put_nowait(_Pending(nodes=nodes, finished=finished, done=done))
        return await done

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            self._in_flight += 1
            try:
                await self._write_batch(first)
            finally:
                self._in_flight -= 1

    async def _write_batch(self, first: _Pending) -> None:
        batch = [first]
        try:
            # One turn of the loop lets the other runs that are finishing right now queue
            # their rows too, so they share this commit.
            await asyncio.sleep(0)
            rows = len(first.nodes) + len(first.finished)
            while not self._queue.empty() and rows < MAX_BATCH:
                item = self._queue.get_nowait()
                batch.append(item)
                rows += len(item.nodes) + len(item.finished)
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
