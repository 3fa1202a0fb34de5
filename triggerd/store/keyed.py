"""Runs held back by a key: debounce windows (a pending run that later requests of the
same key fold into) and concurrency keys (at most ``limit`` runs of a trigger and key
started at once). PostgreSQL decides both across replicas: the window row's lock orders
one key's requests, and a per-key advisory lock orders the claims of one key.

Plain runs never come here: the webhook group commit and the executor's hot claim
(triggerd/store/executions.py) skip every row with ``not_before`` or a concurrency key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from triggerd import db
from triggerd.notifications.channels import EXECUTIONS, HELD
from triggerd.store import key_locks
from triggerd.store.executions import (
    CLAIM_RETURNING,
    OVERLAP_KEY,
    ClaimedExecution,
    claimed_execution,
    correlation_arrays,
    taking_up,
)
from triggerd.store.webhooks import ACQUIRE_TIMEOUT, GONE, InboxItem, InboxResult, _json_text
from triggerd.webhooks.debounce import Window, plan_window


@dataclass(frozen=True, kw_only=True)
class DebounceKey:
    key: str
    period: timedelta
    max_wait: timedelta


@dataclass(frozen=True, kw_only=True)
class ConcurrencyKey:
    key: str
    limit: int


@dataclass(frozen=True, kw_only=True)
class KeyedResult:
    result: InboxResult
    debounced: bool = False  # folded into a pending run (stored with outcome debounced)


_PARENTS = """
SELECT t.id FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id
WHERE t.id = $1 AND w.id = $2 FOR KEY SHARE OF t, w
"""

# Locks the trigger and its workflow as _PARENTS does, then opens the key's window or
# locks the open one, returning its latest version (no row: the trigger is gone). A
# placeholder window names this request's own id: no run of that id exists yet.
_OPEN_WINDOW = """
WITH p AS (
    SELECT t.id FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id
    WHERE t.id = $1 AND w.id = $2 FOR KEY SHARE OF t, w)
INSERT INTO debounce_windows (trigger_id, key, execution_id, opened_at, due_at)
SELECT p.id, $3, $4, '-infinity', '-infinity' FROM p
ON CONFLICT (trigger_id, key) DO UPDATE SET due_at = debounce_windows.due_at
RETURNING execution_id::text, opened_at, clock_timestamp() AS now
"""

_CONTEXT = """jsonb_build_object('trigger', jsonb_build_object(
    'type', 'webhook', 'name', $2::text,
    'request', jsonb_build_object('method', $3::text, 'path', $4::text,
                                  'headers', $5::text::jsonb, 'query', $6::text::jsonb)))"""

_INSERT_RUN = f"""
INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
    trigger_name, trigger_type, dedupe_key, dedupe_expires_at, input, context, not_before,
    concurrency_key, concurrency_limit, tenant_id, agent_id, session_id, conversation_id,
    correlation)
VALUES ($1, $7, $8, $9, $2, 'webhook', $10,
        CASE WHEN $11::bigint IS NULL THEN NULL
             ELSE now() + $11::bigint * interval '1 millisecond' END,
        $12::text::jsonb, {_CONTEXT}, $13, $14, $15,
        (SELECT t.tenant_id FROM workflow_triggers t WHERE t.id = $9), $16, $17, $18, $19)
ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
RETURNING id
"""

# Folds the request into the window's run if that has not started: a claim that got there
# first makes this wait and then find the row no longer NEW (nothing updated). A run
# started and handed back (a graceful stop) is NEW again but has begun on its input:
# only a run never claimed (attempt 0; every claim counts one) takes the request. The run's
# concurrency key is the latest request's too, as its input is: the run does what that
# request asks, so it waits for (and counts against) that request's key. And its version:
# the latest request was checked against the schema of the version it met (an apply in
# between left the run on the old graph with input the old schema never saw).
_FOLD_RUN = f"""
UPDATE workflow_executions SET input = $7::text::jsonb, context = {_CONTEXT}, not_before = $8,
    agent_id = $9, session_id = $10, conversation_id = $11, correlation = $12,
    concurrency_key = $13, concurrency_limit = $14, workflow_version_id = $15
