"""The executor component: claims runnable executions under a lease, runs them with bounded
concurrency, renews leases, hands runs back on drain, and cleans up old rows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from triggerd import db
from triggerd.component import BaseComponent
from triggerd.config import Settings
from triggerd.egress import EgressConnector, policy_from_settings
from triggerd.errors import LeaseLost
from triggerd.executor.resume import KEY_BYTES, ResumeKey, load_resume_key
from triggerd.executor.retention import RetentionCursor
from triggerd.executor.runner import (
    PreparedVersion,
    Runner,
    prepare_version,
)
from triggerd.executor.writer import ProgressWriter
from triggerd.model import tenant_label
from triggerd.nodes.approval import RESUME_PATH
from triggerd.notifications.channels import CANCEL, DUE, EXECUTIONS, HELD
from triggerd.notifications.hub import NotificationHub, Subscription
from triggerd.secrets import SecretPolicies, SecretPolicy
from triggerd.store import approvals
from triggerd.store import executions as store
from triggerd.store import memory as workflow_memory
from triggerd.store.audit import audit_retention_batch
from triggerd.store.backfills import backfill_retention_batch
from triggerd.store.inbox import inbox_retention_batch
from triggerd.store.keyed import claim_held, drop_closed_windows
from triggerd.store.notifications import send_hints
from triggerd.store.slots import delete_old_slots
from triggerd.store.testruns import delete_old_test_runs
from triggerd.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

CLAIM_BATCH = 200
# Claimed runs start in groups of this many, one group per turn of the event loop.
START_GROUP = 16
# Under load, how often a claim also looks for runs whose lease ran out and parked runs
# whose time came (see store/executions.py _OVERDUE); a hint (a 'due' notification, this
# process's own parked runs, a gap) makes the next claim look at once.
OVERDUE_INTERVAL = 1.0
# How long drain waits, at least, for a claim already sent to the database to come back.
CLAIM_WAIT_ON_DRAIN = 5.0
# How long a stop waits for the database to take the canceled runs' last rows and the
# hand-back (a lock held by an operator, an outage): past it the runs stay this process's
# until their leases expire, when any process takes them up again, as after a crash. The
# unit's TimeoutStopSec adds up every bound of a stop (systemd/triggerd.service).
HAND_BACK_TIMEOUT = 5.0
# Retention deletes in small statements and spends at most a quarter of its time deleting
# (the pause after a round is three times as long, at least 150 ms). Half (and 50 ms) was
# set while a batch behind a backlog of active runs took seconds; once it took 20-40 ms,
# half deleted about 6,500 runs a second behind a 1,000 req/s ingest, whose p99 was
# 2.11-2.37x its baseline (3 runs); a quarter deletes 2,600-2,800 a second (a million in
# about 6 minutes), the p99 1.14-2.33x (noisy: the host was shared). The rest was
# autovacuum's (migration 0030). bench/history.py retention-ingest.
RETENTION_BATCH = 500
LEDGER_RETENTION_BATCH = 2_000
RETENTION_MIN_PAUSE = 0.15
RETENTION_PAUSE_PER_ROUND = 3.0
# How often the executor looks for runs not ended below a run that ended CANCELED
# (store.cancel_orphaned_children): a cancel_previous slot write cancels its runs'
# children after its commit, which a crash or a lost answer can skip, and a running parent
# may start a child after its cancel. Seconds; a look reads only active children, and
# their ancestors.
CHILD_SWEEP_INTERVAL = 30.0
CHILD_SWEEP_BATCH = 500


def retention_pause(round_seconds: float) -> float:
    """Seconds to wait after a retention round that took ``round_seconds``."""
    return max(RETENTION_MIN_PAUSE, RETENTION_PAUSE_PER_ROUND * round_seconds)


@dataclass(frozen=True, kw_only=True)
class RetentionRound:
    """What one retention round deleted (or released), statement by statement."""

    runs: int = 0
    released_keys: int = 0
    stale_resume_copies: int = 0
    slots: int = 0
    audit: int = 0
    expired_memory: int = 0
    test_runs: int = 0
    windows: int = 0
    inbox: int = 0

    @property
    def full(self) -> bool:
        """Whether any statement filled its batch: more may be left, the loop goes on
        after its pause instead of waiting for the next pass."""
        return (
            self.runs >= RETENTION_BATCH or self.released_keys >= 1000
            or self.stale_resume_copies >= 500 or self.slots >= LEDGER_RETENTION_BATCH
            or self.audit >= 1000 or self.expired_memory >= 1000 or self.test_runs >= 100
            or self.windows >= 1000 or self.inbox >= 500
        )


async def retention_round(conn: asyncpg.Connection, settings: Settings,
                          cursor: RetentionCursor) -> RetentionRound:
    """One round of the retention loop: one batch of each retention statement.
    bench/history.py times the same round."""
    executor = settings.executor
    return RetentionRound(
        runs=await store.retention_batch(
            conn, executor.retention, RETENTION_BATCH,
            {t.name: t.retention for t in settings.tenants if t.retention is not None},
            cursor.runs),
        released_keys=await store.release_expired_dedupe_keys(conn, 1000),
        stale_resume_copies=await store.drop_stale_resume_copies(conn, 500),
        slots=await delete_old_slots(
            conn, settings.scheduler.ledger_retention, LEDGER_RETENTION_BATCH),
        audit=await audit_retention_batch(conn, executor.audit_retention, 1000)
        + await backfill_retention_batch(conn, executor.audit_retention, 1000),
        expired_memory=await workflow_memory.sweep_expired(conn, 1000),
        test_runs=await delete_old_test_runs(conn, executor.test_retention, 100),
        windows=await drop_closed_windows(conn, 1000),
        # Inbox rows without a run (filtered) have the runs' retention too.
        inbox=await inbox_retention_batch(conn, executor.retention, 500, cursor.inbox),
    )


def run_flags(context: Mapping[str, Any]) -> tuple[bool, bool]:
    """Whether a run is a test run, and a dry one (its context's ``test`` entry)."""
    test = context.get("test")
    if not isinstance(test, dict):
        return False, False
    return True, test.get("dry") is True


async def write_shielded(write: Awaitable[Any]) -> None:
    """Await ``write`` so that a cancel of the caller does not stop it. Its failure is
    consumed even when it comes after the caller was canceled again (the lease lost
    meanwhile: LeaseLost), instead of being logged as a task exception never retrieved."""
    task = asyncio.ensure_future(write)
    task.add_done_callback(_consume_failure)
    with contextlib.suppress(Exception):
        await asyncio.shield(task)


def _consume_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the rows it could not write are the next owner's


def http_client(connector: EgressConnector) -> aiohttp.ClientSession:
    """The client every http node of the runs this executor runs shares. It keeps no
    cookies: a jar kept those an answer gave one run and sent them with any later run's
    requests to that site, another workflow's and another tenant's too (acting there as
    that run's login). An http node keeps the cookies of its own redirects only
    (triggerd/nodes/http.py); a workflow that needs a cookie later sends it as a header."""
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def make_owner() -> str:
    """Names this process in ``lease_owner``; the random part tells restarts apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(kw_only=True)
class Executor(BaseComponent):
    pool: asyncpg.Pool
    dsn: str
    settings: Settings
    owner: str = field(default_factory=make_owner)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    name: str = "executor"
    metrics: Any = None  # triggerd.api.metrics.Metrics, when the daemon serves /metrics
    stats: dict[str, int] = field(
        default_factory=lambda: {
            "started": 0,
            "SUCCESS": 0,
            "ERROR": 0,
            "CANCELED": 0,
            "WAITING": 0,
            "released": 0,
        }
    )
    _active: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _cancel_reasons: dict[str, str] = field(default_factory=dict)
    _versions: dict[str, PreparedVersion] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # The daemon's notifications hub; without one (used alone) the executor runs its own.
    hub: NotificationHub | None = None
    _own_hub: NotificationHub | None = None
    _subscription: Subscription | None = None
    _checks: set[asyncio.Task[None]] = field(default_factory=set)  # cancel checks after gaps
    _http: aiohttp.ClientSession | None = None
    # The daemon's listening ports: http nodes may not call them ([egress] allow_self).
    own_ports: frozenset[int] = frozenset()
    _egress: EgressConnector | None = None
    _secret_roots: tuple[str, ...] | None = None  # [daemon] secret_roots as last (re)loaded
    # Each tenant's secret policy under the last (re)loaded settings, built once, not for
    # every run (None until the first run: the start's settings).
    _policies: SecretPolicies | None = None
    _writer: ProgressWriter | None = None
    _accepting: bool = True
    # Loop time by which a stop gives up on the hand-back and the last progress writes.
    _hand_back_by: float = float("inf")
    # Held while a claim is in flight, so drain sees every run the claim starts.
    _claiming: asyncio.Lock = field(default_factory=asyncio.Lock)
    _running: bool = False
    _last_claim: datetime | None = None
    # Held runs (debounced, concurrency keys) are looked for only when something says there
    # may be some: a notification, a held run of ours ending, the next pending one's due
    # time, or the poll interval; so plain runs' claims cost what they did before.
    _held_hint: bool = True
    _held_due: float | None = None  # loop time when a pending run becomes due
    _held_checked: float = 0.0
    _held_ids: set[str] = field(default_factory=set)
    _overdue_hint: bool = True
    # Cancels heard while a claim is in progress, for runs not started here: one the claim
    # took (its flag was read before the cancel) starts canceled. Emptied after each claim.
    _early_cancels: set[str] = field(default_factory=set)
    _overdue_checked: float = float("-inf")  # loop time of the last claim that looked
    # Run where stored (triggerd.store.webhooks.RunsHere): room promised to batches being
    # stored, and whether the last claim found the queue empty (only then are new runs
    # taken up where they are stored: runs already waiting go first, in their order).
    _reserved: int = 0
    _unreserved: asyncio.Event = field(default_factory=asyncio.Event)  # set: _reserved == 0
    _queue_idle: bool = False
    # Runs stored for this executor and not started yet: a cancel heard meanwhile waits
    # here for their start (_on_cancel, _start_run).
    _adopting: set[str] = field(default_factory=set)
    _adopt_cancels: set[str] = field(default_factory=set)
    # Set once drain has chosen what to hand back: runs still being taken up then are not
    # started (their leases end and any process takes them up).
    _handed_back: bool = False
    # Counts what may add work a claim finds (notifications, due timers, gaps): a claim
    # trusts what it saw only if none came while it was in flight.
    _hints_heard: int = 0
    _claimed_at: float = float("-inf")  # loop time of the last claim
    _drain_task: asyncio.Task[int] | None = None
    # The key of the resume copies: given, or loaded at start (see executor/resume.py).
    resume_key: ResumeKey | None = None
    child_sweep_interval: float = CHILD_SWEEP_INTERVAL
    # False (an extra HTTP process's executor, triggerd/serving/worker.py): it claims and
    # runs like any, but retention and the child sweep are left to the main process's.
    housekeeping: bool = True

    @property
    def lease(self) -> timedelta:
        return self.settings.executor.lease

    @property
    def in_progress(self) -> int:
        return len(self._active)

    @property
    def resume_key_id(self) -> str:
        """Names the resume key (not the key): replicas must show the same one."""
        assert self.resume_key is not None, "the executor has not started"
        return self.resume_key.key_id

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.resume_key is None:
            # Before anything runs: a missing or bad key stops the start with one line.
            self.resume_key = await asyncio.to_thread(load_resume_key, self.settings, os.environ)
        self._running = True
        self._handed_back = False
        self._drain_task = None
        # Nothing is known of the queue until the first claim has looked.
        self._queue_idle = False
        self._overdue_hint = self._held_hint = True
        if self._reserved <= 0:
            self._unreserved.set()
        # A stop's drain refused further claims: a start after it claims again.
        self._accepting = True
        self._egress = EgressConnector(policy_from_settings(self.settings.egress, self.own_ports))
        self._http = http_client(self._egress)
        self._writer = ProgressWriter(pool=self.pool, owner=self.owner)
        self._writer.start()
        if self.hub is None:
            self._own_hub = NotificationHub(dsn=self.dsn)
        hub = self.hub or self._own_hub
        assert hub is not None
        self._subscription = await hub.subscribe(
            self.name, {EXECUTIONS: self._on_notify, CANCEL: self._on_cancel},
            on_gap=self._on_gap)
        if self._own_hub is not None:
            await self._own_hub.start()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="triggerd-claim"),
            asyncio.create_task(self._heartbeat_loop(), name="triggerd-heartbeat"),
        ]
        if self.housekeeping:
            self._tasks += [
                asyncio.create_task(self._retention_loop(), name="triggerd-retention"),
                asyncio.create_task(self._child_sweep_loop(), name="triggerd-child-sweep"),
            ]
        logger.info(
            "executor started",
            extra={
                "event": "executor_started",
                "owner": self.owner,
                "concurrency": self.settings.executor.concurrency,
                "housekeeping": self.housekeeping,
                "resume_key_id": self.resume_key.key_id,
                "resume_key_source": self.resume_key.source,
            },
        )

    def apply_settings(self, settings: Settings) -> None:
        """SIGHUP: [egress] applies to the next connection, [daemon] secret_roots,
        [tenants.NAME] (secrets, executor_share, retention) and [http] public_url (approval
        links) to the next run or retention pass; the other executor settings need a
        restart (their loops read them when they start)."""
        # The port and host in force stay: a link to a port this process does not serve
        # would be wrong until the restart that moves it.
        self.settings = replace(
            self.settings, tenants=settings.tenants, egress=settings.egress,
            daemon=replace(self.settings.daemon, secret_roots=settings.daemon.secret_roots),
            http=replace(self.settings.http, public_url=settings.http.public_url))
        self._secret_roots = settings.daemon.secret_roots
        self._policies = SecretPolicies(settings, os.environ)
        if self._egress is not None:
            self._egress.policy = policy_from_settings(settings.egress, self.own_ports)

    def start_draining(self) -> None:
        """The daemon's stop began: take up no more runs and start the drain now, while
        the parts stopped before this one (the extra HTTP processes first) stop; stop()
        waits for it. Runs those processes hand back as they stop are then left to the next
        start or another replica, not claimed here only to be cut off and handed back
        again."""
        if self._running and self._drain_task is None:
            self._accepting = False
            self._wake.set()
            self._drain_task = asyncio.create_task(
                self.drain(self.settings.executor.drain), name="triggerd-drain")

    async def drain(self, grace: timedelta) -> int:
        """Stop claiming, give running executions ``grace`` to finish, then hand the rest
        back (status NEW, lease released). Returns how many were handed back (none when
        the database took no hand-back within HAND_BACK_TIMEOUT)."""
        self._accepting = False
        self._wake.set()
        loop = asyncio.get_running_loop()
        # One grace for the claim in flight and the runs: a stop's length is bounded by the
        # settings, not by how long the database makes each step wait.
        grace_until = loop.time() + grace.total_seconds()
        # A claim already sent may still commit: wait for it, so its runs are in _active
        # and handed back below instead of being left RUNNING under this owner.
        claim_deadline = max(grace_until, loop.time() + CLAIM_WAIT_ON_DRAIN)
        try:
            async with asyncio.timeout_at(claim_deadline):
                async with self._claiming:
                    pass
        except TimeoutError:
            # The database is stuck; whatever that claim takes comes back when its lease ends.
            logger.warning("claim still in flight at drain", extra={"event": "drain_claim_stuck"})
        # Likewise the runs being stored for this process: once handed over they are in
        # _active; a batch the database does not answer leaves them to their leases' end.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(claim_deadline):
                await self._unreserved.wait()
        if self._active:
            await asyncio.wait(list(self._active.values()),
                               timeout=max(grace_until - loop.time(), 0.0))
        left = list(self._active)
        self._handed_back = True
        for execution_id in left:
            self._cancel_reasons[execution_id] = "drain"
            self._active[execution_id].cancel()
        # One bound for the hand-back and the last progress writes (see stop).
        self._hand_back_by = loop.time() + HAND_BACK_TIMEOUT
        if left:
            try:
                async with asyncio.timeout_at(self._hand_back_by):
                    # Each canceled run writes its last rows first, then all are released
                    # at once.
                    await asyncio.gather(
                        *[self._active[i] for i in left if i in self._active],
                        return_exceptions=True,
                    )
                    async with self.pool.acquire() as conn:
                        released = await store.release_executions(conn, self.owner, left)
            except TimeoutError:
                logger.warning(
                    "the database did not take the hand-back in time: these runs are taken"
                    " up again when their leases expire",
                    extra={"event": "executions_not_handed_back", "count": len(left),
                           "ids": left, "timeout_s": HAND_BACK_TIMEOUT},
                )
                return 0
            self.stats["released"] += released
            logger.info(
                "executions handed back",
                extra={"event": "executions_released", "count": released, "ids": left},
            )
        return len(left)

    async def stop(self) -> None:
        if not self._running:
            return
        if self._drain_task is not None:
            await self._drain_task
        else:
            await self.drain(self.settings.executor.drain)
        self._running = False
        hub = self.hub or self._own_hub
        if hub is not None and self._subscription is not None:
            hub.unsubscribe(self._subscription)
            self._subscription = None
        await cancel_and_wait([*self._tasks, *self._checks])
        if self._writer is not None:
            remaining = self._hand_back_by - asyncio.get_running_loop().time()
            await self._writer.stop(max(remaining, 1.0))
        if self._http is not None:
            await self._http.close()
        if self._own_hub is not None:
            await self._own_hub.stop()
            self._own_hub = None

    def notify_new(self) -> None:
        """Executions were created in this process: claim at once, no polling delay."""
        self._wake.set()

    # -- runs stored for this process (triggerd.store.webhooks.RunsHere) ------------------

    def take_slots(self, wanted: int) -> int:
        if not (self._running and self._accepting and self._queue_idle):
            return 0
        if self._claim_wanted():
            return 0  # runs may wait that only a claim finds: they go first
        free = self.settings.executor.concurrency - len(self._active) - self._reserved
        granted = max(0, min(wanted, free))
        if granted:
            self._reserved += granted
            self._unreserved.clear()
        return granted

    def _missing_versions(self, runs: Sequence[store.ClaimedExecution]) -> list[str]:
        return list({r.workflow_version_id for r in runs
                     if r.workflow_version_id and r.workflow_version_id not in self._versions})

    async def _load_versions(self, conn: asyncpg.Connection,
                             runs: Sequence[store.ClaimedExecution]) -> None:
        """Prepare the versions of ``runs`` not prepared yet (claimed or taken up)."""
        missing = self._missing_versions(runs)
        if missing:
            for vid, row in (await store.fetch_versions(conn, missing)).items():
                self._versions[vid] = prepare_version(row)

    def _claim_wanted(self) -> bool:
        """Something may wait that only a claim finds: runs queued, parked runs due or
        woken, held runs let go. (Leases that ran out send no notification: the poll's
        claim finds them, see _claim_loop.)"""
        if not self._queue_idle or self._overdue_hint or self._held_hint:
            return True
        return (self._held_due is not None
                and asyncio.get_running_loop().time() >= self._held_due)

    def _give_back(self, room: int) -> None:
        self._reserved -= room
        if self._reserved <= 0:
            self._unreserved.set()

    def adopt(self, runs: Sequence[store.ClaimedExecution], granted: int) -> None:
        self._give_back(granted - len(runs))
        self._adopting.update(r.id for r in runs)
        if runs:
            task = asyncio.create_task(
                self._take_up(runs, asyncio.get_running_loop().time()), name="triggerd-take-up")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _take_up(self, runs: Sequence[store.ClaimedExecution], adopted: float) -> None:
        """Start runs stored RUNNING under this executor's lease, as a claim starts its."""
        started = 0
        try:
            if self._missing_versions(runs):
                async with self.pool.acquire() as conn:
                    await self._load_versions(conn, runs)
            late = (asyncio.get_running_loop().time() - adopted
                    > self.lease.total_seconds() / 2)
            for execution in runs:
                if self._handed_back or late:
                    # Drain chose what to hand back, or the lease may be about to end (a
                    # slow pool) and another process take the run up: left to the lease.
                    break
                started += 1
                self._give_back(1)
                if execution.id in self._adopt_cancels:
                    execution = replace(execution, cancel_requested=True)
                self._start_run(execution)
                if started % START_GROUP == 0 and started < len(runs):
                    await asyncio.sleep(0)  # as a claim's start (_claim_and_start)
            if late:
                logger.warning(
                    "runs stored for this process not started in time; they are taken up"
                    " when their leases end", extra={"event": "take_up_late",
                                                     "count": len(runs) - started})
        except Exception as exc:
            # Stored RUNNING under this lease and not started: taken up again (here or
            # elsewhere) when the lease ends, as after a crash.
            logger.warning(
                "runs stored for this process not started; they are taken up when their"
                " leases end",
                extra={"event": "take_up_failed", "count": len(runs) - started,
                       "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
        finally:
            self._give_back(len(runs) - started)
            for execution in runs:
                self._adopting.discard(execution.id)
                self._adopt_cancels.discard(execution.id)

    async def readiness(self) -> str | None:
        if not self._running:
            return "executor not running"
        ended = [t.get_name() for t in self._tasks if t.done()]
        if ended:
            return f"executor loops ended: {', '.join(ended)}"
        return None

    # -- loops ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        poll = self.settings.executor.poll_interval.total_seconds()
        concurrency = self.settings.executor.concurrency
        while self._running:
            self._wake.clear()
            free = concurrency - len(self._active) - self._reserved
            claimed: list[store.ClaimedExecution] = []
            # Claim in batches: waiting for a quarter of the slots to free up costs little
            # latency and saves most of the claim round trips under load. The poll claims
            # into any room: runs taken up where they are stored may keep the room under a
            # quarter, and runs whose lease ran out announce themselves to nobody.
            polled = asyncio.get_running_loop().time() - self._claimed_at >= poll
            threshold = (1 if not self._active or polled
                         else max(1, min(CLAIM_BATCH, concurrency // 4)))
            if self._accepting and free >= threshold:
                try:
                    claimed = await self._claim(min(free, CLAIM_BATCH))
                except Exception as exc:
                    # Never let this loop die: nothing would claim runs again.
                    if db.is_unavailable(exc) or isinstance(exc, asyncpg.PostgresError):
                        logger.warning(
                            "claim failed", extra={"event": "claim_failed", "error": str(exc)}
                        )
                    else:
                        logger.exception("claim failed", extra={"event": "claim_failed"})
                    await asyncio.sleep(1.0)
                    continue
            if (
                claimed
                and len(claimed) == min(free, CLAIM_BATCH)
                and concurrency - len(self._active) - self._reserved >= threshold
            ):
                continue  # there may be more work right now
            wait = poll
            now = asyncio.get_running_loop().time()
            if self._held_due is not None and self._held_due > now:
                # Wake when the next pending debounced run is due (a past one was either
                # claimed just now or waits for a free slot, like any run).
                wait = min(poll, self._held_due - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _held_wanted(self) -> bool:
        now = asyncio.get_running_loop().time()
        return (
            self._held_hint
            or (self._held_due is not None and now >= self._held_due)
            or now - self._held_checked >= self.settings.executor.poll_interval.total_seconds()
        )

    async def _claim(self, limit: int) -> list[store.ClaimedExecution]:
        """Claim up to ``limit`` runs and start them, under the lock drain waits on."""
        async with self._claiming:
            # The claim's room is promised to it while it is in flight, so runs taken up
            # where they are stored meanwhile do not take the same room.
            self._reserved += limit
            self._unreserved.clear()
            try:
                return await self._claim_and_start(limit)
            finally:
                self._give_back(limit)
                self._early_cancels.clear()

    async def _claim_and_start(self, limit: int) -> list[store.ClaimedExecution]:
        """The claim, with the claim lock held."""
        if not self._accepting:
            return []  # drain began while this claim waited for the lock
        now = asyncio.get_running_loop().time()
        self._claimed_at = now
        overdue = self._overdue_hint or now - self._overdue_checked >= OVERDUE_INTERVAL
        heard = self._hints_heard
        shares = {t.name: t.executor_share for t in self.settings.tenants
                  if t.executor_share != 1}
        async with self.pool.acquire() as conn:
            claimed = await store.claim_executions(conn, self.owner, self.lease, limit, shares,
                                                   overdue=overdue)
            if overdue:
                self._overdue_checked = now
                if self._hints_heard == heard:
                    self._overdue_hint = False
            # Nothing left behind: new runs may be taken up where they are stored. A short
            # claim need not mean an empty queue (a tenant's fair part, rows committed
            # after its snapshot): one look at the queue's index says; and a hint heard
            # meanwhile may be of runs it did not see.
            idle = len(claimed) < limit and not await store.plain_runs_waiting(conn)
            self._queue_idle = idle and self._hints_heard == heard
            if len(claimed) < limit and self._held_wanted():
                held = await claim_held(conn, self.owner, self.lease, limit - len(claimed),
                                        shares)
                self._held_checked = asyncio.get_running_loop().time()
                # A full batch may leave more behind; else wait for a hint.
                self._held_hint = (len(held.claimed) == limit - len(claimed)
                                   or self._hints_heard != heard)
                self._held_due = (
                    None if held.next_in is None else self._held_checked + held.next_in
                )
                self._held_ids.update(c.id for c in held.claimed)
                claimed = [*claimed, *held.claimed]
            await self._load_versions(conn, claimed)
        if self._handed_back:
            return claimed  # drain chose what to hand back: these are left to their leases
        for n, execution in enumerate(claimed, 1):
            self._start_run(execution)
            if n % START_GROUP == 0 and n < len(claimed):
                # Runs of nodes without I/O walk their whole graph in their first step:
                # a batch started at once ran every walk in one turn of the loop, with
                # no request read or answered until all were done (tens of ms).
                await asyncio.sleep(0)
        return claimed

    def _start_run(self, execution: store.ClaimedExecution) -> None:
        if execution.id in self._early_cancels:
            execution = replace(execution, cancel_requested=True)
        self.stats["started"] += 1
        task = asyncio.create_task(self._run(execution), name=f"run-{execution.id}")
        self._active[execution.id] = task

    async def _run(self, execution: store.ClaimedExecution) -> None:
        assert self._writer is not None
        try:
            await self._execute(execution)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(execution.id, "")
            if reason == "cancel":
                await self._writer.write(
                    finished=[
                        store.ExecutionUpdate(
                            id=execution.id,
                            status="CANCELED",
                            error_code="CANCELED",
                            error_message="canceled by request",
                            drop_resume_copies=True,
                        )
                    ]
                )
                self.stats["CANCELED"] += 1
            # drain / lost lease: the rows written so far stay; the run is handed back.
            return
        except LeaseLost:
            # Another process took the run up after this one's lease ran out (this one was
            # stopped or starved): it writes nothing more and runs no further node.
            logger.warning(
                "execution lease lost",
                extra={"event": "execution_lease_lost", "execution_id": execution.id},
            )
        except Exception as exc:
            if db.is_unavailable(exc):
                # The database went away under it (a restart, a failover): no bug, and no
                # traceback; the run is taken up again once its lease ends.
                logger.warning(
                    "execution interrupted: the database is unavailable; it is taken up"
                    " again when its lease ends",
                    extra={"event": "execution_interrupted", "execution_id": execution.id,
                           "error": f"{type(exc).__name__}: {exc}"[:300]},
                )
                return
            logger.exception(
                "execution crashed",
                extra={"event": "execution_crashed", "execution_id": execution.id},
            )
            # A bug or data the database refused would crash the run again on every claim
            # after its lease expires: end it now, with a code that says so (the
            # exception's text may hold values, so only its type is stored).
            await self._fail_crashed(execution.id, exc)
        finally:
            self._active.pop(execution.id, None)
            if execution.id in self._held_ids:
                # Its concurrency key has room again: the next of that key may start,
                # here or in another process.
                self._held_ids.discard(execution.id)
                self._held_hint = True
                with contextlib.suppress(Exception):
                    await send_hints(self.pool, EXECUTIONS.wire, [HELD])
            if self._claim_wanted():
                # Room for runs left waiting. (With nothing waiting a claim would find
                # nothing: new runs announce themselves, _on_notify.)
                self._wake.set()

    async def _fail_crashed(self, execution_id: str, exc: Exception
                            ) -> store.ExecutionUpdate | None:
        """End a run whose walk raised; None when even that could not be written."""
        assert self._writer is not None
        update = store.ExecutionUpdate(
            id=execution_id,
            status="ERROR",
            error_code="INTERNAL_ERROR",
            error_message=f"internal error ({type(exc).__name__}); see the daemon's log",
            drop_resume_copies=True,
        )
        try:
            await self._writer.write(finished=[update])
        except Exception:
            # Left RUNNING: its lease expires and another claim tries again.
            logger.exception(
                "crashed execution not recorded",
                extra={"event": "execution_crash_unrecorded", "execution_id": execution_id},
            )
            return None
        self.stats["ERROR"] += 1
        # Its node row in progress (the walk raised before writing its end) ends too.
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn:
                await store.close_open_nodes(conn, execution_id, "INTERNAL_ERROR",
                                             update.error_message or "internal error")
        return update

    async def _execute(
        self,
        execution: store.ClaimedExecution,
        observe: Callable[[Sequence[store.NodeRow]], None] | None = None,
    ) -> store.ExecutionUpdate | None:
        """Run a claimed execution to its end or its next park. ``observe`` is shown the
        node rows as they are committed (a test run prints its timeline from them)."""
        assert self._writer is not None
        writer = self._writer
        test, dry = run_flags(execution.context)
        write: Callable[..., Awaitable[set[str]]] = writer.write
        if observe is not None:
            notify = observe

            async def write(
                nodes: Sequence[store.NodeRow] = (),
                finished: Sequence[store.ExecutionUpdate] = (),
            ) -> set[str]:
                done = await writer.write(nodes=nodes, finished=finished)
                notify(nodes)
                return done
        if (
            execution.workflow_version_id is None
            or execution.workflow_version_id not in self._versions
        ):
            update = store.ExecutionUpdate(
                id=execution.id,
                status="ERROR",
                error_code="NO_VERSION",
                error_message="the workflow has no published version",
            )
            await write(finished=[update])
            self.stats["ERROR"] += 1
            return update
        previous: list[dict[str, Any]] = []
        if execution.attempt > 1:
            async with self.pool.acquire() as conn:
                previous = await store.fetch_node_rows(conn, execution.id)
        assert self.resume_key is not None
        version = self._versions[execution.workflow_version_id]
        resume_url = None
        if any(node.type == "approval" for node in version.graph.nodes):
            # A fresh single-use token each time the run is taken up: the one given out
            # before a restart stays valid, only its hash is stored.
            async with self.pool.acquire() as conn:
                token = await approvals.create_token(conn, execution.id)
            resume_url = f"{self.settings.http.base_url}{RESUME_PATH}/{token}"
        memory_snapshot = None
        if version.reads_memory:
            async with self.pool.acquire() as conn:
                memory_snapshot = await workflow_memory.snapshot(conn, execution.workflow_id)
        runner = Runner(
            claimed=execution,
            version=version,
            db=self.pool,
            resume_url=resume_url,
            memory=memory_snapshot,
            max_workflow_depth=self.settings.executor.max_workflow_depth,
            http=self._http,
            write=write,
            dry=dry,
            previous_rows=previous,
            max_output_bytes=self.settings.executor.max_output_bytes,
            max_resume_output_bytes=self.settings.executor.max_resume_output_bytes,
            resume_key=self.resume_key,
            clock=self.clock,
            secret_roots=(
                self.settings.daemon.secret_roots
                if self._secret_roots is None
                else self._secret_roots
            ),
            secret_policy=self._secret_policy(execution.tenant_id),
        )
        try:
            update = await runner.run()
        except asyncio.CancelledError:
            # Keep what finished; the cancel handler decides the run's status.
            reason = self._cancel_reasons.get(execution.id)
            if reason in ("cancel", "drain") and runner.pending:
                await write_shielded(write(nodes=list(runner.pending)))
            raise
        await write(nodes=list(runner.pending), finished=[update])
        self.stats[update.status] = self.stats.get(update.status, 0) + 1
        if self.metrics is not None and not test:  # test runs stay out of the metrics
            for node_type, ms in runner.timings:
                self.metrics.node_finished(node_type, ms / 1000)
            if update.status != "WAITING":
                seconds = (self.clock() - execution.start_time).total_seconds()
                self.metrics.execution_finished(
                    tenant_label(execution.tenant_id,
                                 runner.version.workflow_key or execution.workflow_id),
                    update.status, seconds, execution.tenant_id,
                )
        if update.status == "WAITING" and update.resume_at is not None:
            delay = max(0.0, (update.resume_at - self.clock()).total_seconds())
            asyncio.get_running_loop().call_later(delay + 0.01, self._due_now)
        log = logger.info if update.status != "ERROR" else logger.warning
        log(
            "execution finished",
            extra={
                "event": "execution_finished",
                "execution_id": execution.id,
                "tenant": execution.tenant_id,
                "workflow_id": execution.workflow_id,
                "trigger_id": execution.trigger_id,
                "status": update.status,
                "error_code": update.error_code,
            },
        )
        return update

    def _secret_policy(self, tenant: str) -> SecretPolicy:
        if self._policies is None:
            self._policies = SecretPolicies(self.settings, os.environ)
        return self._policies.of(tenant)

    # -- single runs (test runs: triggerd test, POST /api/v1/test-runs) ---------------------

    async def open_single(self) -> None:
        """Ready this executor to run claimed executions one at a time with
        :meth:`run_one`, in the caller's task: the same run path as the daemon's, without
        its claim, heartbeat and retention loops (nothing else claims a test run)."""
        if self.resume_key is None:
            # A test run is only ever continued by this process: a key of its own will do.
            self.resume_key = ResumeKey(secrets.token_bytes(KEY_BYTES), source="test run")
        self._egress = EgressConnector(policy_from_settings(self.settings.egress, self.own_ports))
        self._http = http_client(self._egress)
        self._writer = ProgressWriter(pool=self.pool, owner=self.owner)
        self._writer.start()

    async def close_single(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
            self._writer = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run_one(
        self,
        execution: store.ClaimedExecution,
        observe: Callable[[Sequence[store.NodeRow]], None] | None = None,
    ) -> store.ExecutionUpdate | None:
        """Run one claimed execution (see :meth:`open_single`) to its end or next park."""
        vid = execution.workflow_version_id
        if vid is not None and vid not in self._versions:
            async with self.pool.acquire() as conn:
                for found, row in (await store.fetch_versions(conn, [vid])).items():
                    self._versions[found] = prepare_version(row)
        try:
            return await self._execute(execution, observe)
        except LeaseLost:
            raise
        except Exception as exc:
            if db.is_unavailable(exc):
                raise
            # As a daemon's run: it ends INTERNAL_ERROR instead of staying RUNNING.
            logger.exception("execution crashed", extra={"event": "execution_crashed",
                                                         "execution_id": execution.id})
            update = await self._fail_crashed(execution.id, exc)
            if update is None:
                raise
            return update

    async def record_final(self, update: store.ExecutionUpdate) -> set[str]:
        """Write a final state for a run this executor holds (claimed, not running)."""
        assert self._writer is not None
        return await self._writer.write(finished=[update])

    async def _heartbeat_loop(self) -> None:
        interval = self.lease.total_seconds() / 3
        while self._running:
            await asyncio.sleep(interval)
            ids = list(self._active)
            if not ids:
                continue
            try:
                async with self.pool.acquire() as conn:
                    held = await store.renew_leases(conn, self.owner, ids, self.lease)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning(
                    "lease renewal failed", extra={"event": "lease_renew_failed", "error": str(exc)}
                )
                continue
            for lost in set(ids) - held.keys():
                task = self._active.get(lost)
                if task is not None and not task.done():
                    # Another process owns it now (or it was canceled); stop quietly.
                    self._cancel_reasons[lost] = "lost"
                    task.cancel()
            for execution_id, canceled in held.items():
                task = self._active.get(execution_id)
                if canceled and task is not None and not task.cancelling():
                    # Its notification never came. (A task already being canceled, by
                    # that notification or a drain, is writing its end: not twice.)
                    self._on_cancel(execution_id)

    def _due_now(self) -> None:
        self._hints_heard += 1
        self._overdue_hint = True
        self._wake.set()

    def _on_notify(self, payload: str) -> None:
        self._hints_heard += 1
        if payload == HELD:
            self._held_hint = True
        elif payload == DUE:
            self._overdue_hint = True
        else:
            # Runs were queued (elsewhere, or here without room): they go first.
            self._queue_idle = False
        self._wake.set()

    def _on_cancel(self, execution_id: str) -> None:
        task = self._active.get(execution_id)
        if task is not None and not task.done():
            self._cancel_reasons[execution_id] = "cancel"
            task.cancel()
        elif task is None and execution_id in self._adopting:
            # Stored for this executor, not started yet: it starts canceled.
            self._adopt_cancels.add(execution_id)
        elif task is None and self._claiming.locked():
            # Perhaps one the claim in progress took: its flag was read before the cancel.
            self._early_cancels.add(execution_id)

    def _on_gap(self) -> None:
        """Notifications were lost: look for work, and for cancels of the runs held here."""
        self._hints_heard += 1
        self._queue_idle = False
        self._held_hint = True
        self._overdue_hint = True
        self._wake.set()
        if self._running and self._active:
            task = asyncio.create_task(self._reconcile_cancels(), name="triggerd-cancel-check")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _reconcile_cancels(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                canceled = await store.cancel_requested(conn, self.owner, list(self._active))
        except Exception as exc:
            # The next gap tries again; meanwhile the run goes on as it would have.
            logger.warning(
                "cancel check after a gap failed",
                extra={"event": "cancel_check_failed", "error": str(exc)},
            )
            return
        for execution_id in canceled:
            self._on_cancel(execution_id)

    async def _child_sweep_loop(self) -> None:
        """Cancel, every child_sweep_interval (and once at start), the runs below a run
        that ended CANCELED that its cancel did not reach (see CHILD_SWEEP_INTERVAL)."""
        while self._running:
            found = 0
            try:
                async with self.pool.acquire() as conn:
                    while self._running:
                        batch = await store.cancel_orphaned_children(conn, CHILD_SWEEP_BATCH)
                        found += batch
                        if batch < CHILD_SWEEP_BATCH:
                            break
            except Exception as exc:  # the next look tries again
                logger.warning(
                    "child runs of canceled runs not swept",
                    extra={"event": "child_sweep_failed",
                           "error": f"{type(exc).__name__}: {exc}"},
                )
            if found:
                logger.info(
                    "child runs of canceled runs canceled",
                    extra={"event": "child_sweep_canceled", "count": found},
                )
            # Spread: replicas started together would otherwise all sweep at once.
            await asyncio.sleep(self.child_sweep_interval * random.uniform(0.75, 1.25))

    async def _retention_loop(self) -> None:
        cursor = RetentionCursor()
        while self._running:
            try:
                async with self.pool.acquire() as conn:
                    cursor.for_pass(time.monotonic())
                    while self._running:
                        started = time.monotonic()
                        done = await retention_round(conn, self.settings, cursor)
                        if not done.full:
                            break
                        await asyncio.sleep(retention_pause(time.monotonic() - started))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning(
                    "retention failed", extra={"event": "retention_failed", "error": str(exc)}
                )
            await asyncio.sleep(60.0)
