"""The cron scheduler component: cron triggers in PostgreSQL become executions, once each.

How it works
------------
* Triggers are cached in memory, grouped by schedule (expression, time zone). Each group
  computes its next fire once per instant through the schedule interface
  (:mod:`triggerd.schedules`: cron, intervals, calendars, bounds alike), shared by
  all its members.
* APScheduler is only the timer (:class:`~.timer.PreciseTimer`): one job per distinct due
  instant. When it runs, every trigger due at that instant is written by ONE multi-row
  statement (:func:`triggerd.store.slots.record_slots`), which claims each slot in
  ``trigger_slots``, applies the overlap policy and inserts the executions. Replicas race on
  the slot's primary key; exactly one wins each slot.
* ``jitter`` delays a trigger's write by :func:`triggerd.planning.jitter_offset` (the same
  on every replica); ``scheduled_for`` stays the slot. Jittered writes are grouped by their
  actual fire time (to the millisecond), again one job per distinct time.
* Catch-up (:func:`triggerd.planning.plan_catchup`) handles the slots missed since each
  trigger's last recorded slot: at start, for every added or changed trigger on reload, and
  after a *gap* (a lost database connection, a stalled event loop, a clock jump). A gap
  first cancels every timer and waits for the writes in flight, then rebuilds from the
  tables, so a slot is handled either by the timer path or by a catch-up, never both.
* Live reload: the :data:`~triggerd.notifications.channels.TRIGGERS` notifications of the
  process's notifications hub reload the changed triggers within ~50 ms; a gap in the hub's
  connection is a gap here; a full reconcile runs every ``scheduler.reconcile_interval``.
* Guards: the local clock is compared with PostgreSQL's at start and every 5 minutes
  (:attr:`CronScheduler.clock_skew`); :meth:`CronScheduler.readiness` names the triggers
  whose due slot is more than ``scheduler.lag_threshold`` late without a recorded outcome.
  It costs O(1) per probe whatever the number of triggers: what is still owed (timers not
  run, writes in flight or failed) is kept in an :class:`~.overdue.OverdueWatch` as the
  timer plans and records slots; the database is asked only about the entries that are
  late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import operator
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from triggerd.component import BaseComponent
from triggerd.config import SchedulerSettings, Settings
from triggerd.cron import Fire, utc_iso
from triggerd.errors import DatabaseUnavailable
from triggerd.model import SlotOutcome
from triggerd.notifications.channels import TRIGGERS, trigger_change_id
from triggerd.notifications.hub import NotificationHub, Subscription
from triggerd.planning import SlotDecision, jitter_offset, plan_catchup, plan_failed_slots
from triggerd.scheduler.cache import (
    ConfigCache,
    CronEntry,
    InstantPlan,
    ScheduleGroup,
    ScheduleKey,
    TriggerTable,
    catch_up_batches,
    plan_instant,
    unchanged,
)
from triggerd.scheduler.failed import FailedSlots, slots_of
from triggerd.scheduler.overdue import OverdueWatch, Owed, OwedKind
from triggerd.scheduler.timer import PreciseTimer
from triggerd.schedules import Schedule
from triggerd.store.executions import cancel_children
from triggerd.store.slots import (
    RUN_OUTCOMES,
    CronTriggerRow,
    ExpectedSlot,
    SlotBatch,
    SlotRequest,
    SlotWriteResult,
    database_clock,
    find_overdue,
    iter_cron_triggers,
    load_cron_triggers,
    record_slots,
    scheduled_digest,
    warm_up,
)
from triggerd.tasks import cancel_and_wait

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# The loop woke this much later than planned: treat it as a stall (suspend, blocked loop).
STALL_THRESHOLD = timedelta(seconds=2)
WATCH_INTERVAL = 0.5
SKEW_INTERVAL = 300.0
SKEW_WARNING = 1.0
RELOAD_DEBOUNCE = 0.05
RELOAD_FULL_ABOVE = 500  # more changed triggers than this at once: one full reconcile
# A large instant is written as up to INSTANT_STATEMENTS concurrent statements (one per
# core: on 2 cores, 2 statements of 5,000 slots committed 10,000 slots sooner than 5 of
# 2,000), each of at least INSTANT_CHUNK slots.
INSTANT_CHUNK = 2_000
INSTANT_STATEMENTS = max(2, os.cpu_count() or 2)
# A catch-up is written the same way, INSTANT_STATEMENTS statements at a time of at most
# CATCH_UP_CHUNK slots: a slot costs about the same from 2,000 a statement up (50-55 us of
# PostgreSQL's time), and smaller batches leave less of one core idle at the end.
CATCH_UP_CHUNK = 5_000
# A catch-up is written while the triggers are still loading, in pieces of this many slots:
# after a long downtime every trigger owes up to 2 * max_catchup + 1 slots, and 1,000,000
# triggers down for 6 hours owed 5.6 million (1.43 GB held before the first write).
CATCH_UP_PIECE = 8 * CATCH_UP_CHUNK
WRITE_ATTEMPTS = 3
# A stop waits this long for the slot writes in flight: one the database has not taken by
# then (a lock, an outage) is a slot the next start catches up, like any missed one.
DRAIN_TIMEOUT = 5.0
RECOVERY_BACKOFF_MAX = 10.0
OVERDUE_NAMES = 10
OVERDUE_LIMIT = 1000
LATENESS_SAMPLES = 1024
# A slot this much past its due time is missed (a misfire); a more recent one still fires.
CATCHUP_GRACE = timedelta(seconds=1)
# How long a write waits for the cancel of the child runs of the runs it canceled.
CANCEL_CHILDREN_TIMEOUT = 5.0
# Failed slots remembered per trigger (see triggerd.scheduler.failed).
FAILED_SLOTS_KEPT = 1000
# Rows scheduled between two looks at the clock while loading: 16 rows of new configs (a
# parse each) are about 2 ms of work, 64 held the loop 5-9 ms past YIELD_AFTER.
SLICE_ROWS = 16
# While (re)loading many triggers, the loop is given back after this many seconds of work.
# A timer that expires meanwhile runs after the next slice too (the loop runs every ready
# callback of a turn), so others wait up to about twice this.
YIELD_AFTER = 0.005


def utc_now() -> datetime:
    return datetime.now(UTC)


def _iso_ms(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(kw_only=True)
class SchedulerStats:
    """Figures for metrics. Counters count this replica's decisions only."""

    triggers: int = 0  # cron triggers scheduled
    schedules: int = 0  # distinct (expression, time zone)
    timers: int = 0  # APScheduler jobs pending
    outcomes: Counter[str] = field(default_factory=Counter)  # slot outcome -> count
    executions: int = 0  # executions inserted
    canceled: int = 0  # previous runs canceled (overlap cancel_previous)
    lost: int = 0  # slots another replica had already decided
    stale: int = 0  # slots dropped because the trigger had changed meanwhile
    write_errors: int = 0
    recoveries: Counter[str] = field(default_factory=Counter)  # gap reason -> count
    # Seconds from a due instant (plus jitter) to its write being sent, newest last.
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=LATENESS_SAMPLES))
    # (seconds from a due instant to its write's commit, slots that write decided), newest
    # last: when the rows became durable and visible.
    committed: deque[tuple[float, int]] = field(
        default_factory=lambda: deque(maxlen=LATENESS_SAMPLES)
    )
    clock_skew: float | None = None  # local clock minus the database's, seconds
    last_reconcile: datetime | None = None
    reconciles_skipped: int = 0  # periodic reconciles that found the digest unchanged

    @property
    def fires(self) -> int:
        return sum(self.outcomes[o] for o in RUN_OUTCOMES)

    @property
    def skips(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o.startswith("skipped_"))


