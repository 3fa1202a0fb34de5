"""Webhook ingress SQL: the route table's source rows, the durable inbox (an execution and
its ``webhook_requests`` row written by one statement), the backpressure count, the
finished-run poll of ``sync`` mode and the status page.

Every function translates "the database cannot be reached" into
:class:`~triggerd.errors.DatabaseUnavailable`, so the HTTP layer never imports asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import asyncpg
import orjson

from triggerd import db
from triggerd.db import is_unavailable as db_is_unavailable
from triggerd.errors import DatabaseUnavailable
from triggerd.model import DEFAULT_TENANT, JSON, Correlation, tenant_label
from triggerd.notifications.channels import EXECUTIONS
from triggerd.store import key_locks
from triggerd.store.executions import ClaimedExecution, correlation_arrays
from triggerd.store.notifications import send_hints

# How long a request waits for a pool connection before it is answered 503: a saturated
# or unreachable database must not turn into hung webhook senders.
ACQUIRE_TIMEOUT = 2.0
# The store statement's client-side limit: a server that does not answer (frozen, cut off)
# cannot enforce its own statement_timeout.
STORE_TIMEOUT = 30.0


class StoreInDoubt(DatabaseUnavailable):
    """The store statement was sent and no answer came (a timeout, a connection lost
    meanwhile): the requests may or may not have been stored."""

# One classification for the whole program (triggerd.db).
def is_unavailable(exc: BaseException) -> bool:
    return db_is_unavailable(exc)




# --- route table source ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WebhookTriggerRow:
    """An enabled webhook trigger with the version its runs use (pinned or latest)."""

    trigger_id: str
    workflow_id: str
    workflow_key: str
    trigger_name: str
    config: dict[str, JSON]
    input: dict[str, JSON]
    version: int | None  # None: the workflow has no published (or no such pinned) version
    version_id: str | None
    parameter_schema: dict[str, JSON] | None
    tenant_id: str = DEFAULT_TENANT

    @property
    def full_name(self) -> str:
        return f"{tenant_label(self.tenant_id, self.workflow_key)}/{self.trigger_name}"


_ROUTE_ROWS = """
SELECT t.id, t.workflow_id, w.key AS workflow_key, t.name, t.config, t.input,
       v.version, v.id::text AS version_id, v.parameter_schema, t.tenant_id
FROM workflow_triggers t
JOIN workflows w ON w.id = t.workflow_id
LEFT JOIN workflow_versions v
       ON v.workflow_id = t.workflow_id
      AND CASE WHEN t.version IS NULL THEN v.is_latest ELSE v.version = t.version END
