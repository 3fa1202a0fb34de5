"""Cron slots: the SQL behind the scheduler's fire path, catch-up and overdue guard.

A *slot* is one instant of one cron trigger. Every decision about a slot (fired, skipped
and why) is a ``trigger_slots`` row, and a firing slot also inserts its execution with
``dedupe_key = cron:<instant>``. :func:`record_slots` writes a whole batch of slots (all the
triggers due at one instant, or a catch-up plan) in ONE statement, so the slot row, the
overlap decision and the execution are atomic.

Exactly once across replicas: every replica schedules every trigger and writes the same
slots. The statement first *claims* each slot by inserting its ``trigger_slots`` row
(``ON CONFLICT DO NOTHING`` on the primary key) and only the claimed slots go on to insert
executions, so the replica that wins a slot is the one whose decision stands and the loser
inserts nothing. Rows are claimed in (trigger, instant) order so that two replicas writing
overlapping batches queue behind each other instead of deadlocking.

The statement also re-checks the trigger itself: a slot is written only while the trigger
exists, is a cron trigger of an active workflow, still has the config the scheduler
computed the slot from and was enabled at or before the instant. A disabled trigger's slot
is recorded as ``skipped_disabled``; the others are returned as *stale* (the scheduler's
cache is behind the table and reloads them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg

from triggerd.db import is_unavailable, translated
from triggerd.errors import DatabaseUnavailable
from triggerd.model import OverlapPolicy, SlotOutcome
from triggerd.notifications.channels import CANCEL, EXECUTIONS, HELD
from triggerd.schedules import SCHEDULED_TYPES
from triggerd.store.executions import OVERLAP_KEY, close_canceled_nodes

# An asyncpg Connection or Pool (asyncpg ships no type information).
Conn = Any

# The trigger types the scheduler loads (every kind behind triggerd.schedules).
_SCHEDULED = ", ".join(f"'{kind}'" for kind in SCHEDULED_TYPES)
# Outcomes that insert an execution.
RUN_OUTCOMES = frozenset({SlotOutcome.FIRED, SlotOutcome.BUFFERED, SlotOutcome.CANCELED_PREVIOUS})
# How long one slot statement may take before the scheduler gives up on it.
STATEMENT_TIMEOUT = 60.0


class CronTriggerRow(NamedTuple):
    """An enabled cron trigger of an active workflow, as the scheduler loads it (a named
    tuple: the scheduler loads 100,000 of them at once)."""

    id: str
    workflow_key: str
    name: str
    config_text: str  # workflow_triggers.config as canonical jsonb text
    enabled_at: datetime
    last_slot: datetime | None  # newest recorded slot, None when none is recorded
    type: str  # a scheduled kind: cron | interval

    @property
    def full_name(self) -> str:
        return f"{self.workflow_key}/{self.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SlotRequest:
    """One slot to decide. ``intent`` is ``fired`` (insert an execution, subject to the
    overlap policy) or ``skipped_misfire`` (record it only)."""

    trigger_id: str
    scheduled_for: datetime  # UTC, whole seconds
    slot_iso: str  # scheduled_for as UTC ISO-8601 ("2026-03-08T07:00:00Z"): the dedupe key
    config_text: str  # the config the slot was computed from
    overlap: OverlapPolicy
    intent: SlotOutcome = SlotOutcome.FIRED
    detail: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedSlot:
    """A slot this call decided (its ``trigger_slots`` row was written by us)."""

    trigger_id: str
    scheduled_for: datetime
    outcome: SlotOutcome
    execution_id: str | None


@dataclass(frozen=True, kw_only=True)
class SlotWriteResult:
    recorded: tuple[RecordedSlot, ...]
    # How many slots another writer (usually another replica) had already decided.
    lost: int
    # Slots not written because the trigger changed, vanished or was enabled later.
    stale: tuple[tuple[str, datetime], ...]
    inserted: int  # executions inserted
    canceled: int  # previous executions canceled (overlap cancel_previous)
    # Their ids: their child runs are to be canceled (:func:`cancel_children`), after the
    # commit (an executor's write locks a child, then its parent: the other order).
    canceled_runs: tuple[str, ...] = ()


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    reason = str(exc) or type(exc).__name__
    return DatabaseUnavailable(f"the database connection failed: {reason}")


# --- loading ---------------------------------------------------------------------------------

# The rows the scheduler loads ($1: only these ids; NULL: all of them).
_SCHEDULED_ROWS = f"""
FROM workflow_triggers t
JOIN workflows w ON w.id = t.workflow_id
WHERE t.type IN ({_SCHEDULED}) AND t.enabled AND w.status = 'active'
  AND ($1::uuid[] IS NULL OR t.id = ANY($1::uuid[]))
  -- A trigger that has made its max_runs scheduled fires is complete: nothing to plan.
  AND NOT (t.config ? 'max_runs' AND (t.config->>'max_runs')::bigint <= coalesce(
      (SELECT max(st.scheduled_runs) FROM trigger_state st WHERE st.trigger_id = t.id), 0))
