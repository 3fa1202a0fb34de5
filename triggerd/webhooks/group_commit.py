"""Group commit: concurrent requests' inserts share one statement and one transaction.

A request hands its :class:`~triggerd.store.webhooks.InboxItem` to :meth:`GroupCommit.submit`
and waits; a writer task takes everything queued (up to ``max_batch``), stores it with one
statement (one implicit transaction, one round trip) and only then resolves each
request's future, so a request is answered after its own row is committed and never
before. While a batch is in flight the next one accumulates, so the batch size grows with
the load and throughput is bounded by PostgreSQL's commit rate rather than by one round
trip per request.

Failures: when the database is unreachable every request of the batch gets
:class:`~triggerd.errors.DatabaseUnavailable` (its sender sees ``503`` and retries);
nothing is acknowledged that is not stored. Any other error (bad data) is isolated by
retrying the batch's items one by one, so one poisoned request cannot fail its
neighbours.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from triggerd.errors import DatabaseUnavailable, TriggerdError
from triggerd.store.webhooks import InboxItem, InboxResult, StoreInDoubt

logger = logging.getLogger(__name__)


class BatchStore(Protocol):
    """What a writer stores batches with (one per writer; see InboxWriter)."""

    async def store(self, items: Sequence[InboxItem]) -> list[InboxResult | None]: ...

    async def close(self) -> None: ...

DEFAULT_MAX_BATCH = 500
DEFAULT_MAX_QUEUE = 20_000
# A duplicate whose winner vanished between the insert and the lookup is retried this often.
_MAX_ATTEMPTS = 3


class ShuttingDown(DatabaseUnavailable):
    """The ingress is stopping and takes no more requests (answered 503, retryable)."""


class TriggerGone(DatabaseUnavailable):
    """The trigger was deleted while its request was being stored: nothing was stored
    (503, retryable; a retry meets the reloaded routes)."""


class QueueFull(DatabaseUnavailable):
    """More requests are waiting for the database than it keeps up with (503, retryable)."""


@dataclass(kw_only=True)
class GroupCommitStats:
    batches: int = 0
    rows: int = 0  # items written (inserted or found to be duplicates)
    failures: int = 0  # batches that failed
    largest_batch: int = 0


class _Pending:
    """A request waiting for its row. Private mutable state (``attempts`` counts lost
    duplicate lookups), and one is made per request: a slotted class, not a dataclass,
    whose generated ``__init__`` costs several times more."""

    __slots__ = ("attempts", "future", "item")

    def __init__(self, item: InboxItem, future: asyncio.Future[InboxResult]) -> None:
        self.item = item
        self.future = future
        self.attempts = 0


class GroupCommit:
    def __init__(
        self,
        open_store: Callable[[], BatchStore],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_queue: int = DEFAULT_MAX_QUEUE,
        writers: int = 1,
    ) -> None:
        if max_batch < 1 or writers < 1:
            raise ValueError("max_batch and writers must be at least 1")
        self._open_store = open_store
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._writers_wanted = writers
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        # The loop the writers run on, kept so that submit need not look it up per request
        # (asyncio.get_running_loop costs a getpid system call each time).
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.stats = GroupCommitStats()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._writers:
            return
        self._closing = False
        self._event_loop = asyncio.get_running_loop()
        self._writers = [
            asyncio.create_task(self._run(), name=f"webhooks-group-commit-{n}")
            for n in range(self._writers_wanted)
        ]

    async def submit(self, item: InboxItem) -> InboxResult:
        """Store ``item``; returns once its row is committed (or found a duplicate).

        Raises :class:`DatabaseUnavailable` (or its :class:`ShuttingDown` and
        :class:`QueueFull` kinds) when the request must be answered 503.
        """
        loop = self._event_loop
        if self._closing or not self._writers or loop is None:
            raise ShuttingDown("triggerd is shutting down")
        if len(self._queue) >= self._max_queue:
            raise QueueFull(f"{len(self._queue)} requests are waiting for the database")
        future: asyncio.Future[InboxResult] = loop.create_future()
        self._queue.append(_Pending(item, future))
        self._wake.set()
        # A cancelled caller (client gone) does not cancel the write: the row is still
        # stored, only its acknowledgement is lost, and a redelivery is deduplicated.
        return await future

    async def stop(self) -> None:
        """Take no more requests, write everything queued, then end the writers."""
        self._closing = True
        self._wake.set()
        writers, self._writers = self._writers, []
        if writers:
            await asyncio.gather(*writers, return_exceptions=True)
        # Writers are gone (or never started): nothing may be left waiting forever.
        while self._queue:
            pending = self._queue.popleft()
            _fail(pending, ShuttingDown("triggerd is shutting down"))

    async def _run(self) -> None:
        store = self._open_store()
        try:
            await self._loop(store)
        finally:
            await store.close()

    async def _loop(self, store: BatchStore) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch: list[_Pending] = []
            while self._queue and len(batch) < self._max_batch:
                batch.append(self._queue.popleft())
            try:
                await self._write(store, batch)
            except asyncio.CancelledError:
                for pending in batch:
                    _fail(pending, ShuttingDown("triggerd is shutting down"))
                raise
            except Exception as exc:  # a bug must not kill the writer and hang requests
                logger.exception(
                    "group commit failed", extra={"event": "webhook_group_commit_bug"}
                )
                for pending in batch:
                    _fail(pending, exc)

    async def _write(self, store: BatchStore, live: list[_Pending]) -> None:
        # Items whose caller is gone are written too: the request was accepted, and
        # storing it is what a redelivery's dedupe needs to recognise it.
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(live))
        try:
            results = await store.store([p.item for p in live])
        except DatabaseUnavailable as exc:
            self.stats.failures += 1
            in_doubt = isinstance(exc, StoreInDoubt)
            logger.warning(
                "webhook requests not confirmed stored: no answer from the database"
                if in_doubt else "webhook requests not stored: database unavailable",
                extra={"event": "webhook_store_unavailable", "requests": len(live),
                       "reason": str(exc), "in_doubt": in_doubt},
            )
            for pending in live:
                _fail(pending, exc)
            return
        except Exception as exc:
            self.stats.failures += 1
            if len(live) == 1:
                logger.error(
                    "webhook request not stored",
                    exc_info=exc,
                    extra={"event": "webhook_store_failed",
                           "trigger": live[0].item.trigger_name},
                )
                _fail(live[0], exc)
                return
            # Isolate the bad item(s): everything else is stored individually.
            for pending in live:
                await self._write(store, [pending])
            return
        self.stats.rows += len(live)
        for pending, result in zip(live, results, strict=True):
            if result is not None and result.gone:
                _fail(pending, TriggerGone(
                    "the trigger was changed while the request was being stored"))
                continue
            if result is not None:
                if not pending.future.done():
                    pending.future.set_result(result)
                continue
            pending.attempts += 1
            if pending.attempts >= _MAX_ATTEMPTS:
                _fail(pending, TriggerdError("the duplicate's first execution vanished"))
            else:
                self._queue.append(pending)
                self._wake.set()


def _fail(pending: _Pending, exc: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(exc)