@dataclass(kw_only=True)
class _Tally:
    """Outcome counts of one catch-up or reload, for its log line."""

    outcomes: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    stale: int = 0
    failed: int = 0

    def add(self, result: SlotWriteResult | None, size: int) -> None:
        if result is None:
            self.failed += size
            return
        self.outcomes.update(r.outcome.value for r in result.recorded)
        self.lost += result.lost
        self.stale += len(result.stale)

    def as_log(self) -> dict[str, Any]:
        counts = {o.value: self.outcomes.get(o.value, 0) for o in SlotOutcome}
        return {"outcomes": counts, "lost": self.lost, "stale": self.stale,
                "failed": self.failed}


CatchupMemo = dict[tuple[Any, ...], Any]


@dataclass(kw_only=True)
class _CatchUpFlow:
    """A catch-up written as it is planned: each trigger's slots are added in one piece,
    and every CATCH_UP_PIECE slots are handed to ``write`` while planning goes on. One
    piece is written while the next fills; planning waits when both are full, so memory
    holds about two pieces whatever the downtime."""

    write: Callable[[Sequence[SlotRequest], _Tally], Coroutine[Any, Any, None]]
    tally: _Tally = field(default_factory=_Tally)
    slots: int = 0  # every slot added, for the log line
    pending: list[SlotRequest] = field(default_factory=list)
    _writing: asyncio.Task[None] | None = None

    def add(self, trigger_slots: Sequence[SlotRequest]) -> None:
        """One trigger's slots (a piece never splits a trigger's slots)."""
        self.pending.extend(trigger_slots)
        self.slots += len(trigger_slots)

    async def flush_if_full(self) -> None:
        if len(self.pending) < CATCH_UP_PIECE:
            return
        if self._writing is not None:
            await self._writing  # the piece before: written first (and it bounds memory)
        piece, self.pending = self.pending, []
        self._writing = asyncio.create_task(self.write(piece, self.tally),
                                            name="triggerd-cron-catchup")

    async def finish(self) -> _Tally:
        """Write what is left and wait for every piece."""
        if self._writing is not None:
            await self._writing
            self._writing = None
        piece, self.pending = self.pending, []
        await self.write(piece, self.tally)
        return self.tally

    async def abandon(self) -> None:
        """Planning failed: stop the piece being written (each statement in it still
        commits or rolls back whole, see ``_write``)."""
        if self._writing is not None:
            await cancel_and_wait([self._writing])
            self._writing = None