WHERE id = $1 AND status = 'NEW' AND attempt = 0
RETURNING id
"""

_INSERT_REQUEST = """
INSERT INTO webhook_requests (id, trigger_id, method, path, query, headers, body,
    remote_addr, received_at, execution_id, outcome)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9, $10, $11)
"""

_WINDOW = """
UPDATE debounce_windows SET execution_id = $3, opened_at = $4, due_at = $5
WHERE trigger_id = $1 AND key = $2
"""

# A folded request: the window's new due time and the request row, in one statement. The
# row keeps the request's delivery id (migration 0031), so its redelivery is a duplicate.
_FOLDED = """
WITH w AS (UPDATE debounce_windows SET due_at = $12 WHERE trigger_id = $2 AND key = $13)
INSERT INTO webhook_requests (id, trigger_id, method, path, query, headers, body,
    remote_addr, received_at, execution_id, outcome, dedupe_key, dedupe_expires_at)
VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7, $8, $9, $10, $11, $14,
        CASE WHEN $15::bigint IS NULL THEN NULL
             ELSE now() + $15::bigint * interval '1 millisecond' END)
"""

# The run a delivery id already went to: its own run's, or the one a request of that id
# was folded into (while the id has not expired). A filtered request's id is not one: the
# request this path stores passed the filter, and a delivery that never ran runs.
_DELIVERED = """
SELECT id::text FROM workflow_executions WHERE trigger_id = $1 AND dedupe_key = $2
   AND (dedupe_expires_at IS NULL OR dedupe_expires_at > now())
UNION ALL
(SELECT execution_id::text FROM webhook_requests
  WHERE trigger_id = $1 AND dedupe_key = $2 AND execution_id IS NOT NULL
    AND (dedupe_expires_at IS NULL OR dedupe_expires_at > now())
  ORDER BY received_at)
LIMIT 1
"""


async def store_keyed_request(
    pool: asyncpg.Pool,
    item: InboxItem,
    *,
    debounce: DebounceKey | None,
    concurrency: ConcurrencyKey | None,
    now: datetime | None = None,
) -> KeyedResult:
    """Store one request of a trigger with a debounce or concurrency key, with its run
    (new, or the pending one it folds into), in one transaction. ``now`` is the
    database's clock unless given (tests pass a fake one)."""
    with db.translated("storing a webhook request"):
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn, conn.transaction():
                return await _store(conn, item, debounce, concurrency, now)
        except _Duplicate as duplicate:
            if duplicate.winner is None:
                return KeyedResult(result=GONE)  # the winner was deleted meanwhile: retry
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                await conn.execute(_BUMP_FIRST_DELIVERY, item.trigger_id, item.dedupe_key,
                                   duplicate.winner)
            return KeyedResult(
                result=InboxResult(execution_id=duplicate.winner, created=False)
            )