"""
# As operators read it (logs, metrics, /readyz): tenant:key outside the default.
_WORKFLOW_KEY = "CASE WHEN t.tenant_id = 'default' THEN w.key ELSE t.tenant_id || ':' || w.key END"
# The catch-up floor: enabling, or a resume (its floor_at), whichever is later.
_ENABLED_AT = """(SELECT GREATEST(t.enabled_at, max(st.floor_at)) FROM trigger_state st
         WHERE st.trigger_id = t.id)"""

_LOAD = f"""
SELECT t.id::text AS id,
       {_WORKFLOW_KEY} AS workflow_key,
       t.name, t.config::text AS config_text,
       {_ENABLED_AT} AS enabled_at,
       -- The newest slot the scheduler decided: a slot skipped by hand ahead of its time
       -- says nothing of how far it got (catch-up would start after it, and lose the
       -- slots missed before it).
       (SELECT max(s.scheduled_for) FROM trigger_slots s
         WHERE s.trigger_id = t.id AND s.outcome <> 'skipped_manual') AS last_slot,
       t.type
{_SCHEDULED_ROWS}"""

# A digest of what _LOAD returns except the newest slots, which the scheduler reads only
# for the triggers it adds or changes: the rows' count and the sum of a 64-bit hash per row
# (id, config, names and type, enabled_at), then the same of every resume floor (the
# floors of triggers not loaded too: one more full reconcile at worst). Equal digests: a
# full load would change nothing in the scheduler's table. Hashes of the values, not of
# their text: PostgreSQL formatting 100,000 rows' jsonb and timestamps took 460-520 ms,
# as much as the load itself; this takes 100 ms. (A jsonb hash equates 1 and 1.0, an edit
# no reload would act on anyway. Functions PostgreSQL has had since version 11: 15 has no
# timestamptz_hash_extended.)
_DIGEST = f"""
SELECT count(*) || ' ' || coalesce(sum(
           uuid_hash_extended(t.id, 0) # jsonb_hash_extended(t.config, 0)
           # hashtextextended({_WORKFLOW_KEY} || '/' || t.name || '/' || t.type, 0)
           # timestamp_hash_extended(t.enabled_at AT TIME ZONE 'UTC', 0)), 0)
       || ' ' || (SELECT coalesce(sum(uuid_hash_extended(st.trigger_id, 1)
                      # timestamp_hash_extended(st.floor_at AT TIME ZONE 'UTC', 1)), 0)
                  FROM trigger_state st WHERE st.floor_at IS NOT NULL)
{_SCHEDULED_ROWS}"""


async def scheduled_digest(conn: Conn) -> str:
    """The digest of the scheduled triggers as they are now (see _DIGEST)."""
    with translated("reading the scheduled triggers' digest"):
        return str(await conn.fetchval(_DIGEST, None, timeout=STATEMENT_TIMEOUT))


LOAD_PAGE = 5000
_LOAD_CURSOR = "triggerd_cron_load"


async def iter_cron_triggers(
    pool: asyncpg.Pool, page: int = LOAD_PAGE, *, bounced: bool = False,
    digest: list[str] | None = None,
) -> AsyncGenerator[list[CronTriggerRow], None]:
    """Every enabled cron trigger of an active workflow (one statement, one snapshot), in
    pages of ``page`` rows read from a cursor: decoding one page holds the event loop for
    milliseconds, where all 100,000 rows at once held it for a tenth of a second. The
    connection is held (in a read-only transaction) until the iteration ends: consume it
    under ``contextlib.aclosing``.

    The next page is asked for before this one is handed over, so PostgreSQL computes it
    (a slot lookup per trigger) while the caller works on this one: the start of 100,000
    triggers no longer waits for the statement and the scheduling one after the other.
    ``bounced``: ``pool`` is PgBouncer's in transaction mode (see db.create_pool).
    ``digest``: a list that gets the :func:`scheduled_digest` of the very rows loaded, when
    it could be read (see :func:`_digest_of_snapshot`)."""
    try:
        async with pool.acquire() as conn, conn.transaction(
            readonly=True, isolation=None if digest is None else "repeatable_read"
        ):
            digest_read: asyncio.Future[str | None] | None = None
            if digest is not None:
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                digest_read = asyncio.ensure_future(_digest_of_snapshot(pool, str(snapshot)))
            try:
                async with contextlib.aclosing(_pages(conn, page, bounced)) as pages:
                    async for rows in pages:
                        yield rows
            finally:
                if digest_read is not None:
                    # Before this transaction ends: the snapshot lives as long as it.
                    value = await digest_read
                    if value is not None and digest is not None:
                        digest.append(value)
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise


_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)+")
DIGEST_ACQUIRE_TIMEOUT = 1.0  # a busy pool: no digest, rather than a reload that waits


async def _digest_of_snapshot(pool: asyncpg.Pool, snapshot: str) -> str | None:
    """:func:`scheduled_digest` in another transaction that shares the loading one's
    snapshot (exported), on a second connection: PostgreSQL computes it while the loader
    reads pages, instead of 100 ms more before the first one (a start of 100,000 triggers).
    Best effort: without a second connection (a pool of one, all busy) or on any error,
    None, and the next periodic reconcile is a full one."""
    if pool.get_max_size() < 2 or not _SNAPSHOT_ID.fullmatch(snapshot):
        return None
    try:
        async with pool.acquire(timeout=DIGEST_ACQUIRE_TIMEOUT) as conn, conn.transaction(
            readonly=True, isolation="repeatable_read"
        ):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'",
                               timeout=STATEMENT_TIMEOUT)
            return await scheduled_digest(conn)
    except Exception:  # (a cancel is no Exception: it propagates)
        return None


async def _pages(
    conn: asyncpg.Connection, page: int, bounced: bool
) -> AsyncGenerator[list[CronTriggerRow], None]:
    """The cursor's pages, the next one asked for while the caller works on this one."""
    if bounced:
        # Through PgBouncer, a cursor declared in SQL: asyncpg's cursor prepares a
        # named statement and closes it only in this client's next transaction,
        # which PgBouncer may run on another server connection; a replica given
        # this one then failed ("prepared statement __asyncpg_stmt_7__ already
        # exists"). Elsewhere asyncpg's, a fifth faster (a FETCH statement copies
        # its rows once more: 1.25 against 1.04 s for 100,000 triggers, measured).
        await conn.execute(f"DECLARE {_LOAD_CURSOR} NO SCROLL CURSOR FOR {_LOAD}",
                           None, timeout=STATEMENT_TIMEOUT)
        next_page: Callable[[], Awaitable[list[Any]]] = functools.partial(
            conn.fetch, f"FETCH FORWARD {int(page)} FROM {_LOAD_CURSOR}",
            timeout=STATEMENT_TIMEOUT)
    else:
        cursor = await conn.cursor(_LOAD, None, timeout=STATEMENT_TIMEOUT)
        next_page = functools.partial(cursor.fetch, page, timeout=STATEMENT_TIMEOUT)
    ahead = asyncio.ensure_future(next_page())
    try:
        while True:
            rows = await ahead
            last = len(rows) < page
            if not last:
                ahead = asyncio.ensure_future(next_page())
            if rows:
                yield list(map(CronTriggerRow._make, rows))
            if last:
                return
    finally:
        if not ahead.done():
            # Left early (aclosing): the page asked for is not wanted. wait() and
            # not await: a cancel of this task itself must still propagate.
            ahead.cancel()
            await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()  # retrieved: a page nobody reads fails quietly


async def load_cron_triggers(
    conn: Conn, ids: Sequence[str] | None = None
) -> list[CronTriggerRow]:
    """Every enabled cron trigger of an active workflow (or only those among ``ids``), with
    its newest recorded slot."""
    try:
        rows = await conn.fetch(
            _LOAD, None if ids is None else list(ids), timeout=STATEMENT_TIMEOUT
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise
    return list(map(CronTriggerRow._make, rows))


# --- the fire path ------------------------------------------------------------------------


_RECORD = f"""
WITH d AS (
    -- Subscripts, not joins: the planner then knows d has as many rows as $1.
    SELECT r.trigger_id,
           ($6::timestamptz[])[r.slot_ref] AS scheduled_for,
           ($7::text[])[r.slot_ref] AS slot_iso,
           ($8::text[])[r.slot_ref] AS intent,
           ($9::text[])[r.slot_ref] AS detail,
           ($4::text[])[r.config_ref] AS config_text,
           ($5::text[])[r.config_ref] AS overlap
    FROM unnest($1::uuid[], $2::int[], $3::int[]) AS r(trigger_id, config_ref, slot_ref)
),
live AS (
    SELECT v.*,
           row_number() OVER same_intent AS fire_rank,
           count(*) OVER same_intent AS fire_count
    FROM (
        SELECT u.*,
               -- Past max_runs (counting this batch's earlier slots): the trigger is
               -- complete, the slot is not written and comes back stale, so the scheduler
               -- reloads the trigger and drops it.
               u.stale_row OR (u.max_runs IS NOT NULL AND u.intent = 'fired'
                   AND NOT u.held_back
                   AND row_number() OVER (PARTITION BY u.trigger_id, u.intent, u.stale_row,
                                                       u.held_back
                                          ORDER BY u.scheduled_for)
                       > u.max_runs - u.runs_done) AS stale
        FROM (
        -- A flag rather than a filter: the planner keeps its row estimates (a join on the
        -- config text looks selective) and joins the CTEs below by hashing.
        SELECT d.*, t.workflow_id, t.name, t.version, t.input, t.enabled, t.type AS kind,
               t.tenant_id, t.config->'correlation' AS correlation,
               coalesce(st.paused, false) AS paused, st.note AS paused_note,
               (t.config->>'max_runs')::bigint AS max_runs,
               coalesce(st.scheduled_runs, 0) AS runs_done,
               (t.type NOT IN ({_SCHEDULED}) OR w.status <> 'active'
                OR t.config::text <> d.config_text
                OR d.scheduled_for < t.enabled_at
                OR coalesce(d.scheduled_for < st.floor_at
                            AND NOT coalesce(NOT st.paused AND st.floor_at = st.changed_at,
                                             false), false)
               ) AS stale_row,
               -- A slot due before the latest resume (without --catch-up: its floor is the
               -- resume's instant) but written after it: a jittered slot whose instant fell
               -- in the pause, or a catchup_rate spread's slot the pause held back. It is
               -- recorded skipped_paused, as its peers written during the pause were.
               (d.scheduled_for >= t.enabled_at AND d.scheduled_for < st.floor_at
                AND NOT st.paused AND st.floor_at = st.changed_at) IS TRUE AS held_back
        FROM d
        JOIN workflow_triggers t ON t.id = d.trigger_id
        JOIN workflows w ON w.id = t.workflow_id
        LEFT JOIN trigger_state st ON st.trigger_id = t.id
        -- What the foreign keys did (migration 0002): a concurrent delete of the trigger
        -- or its workflow waits for this statement, or wins and its slots are stale.
        FOR KEY SHARE OF t, w
        ) u
    ) v
    WINDOW same_intent AS (PARTITION BY v.trigger_id, v.intent, v.stale, v.held_back
                           ORDER BY v.scheduled_for
                           ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
),
-- The overlap policy looks at the runs that were active before this statement and at the
-- earlier slots of the same batch (a catch-up's slots, oldest first), as if each slot had
-- come on time while the earlier ones still ran: under skip only the first runs, under
-- buffer_one the first runs and the second waits for it (its concurrency key), under
-- cancel_previous only the newest matters, and allow runs them all.
decided AS (
    SELECT l.*, gen_random_uuid() AS new_id, dup.id AS dup_id, a.active,
        CASE
            WHEN NOT l.enabled THEN 'skipped_disabled'
            WHEN l.paused OR l.held_back THEN 'skipped_paused'
            WHEN l.intent <> 'fired' THEN l.intent
            WHEN dup.id IS NOT NULL THEN 'duplicate'
            WHEN l.overlap = 'allow' THEN 'fired'
            WHEN l.overlap = 'cancel_previous' THEN
                CASE WHEN l.fire_rank < l.fire_count THEN 'skipped_overlap'
                     WHEN a.active > 0 THEN 'canceled_previous'
                     ELSE 'fired' END
            WHEN a.active = 0 AND l.fire_rank = 1 THEN 'fired'
            WHEN l.overlap = 'buffer_one' AND a.queued = 0
                 AND ((a.active = 1 AND l.fire_rank = 1)
                      OR (a.active = 0 AND l.fire_rank = 2)) THEN 'buffered'
            ELSE 'skipped_overlap'
        END AS outcome
    FROM live l
    LEFT JOIN LATERAL (
        SELECT e.id FROM workflow_executions e
        WHERE e.trigger_id = l.trigger_id AND e.dedupe_key = 'cron:' || l.slot_iso
    ) dup ON true
    CROSS JOIN LATERAL (
        SELECT count(*) AS active, count(*) FILTER (WHERE e.status = 'NEW') AS queued
        FROM workflow_executions e
        WHERE e.trigger_id = l.trigger_id AND e.status IN ('NEW', 'RUNNING', 'WAITING')
    ) a
),
claimed AS (
    INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id, detail)
    SELECT x.trigger_id, x.scheduled_for, x.outcome,
           CASE WHEN x.outcome IN ('fired', 'buffered', 'canceled_previous') THEN x.new_id
                WHEN x.outcome = 'duplicate' THEN x.dup_id END,
           NULLIF(concat_ws('; ',
               CASE x.outcome
                   WHEN 'skipped_disabled' THEN 'trigger disabled'
                   WHEN 'skipped_paused' THEN
                       CASE WHEN x.held_back
                            THEN 'trigger paused: due before the resume, written after it'
                            ELSE 'trigger paused' || coalesce(': ' || x.paused_note, '') END
                   WHEN 'duplicate' THEN 'an execution for this slot already exists'
                   WHEN 'buffered' THEN 'overlap policy buffer_one: queued behind 1 active run'
                   WHEN 'canceled_previous' THEN format(
                       'overlap policy cancel_previous: %s active run(s) canceled', x.active)
                   WHEN 'skipped_overlap' THEN
                       CASE WHEN x.overlap = 'cancel_previous'
                            THEN 'overlap policy cancel_previous: a newer missed slot runs'
                            WHEN x.active = 0
                            THEN format('overlap policy %s: an earlier slot of the same'
                                        ' catch-up runs', x.overlap)
                            ELSE format('overlap policy %s: %s run(s) still active',
                                        x.overlap, x.active) END
               END,
               x.detail), '')
    FROM decided x
    WHERE NOT x.stale
    ORDER BY x.trigger_id, x.scheduled_for
    ON CONFLICT (trigger_id, scheduled_for) DO NOTHING
    RETURNING trigger_id, scheduled_for, outcome, execution_id
),
run AS (
    SELECT x.* FROM decided x JOIN claimed c USING (trigger_id, scheduled_for)
    WHERE x.outcome IN ('fired', 'buffered', 'canceled_previous')
),
canceled AS (
    UPDATE workflow_executions e SET
        status = CASE WHEN e.status IN ('NEW', 'WAITING') THEN 'CANCELED' ELSE e.status END,
        end_time = CASE WHEN e.status IN ('NEW', 'WAITING') THEN now() ELSE e.end_time END,
        error_code = CASE WHEN e.status IN ('NEW', 'WAITING') THEN 'CANCELED'
                          ELSE e.error_code END,
        error_message = CASE WHEN e.status IN ('NEW', 'WAITING')
                             THEN 'canceled by a newer run (overlap policy cancel_previous)'
                             ELSE e.error_message END,
        lease_owner = CASE WHEN e.status IN ('NEW', 'WAITING') THEN NULL ELSE e.lease_owner END,
        cancel_requested = true
    WHERE e.trigger_id IN (SELECT r.trigger_id FROM run r WHERE r.outcome = 'canceled_previous')
      AND e.status IN ('NEW', 'RUNNING', 'WAITING')
    RETURNING e.id, e.status, pg_notify('{CANCEL.wire}', e.id::text)
),
-- As a cancel by request (close_canceled_nodes). The child runs of every run canceled
-- here (ended, or flagged for its executor) are canceled after the commit
-- (SlotWriteResult.canceled_runs).
closed_nodes AS (
    {close_canceled_nodes("canceled", "canceled by a newer run (overlap policy cancel_previous)")}
),
-- Under buffer_one every run of the schedule carries one concurrency key with a limit of
-- 1: the executor's claim of held runs (triggerd/store/keyed.py) starts the buffered run
-- once the active one has ended, not beside it.
inserted AS (
    INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
        trigger_name, trigger_type, dedupe_key, input, context, scheduled_for, tenant_id,
        agent_id, session_id, conversation_id, correlation, concurrency_key,
        concurrency_limit)
    SELECT r.new_id, r.workflow_id,
           (SELECT v.id FROM workflow_versions v
             WHERE v.workflow_id = r.workflow_id
               AND CASE WHEN r.version IS NULL THEN v.is_latest ELSE v.version = r.version END),
           -- Every scheduled kind uses the `cron:<instant>` key: exactly-once, skip and
           -- backfill --only-missing work on it whatever the kind.
           r.trigger_id, r.name, r.kind, 'cron:' || r.slot_iso, r.input,
           jsonb_build_object('trigger', jsonb_build_object(
               'type', r.kind, 'name', r.name, 'scheduled_for', r.slot_iso,
               'fired_at', $10::text)),
           r.scheduled_for, r.tenant_id,
           -- A scheduled trigger's correlation values are literals (checked on apply).
           r.correlation->>'agent_id', r.correlation->>'session_id',
           r.correlation->>'conversation_id', r.correlation,
           CASE WHEN r.overlap = 'buffer_one' THEN '{OVERLAP_KEY}' END,
           CASE WHEN r.overlap = 'buffer_one' THEN 1 END
    FROM run r
    ORDER BY r.trigger_id, r.scheduled_for
    ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id, concurrency_key
),
-- max_runs counts the scheduled fires (only the triggers that have one pay for this).
counted AS (
    INSERT INTO trigger_state AS s (trigger_id, scheduled_runs, completed_at)
    SELECT r.trigger_id, count(*),
           CASE WHEN count(*) >= max(r.max_runs) THEN now() END
    FROM run r WHERE r.max_runs IS NOT NULL
    GROUP BY r.trigger_id
    ORDER BY r.trigger_id
    ON CONFLICT (trigger_id) DO UPDATE SET
        scheduled_runs = s.scheduled_runs + EXCLUDED.scheduled_runs,
        completed_at = CASE
            WHEN s.scheduled_runs + EXCLUDED.scheduled_runs >= (
                SELECT (t.config->>'max_runs')::bigint FROM workflow_triggers t
                WHERE t.id = s.trigger_id)
            THEN coalesce(s.completed_at, now()) END,
        updated_at = now()
    RETURNING 1
),
notified AS (
    SELECT pg_notify('{EXECUTIONS.wire}', count(*)::text) FROM inserted HAVING count(*) > 0
    UNION ALL
    -- Held runs are looked for when something says there are some.
    SELECT pg_notify('{EXECUTIONS.wire}', '{HELD}') FROM inserted
    WHERE concurrency_key IS NOT NULL HAVING count(*) > 0
)
-- Only the slots decided here and the stale ones come back; the rest were decided elsewhere.
SELECT true AS claimed, c.trigger_id::text, c.scheduled_for, c.outcome, c.execution_id::text,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM canceled) AS canceled,
       (SELECT count(*) FROM notified) AS notified, NULL::text[] AS ended
FROM claimed c
UNION ALL
-- The runs canceled here, once (a column of every slot's row was slots x runs).
SELECT NULL, NULL, NULL, NULL, NULL, 0, 0, 0, array_agg(id::text)
FROM canceled HAVING count(*) > 0
UNION ALL
SELECT false, x.trigger_id::text, x.scheduled_for, NULL, NULL, 0, 0, 0, NULL
FROM decided x WHERE x.stale
UNION ALL
SELECT false, d.trigger_id::text, d.scheduled_for, NULL, NULL, 0, 0, 0, NULL
FROM d WHERE NOT EXISTS (SELECT 1 FROM live l WHERE l.trigger_id = d.trigger_id)
"""


class SlotBatch:
    """Slots to decide in one statement, as columns. Distinct configs and distinct slots
    are sent once and referenced by position: the 10,000 triggers due at one instant
    share one slot and a few dozen configs, so the statement's arguments stay small."""

    def __init__(self) -> None:
        self.trigger_ids: list[str] = []
        self.config_refs: list[int] = []
        self.slot_refs: list[int] = []
        self._configs: dict[tuple[str, OverlapPolicy], int] = {}
        self._slots: dict[tuple[datetime, SlotOutcome, str | None], int] = {}
        self.slot_times: list[datetime] = []
        self.slot_isos: list[str] = []

    @classmethod
    def of(cls, requests: Iterable[SlotRequest]) -> SlotBatch:
        batch = cls()
        for r in requests:
            batch.add(
                r.trigger_id,
                batch.config_ref(r.config_text, r.overlap),
                batch.slot_ref(r.scheduled_for, r.slot_iso, r.intent, r.detail),
            )
        return batch

    def __len__(self) -> int:
        return len(self.trigger_ids)

    def config_ref(self, config_text: str, overlap: OverlapPolicy) -> int:
        """The 1-based reference of a config (added when new)."""
        key = (config_text, overlap)
        ref = self._configs.get(key)
        if ref is None:
            ref = self._configs[key] = len(self._configs) + 1
        return ref

    def slot_ref(
        self,
        scheduled_for: datetime,
        slot_iso: str,
        intent: SlotOutcome = SlotOutcome.FIRED,
        detail: str | None = None,
    ) -> int:
        """The 1-based reference of a slot and its intent (added when new)."""
        key = (scheduled_for, intent, detail)
        ref = self._slots.get(key)
        if ref is None:
            ref = self._slots[key] = len(self._slots) + 1
            self.slot_times.append(scheduled_for)
            self.slot_isos.append(slot_iso)
        return ref

    def add(self, trigger_id: str, config_ref: int, slot_ref: int) -> None:
        self.trigger_ids.append(trigger_id)
        self.config_refs.append(config_ref)
        self.slot_refs.append(slot_ref)

    def rows(self) -> Iterator[tuple[str, datetime, str]]:
        """(trigger id, slot, config text) of every slot in the batch."""
        configs = [text for text, _ in self._configs]
        for trigger_id, config_ref, slot_ref in zip(
            self.trigger_ids, self.config_refs, self.slot_refs, strict=True
        ):
            yield trigger_id, self.slot_times[slot_ref - 1], configs[config_ref - 1]

    def arguments(self, fired_at: str) -> list[Any]:
        configs = list(self._configs)
        slots = list(self._slots)
        return [
            self.trigger_ids,
            self.config_refs,
            self.slot_refs,
            [text for text, _ in configs],
            [overlap.value for _, overlap in configs],
            self.slot_times,
            self.slot_isos,
            [intent.value for _, intent, _ in slots],
            [detail for _, _, detail in slots],
            fired_at,
        ]


async def _fetch_custom_plan(conn: Conn, query: str, *args: Any) -> list[Any]:
    """Run ``query`` planned for its actual arguments. A cached generic plan assumes an
    unnested array holds 100 rows and joins the CTEs by nested loops: fine for one slot,
    minutes for 10,000. ``SET LOCAL`` keeps the setting inside this transaction."""
    if hasattr(conn, "acquire"):  # a pool
        async with conn.acquire() as acquired:
            return await _fetch_custom_plan(acquired, query, *args)
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows: list[Any] = await conn.fetch(query, *args, timeout=STATEMENT_TIMEOUT)
    return rows


async def record_slots(
    conn: Conn, requests: SlotBatch | Sequence[SlotRequest], *, fired_at: str
) -> SlotWriteResult:
    """Decide a batch of slots in one statement (see the module docstring).

    ``fired_at`` (UTC ISO-8601) goes into each new execution's ``trigger`` context. A
    connection failure raises :class:`~triggerd.errors.DatabaseUnavailable`; other database
    errors (a deadlock, a trigger deleted mid-statement) propagate and the batch may be
    retried as a whole.
    """
    batch = requests if isinstance(requests, SlotBatch) else SlotBatch.of(requests)
    if not batch:
        return SlotWriteResult(recorded=(), lost=0, stale=(), inserted=0, canceled=0)
    try:
        rows = await _fetch_custom_plan(conn, _RECORD, *batch.arguments(fired_at))
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise
    recorded: list[RecordedSlot] = []
    stale: list[tuple[str, datetime]] = []
    inserted = canceled = 0
    canceled_runs: tuple[str, ...] = ()
    for claimed, trigger_id, scheduled_for, outcome, execution_id, ins, can, _, ids in rows:
        if claimed is None:
            canceled_runs = tuple(ids)
        elif claimed:
            recorded.append(
                RecordedSlot(
                    trigger_id=trigger_id,
                    scheduled_for=scheduled_for,
                    outcome=SlotOutcome(outcome),
                    execution_id=execution_id,
                )
            )
            inserted, canceled = ins, can
        else:
            stale.append((trigger_id, scheduled_for))
    return SlotWriteResult(
        recorded=tuple(recorded),
        lost=len(batch) - len(recorded) - len(stale),
        stale=tuple(stale),
        inserted=inserted,
        canceled=canceled,
        canceled_runs=canceled_runs,
    )


async def warm_up(conn: Conn) -> None:
    """Run the slot statement once with no slots: asyncpg caches its prepared form on the
    connection, and the backend loads the catalog entries it needs."""
    try:
        await conn.fetch(_RECORD, *SlotBatch().arguments(""), timeout=STATEMENT_TIMEOUT)
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise


# --- guards ------------------------------------------------------------------------------

_OVERDUE = f"""
SELECT d.trigger_id::text
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS d(trigger_id, expected, config_text)
JOIN workflow_triggers t ON t.id = d.trigger_id
JOIN workflows w ON w.id = t.workflow_id
WHERE t.enabled AND t.type IN ({_SCHEDULED}) AND w.status = 'active'
  AND t.config::text = d.config_text AND t.enabled_at < d.expected
  -- A later slot skipped by hand (ahead of its time) does not mean this one was decided.
  AND NOT EXISTS (SELECT 1 FROM trigger_slots s
                  WHERE s.trigger_id = d.trigger_id AND s.scheduled_for >= d.expected
                    AND (s.outcome <> 'skipped_manual' OR s.scheduled_for = d.expected))
ORDER BY d.trigger_id
LIMIT $4
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExpectedSlot:
    """The newest slot a trigger should have an outcome for by now."""

    trigger_id: str
    expected: datetime
    config_text: str


async def find_overdue(
    conn: Conn, expected: Sequence[ExpectedSlot], *, limit: int = 100
) -> list[str]:
    """Ids of the triggers (still enabled with the same config) that have no recorded slot
    at or after their expected one."""
    if not expected:
        return []
    try:
        rows = await conn.fetch(
            _OVERDUE,
            [e.trigger_id for e in expected],
            [e.expected for e in expected],
            [e.config_text for e in expected],
            limit,
            timeout=STATEMENT_TIMEOUT,
        )
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise
    return [r[0] for r in rows]


async def database_clock(conn: Conn) -> datetime:
    """PostgreSQL's wall clock right now (``clock_timestamp()``, not the transaction's
    start)."""
    try:
        value: datetime = await conn.fetchval("SELECT clock_timestamp()", timeout=10.0)
    except Exception as exc:
        if is_unavailable(exc):
            raise _unavailable(exc) from exc
        raise
    return value


# --- retention ---------------------------------------------------------------------------

# The rows are deleted by ctid through ``= ANY(ARRAY(...))`` (a TID scan of the batch): as
# ``(trigger_id, scheduled_for) IN (subquery)`` the planner could hash the subquery and
# read the whole ledger to find its rows, 550 ms a batch at 2 million slots.
_DELETE_OLD_SLOTS = """
DELETE FROM trigger_slots WHERE ctid = ANY(ARRAY(
    SELECT s.ctid FROM trigger_slots s
    WHERE s.scheduled_for < now() - $1 * interval '1 millisecond'
      -- A trigger's newest decided slot is its last fire for catch-up (_LOAD): it stays
      -- (a slot skipped by hand ahead of its time is not one).
      AND EXISTS (SELECT 1 FROM trigger_slots n
                  WHERE n.trigger_id = s.trigger_id AND n.scheduled_for > s.scheduled_for
                    AND n.outcome <> 'skipped_manual')
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
"""


async def delete_old_slots(conn: Conn, older_than: timedelta, batch: int = 10_000) -> int:
    """Delete up to ``batch`` ledger slots older than ``older_than`` (by their instant),
    except each trigger's newest; returns how many were deleted."""
    result: str = await conn.execute(
        _DELETE_OLD_SLOTS, int(older_than.total_seconds() * 1000), batch
    )
    return int(result.split()[-1])