def statement_chunk(total: int, most: int | None = None) -> int:
    """Slots per statement when ``total`` slots are written as INSTANT_STATEMENTS
    concurrent statements: at least INSTANT_CHUNK, at most ``most`` when given."""
    share = -(-total // INSTANT_STATEMENTS)
    return max(INSTANT_CHUNK, share if most is None else min(most, share))


@contextlib.contextmanager
def _long_lived_build() -> Iterator[None]:
    """Build the (large, long-lived) trigger table without the cyclic garbage collector's
    pauses, then move it out of the collector's sight.

    A full collection walks every tracked object: with 100,000 triggers loaded it held the
    loop for 50-150 ms, during the build (as the heap grew) and now and then afterwards.
    The table has no reference cycles (entries are freed by reference counting when
    replaced), so ``gc.freeze()`` loses nothing of it; at worst, cyclic garbage that exists
    at that moment stays allocated.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


_config_text = operator.attrgetter("config_text")


class _Slicer:
    """Gives the event loop back every YIELD_AFTER seconds of a long computation."""

    def __init__(self) -> None:
        self._until = time.monotonic() + YIELD_AFTER

    async def tick(self) -> None:
        if time.monotonic() >= self._until:
            await asyncio.sleep(0)
            self._until = time.monotonic() + YIELD_AFTER


class CronMetrics(Protocol):
    """Where the scheduler reports to Prometheus (:class:`triggerd.api.metrics.Metrics`)."""

    def cron_fired(self, trigger: str, outcome: str, lateness_s: float | None = None) -> None: ...

    def set_clock_skew(self, seconds: float) -> None: ...


class CronScheduler(BaseComponent):
    """The ``scheduler`` component of the daemon (see the module docstring)."""

    name = "scheduler"

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        dsn: str,
        settings: Settings,
        clock: Clock = utc_now,
        hub: NotificationHub | None = None,
    ) -> None:
        self._pool = pool
        self._settings: SchedulerSettings = settings.scheduler
        # Through PgBouncer the triggers are read without a named statement.
        self._bounced = settings.database.behind_pgbouncer
        self._clock = clock
        self._timer = PreciseTimer(clock=clock)
        # The daemon's hub; without one (used alone) the scheduler runs its own.
        self._own_hub = hub is None
        self._hub = hub if hub is not None else NotificationHub(dsn=dsn)
        self._subscription: Subscription | None = None
        self._table = TriggerTable()
        self._configs = ConfigCache()
        self._instants: dict[datetime, set[ScheduleKey]] = {}
        self._prepared: dict[datetime, InstantPlan] = {}
        self._jitter: dict[datetime, list[tuple[CronEntry, datetime]]] = {}
        # What is still owed, for readiness; tokens of the instants' and jitter buckets'
        # entries, resolved when their timers run.
        self._owed = OverdueWatch()
        self._instant_owed: dict[datetime, int] = {}
        self._jitter_owed: dict[datetime, int] = {}
        # Bumped by every rebuild: timers set before it do nothing when they run.
        self._generation = 0
        self._lock = asyncio.Lock()  # one reload, reconcile or rebuild at a time
        self._writes: set[asyncio.Task[SlotWriteResult | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_reload: set[str] = set()
        # The digest read with the rows of the last full reconcile, while no other reload
        # has changed the table since (None: the next periodic reconcile is a full one).
        self._reconciled_digest: str | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._recovery_task: asyncio.Task[None] | None = None
        self._recovery_reasons: list[str] = []
        self._recovering_since: datetime | None = None
        # The oldest owed slot when a rebuild forgot the owed heap, until one succeeds.
        self._owed_before_rebuild: datetime | None = None
        # Per trigger, the slots whose write failed, until a write of them succeeds (see
        # triggerd.scheduler.failed: each catch-up decides them too).
        self._failed = FailedSlots(limit=FAILED_SLOTS_KEPT)
        self._rebuilt_at: datetime | None = None
        self._rebuilt_mono = 0.0
        self._rebuilding = False  # a rebuild is scheduling (and yielding to the loop)
        self._running = False
        # Local clock minus PostgreSQL's, seconds (positive: this host runs ahead).
        self.clock_skew: float | None = None
        self._stats = SchedulerStats()
        # The daemon's Prometheus metrics (triggerd.api.metrics.Metrics), when served.
        self.metrics: CronMetrics | None = None

    # --- the component -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def trigger_count(self) -> int:
        """Cron triggers scheduled (the daemon's status line)."""
        return len(self._table)

    @property
    def stats(self) -> SchedulerStats:
        self._stats.triggers = len(self._table)
        self._stats.schedules = len(self._table.groups)
        self._stats.timers = self._timer.pending
        return self._stats

    async def start(self) -> None:
        """Load every cron trigger, catch up what was missed and schedule the rest. Returns
        when everything is scheduled."""
        if self._running:
            return
        self._running = True
        try:
            self._timer.start()
            # Listen before loading, so no change between the load and the LISTEN is lost.
            self._subscription = await self._hub.subscribe(
                self.name, {TRIGGERS: self._on_trigger_notice}, on_gap=self._on_reconnect
            )
            if self._own_hub:
                await self._hub.start()
            await self._check_clock()
            await self._warm_up()
            await self._rebuild("start")
        except BaseException:
            await self.stop()
            raise
        self._tasks = [
            asyncio.create_task(self._watch_loop(), name="triggerd-cron-watch"),
            asyncio.create_task(self._reconcile_loop(), name="triggerd-cron-reconcile"),
            asyncio.create_task(self._skew_loop(), name="triggerd-cron-clock"),
        ]

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        tasks = [t for t in (*self._tasks, self._reload_task, self._recovery_task) if t]
        await cancel_and_wait(tasks)
        self._tasks = []
        await self._timer.shutdown()
        if self._subscription is not None:
            self._hub.unsubscribe(self._subscription)
            self._subscription = None
        if self._own_hub:
            await self._hub.stop()
        await self._drain_writes()
        self._instants.clear()
        self._prepared.clear()
        self._jitter.clear()
        self._forget_owed()

    async def reconcile(self) -> None:
        """Bring the schedule in line with ``workflow_triggers`` (SIGHUP, periodic): added or
        changed triggers are caught up and scheduled, removed ones are dropped."""
        await self._sync(None)

    async def _reconcile_if_changed(self) -> None:
        """The periodic reconcile: a full one only when the scheduled triggers' digest
        differs from the one read with the rows of the last full load (the start's, a
        rebuild's or a full reconcile's; a notification missed, a row edited by hand), or
        when a notification-driven reload has changed the table since. A full reconcile
        of 100,000 triggers made PostgreSQL look up every trigger's newest slot and this
        loop decode and compare every row, every minute: /readyz probes and every-second
        fires then waited 10-25 ms now and then."""
        if self._reconciled_digest is not None:
            digest = await scheduled_digest(self._pool)
            if digest == self._reconciled_digest:  # (as it is now: a rebuild may have run)
                self._stats.last_reconcile = self._clock()
                self._stats.reconciles_skipped += 1
                return
        await self.reconcile()

    async def reload(self) -> None:
        """SIGHUP (the daemon calls each component's ``reload``): a full reconcile."""
        await self.reconcile()

    def oldest_owed_seconds(self) -> float:
        """How long ago the oldest slot still owed was due; 0 when nothing owed is late.
        O(1): the top of the owed heap, or what it held when a rebuild began (until one
        succeeds: a database outage owes every slot since, which it alone knows)."""
        oldest = self._owed.oldest()
        if self._owed_before_rebuild is not None:
            oldest = min(oldest or self._owed_before_rebuild, self._owed_before_rebuild)
        if oldest is None:
            return 0.0
        return max(0.0, (self._clock() - oldest).total_seconds())

    async def readiness(self) -> str | None:
        """None when fine, else what is wrong: the scheduler is not running, or triggers
        whose due slot is more than ``lag_threshold`` late with no recorded outcome."""
        if not self._running or not self._timer.running:
            return "scheduler not running"
        now = self._clock()
        lag = self._settings.lag_threshold
        if self._recovering_since is not None and now - self._recovering_since > lag:
            return (
                f"scheduler recovering for {round((now - self._recovering_since).total_seconds())}s"
                " (database unreachable?)"
            )
        cutoff = now - lag
        oldest = self._owed.oldest()
        if oldest is None or oldest > cutoff:
            return None  # the common case: one look at the heap's top
        owed, expected = self._late_slots(cutoff)
        if not expected:
            return None
        try:
            overdue = set(await find_overdue(self._pool, expected, limit=OVERDUE_LIMIT))
        except DatabaseUnavailable as exc:
            return f"scheduler cannot check overdue triggers: {exc}"
        for item in owed:
            # A failed write whose slots another replica (or a retry) recorded is settled.
            if item.kind is OwedKind.FAILED and not any(
                e.trigger_id in overdue for e in expected if e.owed == item.token
            ):
                self._owed.resolve(item.token)
        if not overdue:
            return None
        names = sorted(
            self._table.entries[i].full_name for i in overdue if i in self._table.entries
        )
        shown = ", ".join(names[:OVERDUE_NAMES])
        more = len(overdue) - min(len(names), OVERDUE_NAMES)
        return f"overdue triggers: {shown}" + (f" and {more} more" if more > 0 else "")

    # --- building the schedule ------------------------------------------------------------

    async def _rebuild(self, reason: str) -> None:
        """Drop every timer, reload everything and catch up: the start, and any gap."""
        started = time.monotonic()
        async with self._lock:
            self._generation += 1
            self._timer.clear()
            self._instants.clear()
            self._prepared.clear()
            self._jitter.clear()
            # The rebuild catches up whatever was owed (a failed write included).
            self._forget_owed()
            await self._drain_writes()
            previous, self._table = self._table.entries, TriggerTable()
            self._reconciled_digest = None
            flow = _CatchUpFlow(write=self._write_catch_up)
            self._rebuilding = True
            try:
                digest: list[str] = []
                with _long_lived_build():
                    now = await self._load_all(digest, flow, previous)
            except BaseException:
                await flow.abandon()
                raise
            finally:
                self._rebuilding = False
            # Triggers removed or disabled meanwhile: their failed slots are owed no more.
            self._failed.retain(self._table.entries)
            self._stats.last_reconcile = now
            self._reconciled_digest = digest[0] if digest else None
            self._rebuilt_at = self._clock()
            self._rebuilt_mono = time.monotonic()
            self._recovering_since = None
            self._owed_before_rebuild = None  # the rebuild owes (or wrote) them now
            scheduled_ms = round((time.monotonic() - started) * 1000, 1)
            tally = await flow.finish()
        logger.info(
            "cron schedule built",
            extra={
                "event": "cron_catchup",
                "reason": reason,
                "triggers": len(self._table),
                "schedules": len(self._table.groups),
                "catchup_slots": flow.slots,
                **tally.as_log(),
                "scheduled_ms": scheduled_ms,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    async def _load_all(
        self, digest: list[str], flow: _CatchUpFlow, previous: dict[str, CronEntry]
    ) -> datetime:
        """Fill the (new, empty) table with every trigger and schedule its groups; the
        catch-up's slots go to ``flow`` (written as they pile up); returns the instant it
        caught up to; ``digest`` gets the rows'. ``previous``: the entries before."""
        memo: CatchupMemo = {}
        slicer = _Slicer()  # other components share the loop
        now: datetime | None = None
        pages = iter_cron_triggers(self._pool, bounced=self._bounced, digest=digest)
        async with contextlib.aclosing(pages):
            async for rows in pages:
                if now is None:
                    now = self._clock()  # after the snapshot: every row enabled before it
                for first in range(0, len(rows), SLICE_ROWS):
                    for row in rows[first:first + SLICE_ROWS]:
                        added = self._add_row(row, now)
                        if self._failed:
                            self._keep_failed(row.id, previous.get(row.id), added)
                        if added is not None:
                            entry, group, _ = added
                            flow.add(
                                self._catch_up(entry, group.schedule, row.last_slot, now, memo)
                            )
                    await flow.flush_if_full()
                    await slicer.tick()
        if now is None:
            now = self._clock()
        # Instants registered here may fire while this yields: the table is complete and
        # every floor is `now`, so they write only slots after the catch-up's.
        for group in list(self._table.groups.values()):
            self._schedule_group(group, now, known=memo.get(("next", id(group.schedule), now)))
            await slicer.tick()
        await self._retain_configs(slicer)
        return now

    async def _retain_configs(self, slicer: _Slicer) -> None:
        """Forget the parsed configs no trigger uses any more (a walk over every entry, in
        slices: 1,000,000 entries at once held the loop for 50 ms)."""
        texts: set[str] = set()
        entries = list(self._table)
        step = SLICE_ROWS * 16  # a text per entry is far cheaper than scheduling a row
        for first in range(0, len(entries), step):
            texts.update(map(_config_text, entries[first:first + step]))
            await slicer.tick()
        self._configs.retain(texts)

    async def _sync(self, ids: set[str] | None) -> None:
        """Apply the rows of ``ids`` (None: every trigger) to the cache, catching up the
        added and changed ones."""
        async with self._lock:
            if self._recovering_since is not None:
                return  # the pending rebuild reloads everything anyway
            digest: list[str] = []
            self._reconciled_digest = None
            flow = _CatchUpFlow(write=self._write_catch_up)
            try:
                async with contextlib.aclosing(self._pages(ids, digest)) as pages:
                    changes, now = await self._apply(pages, ids, flow)
            except BaseException:
                await flow.abandon()
                raise
            if ids is None:
                await self._retain_configs(_Slicer())
                self._stats.last_reconcile = now
                self._reconciled_digest = digest[0] if digest else None
            tally = await flow.finish()
        if any(changes.values()):
            logger.info(
                "cron triggers reloaded",
                extra={
                    "event": "cron_reloaded",
                    "reason": "notify" if ids is not None else "reconcile",
                    **changes,
                    "triggers": len(self._table),
                    "catchup_slots": flow.slots,
                    **tally.as_log(),
                },
            )

    async def _pages(
        self, ids: set[str] | None, digest: list[str]
    ) -> AsyncGenerator[list[CronTriggerRow], None]:
        """The rows of ``ids``, or of every trigger in pages (and their digest)."""
        if ids is None:
            pages = iter_cron_triggers(self._pool, bounced=self._bounced, digest=digest)
            async with contextlib.aclosing(pages):
                async for rows in pages:
                    yield rows
        else:
            yield await load_cron_triggers(self._pool, sorted(ids))

    async def _apply(
        self,
        pages: AsyncIterator[list[CronTriggerRow]],
        scope: set[str] | None,
        flow: _CatchUpFlow,
    ) -> tuple[dict[str, int], datetime]:
        """Diff loaded rows against the cache; the catch-up's slots go to ``flow``;
        returns the counts of changes and the instant it caught up to. It yields to the
        loop now and then; instants firing meanwhile see a consistent table, as each
        change is made in one step."""
        memo: CatchupMemo = {}
        changes = {"added": 0, "changed": 0, "removed": 0}
        seen: set[str] = set()
        slicer = _Slicer()
        now: datetime | None = None
        async for rows in pages:
            if now is None:
                now = self._clock()  # after the rows were read: each enabled before it
            for row in rows:
                await slicer.tick()
                self._apply_row(row, now, seen, changes, flow, memo)
                await flow.flush_if_full()
        candidates = list(self._table.entries) if scope is None else list(scope)
        for trigger_id in candidates:
            if trigger_id not in seen and self._table.remove(trigger_id) is not None:
                changes["removed"] += 1
            await slicer.tick()
        # Removed or disabled triggers (on a full reconcile also the ones a write failed
        # for after they went): their failed slots are owed no more.
        if scope is None:
            self._failed.retain(self._table.entries)
        else:
            for trigger_id in scope:
                if trigger_id not in self._table.entries:
                    self._failed.drop(trigger_id)
        return changes, now or self._clock()

    def _apply_row(
        self,
        row: CronTriggerRow,
        now: datetime,
        seen: set[str],
        changes: dict[str, int],
        flow: _CatchUpFlow,
        memo: CatchupMemo,
    ) -> None:
        seen.add(row.id)
        current = self._table.entries.get(row.id)
        if current is not None and unchanged(current, row):
            current.full_name = row.full_name  # a rename changes nothing else
            return
        changes["changed" if current is not None else "added"] += 1
        self._table.remove(row.id)
        added = self._add_row(row, now)
        if self._failed:
            self._keep_failed(row.id, current, added)
        if added is None:
            return
        entry, group, created = added
        if created:
            self._schedule_group(group, now)
        flow.add(self._catch_up(entry, group.schedule, row.last_slot, now, memo))

    def _keep_failed(
        self,
        trigger_id: str,
        previous: CronEntry | None,
        added: tuple[CronEntry, ScheduleGroup, bool] | None,
    ) -> None:
        """Before a reloaded trigger's catch-up: what its failed-slot memory still owes.

        A trigger no longer scheduled (invalid config) owes nothing. After a schedule
        change only the slots the new schedule also has stay owed: the catch-up judges the
        slots missed since the last recorded one by the new schedule too, and a slot only
        the old schedule had must not run under the new config (a failed 10:05 of
        ``*/5 * * * *`` turned ``*/10 * * * *`` is dropped, a failed 10:10 is still
        decided). Same schedule (key), other config (overlap, misfire, ...): all stay. No
        ``previous`` (a write that failed during a rebuild, for a trigger it had not loaded
        yet): the schedule the slots came from is unknown, so the new one decides too."""
        if trigger_id not in self._failed:
            return
        if added is None:
            self._failed.drop(trigger_id)
            return
        entry, group, _ = added
        if previous is None or previous.key != entry.key:
            kept = slots_of(group.schedule, self._failed.of(trigger_id))
            self._failed.forget(trigger_id, lambda slot: slot not in kept)

    def _add_row(
        self, row: CronTriggerRow, now: datetime
    ) -> tuple[CronEntry, ScheduleGroup, bool] | None:
        parsed = self._configs.get(row.config_text, row)
        if parsed is None:
            return None
        entry = CronEntry(
            id=row.id,
            full_name=row.full_name,
            config=parsed.config,
            config_text=parsed.text,  # one string per distinct config, not per trigger
            key=parsed.key,
            enabled_at=row.enabled_at,
            floor=now,
        )
        group, created = self._table.add(entry, parsed.schedule)
        return entry, group, created

    def _catch_up(
        self,
        entry: CronEntry,
        schedule: Schedule,
        last_slot: datetime | None,
        now: datetime,
        memo: CatchupMemo,
    ) -> list[SlotRequest]:
        """What to do with one trigger's slots in (since, now], since being its last
        recorded slot or, when later, the instant it was enabled. ``entry.floor`` is ``now``:
        the timer path fires the later slots.

        Only slots older than their due time (slot + jitter) by CATCHUP_GRACE are missed and
        go through the misfire policy; the recent ones fire as usual (at their jittered
        time). A replica that starts or recovers while others run could otherwise claim a
        slot they are about to fire on time and record it as a misfire.
        """
        since = entry.enabled_at if last_slot is None else max(last_slot, entry.enabled_at)
        config = entry.config
        quiet_from = memo.get(("quiet", id(schedule), now))
        if quiet_from is not None and since >= quiet_from:
            # No fire in (since, now]: nothing missed, nothing due now.
            return self._failed_before(entry, since, now, newer_missed=False)
        recent = now - config.jitter - CATCHUP_GRACE
        requests: list[SlotRequest] = []
        newer_missed = False
        fired = 0
        if recent > since and not self._nothing_missed(
            schedule, entry, since, recent, memo, now=now
        ):
            key: tuple[Any, ...] = ("plan", entry.config_text, since, recent)
            decisions = memo.get(key)
            if decisions is None:
                # plan_catchup covers (max(last_slot, enabled_since), now]; `since` is that
                # bound already, and sharing it lets triggers of one schedule share a plan.
                decisions = plan_catchup(
                    schedule,
                    misfire=config.misfire,
                    catchup_window=config.catchup_window,
                    max_catchup=config.max_catchup,
                    last_slot=None,
                    enabled_since=since,
                    now=recent,
                )
                memo[key] = decisions
            newer_missed = bool(decisions)
            fired = sum(d.fire for d in decisions)
            if self._failed:
                # This plan decides every slot in (since, recent], listed or summarized:
                # a failed one among them needs no decision of its own later.
                self._failed.forget(entry.id, lambda slot: since < slot <= recent)
            rate = config.catchup_rate
            spread = 0
            for decision in decisions:
                if decision.fire and rate is not None and spread > 0:
                    # catchup_rate: the n-th catch-up fire is written n/rate after now
                    # (through the jitter timers); the ledger still decides each slot once.
                    self._delay(entry, decision.scheduled_for, now + rate.per * spread / rate.count,
                                now)
                    spread += 1
                    continue
                spread += decision.fire
                requests.append(
                    self._request(
                        entry,
                        decision.scheduled_for,
                        utc_iso(decision.scheduled_for),
                        intent=SlotOutcome.FIRED if decision.fire else SlotOutcome.SKIPPED_MISFIRE,
                        detail=decision.detail,
                    )
                )
        start = max(since, recent)
        quiet_from = memo.get(("quiet", id(schedule), now))  # set by _nothing_missed
        if start < now and (quiet_from is None or start < quiet_from):
            key = ("recent", entry.key, start)
            tail = memo.get(key)
            if tail is None:
                tail = memo[key] = [
                    SlotDecision(scheduled_for=f.at, fire=True, reason=SlotOutcome.FIRED)
                    for f in schedule.fires_between(start, now)
                ]
            for slot in tail:
                if config.jitter:
                    self._add_jitter(entry, slot.scheduled_for, now)
                else:
                    requests.append(
                        self._request(entry, slot.scheduled_for, utc_iso(slot.scheduled_for))
                    )
        if self._failed:
            requests[:0] = self._failed_before(entry, since, now, newer_missed=newer_missed,
                                               fired=fired)
        return requests

    def _failed_before(self, entry: CronEntry, since: datetime, now: datetime, *,
                       newer_missed: bool, fired: int = 0) -> list[SlotRequest]:
        """Requests for the trigger's slots whose write failed, at or before ``since`` (the
        later ones are the catch-up's own). They are forgotten once a write of them goes
        through (:meth:`FailedSlots.written`), not here: this catch-up may be dropped unwritten.
        The ledger keeps a slot's first outcome, so one that another replica decided
        meanwhile stays as it is."""
        if entry.id not in self._failed:
            return []
        # Slots before the trigger was (re-)enabled are stale: nothing decides them.
        self._failed.forget(entry.id, lambda slot: slot <= entry.enabled_at)
        failed = self._failed.of(entry.id)
        if not failed:
            return []
        config = entry.config
        decisions = plan_failed_slots(
            [slot for slot in failed if slot <= since], misfire=config.misfire,
            catchup_window=config.catchup_window,
            # One max_catchup for the whole catch-up: the later slots' plan fired `fired`.
            max_catchup=max(config.max_catchup - fired, 0), now=now,
            newer_missed=newer_missed,
        )
        return [
            self._request(entry, d.scheduled_for, utc_iso(d.scheduled_for),
                          intent=SlotOutcome.FIRED if d.fire else SlotOutcome.SKIPPED_MISFIRE,
                          detail=d.detail)
            for d in decisions
        ]

    @staticmethod
    def _nothing_missed(
        schedule: Schedule,
        entry: CronEntry,
        since: datetime,
        recent: datetime,
        memo: CatchupMemo,
        *,
        now: datetime,
    ) -> bool:
        """Whether the schedule has no fire in ``(since, recent]``. Triggers of one config
        but different ``since`` (enabled at different times, never fired) share the answer:
        no fire in ``(s, recent]`` means none in any shorter range, so one fire is computed
        per config instead of a catch-up plan per trigger. A fire after ``now`` found here
        is also the schedule's next fire after ``now`` (none lies between): the start
        (:meth:`_load_all`) takes its timers' fires from the memo."""
        key = ("clear", entry.config_text, recent)
        clear: datetime | None = memo.get(key)
        if clear is not None and since >= clear:
            return True
        # After downtime most triggers missed a fire, which the "clear" bound cannot
        # answer; the triggers of a schedule that fired together share their `since`.
        fire_key = ("fire", id(schedule), since)
        if fire_key in memo:
            fire = memo[fire_key]
        else:
            fire = memo[fire_key] = schedule.next_fire(since)
        if fire is not None and fire.at > now >= since:
            memo[("next", id(schedule), now)] = fire
        if fire is None or fire.at > now:
            # No fire in (since, now]: the recent tail of every trigger of the schedule
            # that starts at or after `since` is empty, with no look at the schedule.
            quiet = ("quiet", id(schedule), now)
            memo[quiet] = min(memo.get(quiet, since), since)
        if fire is not None and fire.at <= recent:
            return False
        memo[key] = since if clear is None else min(clear, since)
        return True

    @staticmethod
    def _request(
        entry: CronEntry,
        slot: datetime,
        slot_iso: str,
        *,
        intent: SlotOutcome = SlotOutcome.FIRED,
        detail: str | None = None,
    ) -> SlotRequest:
        return SlotRequest(
            trigger_id=entry.id,
            scheduled_for=slot,
            slot_iso=slot_iso,
            config_text=entry.config_text,
            overlap=entry.config.overlap,
            intent=intent,
            detail=detail,
        )

    # --- timers ------------------------------------------------------------------------

    def _schedule_group(
        self, group: ScheduleGroup, after: datetime, *, known: Fire | None = None
    ) -> None:
        """Register the group's next fire after ``after`` (``known``: that fire, found
        already)."""
        fire = known if known is not None else group.schedule.next_fire(after)
        group.next_at = None if fire is None else fire.at
        if fire is not None:
            self._register(group.key, fire.at)

    def _register(self, key: ScheduleKey, at: datetime) -> None:
        keys = self._instants.get(at)
        if keys is not None:
            keys.add(key)
            return
        self._instants[at] = {key}
        self._instant_owed[at] = self._owed.add(at, OwedKind.INSTANT, at)
        self._timer.call_at(
            at,
            functools.partial(self._on_instant, at, self._generation),
            key=f"cron:{at.isoformat()}",
            prepare=functools.partial(self._prepare_instant, at, self._generation),
        )

    def _add_jitter(self, entry: CronEntry, slot: datetime, now: datetime) -> None:
        self._delay(entry, slot, slot + jitter_offset(entry.id, slot, entry.config.jitter), now)

    def _delay(self, entry: CronEntry, slot: datetime, at: datetime, now: datetime) -> None:
        """Write ``slot`` of ``entry`` at ``at`` (jitter, catchup_rate), not before ``now``."""
        at = max(at.replace(microsecond=at.microsecond // 1000 * 1000), now)
        bucket = self._jitter.get(at)
        if bucket is None:
            bucket = self._jitter[at] = []
            self._jitter_owed[at] = self._owed.add(at, OwedKind.JITTER, at)
            self._timer.call_at(
                at,
                functools.partial(self._on_jitter, at, self._generation),
                key=f"jitter:{at.isoformat()}",
            )
        bucket.append((entry, slot))

    def _late(self, at: datetime, now: datetime) -> bool:
        """Whether the loop woke for ``at`` so late that it was stalled. A rebuild that took
        a while delays the first instants after it; that is not a stall."""
        if self._rebuilding:
            return False
        reference = at if self._rebuilt_at is None else max(at, self._rebuilt_at)
        return now - reference > STALL_THRESHOLD

    def _chunk(self, keys: Iterable[ScheduleKey]) -> int:
        """Slots per statement for an instant of the schedules ``keys``."""
        groups = self._table.groups
        return statement_chunk(sum(len(groups[k].members) for k in keys if k in groups))

    def _prepare_instant(self, at: datetime, generation: int) -> None:
        """Plan an instant's writes when its timer wakes, ahead of the instant."""
        keys = self._instants.get(at)
        if generation == self._generation and self._running and keys:
            self._prepared[at] = plan_instant(self._table, at, keys, self._chunk(keys))

    async def _on_instant(self, at: datetime, generation: int) -> None:
        if generation != self._generation or not self._running:
            return
        keys = self._instants.pop(at, None)
        self._settle(self._instant_owed.pop(at, None))
        plan = self._prepared.pop(at, None)
        if not keys or self._recovering_since is not None:
            return
        now = self._clock()
        if self._late(at, now):
            self._request_recovery("stall", late_s=round((now - at).total_seconds(), 3))
            return
        if plan is None or plan.changes != self._table.changes or plan.keys != keys:
            # Not prepared, or the table changed since (a trigger added, edited, removed).
            plan = plan_instant(self._table, at, keys, self._chunk(keys))
        for entry in plan.jittered:
            self._add_jitter(entry, at, now)
        due, batches = plan.due, plan.batches
        writes = [self._start_write(b, due=at) for b in batches]  # none is empty
        if writes:
            # Let the statements go out before the next instants are computed.
            await asyncio.sleep(0)
        if generation == self._generation:
            for group in due:
                self._schedule_group(group, at)
        if writes:
            await asyncio.shield(asyncio.gather(*writes))

    async def _on_jitter(self, at: datetime, generation: int) -> None:
        if generation != self._generation or not self._running:
            return
        bucket = self._jitter.pop(at, None)
        self._settle(self._jitter_owed.pop(at, None))
        if not bucket or self._recovering_since is not None:
            return
        if self._late(at, self._clock()):
            self._request_recovery("stall")
            return
        batch = SlotBatch.of(
            self._request(entry, slot, utc_iso(slot))
            for entry, slot in bucket
            if self._table.current(entry)  # a reload replaced it and caught it up
        )
        if batch:
            await self._write(batch, due=at)

    # --- writing -----------------------------------------------------------------------------

    def _start_write(
        self, requests: SlotBatch, *, due: datetime | None
    ) -> asyncio.Task[SlotWriteResult | None]:
        """Start writing a batch in its own task, tracked so a gap can wait for it."""
        task = asyncio.create_task(self._write_now(requests, due))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        # Owed until written; a catch-up's slots are owed from now on.
        token = self._owed.add(due or self._clock(), OwedKind.WRITE, requests)
        task.add_done_callback(functools.partial(self._written, token))
        return task

    def _settle(self, token: int | None) -> None:
        if token is not None:
            self._owed.resolve(token)

    def _written(self, token: int, task: asyncio.Task[SlotWriteResult | None]) -> None:
        item = self._owed.resolve(token)
        failed = task.cancelled() or task.exception() is not None or task.result() is None
        if item is not None and failed:
            # Its slots may have no outcome: owed until a rebuild catches them up or
            # readiness finds them recorded (by another replica).
            self._owed.add(item.due, OwedKind.FAILED, item.ref)

    async def _write(
        self, requests: SlotBatch, *, due: datetime | None
    ) -> SlotWriteResult | None:
        """Write a batch; shielded so a cancelled caller does not abandon a statement
        half-way."""
        return await asyncio.shield(self._start_write(requests, due=due))

    async def _write_now(
        self, requests: SlotBatch, due: datetime | None
    ) -> SlotWriteResult | None:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            fired = self._clock()
            if due is not None and attempt == 1:
                self._stats.lateness.append((fired - due).total_seconds())
            try:
                result = await record_slots(self._pool, requests, fired_at=_iso_ms(fired))
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable as exc:
                self._stats.write_errors += 1
                logger.warning(
                    "cron slots not written: database unreachable",
                    extra={"event": "cron_write_failed", "slots": len(requests),
                           "error": str(exc)},
                )
                self._note_failed(requests)
                self._request_recovery("database")
                return None
            except Exception as exc:  # a deadlock, a trigger deleted mid-statement, ...
                self._stats.write_errors += 1
                logger.warning(
                    "cron slots not written; retrying",
                    extra={"event": "cron_write_retry", "slots": len(requests),
                           "attempt": attempt, "error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.sleep(0.05 * 2**attempt)
                continue
            if due is not None:
                self._stats.committed.append(
                    ((self._clock() - due).total_seconds(), len(result.recorded))
                )
            self._failed.written(requests)
            self._account(result)
            if result.canceled_runs:
                await self._cancel_children(result.canceled_runs)
            if self.metrics is not None:
                lateness = None if due is None else (fired - due).total_seconds()
                for slot in result.recorded:
                    entry = self._table.entries.get(slot.trigger_id)
                    self.metrics.cron_fired(
                        entry.full_name if entry is not None else slot.trigger_id,
                        slot.outcome.value,
                        lateness if slot.outcome.value == "fired" else None,
                    )
            return result
        logger.error(
            "cron slots not written after retries",
            extra={"event": "cron_write_failed", "slots": len(requests)},
        )
        self._note_failed(requests)
        return None

    async def _cancel_children(self, runs: tuple[str, ...]) -> None:
        """The child runs of the runs a cancel_previous slot canceled end with them (a
        child waiting on an approval with no expiry waited for ever). A failure leaves them
        to the executors' sweep (cancel_orphaned_children); the slots are written."""
        # Bounded on the server (a client-side timeout waits for the server to take the
        # cancel): the instant's write waits for this, and its slots count as owed.
        bound = f"{int(CANCEL_CHILDREN_TIMEOUT * 1000)}ms"
        try:
            async with (self._pool.acquire(timeout=CANCEL_CHILDREN_TIMEOUT) as conn,
                        conn.transaction()):
                await conn.execute(f"SET LOCAL statement_timeout = '{bound}'")
                await cancel_children(conn, runs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "child runs of canceled runs not canceled",
                extra={"event": "cron_cancel_children_failed", "executions": list(runs),
                       "error": f"{type(exc).__name__}: {str(exc) or 'no answer in time'}"},
            )

    def _note_failed(self, requests: SlotBatch) -> None:
        """Remember the slots of ``requests`` for the next catch-ups, those still owed: a
        trigger dropped while its write was out owes none, one whose config changed
        meanwhile only the slots its schedule has now (see :meth:`_keep_failed`). While a
        rebuild loads, a trigger not loaded yet is remembered: the rebuild sorts it out."""
        entries = self._table.entries
        for trigger_id, slot, config_text in requests.rows():
            entry = entries.get(trigger_id)
            if entry is None:
                if self._rebuilding:
                    self._failed.add(trigger_id, slot)
                continue
            if entry.config_text != config_text and not slots_of(
                self._table.groups[entry.key].schedule, [slot]
            ):
                continue
            self._failed.add(trigger_id, slot)

    async def _write_catch_up(self, requests: Sequence[SlotRequest], tally: _Tally) -> None:
        """Write (a piece of) a catch-up as concurrent statements, each trigger's slots in
        one; the outcomes are counted in ``tally``."""
        batches = catch_up_batches(requests, statement_chunk(len(requests), CATCH_UP_CHUNK))

        async def writer() -> None:
            for batch in batches:  # one iterator shared by the writers: each batch once
                tally.add(await self._write(batch, due=None), len(batch))

        await asyncio.gather(*(writer() for _ in range(INSTANT_STATEMENTS)))

    def _account(self, result: SlotWriteResult) -> None:
        stats = self._stats
        stats.outcomes.update(r.outcome.value for r in result.recorded)
        stats.executions += result.inserted
        stats.canceled += result.canceled
        stats.lost += result.lost
        stats.stale += len(result.stale)
        if result.stale:
            # The cache is behind the table (a notification not processed yet): reload.
            for trigger_id, _ in result.stale:
                if trigger_id in self._table.entries:
                    self._on_trigger_change(trigger_id)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "cron slots written",
                extra={"event": "cron_fired", "slots": len(result.recorded),
                       "executions": result.inserted, "lost": result.lost},
            )

    async def _warm_up(self) -> None:
        """Prepare the slot statement on the pool's idle connections, so the first fires do
        not pay for planning it (and for a new backend's catalog lookups)."""
        idle = max(1, self._pool.get_idle_size())
        conns = []
        try:
            for _ in range(idle):
                conns.append(await self._pool.acquire(timeout=1.0))
            await asyncio.gather(*(warm_up(conn) for conn in conns))
        except Exception as exc:  # only an optimisation: never fail the start for it
            logger.debug("slot statement warm-up failed", extra={"event": "cron_warm_up",
                                                                "error": str(exc)})
        finally:
            for conn in conns:
                await self._pool.release(conn)

    async def _drain_writes(self) -> None:
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=DRAIN_TIMEOUT)

    # --- reload, gaps and guards --------------------------------------------------------------

    def _on_trigger_notice(self, payload: str) -> None:
        trigger_id = trigger_change_id(payload)
        if trigger_id is None:
            logger.warning(
                "unreadable trigger notification",
                extra={"event": "cron_listener_payload", "payload": payload[:200]},
            )
            return
        self._on_trigger_change(trigger_id)

    def _on_trigger_change(self, trigger_id: str) -> None:
        if not self._running:
            return
        try:
            uuid.UUID(trigger_id)
        except ValueError:
            return
        self._pending_reload.add(trigger_id)
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(
                self._reload_pending(), name="triggerd-cron-reload"
            )

    async def _reload_pending(self) -> None:
        while self._pending_reload and self._running:
            await asyncio.sleep(RELOAD_DEBOUNCE)  # one reload for a burst of changes
            ids, self._pending_reload = self._pending_reload, set()
            try:
                await self._sync(None if len(ids) > RELOAD_FULL_ABOVE else ids)
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                self._request_recovery("database")
            except Exception:
                logger.exception("cron reload failed", extra={"event": "cron_reload_failed"})

    def _on_reconnect(self) -> None:
        self._request_recovery("reconnect")

    def _request_recovery(self, reason: str, **fields: Any) -> None:
        """A gap: everything is rebuilt from the tables and caught up."""
        if not self._running:
            return
        if self._recovering_since is None:
            self._recovering_since = self._clock()
            logger.warning(
                "cron scheduler gap; rebuilding the schedule",
                extra={"event": "cron_gap", "reason": reason, **fields},
            )
        self._recovery_reasons.append(reason)
        if self._recovery_task is None or self._recovery_task.done():
            self._recovery_task = asyncio.create_task(self._recover(), name="triggerd-cron-recover")

    async def _recover(self) -> None:
        backoff = 0.2
        while self._recovery_reasons and self._running:
            reasons = sorted(set(self._recovery_reasons))
            self._recovery_reasons.clear()
            try:
                await self._rebuild(",".join(reasons))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._recovery_reasons.extend(reasons)
                if self._recovering_since is None:
                    self._recovering_since = self._clock()
                logger.warning(
                    "cron schedule rebuild failed; retrying",
                    extra={"event": "cron_rebuild_failed", "error": str(exc),
                           "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECOVERY_BACKOFF_MAX)
                continue
            self._stats.recoveries.update(reasons)
            backoff = 0.2

    async def _watch_loop(self) -> None:
        """Notice a blocked loop, a suspended machine or a clock jump even when no instant is
        due: monotonic time does not advance during a suspend, the wall clock does."""
        loop = asyncio.get_running_loop()
        last_mono, last_wall = loop.time(), self._clock()
        stall = STALL_THRESHOLD.total_seconds()
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            mono, wall = loop.time(), self._clock()
            blocked = mono - last_mono - WATCH_INTERVAL
            jumped = (wall - last_wall).total_seconds() - (mono - last_mono)
            rebuilt_meanwhile = self._rebuilt_mono >= last_mono
            last_mono, last_wall = mono, wall
            if blocked > stall and not rebuilt_meanwhile:
                self._request_recovery("stall", blocked_s=round(blocked, 3))
            elif abs(jumped) > stall:
                self._request_recovery("clock_jump", jumped_s=round(jumped, 3))

    async def _reconcile_loop(self) -> None:
        interval = self._settings.reconcile_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._reconcile_if_changed()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                self._request_recovery("database")
            except Exception:
                logger.exception("cron reconcile failed", extra={"event": "cron_reload_failed"})

    async def _skew_loop(self) -> None:
        while True:
            await asyncio.sleep(SKEW_INTERVAL)
            await self._check_clock()

    async def _check_clock(self) -> None:
        """Compare the local clock with PostgreSQL's; the round trip's midpoint is the local
        instant the database's reading belongs to."""
        try:
            before = self._clock()
            remote = await database_clock(self._pool)
            after = self._clock()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("cannot read the database clock",
                           extra={"event": "cron_clock_check_failed", "error": str(exc)})
            return
        skew = (before + (after - before) / 2 - remote).total_seconds()
        self.clock_skew = skew
        self._stats.clock_skew = skew
        if self.metrics is not None:
            self.metrics.set_clock_skew(skew)
        if abs(skew) > SKEW_WARNING:
            logger.warning(
                "local clock differs from the database's; cron fires follow the local clock",
                extra={"event": "cron_clock_skew", "skew_s": round(skew, 3)},
            )

    # --- what is owed (readiness) -----------------------------------------------------------

    def _forget_owed(self) -> None:
        oldest = self._owed.oldest()
        if oldest is not None and (self._owed_before_rebuild is None
                                   or oldest < self._owed_before_rebuild):
            self._owed_before_rebuild = oldest
        self._owed.clear()
        self._instant_owed.clear()
        self._jitter_owed.clear()

    def _late_slots(self, cutoff: datetime) -> tuple[list[Owed], list[_Expected]]:
        """The owed entries due by ``cutoff`` and, for at most OVERDUE_LIMIT of their
        triggers, the slot each should have an outcome for."""
        owed: list[Owed] = []
        expected: list[_Expected] = []
        for item in self._owed.due_by(cutoff):
            if len(expected) >= OVERDUE_LIMIT:
                break
            owed.append(item)
            expected.extend(
                _Expected(trigger_id=t, expected=slot, config_text=c, owed=item.token)
                for t, slot, c in self._owed_slots(item, cutoff)
            )
        return owed, expected[:OVERDUE_LIMIT]

    def _owed_slots(self, item: Owed, cutoff: datetime) -> Iterator[tuple[str, datetime, str]]:
        if item.kind is OwedKind.INSTANT:
            at = item.due
            for key in self._instants.get(at, ()):
                group = self._table.groups.get(key)
                if group is None or group.next_at != at:
                    continue
                for entry in group.members.values():
                    # A jittered slot is due up to its jitter later.
                    if entry.floor < at and at + entry.config.jitter <= cutoff:
                        yield entry.id, at, entry.config_text
        elif item.kind is OwedKind.JITTER:
            for entry, slot in self._jitter.get(item.due, ()):
                if self._table.current(entry):
                    yield entry.id, slot, entry.config_text
        else:
            assert isinstance(item.ref, SlotBatch)
            yield from item.ref.rows()


@dataclass(frozen=True, kw_only=True, slots=True)
class _Expected(ExpectedSlot):
    owed: int  # the token of the owed entry it comes from


__all__ = ["CronMetrics", "CronScheduler", "SchedulerStats", "utc_now"]