async def _store(
    conn: Any,
    item: InboxItem,
    debounce: DebounceKey | None,
    concurrency: ConcurrencyKey | None,
    now: datetime | None,
) -> KeyedResult:
    headers, query = _json_text(item.headers), _json_text(item.query)
    context_args = (item.trigger_name, item.method, item.path, headers, query)
    # The run's correlation ids: a folded request's replace the window's, as its input does.
    correlation_args = tuple(column[0] for column in correlation_arrays([item.correlation]))
    concurrency_args = (None, None) if concurrency is None else (concurrency.key,
                                                                  concurrency.limit)
    not_before: datetime | None = None
    if item.filtering and item.dedupe_key is not None:
        # A filtered delivery of this id stored meanwhile by the group commit (another
        # writer, another replica) waits for this transaction, and then finds its run
        # (webhooks.delivery_locks). First, before any row lock, as there.
        await conn.execute(key_locks.LOCK_KEYS,
                           [key_locks.delivery_lock(item.trigger_id, item.dedupe_key)])
    if debounce is None:
        if await conn.fetchval(_PARENTS, item.trigger_id, item.workflow_id) is None:
            return KeyedResult(result=GONE)
        if item.dedupe_key is not None:
            # A request of this id folded into a window while the trigger had a debounce:
            # the run's insert below would not see it.
            delivered = await conn.fetchval(_DELIVERED, item.trigger_id, item.dedupe_key)
            if delivered is not None:
                raise _Duplicate(delivered)
    else:
        row = await conn.fetchrow(
            _OPEN_WINDOW, item.trigger_id, item.workflow_id, debounce.key, item.id
        )
        if row is None:
            return KeyedResult(result=GONE)
        if item.dedupe_key is not None:
            # Under the window's lock: a request of this id folded before has committed.
            delivered = await conn.fetchval(_DELIVERED, item.trigger_id, item.dedupe_key)
            if delivered is not None:
                raise _Duplicate(delivered)
        at = now or row["now"]
        # The placeholder of a window opened just now has no run to fold into.
        window = (
            None
            if row["execution_id"] == item.id
            else Window(execution_id=row["execution_id"], opened_at=row["opened_at"],
                        pending=True)
        )
        plan = plan_window(window, at, debounce.period, debounce.max_wait)
        if window is not None and await conn.fetchval(
            _FOLD_RUN, window.execution_id, *context_args, item.input_json, plan.due_at,
            *correlation_args, *concurrency_args, item.version_id,
        ):
            await conn.execute(
                _FOLDED, item.id, item.trigger_id, item.method, item.path, query, headers,
                item.body, item.remote_addr, item.received_at, window.execution_id,
                "debounced", plan.due_at, debounce.key, item.dedupe_key,
                None if item.dedupe_ttl is None or item.dedupe_key is None
                else int(item.dedupe_ttl.total_seconds() * 1000),
            )
            return KeyedResult(
                result=InboxResult(execution_id=window.execution_id, created=False),
                debounced=True,
            )
        # No window yet, or its run started (or is gone): this request opens a new one.
        plan = plan_window(None, at, debounce.period, debounce.max_wait)
        not_before = plan.due_at
        await conn.execute(
            _WINDOW, item.trigger_id, debounce.key, item.id, plan.opened_at, plan.due_at
        )
    run_args = (
        item.id, *context_args, item.workflow_id, item.version_id,
        item.trigger_id, item.dedupe_key,
        None if item.dedupe_ttl is None else int(item.dedupe_ttl.total_seconds() * 1000),
        item.input_json, not_before, *concurrency_args, *correlation_args,
    )
    inserted = await conn.fetchval(_INSERT_RUN, *run_args)
    if inserted is None and await conn.fetchval(_RELEASE_EXPIRED, item.trigger_id,
                                                item.dedupe_key) is not None:
        inserted = await conn.fetchval(_INSERT_RUN, *run_args)
    if inserted is None:
        # A duplicate delivery: the first one's run; nothing else of this request stays
        # (the transaction's window change is rolled back with it).
        winner = await conn.fetchval(
            "SELECT id::text FROM workflow_executions WHERE trigger_id = $1"
            " AND dedupe_key = $2",
            item.trigger_id, item.dedupe_key,
        )
        raise _Duplicate(winner)
    await _insert_request(conn, item, headers, query, item.id, "accepted")
    await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire, HELD)
    return KeyedResult(result=InboxResult(execution_id=item.id, created=True))


# A run whose delivery id is past its ttl gives the id up (as the retention pass would,
# later): the delivery that met it is a new one.
_RELEASE_EXPIRED = """
UPDATE workflow_executions SET dedupe_key = NULL, dedupe_expires_at = NULL
WHERE trigger_id = $1 AND dedupe_key = $2 AND dedupe_expires_at <= now()
RETURNING id
"""

# A duplicate delivery adds no row: its first delivery's row counts it (the request row of
# the run it started, or of the request folded under that id), as for plain triggers.
_BUMP_FIRST_DELIVERY = """
UPDATE webhook_requests SET delivery_count = delivery_count + 1, last_seen_at = now()
WHERE id = (SELECT r.id FROM webhook_requests r
             -- A folded request of the id (its row names the run), or the run's own;
             -- not a filtered one (no run), which a later delivery of the id ran past.
             WHERE r.trigger_id = $1
               AND (r.dedupe_key = $2 AND r.execution_id = $3::uuid OR r.id = $3::uuid)
             ORDER BY r.dedupe_key IS NOT DISTINCT FROM $2 DESC, r.received_at
             LIMIT 1)
"""