WHERE t.enabled AND t.type = 'webhook' AND w.status = 'active'
ORDER BY w.key, t.name
"""


async def load_webhook_triggers(pool: asyncpg.Pool) -> list[WebhookTriggerRow]:
    with db.translated("loading webhook triggers"):
        rows = await pool.fetch(_ROUTE_ROWS, timeout=10.0)
    return [
        WebhookTriggerRow(
            trigger_id=str(r["id"]),
            workflow_id=str(r["workflow_id"]),
            workflow_key=r["workflow_key"],
            trigger_name=r["name"],
            config=r["config"],
            input=r["input"],
            version=r["version"],
            version_id=r["version_id"],
            parameter_schema=r["parameter_schema"],
            tenant_id=r["tenant_id"],
        )
        for r in rows
    ]


# --- the durable inbox -----------------------------------------------------------------


class InboxItem(NamedTuple):
    """One accepted request: its execution and the request kept with it. The execution's
    ``context`` (``{"trigger": {"type", "name", "request": {method, path, headers,
    query}}}``) is assembled by the statement from the request columns, so the headers
    are sent once. (A NamedTuple rather than a frozen dataclass: one is built per request
    on the hot path, and a frozen dataclass's ``__init__`` costs several times more.)"""

    id: str  # the execution's id; its webhook_requests row gets the same id
    workflow_id: str
    version_id: str  # the version whose parameter_schema validated the input
    trigger_id: str
    trigger_name: str
    dedupe_key: str | None
    dedupe_ttl: timedelta | None
    input_json: str  # the run input as JSON text
    method: str
    path: str
    query: dict[str, JSON]
    headers: dict[str, JSON]  # auth material already removed
    body: bytes
    remote_addr: str | None
    received_at: datetime
    # "filtered": only the request row is written (no execution); detail says why when
    # the filter raised.
    outcome: str = "accepted"
    detail: str | None = None
    correlation: Correlation | None = None  # what the trigger's `correlation` mapped
    # The trigger has a filter: a later delivery of this id may be filtered, so an
    # accepted request's delivery id is locked too (delivery_locks).
    filtering: bool = False


class InboxResult(NamedTuple):
    # The run; "" for a filtered request, and for a duplicate of one (it started none).
    execution_id: str
    created: bool  # False: a duplicate delivery; execution_id is the first one's
    # True: nothing was stored because the trigger (or its workflow) was deleted while the
    # request was in flight; execution_id is empty.
    gone: bool = False
    # True: the run was stored RUNNING for this process's executor (RunsHere), not queued.
    here: bool = False


class RunsHere(Protocol):
    """The executor of the process that stores a batch, which runs what it stores while it
    has room and no queue to serve first: those runs are written as its claim would leave
    them (``RUNNING`` under its lease) and handed to it after the commit, so they cost no
    claim, no second row version and no wake-up. A process that dies before it runs them
    leaves them to the lease's end, as a claimed run (triggerd/executor/service.py)."""

    @property
    def owner(self) -> str: ...

    @property
    def lease(self) -> timedelta: ...

    def take_slots(self, wanted: int) -> int:
        """Reserve up to ``wanted`` runs' room; returns how many (0: queue them)."""
        ...

    def adopt(self, runs: Sequence[ClaimedExecution], granted: int) -> None:
        """Start the runs stored for it, and give back the rest of the ``granted`` room
        (called once per :meth:`take_slots` that granted any, whatever the store did)."""
        ...


GONE = InboxResult(execution_id="", created=False, gone=True)


# One statement (so one implicit transaction and one round trip) writes every execution of
# the batch and, for exactly the executions that were inserted, their request rows; a
# duplicate dedupe key inserts neither, and neither does a request whose trigger was
# deleted meanwhile (``gone``). Executors are woken once per batch, after the commit
# (store/notifications.py says why not inside it).
# A request row shares its execution's id (exactly one request is stored per execution), so
# time-ordered execution ids keep both primary keys' inserts local.
_STORE_BATCH = """
WITH d AS (
    SELECT r.id, r.workflow_id, r.version_id, r.trigger_id, r.trigger_name, r.dedupe_key,
           r.ttl_ms, r.input, r.method, r.path, r.query::jsonb AS query,
           r.headers::jsonb AS headers, r.body, r.remote_addr, r.received_at
    FROM unnest($1::webhook_inbox_row[]) AS r
), parents AS (
    -- What foreign keys would do, once per batch (migration 0002): a concurrent delete of
    -- the trigger or its workflow waits for this statement, or wins and nothing is written.
    SELECT t.id, t.workflow_id, t.tenant_id FROM workflow_triggers t
    JOIN workflows w ON w.id = t.workflow_id
    WHERE t.id IN (SELECT DISTINCT d.trigger_id FROM d)
    FOR KEY SHARE OF t, w
), earlier AS MATERIALIZED (
    -- Inbox rows that recorded one of the batch's delivery ids (a request folded into a
    -- debounce window, or filtered; migration 0031). Only the requests that carry a
    -- delivery id are in these arrays, and one scan of the partial index finds them all
    -- (arrays rather than a join: with a join, the planner may take the trigger's index
    -- and read every request of the trigger).
    SELECT r.id, r.trigger_id, r.dedupe_key, r.execution_id, r.received_at
    FROM webhook_requests r
    WHERE r.trigger_id = ANY($10::uuid[]) AND r.dedupe_key = ANY($11::text[])
      AND r.dedupe_key IS NOT NULL
      AND (r.dedupe_expires_at IS NULL OR r.dedupe_expires_at > now())
), seen AS (
    -- A redelivery is a duplicate of a request that went to a run (folded into a window),
    -- whatever the trigger's settings are now. Of a filtered request only while the filter
    -- still refuses it ($2: the filtered requests): a delivery that never ran runs once
    -- the filter matches it (an operator fixed the filter and the sender redelivers).
    SELECT DISTINCT ON (k.id) k.id, r.id AS first_id, r.execution_id
    FROM unnest($9::uuid[], $10::uuid[], $11::text[]) AS k(id, trigger_id, dedupe_key)
    JOIN earlier r ON r.trigger_id = k.trigger_id AND r.dedupe_key = k.dedupe_key
                  AND (r.execution_id IS NOT NULL OR k.id = ANY($2::uuid[]))
    ORDER BY k.id, r.execution_id IS NULL, r.received_at
), ran AS (
    -- A filtered request's delivery id that already started a run (the insert below
    -- finds those of the others by its conflict); $12: the filtered requests' ids.
    SELECT DISTINCT ON (d.id) d.id, e.id AS first_id, e.id AS execution_id
    FROM (SELECT e.id, e.trigger_id, e.dedupe_key FROM workflow_executions e
          WHERE e.trigger_id = ANY($10::uuid[]) AND e.dedupe_key = ANY($12::text[])
            AND e.dedupe_key IS NOT NULL
            AND (e.dedupe_expires_at IS NULL OR e.dedupe_expires_at > now())) AS e
    JOIN d ON d.trigger_id = e.trigger_id AND d.dedupe_key = e.dedupe_key
    WHERE d.id = ANY($2::uuid[])
    ORDER BY d.id
), ins AS (
    INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
        trigger_name, trigger_type, dedupe_key, dedupe_expires_at, input, context,
        tenant_id, agent_id, session_id, conversation_id, correlation,
        status, lease_owner, lease_expires_at, attempt, start_time, worked_at)
    SELECT d.id, d.workflow_id, d.version_id, d.trigger_id, d.trigger_name, 'webhook',
           d.dedupe_key,
           CASE WHEN d.ttl_ms IS NULL THEN NULL
                ELSE now() + d.ttl_ms * interval '1 millisecond' END,
           d.input::jsonb,
           jsonb_build_object('trigger', jsonb_build_object(
               'type', 'webhook', 'name', d.trigger_name,
               'request', jsonb_build_object('method', d.method, 'path', d.path,
                                             'headers', d.headers, 'query', d.query))),
           p.tenant_id, c.agent_id, c.session_id, c.conversation_id, c.correlation,
           -- Run here ($13, see RunsHere): stored as this process's executor's claim
           -- would leave it, so no claim, no second row version and no wake-up is needed.
           CASE WHEN h.id IS NULL THEN 'NEW' ELSE 'RUNNING' END,
           CASE WHEN h.id IS NOT NULL THEN $14::text END,
           -- From now, not from the statement's start (which may have waited for locks).
           CASE WHEN h.id IS NOT NULL
                THEN clock_timestamp() + $15::int * interval '1 millisecond' END,
           CASE WHEN h.id IS NULL THEN 0 ELSE 1 END,
           CASE WHEN h.id IS NOT NULL THEN now() END,
           -- Worked on from its start (migration 0040), as a claim records: without it a
           -- process dying before its first heartbeat left the run no idle time to credit.
           CASE WHEN h.id IS NOT NULL THEN now() END
    FROM d JOIN parents p ON p.id = d.trigger_id AND p.workflow_id = d.workflow_id
    -- Only requests whose trigger maps correlation ids are in these arrays (usually none).
    LEFT JOIN unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
        AS c (id, agent_id, session_id, conversation_id, correlation) ON c.id = d.id
    LEFT JOIN unnest($13::uuid[]) AS h (id) ON h.id = d.id
    WHERE d.id <> ALL($2::uuid[]) AND NOT EXISTS (SELECT 1 FROM seen WHERE seen.id = d.id)
    ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id, status, input, context, created_at, tenant_id, correlation
), ran_here AS (
    -- A filtered request received after an accepted one of its delivery id that this
    -- statement started a run for: arriving one after the other, it would be that run's
    -- redelivery (`ran`), but `ran` cannot see this statement's run. (Received before
    -- every accepted one, it is stored as filtered and the accepted one still runs, as
    -- in that order.) Concurrent statements are ordered by the ids' locks (_store_batch).
    SELECT DISTINCT ON (f.id) f.id, i.id AS first_id, i.id AS execution_id
    FROM d f
    JOIN d i ON i.trigger_id = f.trigger_id AND i.dedupe_key = f.dedupe_key
    JOIN ins ON ins.id = i.id
    WHERE f.id = ANY($2::uuid[])
      AND EXISTS (SELECT 1 FROM d a
                   WHERE a.trigger_id = f.trigger_id AND a.dedupe_key = f.dedupe_key
                     AND a.id <> ALL($2::uuid[])
                     AND (a.received_at, a.id) < (f.received_at, f.id))
    ORDER BY f.id
), dup AS (
    -- A run the delivery went to comes first: a filtered row of its id (no run) is the
    -- answer only when no delivery of the id ran.
    SELECT seen.id, seen.first_id, seen.execution_id FROM seen
     WHERE seen.execution_id IS NOT NULL
        OR NOT EXISTS (SELECT 1 FROM ran WHERE ran.id = seen.id)
           AND NOT EXISTS (SELECT 1 FROM ran_here WHERE ran_here.id = seen.id)
    UNION ALL
    SELECT r.id, r.first_id, r.execution_id FROM (TABLE ran UNION ALL TABLE ran_here) AS r
     WHERE NOT EXISTS (SELECT 1 FROM seen WHERE seen.id = r.id
                                             AND seen.execution_id IS NOT NULL)
), bump AS (
    -- A duplicate adds no row: its first delivery's row counts it (`req` counts those of
    -- `ran_here`, whose row this statement writes).
    UPDATE webhook_requests r
       SET delivery_count = r.delivery_count + b.n, last_seen_at = now()
      FROM (SELECT first_id, count(*) AS n FROM dup GROUP BY first_id) AS b
     WHERE r.id = b.first_id
), twins AS (
    -- Filtered requests of one delivery id in this batch that no earlier row answers:
    -- the earliest received is stored and counts the others, its duplicates (`earlier`
    -- cannot see this statement's rows, and the inbox's index of delivery ids is not
    -- unique). Concurrent statements are ordered by the ids' advisory locks (_store_batch).
    SELECT d.id, first_value(d.id) OVER w AS first_id, row_number() OVER w AS place,
           count(*) OVER (PARTITION BY d.trigger_id, d.dedupe_key) AS n
    FROM d
    WHERE d.id = ANY($2::uuid[]) AND d.dedupe_key IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM dup WHERE dup.id = d.id)
    WINDOW w AS (PARTITION BY d.trigger_id, d.dedupe_key ORDER BY d.received_at, d.id)
), req AS (
    INSERT INTO webhook_requests (id, trigger_id, method, path, query, headers, body,
        remote_addr, received_at, execution_id, delivery_count, last_seen_at)
    SELECT d.id, d.trigger_id, d.method, d.path, d.query, d.headers, d.body, d.remote_addr,
           d.received_at, d.id, 1 + coalesce(h.n, 0), CASE WHEN h.n > 0 THEN now() END
    FROM d JOIN ins ON ins.id = d.id
    LEFT JOIN (SELECT first_id, count(*) AS n FROM ran_here GROUP BY first_id) AS h
        ON h.first_id = d.id
), filtered AS (
    -- Requests the trigger's filter did not match: kept in the inbox, no run, with their
    -- delivery id (a redelivery is a duplicate of them).
    INSERT INTO webhook_requests (id, trigger_id, method, path, query, headers, body,
        remote_addr, received_at, execution_id, outcome, detail, dedupe_key,
        dedupe_expires_at, delivery_count, last_seen_at)
    SELECT d.id, d.trigger_id, d.method, d.path, d.query, d.headers, d.body, d.remote_addr,
           d.received_at, NULL, 'filtered', f.detail, d.dedupe_key,
           CASE WHEN d.ttl_ms IS NULL OR d.dedupe_key IS NULL THEN NULL
                ELSE now() + d.ttl_ms * interval '1 millisecond' END,
           coalesce(t.n, 1), CASE WHEN t.n > 1 THEN now() END
    FROM d JOIN unnest($2::uuid[], $3::text[]) AS f(id, detail) ON f.id = d.id
    JOIN parents p ON p.id = d.trigger_id AND p.workflow_id = d.workflow_id
    LEFT JOIN twins t ON t.id = d.id
    WHERE NOT EXISTS (SELECT 1 FROM dup WHERE dup.id = d.id)
      AND (t.place IS NULL OR t.place = 1)
)
SELECT array_agg(ins.id::text) AS ids,
       -- The runs stored RUNNING for this process's executor, as its claim returns them
       -- (one aggregation: the arrays are in the same order).
       array_agg(ins.id::text) FILTER (WHERE ins.status = 'RUNNING') AS here,
       array_agg(ins.input) FILTER (WHERE ins.status = 'RUNNING') AS here_input,
       array_agg(ins.context) FILTER (WHERE ins.status = 'RUNNING') AS here_context,
       array_agg(ins.tenant_id) FILTER (WHERE ins.status = 'RUNNING') AS here_tenant,
       array_agg(ins.correlation) FILTER (WHERE ins.status = 'RUNNING') AS here_correlation,
       min(ins.created_at) AS stored_at,
       (SELECT array_agg(x.id::text || ' ' || coalesce(x.execution_id::text, ''))
          FROM (SELECT dup.id, dup.execution_id FROM dup
                UNION ALL
                SELECT twins.id, NULL FROM twins WHERE twins.place > 1) AS x) AS dups,
       (SELECT array_agg(DISTINCT d.trigger_id::text) FROM d
         WHERE NOT EXISTS (SELECT 1 FROM parents p
                           WHERE p.id = d.trigger_id AND p.workflow_id = d.workflow_id))
           AS gone
FROM ins
"""

# The winners of lost dedupe keys; each winner's request row counts the redeliveries it
# absorbed (a duplicate adds no row of its own). A winner whose key is past its `ttl` is no
# winner: its key is released here (as the retention pass would, later) and the request is
# stored again as a new delivery; until then redeliveries were duplicates past the ttl.
_FIND_WINNERS = """
WITH k AS (
    SELECT trigger_id, dedupe_key, count(*) AS n
    FROM unnest($1::uuid[], $2::text[]) AS k(trigger_id, dedupe_key)
    GROUP BY trigger_id, dedupe_key
), expired AS (
    UPDATE workflow_executions e SET dedupe_key = NULL, dedupe_expires_at = NULL
      FROM k WHERE e.trigger_id = k.trigger_id AND e.dedupe_key = k.dedupe_key
       AND e.dedupe_expires_at <= now()
), w AS (
    SELECT e.trigger_id, e.dedupe_key, e.id, k.n
    FROM workflow_executions e
    JOIN k ON e.trigger_id = k.trigger_id AND e.dedupe_key = k.dedupe_key
    WHERE e.dedupe_expires_at IS NULL OR e.dedupe_expires_at > now()
), bump AS (
    UPDATE webhook_requests r
       SET delivery_count = r.delivery_count + w.n, last_seen_at = now()
      FROM w WHERE r.id = w.id
)
SELECT w.trigger_id::text AS trigger_id, w.dedupe_key, w.id::text AS id FROM w
"""


def _json_text(value: dict[str, JSON]) -> str:
    """JSON text of a request's headers or query: orjson writes it about ten times faster
    than the standard library. Their strings were made storable (no surrogates, no NUL),
    so the fallback is for safety only."""
    if not value:
        return "{}"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def _batch_arguments(items: Sequence[InboxItem]) -> list[Any]:
    """One ``webhook_inbox_row`` per item (migration 0003), and the filtered, correlated
    and delivery-id carrying ones' columns."""
    dumps = _json_text
    correlated = [i for i in items if i.correlation is not None]
    keyed = [i for i in items if i.dedupe_key is not None]
    return [
        [
            (i.id, i.workflow_id, i.version_id, i.trigger_id, i.trigger_name, i.dedupe_key,
             None if i.dedupe_ttl is None else int(i.dedupe_ttl.total_seconds() * 1000),
             i.input_json, i.method, i.path, dumps(i.query), dumps(i.headers), i.body,
             i.remote_addr, i.received_at)
            for i in items
        ],
        [i.id for i in items if i.outcome == "filtered"],
        [i.detail for i in items if i.outcome == "filtered"],
        [i.id for i in correlated],
        *correlation_arrays([i.correlation for i in correlated]),
        [i.id for i in keyed],
        [i.trigger_id for i in keyed],
        [i.dedupe_key for i in keyed],
        [i.dedupe_key for i in keyed if i.outcome == "filtered"],
    ]


class InboxWriter:
    """Stores batches on a connection it keeps between batches: a group-commit writer
    sends one statement after another, and returning the connection to the pool after each
    would add the pool's reset round trip to every batch. A connection that failed is
    given back (the pool discards a broken one) and a fresh one is taken next time."""

    def __init__(self, pool: asyncpg.Pool, runs_here: RunsHere | None = None) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._runs_here = runs_here

    async def store(self, items: Sequence[InboxItem]) -> list[InboxResult | None]:
        """Store a batch of requests with their executions; one result per item, in order.

        When this returns, every inserted row is committed. A duplicate dedupe key (within
        the batch or against earlier rows) yields the first execution's id (``""`` for a
        duplicate of a filtered request, whose first delivery's row counts it); a request whose
        trigger was deleted meanwhile yields :data:`GONE` (nothing stored). ``None`` means
        the item's key conflicted but its winner is gone again (deleted between the two
        statements): the caller retries it.
        """
        if not items:
            return []
        with db.translated("storing webhook requests"):
            if self._conn is not None and not _usable(self._conn):
                # Its server connection was lost (the server restarted): asyncpg gave it
                # back to the pool already. Using it failed before anything was sent, and
                # was answered "may or may not have been stored".
                self._conn = None
            if self._conn is None:
                self._conn = await self._pool.acquire(timeout=ACQUIRE_TIMEOUT)
            runs_here = self._runs_here
            here: list[str] = []
            if runs_here is not None:
                runs = [i.id for i in items if i.outcome == "accepted"]
                here = runs[:runs_here.take_slots(len(runs))] if runs else []
            # Filled as soon as the batch is committed, so that runs stored for this
            # process are handed over even when a later step of the batch fails.
            handed: list[ClaimedExecution] = []
            try:
                return await _store_batch(self._conn, items, here, runs_here, handed)
            except asyncpg.PostgresError as exc:
                if is_unavailable(exc):
                    await self.close()
                raise  # a refused statement leaves the connection usable
            except (OSError, TimeoutError, asyncpg.InterfaceError) as exc:
                # Sent, and no answer: it may have committed (a sender told "not stored"
                # would retry into a second run where no delivery id dedupes it).
                await self.close()
                raise StoreInDoubt(f"no answer from the database: {type(exc).__name__}"
                                   f" {exc}".strip()) from exc
            except BaseException:  # cancellation: start afresh
                await self.close()
                raise
            finally:
                if here:
                    # Also when the batch failed or is in doubt: its room is given back,
                    # and a run stored but not handed over is taken up when its lease ends.
                    assert runs_here is not None
                    runs_here.adopt(handed, len(here))

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(conn, timeout=2.0)


def _usable(conn: asyncpg.Connection) -> bool:
    """A held pool connection is still ours and open (a lost one is released by asyncpg
    itself, and every call on it then raises InterfaceError without sending anything)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


def delivery_locks(items: Sequence[InboxItem]) -> list[int]:
    """The advisory locks of the delivery ids of filtered requests and of accepted ones
    to triggers with a filter, in lock order. No unique index keeps two filtered rows of
    one id apart, and a filtered request's statement cannot see a run another one has not
    committed yet; so two statements storing the same id (two writers, two replicas) are
    ordered by its lock: the second one's snapshot, taken after the first committed, finds
    the first one's row or run and is its duplicate. Triggers without a filter store no
    filtered rows and take none (their runs' unique index orders them)."""
    return key_locks.lock_order(
        key_locks.delivery_lock(i.trigger_id, i.dedupe_key)
        for i in items
        if i.dedupe_key is not None and (i.outcome == "filtered" or i.filtering)
    )


async def _store_batch(
    conn: asyncpg.Connection, items: Sequence[InboxItem], here: Sequence[str] = (),
    runs_here: RunsHere | None = None, handed: list[ClaimedExecution] | None = None,
) -> list[InboxResult | None]:
    """The batch's results in order; the runs stored for ``runs_here`` (``here``: the
    ids it took room for) are added to ``handed``."""
    arguments = [
        *_batch_arguments(items), list(here),
        None if runs_here is None else runs_here.owner,
        0 if runs_here is None else int(runs_here.lease.total_seconds() * 1000),
    ]
    locks = delivery_locks(items)
    if locks:
        # A transaction of two statements, only for batches with such requests (delivery
        # ids to triggers with a filter; measured in the README's inbox section): the
        # statement must start after the locks are granted to see what their holder wrote.
        # One bound for all of it, its COMMIT included, as the lone statement's covers its
        # implicit one: past it the batch is in doubt (StoreInDoubt), as that one's is.
        async with asyncio.timeout(STORE_TIMEOUT), conn.transaction():
            await conn.execute(key_locks.LOCK_KEYS, locks)
            row = await conn.fetchrow(_STORE_BATCH, *arguments)
    else:
        row = await conn.fetchrow(_STORE_BATCH, *arguments, timeout=STORE_TIMEOUT)
    inserted: set[str] = set(row["ids"] or ()) if row is not None else set()
    gone: set[str] = set(row["gone"] or ()) if row is not None else set()
    # Redeliveries of a delivery id an earlier request recorded: its run ("" for none).
    earlier: dict[str, str] = {}
    for pair in (row["dups"] or ()) if row is not None else ():
        request_id, _, run = pair.partition(" ")
        earlier[request_id] = run
    taken = _handed(row, items) if row is not None and row["here"] else []
    if handed is not None:
        handed.extend(taken)
    queued = len(inserted) - len(taken)
    if queued:
        await send_hints(conn, EXECUTIONS.wire, [str(queued)])
    lost = [
        i for i in items
        if i.id not in inserted and i.dedupe_key is not None and i.trigger_id not in gone
        and i.outcome != "filtered" and i.id not in earlier
    ]
    winners: dict[tuple[str, str], str] = {}
    if lost:
        # Read after the insert committed: every conflicting row is visible now (ON
        # CONFLICT waited for any concurrent inserter to finish).
        rows = await conn.fetch(
            _FIND_WINNERS,
            [i.trigger_id for i in lost],
            [i.dedupe_key for i in lost],
            timeout=30.0,
        )
        winners = {(r["trigger_id"], r["dedupe_key"]): r["id"] for r in rows}
    results: list[InboxResult | None] = []
    handed_ids = {h.id for h in taken}
    for item in items:
        if item.id in inserted:
            results.append(InboxResult(execution_id=item.id, created=True,
                                       here=item.id in handed_ids))
            continue
        if item.trigger_id in gone:
            results.append(GONE)
            continue
        run = earlier.get(item.id)
        if run is not None:
            results.append(InboxResult(execution_id=run, created=False))
            continue
        if item.outcome == "filtered":
            # Stored (its parents were there), and no run: created means "a new row".
            results.append(InboxResult(execution_id="", created=True))
            continue
        winner = winners.get((item.trigger_id, str(item.dedupe_key)))
        results.append(
            None if winner is None else InboxResult(execution_id=winner, created=False)
        )
    return results


def _handed(row: Any, items: Sequence[InboxItem]) -> list[ClaimedExecution]:
    """The runs a batch stored RUNNING for this process, as a claim would return them."""
    by_id = {i.id: i for i in items}
    stored_at: datetime = row["stored_at"]
    handed: list[ClaimedExecution] = []
    for run_id, run_input, context, tenant, correlation in zip(
        row["here"], row["here_input"], row["here_context"], row["here_tenant"],
        row["here_correlation"], strict=True,
    ):
        item = by_id[run_id]
        handed.append(ClaimedExecution(
            id=run_id, workflow_id=item.workflow_id, workflow_version_id=item.version_id,
            trigger_id=item.trigger_id, trigger_name=item.trigger_name,
            trigger_type="webhook", input=run_input or {}, context=context or {},
            scheduled_for=None, created_at=stored_at, start_time=stored_at, attempt=1,
            cancel_requested=False, tenant_id=tenant, correlation=correlation or {},
        ))
    return handed


# --- backpressure ------------------------------------------------------------------------


async def count_new_executions(pool: asyncpg.Pool) -> dict[str, int]:
    """NEW executions by tenant (tenants with none are left out)."""
    with db.translated("counting pending executions"):
        rows = await pool.fetch(
            "SELECT tenant_id, count(*) AS n FROM workflow_executions WHERE status = 'NEW'"
            " GROUP BY tenant_id",
            timeout=5.0,
        )
    return {r["tenant_id"]: r["n"] for r in rows}


# --- sync mode and the status page ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FinishedRun:
    execution_id: str
    status: str
    output: JSON
    responded: bool  # a respond node succeeded: output is {"status", "headers", "body"}
    error_code: str | None
    error_message: str | None


_FINISHED = """
SELECT e.id::text AS id, e.status, e.output, e.error_code, e.error_message,
       EXISTS (SELECT 1 FROM node_executions n
                WHERE n.execution_id = e.id AND n.node_type = 'respond'
                  AND n.status = 'SUCCESS') AS responded
FROM workflow_executions e
WHERE e.id = ANY($1::uuid[]) AND e.status IN ('SUCCESS', 'ERROR', 'CANCELED')
"""


async def finished_runs(pool: asyncpg.Pool, execution_ids: Sequence[str]) -> list[FinishedRun]:
    """The runs among ``execution_ids`` that reached a final status."""
    if not execution_ids:
        return []
    with db.translated("polling finished executions"):
        rows = await pool.fetch(_FINISHED, list(execution_ids), timeout=5.0)
    return [
        FinishedRun(
            execution_id=r["id"],
            status=r["status"],
            output=r["output"],
            responded=r["responded"],
            error_code=r["error_code"],
            error_message=r["error_message"],
        )
        for r in rows
    ]


@dataclass(frozen=True, kw_only=True)
class ExecutionStatusRow:
    execution_id: str
    trigger_id: str | None
    status: str
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    output: JSON
    error_code: str | None


async def webhook_execution_status(
    pool: asyncpg.Pool, execution_id: str
) -> ExecutionStatusRow | None:
    """A webhook execution's status (``None`` when there is none: other trigger types are
    not shown on the unauthenticated status page)."""
    with db.translated("reading an execution"):
        row = await pool.fetchrow(
            "SELECT id::text AS id, trigger_id::text AS trigger_id, status, created_at,"
            " start_time, end_time, output, error_code FROM workflow_executions"
            " WHERE id = $1 AND trigger_type = 'webhook'",
            execution_id,
            timeout=5.0,
        )
    if row is None:
        return None
    return ExecutionStatusRow(
        execution_id=row["id"],
        trigger_id=row["trigger_id"],
        status=row["status"],
        created_at=row["created_at"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        output=row["output"],
        error_code=row["error_code"],
    )