class _Duplicate(Exception):
    """``winner``: the first delivery's run; ``None`` when it is gone again."""

    def __init__(self, winner: str | None) -> None:
        super().__init__(winner)
        self.winner = winner


async def _insert_request(
    conn: Any, item: InboxItem, headers: str, query: str, execution_id: str, outcome: str
) -> None:
    await conn.execute(
        _INSERT_REQUEST, item.id, item.trigger_id, item.method, item.path, query, headers,
        item.body, item.remote_addr, item.received_at, execution_id, outcome,
    )


# --- the executor's claim of held runs -------------------------------------------------

# Runs due (no not_before, or past it); of each (trigger, key) only the oldest `limit`
# can start, so one busy key cannot fill the batch and hold back the others. The tenants
# take turns, as in the claim of plain runs (a tenant's k-th oldest startable run has turn
# k / its share): oldest first across tenants let one tenant's flood of keyed requests
# hold back every other tenant's debounced, keyed and buffered runs until it had all
# started. The last row carries how long until the next pending run is due (NULL: none).
_CANDIDATES = """
WITH due AS (
    SELECT id, trigger_id, tenant_id, concurrency_key, concurrency_limit, created_at,
           -- Slots written by one statement share created_at: theirs decides (a
           -- buffer_one catch-up's second slot waits for its first).
           row_number() OVER (PARTITION BY trigger_id, concurrency_key
                              ORDER BY created_at, scheduled_for, id) AS place
      FROM workflow_executions
     WHERE status = 'NEW' AND (not_before IS NOT NULL OR concurrency_key IS NOT NULL)
       AND (not_before IS NULL OR not_before <= now())),
startable AS (
    SELECT id, trigger_id, concurrency_key, created_at,
           row_number() OVER (PARTITION BY tenant_id ORDER BY created_at, id)::float8
           / coalesce((SELECT s.share FROM unnest($2::text[], $3::int[]) AS s (tenant, share)
                       WHERE s.tenant = due.tenant_id), 1) AS turn
      FROM due
     WHERE concurrency_key IS NULL OR place <= concurrency_limit),
ready AS (
    SELECT id, trigger_id, concurrency_key FROM startable
     ORDER BY turn, created_at LIMIT $1)
SELECT id::text, trigger_id::text, concurrency_key, NULL::float8 AS next_in FROM ready
UNION ALL
SELECT NULL, NULL, NULL, EXTRACT(EPOCH FROM min(not_before) - now())::float8
  FROM workflow_executions
 WHERE status = 'NEW' AND not_before IS NOT NULL AND not_before > now()
"""

# Started under the advisory locks of every key involved, as its own statement: its
# snapshot sees every claim of these keys that committed before the locks were granted.
# Times are the statement's, not the transaction's (now()): the transaction began before
# the lock wait, and a run's start must not read earlier than the end of the run whose
# place it takes.
_CLAIM_HELD = f"""
WITH cand AS (
    -- Only while the run's key is still the one whose lock was taken: a request folded
    -- into a debounced run meanwhile may have moved it to another key.
    SELECT e.id, e.trigger_id, e.concurrency_key, e.concurrency_limit, e.created_at
      FROM workflow_executions e JOIN unnest($3::uuid[], $4::text[]) AS w(id, key)
        ON w.id = e.id
     WHERE e.status = 'NEW' AND e.concurrency_key IS NOT DISTINCT FROM w.key
       AND (e.not_before IS NULL OR e.not_before <= now())
     FOR UPDATE OF e SKIP LOCKED),
busy AS (
    SELECT e.trigger_id, e.concurrency_key, count(*) AS n FROM workflow_executions e
     WHERE e.concurrency_key IS NOT NULL AND e.status IN ('RUNNING', 'WAITING')
       AND e.concurrency_key <> '{OVERLAP_KEY}'
       AND (e.trigger_id, e.concurrency_key) IN
           (SELECT trigger_id, concurrency_key FROM cand WHERE concurrency_key IS NOT NULL)
     GROUP BY 1, 2
    UNION ALL
    -- A buffer_one schedule's run waits for every run of its trigger (a manual fire, a
    -- retry), as the overlap policy counted them when it buffered the run.
    SELECT e.trigger_id, '{OVERLAP_KEY}', count(*) FROM workflow_executions e
     WHERE e.status IN ('RUNNING', 'WAITING')
       AND e.trigger_id IN (SELECT trigger_id FROM cand WHERE concurrency_key = '{OVERLAP_KEY}')
     GROUP BY 1),
placed AS (
    SELECT c.id, c.concurrency_key, c.concurrency_limit, COALESCE(b.n, 0)
           + row_number() OVER (PARTITION BY c.trigger_id, c.concurrency_key
                                ORDER BY c.created_at, c.id) AS place
      FROM cand c LEFT JOIN busy b
        ON b.trigger_id = c.trigger_id AND b.concurrency_key = c.concurrency_key)
UPDATE workflow_executions e
   SET status = 'RUNNING', lease_owner = $1, resume_at = NULL,
       lease_expires_at = statement_timestamp() + $2 * interval '1 millisecond',
       attempt = e.attempt + 1, start_time = COALESCE(e.start_time, statement_timestamp()),
       {taking_up("statement_timestamp()")}
 WHERE e.id = ANY(ARRAY(SELECT id FROM placed
                       WHERE concurrency_key IS NULL OR place <= concurrency_limit))
RETURNING {CLAIM_RETURNING}
"""


def key_lock(trigger_id: str, key: str) -> int:
    """The advisory lock id of one (trigger, concurrency key)."""
    return key_locks.key_lock("concurrency", trigger_id, key)


@dataclass(frozen=True, kw_only=True)
class HeldClaim:
    claimed: list[ClaimedExecution]
    next_in: float | None  # seconds until the next pending run is due; None: none pending


async def claim_held(conn: Any, owner: str, lease: timedelta, limit: int,
                     shares: Mapping[str, int] | None = None) -> HeldClaim:
    """Claim up to ``limit`` held runs that may start now, oldest first per key, in fair
    turns between tenants (``shares``: tenants' weights other than 1, as
    :func:`~triggerd.store.executions.claim_executions` takes them)."""
    shares = shares or {}
    rows = await conn.fetch(_CANDIDATES, limit, list(shares), list(shares.values()))
    next_in: float | None = rows[-1]["next_in"] if rows else None
    candidates = [r for r in rows if r["id"] is not None]
    if not candidates:
        return HeldClaim(claimed=[], next_in=next_in)
    locks = key_locks.lock_order(
        key_lock(r["trigger_id"], r["concurrency_key"])
        for r in candidates if r["concurrency_key"] is not None
    )
    ms = int(lease.total_seconds() * 1000)
    ids = [r["id"] for r in candidates]
    keys = [r["concurrency_key"] for r in candidates]
    async with conn.transaction():
        if locks:
            await conn.execute(key_locks.LOCK_KEYS, locks)
        claimed = await conn.fetch(_CLAIM_HELD, owner, ms, ids, keys)
    return HeldClaim(claimed=[claimed_execution(r) for r in claimed], next_in=next_in)


# --- retention ---------------------------------------------------------------------------

# A window whose run started long ago is closed for good: the next request of its key
# opens a new one either way. (A request folding into it holds its row lock; the due time
# it sets keeps the row.)
_DROP_CLOSED = """
DELETE FROM debounce_windows WHERE (trigger_id, key) IN (
    SELECT w.trigger_id, w.key FROM debounce_windows w
     WHERE w.due_at < now() - interval '1 hour'
       AND NOT EXISTS (SELECT 1 FROM workflow_executions e
                        WHERE e.id = w.execution_id AND e.status = 'NEW')
     LIMIT $1)
  AND due_at < now() - interval '1 hour'
"""


async def drop_closed_windows(conn: Any, batch: int = 1000) -> int:
    """Delete up to ``batch`` closed debounce windows; returns how many."""
    result: str = await conn.execute(_DROP_CLOSED, batch)
    return int(result.split()[-1])
