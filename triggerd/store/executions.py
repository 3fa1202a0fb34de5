"""Executions and node executions: creation (batched), claims, leases, records, listings."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
import orjson

from triggerd.errors import Conflict, NotFound
from triggerd.ids import EXECUTION, IdQuery
from triggerd.model import (
    DEFAULT_TENANT,
    JSON,
    MAX_WORKFLOW_DEPTH_LIMIT,
    Correlation,
    ExecutionStatus,
)
from triggerd.notifications.channels import CANCEL, DUE, EXECUTIONS, FINISHED, HELD
from triggerd.store.id_prefixes import resolve_id
from triggerd.store.notifications import send_finished, send_hints
from triggerd.store.records import (
    Arguments,
    ExecutionRecord,
    NodeExecutionRecord,
    columns,
    row_to,
)

# asyncpg ships no type information: a connection or a pool, typed loosely.
Conn = Any


@dataclass(frozen=True, kw_only=True)
class NewExecution:
    """One execution to create. ``id`` is chosen by the caller so a batch can tell which
    rows were inserted and which were duplicates."""

    workflow_id: str
    trigger_id: str | None
    trigger_name: str | None
    trigger_type: str
    dedupe_key: str | None = None
    dedupe_ttl: timedelta | None = None
    input: dict[str, JSON] = field(default_factory=dict)
    context: dict[str, JSON] = field(default_factory=dict)
    scheduled_for: datetime | None = None
    version: int | None = None  # pinned version; None = latest published at insert time
    retry_of: str | None = None
    correlation: Correlation | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


_INSERT = """
WITH d AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                         $6::text[], $7::bigint[], $8::jsonb[], $9::jsonb[],
                         $10::timestamptz[], $11::int[], $12::uuid[], $13::text[],
                         $14::text[], $15::text[], $16::jsonb[])
        AS d(id, workflow_id, trigger_id, trigger_name, trigger_type, dedupe_key, ttl_ms,
             input, context, scheduled_for, version, retry_of, agent_id, session_id,
             conversation_id, correlation)
),
-- What foreign keys would do (migration 0002): lock the parents; a row whose workflow or
-- trigger is gone is not written and comes back as missing.
workflows_locked AS (
    SELECT w.id, w.tenant_id FROM workflows w WHERE w.id IN (SELECT d.workflow_id FROM d)
    FOR KEY SHARE
),
triggers_locked AS (
    SELECT t.id FROM workflow_triggers t WHERE t.id IN (SELECT d.trigger_id FROM d)
    FOR KEY SHARE
),
ok AS (
    SELECT d.*, wl.tenant_id FROM d JOIN workflows_locked wl ON wl.id = d.workflow_id
    WHERE (d.trigger_id IS NULL OR d.trigger_id IN (SELECT id FROM triggers_locked))
),
ins AS (
    INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
        trigger_name, trigger_type, dedupe_key, dedupe_expires_at, input, context,
        scheduled_for, retry_of, tenant_id, agent_id, session_id, conversation_id,
        correlation)
    SELECT d.id, d.workflow_id,
           (SELECT v.id FROM workflow_versions v
             WHERE v.workflow_id = d.workflow_id
               AND CASE WHEN d.version IS NULL THEN v.is_latest ELSE v.version = d.version END),
           d.trigger_id, d.trigger_name, d.trigger_type, d.dedupe_key,
           CASE WHEN d.ttl_ms IS NULL THEN NULL
                ELSE now() + d.ttl_ms * interval '1 millisecond' END,
           d.input, d.context, d.scheduled_for, d.retry_of, d.tenant_id, d.agent_id,
           d.session_id, d.conversation_id, d.correlation
    FROM ok d
    ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT id::text, true AS inserted FROM ins
UNION ALL
SELECT d.id::text, false FROM d WHERE d.id NOT IN (SELECT ok.id FROM ok)
"""


def insert_arguments(items: Sequence[NewExecution]) -> list[list[Any]]:
    """The column arrays of :data:`_INSERT`, in parameter order."""
    return [
        [i.id for i in items],
        [i.workflow_id for i in items],
        [i.trigger_id for i in items],
        [i.trigger_name for i in items],
        [i.trigger_type for i in items],
        [i.dedupe_key for i in items],
        [None if i.dedupe_ttl is None else int(i.dedupe_ttl.total_seconds() * 1000) for i in items],
        [i.input for i in items],
        [i.context for i in items],
        [i.scheduled_for for i in items],
        [i.version for i in items],
        [i.retry_of for i in items],
        *correlation_arrays([i.correlation for i in items]),
    ]


def correlation_arrays(items: Sequence[Correlation | None]) -> list[list[Any]]:
    """The agent, session and conversation ids and the whole correlation object of each
    run, as four column arrays (None where a run has none)."""
    return [
        [None if c is None else c.agent_id for c in items],
        [None if c is None else c.session_id for c in items],
        [None if c is None else c.conversation_id for c in items],
        [None if c is None or not c.values else c.values for c in items],
    ]


async def insert_executions(conn: Conn, items: Sequence[NewExecution]) -> set[str]:
    """Insert many executions in one statement; returns the ids actually inserted (a
    duplicate ``(trigger_id, dedupe_key)`` is skipped, not an error). Sends a NOTIFY so
    executors elsewhere wake up. An item whose workflow or trigger no longer exists raises
    :class:`~triggerd.errors.NotFound` (after the others were inserted)."""
    if not items:
        return set()
    rows = await conn.fetch(_INSERT, *insert_arguments(items))
    inserted = {r["id"] for r in rows if r["inserted"]}
    if inserted:
        await send_hints(conn, EXECUTIONS.wire, [str(len(inserted))])
    missing = [r["id"] for r in rows if not r["inserted"]]
    if missing:
        raise NotFound(
            f"execution {missing[0]} not created: its workflow or trigger no longer exists"
        )
    return inserted


async def find_duplicates(
    conn: Conn, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """The existing execution id for each (trigger_id, dedupe_key)."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT e.trigger_id, e.dedupe_key, e.id FROM workflow_executions e"
        " JOIN unnest($1::uuid[], $2::text[]) AS k(trigger_id, dedupe_key)"
        " ON e.trigger_id = k.trigger_id AND e.dedupe_key = k.dedupe_key",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(str(r["trigger_id"]), r["dedupe_key"]): str(r["id"]) for r in rows}


# --- reads ---------------------------------------------------------------------------

EXECUTION_COLUMNS = (
    columns(ExecutionRecord, "e", computed=("workflow_key", "version"))
    + ", w.key AS workflow_key, v.version AS version"
)
_EXEC_FROM = (
    " FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
    " LEFT JOIN workflow_versions v ON v.id = e.workflow_version_id"
)
# Lists leave test runs out (their workflow is a scratch copy, migration 0025): a condition
# of the join, on the row it reads anyway, so each list keeps its statement and its plan.
_LIST_FROM = _EXEC_FROM.replace(
    "ON w.id = e.workflow_id", "ON w.id = e.workflow_id AND w.status <> 'test'")


async def get_execution(
    conn: Conn, execution_id: str, tenant: str | None = None
) -> ExecutionRecord:
    """The execution ``execution_id``; with ``tenant``, only one of that tenant (another
    tenant's run is not found, with the same message as a run that does not exist)."""
    try:
        uuid.UUID(execution_id)
    except ValueError:
        raise NotFound(f"{execution_id!r} is not an execution id (a UUID)") from None
    row = await conn.fetchrow(
        f"SELECT {EXECUTION_COLUMNS}{_EXEC_FROM} WHERE e.id = $1"
        " AND ($2::text IS NULL OR e.tenant_id = $2)", execution_id, tenant,
    )
    if row is None:
        raise NotFound(f"no execution {execution_id}")
    record: ExecutionRecord = row_to(ExecutionRecord, row)
    return record


# The ids in a prefix's range, on the primary key index (a text LIKE on uuid has no index).
EXECUTION_ID_RANGE = (
    "SELECT id::text FROM workflow_executions WHERE id BETWEEN $1::uuid AND $2::uuid"
    " AND ($3::text IS NULL OR tenant_id = $3) ORDER BY id LIMIT 2"
)


async def resolve_execution_id(conn: Conn, query: IdQuery, tenant: str | None = None) -> str:
    """The one execution id ``query`` names (among ``tenant``'s runs; None: any tenant's),
    by the rules of :func:`resolve_id`. Another tenant's runs never make a prefix
    ambiguous, nor are they named."""
    return await resolve_id(conn, EXECUTION_ID_RANGE, query, EXECUTION, tenant)


@dataclass(frozen=True, kw_only=True)
class ExecutionScope:
    """Which runs a list may show: of one tenant (None: every tenant) and with the given
    correlation ids."""

    tenant: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None


# The statuses a run can have (a list's filter writes them into its statement).
EXECUTION_STATUSES = frozenset(s.value for s in ExecutionStatus)


def execution_list_query(
    *,
    status: str | None = None,
    trigger_id: str | None = None,
    workflow_id: str | None = None,
    after: tuple[datetime, str] | None = None,
    before: datetime | None = None,
    since: datetime | None = None,
    limit: int,
    scope: ExecutionScope | None = None,
    test: bool = False,
) -> tuple[str, list[Any]]:
    """The statement (and its arguments) of one page of executions, newest first, with only
    the conditions that were asked for. Each combination is its own prepared statement, so
    its plan can use the index that fits: a generic plan of ``$1 IS NULL OR status = $1``
    cannot, and read the whole table for every page once history grew. ``test``: only test
    runs (else none)."""
    conditions: list[str] = []
    args = Arguments()
    arg = args.add

    if test:
        conditions.append("e.test")
    if status in EXECUTION_STATUSES:
        # Written into the statement: one prepared statement per status, so its plan fits
        # that status. As a parameter, the plan cached for SUCCESS (common) served RUNNING
        # (rare) too: a workflow's or trigger's RUNNING runs took 100-600 ms at 2 million.
        conditions.append(f"e.status = '{status}'")
    elif status is not None:
        conditions.append(f"e.status = {arg(status)}")
    trigger = None if trigger_id is None else arg(trigger_id)
    if trigger is not None:
        conditions.append(f"e.trigger_id = {trigger}::uuid")
    if workflow_id is not None and trigger is not None:
        # A trigger's runs are its workflow's: asked once, not per row. Both on the rows
        # made the planner AND the two indexes (a busy trigger's whole history, sorted:
        # 82 ms at 8,000 runs, against 0.14 ms for the trigger alone).
        conditions.append(f"EXISTS (SELECT 1 FROM workflow_triggers t WHERE t.id ="
                          f" {trigger}::uuid AND t.workflow_id = {arg(workflow_id)}::uuid)")
    elif workflow_id is not None:
        conditions.append(f"e.workflow_id = {arg(workflow_id)}::uuid")
    if scope is not None:
        # Each correlation id has an index of its own (newest first), as has a tenant.
        for column in ("tenant_id", "agent_id", "session_id", "conversation_id"):
            value = getattr(scope, "tenant" if column == "tenant_id" else column)
            if value is not None:
                conditions.append(f"e.{column} = {arg(value)}")
    if after is not None:
        created_at, last_id = after
        position = f"({arg(created_at)}::timestamptz, {arg(last_id)}::uuid)"
        conditions.append(f"(e.created_at, e.id) < {position}")
    if before is not None:
        conditions.append(f"e.created_at < {arg(before)}::timestamptz")
    if since is not None:
        conditions.append(f"e.created_at >= {arg(since)}::timestamptz")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    query = (
        f"SELECT {EXECUTION_COLUMNS}{_EXEC_FROM if test else _LIST_FROM}{where}"
        f" ORDER BY e.created_at DESC, e.id DESC LIMIT {arg(limit)}"
    )
    return query, args


async def list_executions(
    conn: Conn,
    *,
    status: str | None = None,
    trigger_id: str | None = None,
    workflow_id: str | None = None,
    limit: int = 50,
    before: datetime | None = None,
    since: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    scope: ExecutionScope | None = None,
    test: bool = False,
) -> list[ExecutionRecord]:
    """Newest first by (created_at, id); ``since`` (inclusive) and ``before`` (exclusive)
    bound created_at, ``after`` is the position of a previous page's last row; ``test``:
    the test runs instead of the others."""
    query, args = execution_list_query(
        scope=scope,
        test=test,
        status=status,
        trigger_id=trigger_id,
        workflow_id=workflow_id,
        after=after,
        before=before,
        since=since,
        limit=limit,
    )
    rows = await conn.fetch(query, *args)
    return [row_to(ExecutionRecord, r) for r in rows]


async def node_timeline(conn: Conn, execution_id: str, *, shown_bytes: int | None = None
                        ) -> list[NodeExecutionRecord]:
    """The run's node rows in the order they ran. With ``shown_bytes`` (a page), an input or
    output whose JSON text is longer comes as the runner's truncation marker with its start:
    PostgreSQL cuts it, so a run of many megabyte values is neither sent nor rendered whole
    (a page of ten such nodes was 38 MB and held the event loop for over a second)."""
    if shown_bytes is None:
        rows = await conn.fetch(
            f"SELECT {columns(NodeExecutionRecord, 'n')} FROM node_executions n"
            " WHERE execution_id = $1"
            " ORDER BY start_time NULLS LAST, node_id, attempt",
            execution_id,
        )
    else:
        kept = columns(NodeExecutionRecord, "n", computed=("input", "output"))
        rows = await conn.fetch(
            f"SELECT {kept}, {_shown('input')} AS input, {_shown('output')} AS output"
            " FROM node_executions n,"
            " LATERAL (SELECT n.input::text AS input, n.output::text AS output) t"
            " WHERE execution_id = $1"
            " ORDER BY start_time NULLS LAST, node_id, attempt",
            execution_id, shown_bytes,
        )
    return [row_to(NodeExecutionRecord, r) for r in rows]


def _shown(column: str) -> str:
    """``n.<column>`` when its text (``t.<column>``) has at most $2 bytes, else a marker of
    the shape :func:`triggerd.executor.runner.truncate_output` stores."""
    # A value the runner stored cut already (a marker of up to max_output_bytes) keeps
    # the size it gave and shows the start of its preview, not of the marker's JSON.
    return (f"CASE WHEN octet_length(t.{column}) IS NULL OR octet_length(t.{column}) <= $2"
            f" THEN n.{column}"
            f" WHEN jsonb_typeof(n.{column}) = 'object' AND n.{column}->'_truncated' = 'true'"
            f" AND jsonb_typeof(n.{column}->'preview') = 'string'"
            f" THEN jsonb_build_object('_truncated', true, 'size_bytes',"
            f" n.{column}->'size_bytes', 'limit_bytes', $2::int,"
            f" 'preview', left(n.{column}->>'preview', $2::int))"
            f" ELSE jsonb_build_object('_truncated', true,"
            f" 'size_bytes', octet_length(t.{column}), 'limit_bytes', $2::int,"
            f" 'preview', left(t.{column}, $2::int)) END")


async def count_by_status(conn: Conn, status: str) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = $1", status
    )
    return value


async def request_cancel(conn: Conn, execution_id: str) -> ExecutionRecord:
    """Cancel a run: a NEW or WAITING run ends CANCELED at once; a RUNNING one is flagged
    and its executor cancels its running nodes. A finished run is a Conflict."""
    current = await get_execution(conn, execution_id)
    # A run ended here leaves no node row open: its parked node (WAITING), or the attempt a
    # dead process left RUNNING, ends CANCELED with it.
    row = await conn.fetchrow(
        "WITH c AS (UPDATE workflow_executions SET"
        " status = CASE WHEN status IN ('NEW', 'WAITING') THEN 'CANCELED' ELSE status END,"
        " end_time = CASE WHEN status IN ('NEW', 'WAITING') THEN now() ELSE end_time END,"
        " error_code = CASE WHEN status IN ('NEW', 'WAITING') THEN 'CANCELED' ELSE error_code END,"
        " error_message = CASE WHEN status IN ('NEW', 'WAITING') THEN 'canceled by request'"
        "   ELSE error_message END,"
        " lease_owner = CASE WHEN status IN ('NEW', 'WAITING') THEN NULL ELSE lease_owner END,"
        " cancel_requested = true"
        " WHERE id = $1 AND status IN ('NEW', 'RUNNING', 'WAITING')"
        " RETURNING id, status, concurrency_key IS NOT NULL AS keyed),"
        f" closed AS ({close_canceled_nodes('c', 'canceled by request')})"
        " SELECT id, status, keyed FROM c",
        execution_id,
    )
    if row is None:
        # Read again: a cancel that lost a race said "already finished with status
        # WAITING", the status before the winner's.
        current = await get_execution(conn, execution_id)
        raise Conflict(
            f"execution {execution_id} already finished with status {current.status};"
            " nothing was changed"
        )
    await conn.execute("SELECT pg_notify($1, $2)", CANCEL.wire, execution_id)
    if row["keyed"] and row["status"] == "CANCELED":
        # A queued or waiting run of a concurrency key ended here: the next of its key may
        # start now, not at the executors' next poll (a running one's executor tells them).
        await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire, HELD)
    await cancel_children(conn, [execution_id])
    # A parent waiting for this run learns its end now (a running run's end wakes it when
    # its executor writes it).
    woken = await conn.fetchval(
        "UPDATE workflow_executions p SET resume_at = now() FROM workflow_executions c"
        " WHERE c.id = $1 AND c.status = 'CANCELED' AND c.trigger_type <> 'retry'"
        " AND p.id = c.parent_execution_id"
        " AND p.status IN ('WAITING', 'RUNNING') RETURNING p.id", execution_id)
    if woken is not None:
        await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire, DUE)
    return await get_execution(conn, execution_id)


async def close_open_nodes(conn: Conn, execution_id: str, code: str, message: str) -> None:
    """The node rows a run left open (RUNNING or WAITING) end ERROR with it: a test run
    that ended undecided, a run that crashed."""
    await conn.execute(
        "UPDATE node_executions SET status = 'ERROR', end_time = now(), error_code = $2,"
        " error_message = $3 WHERE execution_id = $1 AND status IN ('RUNNING', 'WAITING')",
        execution_id, code, message)


def close_canceled_nodes(ended: str, message: str) -> str:
    """An UPDATE that ends CANCELED the node rows left open (a parked wait or approval,
    WAITING; the attempt a dead process left RUNNING) of the runs that the CTE ``ended``
    (``id``, ``status``) canceled: a canceled run leaves no open row, which retention
    would keep for ever. By an array of ids, not a join: the planner cannot know how few
    runs were canceled (usually none) and must not read node_executions beyond their rows.
    ``message`` is a literal of ours."""
    return (
        "UPDATE node_executions n SET status = 'CANCELED', end_time = now(),"
        f" error_code = 'CANCELED', error_message = '{message}'"
        f" WHERE n.execution_id = ANY(ARRAY(SELECT c.id FROM {ended} c"
        " WHERE c.status = 'CANCELED'))"
        " AND n.status IN ('RUNNING', 'WAITING')")


# The runs run $1 started through workflow nodes (the runs in the array $1: ANY), and
# theirs: `tree`, to open a `WITH RECURSIVE` (UNION: a row met twice is read once).
_DESCENDANTS_OF = (
    "tree AS ("
    "  SELECT id FROM workflow_executions WHERE parent_execution_id {roots}"
    "  UNION SELECT e.id FROM workflow_executions e JOIN tree t"
    "  ON e.parent_execution_id = t.id)")
DESCENDANTS = _DESCENDANTS_OF.format(roots="= $1")


async def cancel_children(conn: Conn, execution_ids: Sequence[str]) -> None:
    """Cancel the runs these runs started through workflow nodes, and theirs, that have
    not ended: waiting and queued ones end CANCELED, running ones are flagged for their
    executors, as a cancel of each would."""
    await conn.execute(
        f"WITH RECURSIVE {_DESCENDANTS_OF.format(roots='= ANY($1::uuid[])')},"
        " c AS (UPDATE workflow_executions e SET"
        " status = CASE WHEN status IN ('NEW', 'WAITING') THEN 'CANCELED' ELSE status END,"
        " end_time = CASE WHEN status IN ('NEW', 'WAITING') THEN now() ELSE end_time END,"
        " error_code = CASE WHEN status IN ('NEW', 'WAITING') THEN 'CANCELED' ELSE error_code END,"
        " error_message = CASE WHEN status IN ('NEW', 'WAITING')"
        "   THEN 'canceled with its parent run' ELSE error_message END,"
        " lease_owner = CASE WHEN status IN ('NEW', 'WAITING') THEN NULL ELSE lease_owner END,"
        " cancel_requested = true"
        " FROM tree WHERE e.id = tree.id AND e.status IN ('NEW', 'RUNNING', 'WAITING')"
        " RETURNING e.id, e.status, e.concurrency_key IS NOT NULL AS keyed),"
        f" closed AS ({close_canceled_nodes('c', 'canceled with its parent run')})"
        " SELECT pg_notify($2, id::text) FROM c"
        # As request_cancel: the next run of a key one of them held may start now.
        " UNION ALL SELECT pg_notify($3, $4)"
        " WHERE EXISTS (SELECT 1 FROM c WHERE c.status = 'CANCELED' AND c.keyed)",
        list(execution_ids), CANCEL.wire, EXECUTIONS.wire, HELD)


# Runs not ended (a running one: not flagged yet) below a run that ended CANCELED, and
# the nearest such ancestor of each: a cancel of that run (cancel_children) reaches every
# run below it, through children that ended SUCCESS or ERROR too, and these are the ones
# it missed. The cancel_previous slot write cancels its runs' children after its commit,
# which a lost answer or a stop in between skips, and a running run flagged for cancel may
# start a child after its cancel ran. Read in the order of the index of active children
# (migration 0039), never the history: from each, a walk up its ancestors, one probe of
# the primary key a level, that stops at the first CANCELED one, at a run started by no
# other, or at the deepest nesting there can be. Replicas sweeping at once take their
# children in the same order. A run with no CANCELED ancestor keeps its children (`wait:
# false` ones outlive a parent that ended SUCCESS or ERROR by design).
_ORPHANED_CHILDREN = f"""
SELECT a.id::text AS ancestor FROM workflow_executions c
 CROSS JOIN LATERAL (
   WITH RECURSIVE up AS (
     SELECT p.id, p.status, p.parent_execution_id, 1 AS depth FROM workflow_executions p
      WHERE p.id = c.parent_execution_id
     UNION ALL
     SELECT p.id, p.status, p.parent_execution_id, up.depth + 1
       FROM up JOIN workflow_executions p ON p.id = up.parent_execution_id
      WHERE up.status <> 'CANCELED' AND up.depth < {MAX_WORKFLOW_DEPTH_LIMIT})
   SELECT id FROM up WHERE status = 'CANCELED' LIMIT 1) a
 WHERE c.parent_execution_id IS NOT NULL AND c.status IN ('NEW', 'RUNNING', 'WAITING')
   AND NOT (c.status = 'RUNNING' AND c.cancel_requested)
 ORDER BY c.parent_execution_id
 LIMIT $1
"""


async def cancel_orphaned_children(conn: Conn, batch: int = 500) -> int:
    """Find up to ``batch`` runs not ended below a run that ended CANCELED whose cancel
    did not reach them, and cancel the runs below the nearest CANCELED ancestor of each as
    its cancel would have (:func:`cancel_children`, through children that ended SUCCESS or
    ERROR too); returns how many were found (0: nothing was changed). Idempotent: a
    running run once flagged is not found again."""
    rows = await conn.fetch(_ORPHANED_CHILDREN, batch)
    if rows:
        await cancel_children(conn, sorted({r["ancestor"] for r in rows}))
    return len(rows)


async def child_executions(conn: Conn, execution_id: str) -> list[dict[str, Any]]:
    """The runs this run's workflow nodes started, oldest first."""
    rows = await conn.fetch(
        "SELECT e.id::text AS id, w.key AS workflow, e.status, e.created_at"
        " FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
        " WHERE e.parent_execution_id = $1 ORDER BY e.created_at, e.id", execution_id)
    return [dict(r) for r in rows]


# --- the executor's queue --------------------------------------------------------------

# What a claim returns of each run (also the held claim's, triggerd/store/keyed.py).
# ``idle_known``: whether the run had a worked_at before this claim, so the idle time it
# credited is whole. RETURNING sees the new row only; the subselect reads the statement's
# snapshot, the row as it was before this update (no other writer changes a claimable
# run's worked_at between that snapshot and the claim's lock: NEW and WAITING runs have no
# owner to write it, and an expired run's late heartbeat moves its lease out of reach).
CLAIM_RETURNING = """e.id, e.workflow_id, e.workflow_version_id, e.trigger_id, e.trigger_name,
          e.trigger_type, e.input, e.context, e.scheduled_for, e.created_at, e.start_time,
          e.attempt, e.cancel_requested, e.tenant_id, e.correlation, e.idle_ms,
          (SELECT b.worked_at IS NOT NULL FROM workflow_executions b
            WHERE b.id = e.id) AS idle_known"""


def taking_up(now: str = "now()") -> str:
    """What every claim sets besides the lease (migration 0040): the time since the run
    was last worked on (handed back, parked, or since a dead process's last heartbeat) is
    credited as idle, and the run is worked on from ``now`` (an SQL expression)."""
    return (f"idle_ms = e.idle_ms + CASE WHEN e.worked_at < {now}"
            f" THEN (extract(epoch FROM {now} - e.worked_at) * 1000)::bigint ELSE 0 END,"
            f" worked_at = {now}")

# Runs whose lease ran out (their process died) and parked runs whose time came. Both are
# rare, and their partial indexes share the table with a busy queue whose dead index
# entries and young statistics can mislead the planner into a bitmap scan of every active
# run (15 ms and thousands of pages at a 25,000-run backlog, measured), so the executor
# asks for them at most once a second under load (``overdue``) and claims plain NEW runs
# with the statement without them in between.
_OVERDUE = """
expired AS (
    SELECT id FROM workflow_executions
     WHERE status = 'RUNNING' AND lease_expires_at < now() AND NOT test
     ORDER BY lease_expires_at LIMIT $3 FOR UPDATE SKIP LOCKED),
due AS (
    SELECT id FROM workflow_executions
     WHERE status = 'WAITING' AND resume_at <= now() AND NOT test
     ORDER BY resume_at LIMIT $3 FOR UPDATE SKIP LOCKED),
room AS (
    SELECT GREATEST(0, $3 - (SELECT count(*) FROM expired) - (SELECT count(*) FROM due)) AS n
    FROM lazy),"""
_NO_OVERDUE = """
room AS (SELECT $3::int AS n FROM lazy),"""
# A claim need not wait for its commit to reach the disk: if the server crashes before it
# does, the runs are simply unclaimed again, as if this process had died; and any later
# write of these runs (synchronous) flushes the log up to and past this commit.
_LAZY = """
lazy AS (SELECT set_config('synchronous_commit', 'off', true)),"""

# Plain NEW rows only: rows held back by a debounce time or a concurrency key are claimed
# by triggerd/store/keyed.py (the partial index workflow_executions_tenant_new has only
# these). Test runs (migration 0025) are never claimed here: the process that started one
# runs it.
#
# Fair claiming: the tenants with plain NEW runs are found with one index probe each (a
# loose index scan of workflow_executions_tenant_new), each offers its oldest runs, and
# the batch takes them in turns (a tenant's k-th oldest run has turn k / its share), so a
# tenant with a deep backlog cannot starve another's every-second trigger. With one tenant
# this is the oldest runs first, as before; with n tenants each offers at most
# ceil(2 * room / n), so a claim locks at most about twice what it takes.
# A tenant's offer is limited twice: by the batch size ``$3``, a number the planner sees,
# and by its fair part, an expression it cannot see through (it assumes a tenth of the NEW
# rows). With the expression alone, a long history made a bitmap scan of every NEW row and
# a sort look cheaper than reading the index in order (two partial indexes, _trigger_active
# and _tenant_new, both cover NEW runs, and the planner counted that selectivity twice):
# 15 ms and 13,600 pages a claim at 2 million executions, against 2 ms with the ordered
# scan. The outer limit stops pulling rows, so a tenant still locks only its fair part.
# The claimed ids are updated through ``= ANY(ARRAY(...))``, an index probe per id: as
# ``IN (subquery)`` the planner, which cannot know how few rows the limits leave, chose a
# hash join over a sequential scan of the whole table once the backlog was deep (60 ms a
# claim at 120,000 rows, measured; the executor fell to 300 runs/s).
_FRESH = """
tenants AS (
    (SELECT tenant_id FROM workflow_executions
      WHERE status = 'NEW' AND not_before IS NULL AND concurrency_key IS NULL
        AND (SELECT n FROM room) > 0
      ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.tenant_id FROM workflow_executions e
             WHERE e.status = 'NEW' AND e.not_before IS NULL AND e.concurrency_key IS NULL
               AND e.tenant_id > t.tenant_id
             ORDER BY e.tenant_id LIMIT 1)
    FROM tenants t WHERE t.tenant_id IS NOT NULL),
present AS (SELECT tenant_id FROM tenants WHERE tenant_id IS NOT NULL),
offered AS (
    SELECT f.id, f.created_at, p.tenant_id FROM present p CROSS JOIN LATERAL (
        SELECT l.id, l.created_at FROM (
            SELECT e.id, e.created_at FROM workflow_executions e
             WHERE e.status = 'NEW' AND e.not_before IS NULL AND e.concurrency_key IS NULL
               AND e.tenant_id = p.tenant_id AND NOT e.test
             ORDER BY e.created_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED) l
        LIMIT LEAST((SELECT n FROM room),
                    ceil(2.0 * (SELECT n FROM room) / (SELECT count(*) FROM present)))) f),
fresh AS (
    SELECT o.id FROM (
        SELECT o.id, o.created_at,
               row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.created_at)::float8
               / coalesce((SELECT s.share FROM unnest($4::text[], $5::int[]) AS s (tenant, share)
                           WHERE s.tenant = o.tenant_id), 1) AS turn
        FROM offered o) o
    ORDER BY o.turn, o.created_at
    LIMIT (SELECT n FROM room))
UPDATE workflow_executions e
   SET status = 'RUNNING', lease_owner = $1, resume_at = NULL,
       lease_expires_at = now() + $2 * interval '1 millisecond',
       attempt = e.attempt + 1, start_time = COALESCE(e.start_time, now()),
       """ + taking_up() + """
 WHERE e.id = ANY(ARRAY({taken}))
RETURNING """ + CLAIM_RETURNING
# Planned without sorts, the claim reads each queue's partial index in order and stops at
# its batch. A queue's statistics are a snapshot: taken (by autovacuum, or by
# triggerd/table_statistics.py as the table grows) while few runs were waiting, they say
# none wait, and then a sort of every active run through another index looks as cheap as
# the ordered scan. That plan is kept until the next ANALYZE, while its cost grows with
# the backlog: measured after an ANALYZE of an empty queue, a claim of 64 took 3.7 ms at
# 1,000 waiting runs, 12 ms at 10,000 and 36 ms at 40,000 (2.2-3.2 ms planned without
# sorts), and in bench/sustained.py the executor fell from about 2,000 to 650 runs/s and
# its backlog grew without bound. The setting holds for the claim's transaction only; a
# cached plan is made under it when it is first needed and again after every ANALYZE.
# (The window and the final order of a batch are sorts of at most twice the batch, which
# no index gives; they are kept, as the only plans there are.) Before PostgreSQL 18 a
# disabled sort that is kept is costed at 10^10, far past jit_above_cost: the plan would
# be compiled by the JIT at every claim (where the server has it, like Debian's), so the
# JIT is off for the claim too. One simple query, one round trip.
QUEUE_PLANNING = "SET LOCAL enable_sort = off; SET LOCAL jit = off"

_CLAIM = "WITH RECURSIVE" + _LAZY + _OVERDUE + _FRESH.format(
    taken="SELECT id FROM expired UNION ALL SELECT id FROM due UNION ALL SELECT id FROM fresh")
_CLAIM_NEW = "WITH RECURSIVE" + _LAZY + _NO_OVERDUE + _FRESH.format(taken="SELECT id FROM fresh")


@dataclass(frozen=True, kw_only=True)
class ClaimedExecution:
    id: str
    workflow_id: str
    workflow_version_id: str | None
    trigger_id: str | None
    trigger_name: str | None
    trigger_type: str
    input: dict[str, JSON]
    context: dict[str, JSON]
    scheduled_for: datetime | None
    created_at: datetime
    start_time: datetime
    attempt: int
    cancel_requested: bool
    tenant_id: str = DEFAULT_TENANT
    correlation: dict[str, JSON] = field(default_factory=dict)
    # The time since start_time the run was not worked on (migration 0040).
    idle: timedelta = timedelta(0)
    # False: the run had no worked_at before this claim (a triggerd before 0040 parked or
    # handed it back, or it never ran), so ``idle`` may lack the parks its rows show.
    idle_known: bool = True


async def plain_runs_waiting(conn: Conn) -> bool:
    """Whether a plain NEW run waits for a claim (one probe of the partial index the claim
    reads, workflow_executions_tenant_new): the executors take up new runs where they are
    stored only while none does."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM workflow_executions WHERE status = 'NEW'"
        " AND not_before IS NULL AND concurrency_key IS NULL AND NOT test)"))


async def claim_executions(
    conn: Conn, owner: str, lease: timedelta, limit: int,
    shares: Mapping[str, int] | None = None, *, overdue: bool = True,
) -> list[ClaimedExecution]:
    """Claim up to ``limit`` runnable executions (RUNNING under an expired lease first, then
    WAITING past resume_at, then NEW in fair turns between tenants, oldest first within
    one) for ``owner`` with ``FOR UPDATE SKIP LOCKED``. Each kind is its own
    index-friendly subquery (partial indexes per status). ``shares``: tenants' weights
    other than 1 (``[tenants.NAME] executor_share``). ``overdue=False`` claims NEW runs
    only (see :data:`_OVERDUE`)."""
    shares = shares or {}
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await claim_executions(acquired, owner, lease, limit, shares,
                                          overdue=overdue)
    async with conn.transaction():
        await conn.execute(QUEUE_PLANNING)
        rows = await conn.fetch(_CLAIM if overdue else _CLAIM_NEW, owner,
                                int(lease.total_seconds() * 1000), limit,
                                list(shares), list(shares.values()))
    return [claimed_execution(r) for r in rows]


def claimed_execution(r: Any) -> ClaimedExecution:
    """A claimed row (:data:`CLAIM_RETURNING`) as a value."""
    return ClaimedExecution(
        id=str(r["id"]),
        workflow_id=str(r["workflow_id"]),
        workflow_version_id=None
        if r["workflow_version_id"] is None
        else str(r["workflow_version_id"]),
        trigger_id=None if r["trigger_id"] is None else str(r["trigger_id"]),
        trigger_name=r["trigger_name"],
        trigger_type=r["trigger_type"],
        input=r["input"] or {},
        context=r["context"] or {},
        scheduled_for=r["scheduled_for"],
        created_at=r["created_at"],
        start_time=r["start_time"],
        attempt=r["attempt"],
        cancel_requested=r["cancel_requested"],
        tenant_id=r["tenant_id"],
        correlation=r["correlation"] or {},
        idle=timedelta(milliseconds=r["idle_ms"]),
        idle_known=bool(r["idle_known"]),
    )


async def renew_leases(conn: Conn, owner: str, ids: Sequence[str], lease: timedelta
                       ) -> dict[str, bool]:
    """Extend the leases this owner still holds; returns the ids still held, each with
    whether a cancel was asked for it (a heartbeat notices a cancel whose notification was
    lost: the LISTEN connection down while the pool works)."""
    if not ids:
        return {}
    # Rows are locked in id order, as the writer's final states lock them: two statements
    # of one process over the same runs in different orders deadlocked under load.
    rows = await conn.fetch(
        "UPDATE workflow_executions e"
        " SET lease_expires_at = now() + $3 * interval '1 millisecond', worked_at = now()"
        " FROM (SELECT id FROM workflow_executions WHERE id = ANY($2::uuid[])"
        " AND lease_owner = $1 AND status = 'RUNNING' ORDER BY id FOR NO KEY UPDATE) AS held"
        " WHERE e.id = held.id RETURNING e.id, e.cancel_requested",
        owner,
        list(ids),
        int(lease.total_seconds() * 1000),
    )
    return {str(r["id"]): bool(r["cancel_requested"]) for r in rows}


async def cancel_requested(conn: Conn, owner: str, ids: Sequence[str]) -> set[str]:
    """Which of these runs, held by ``owner``, had a cancel requested (the executor asks
    after a gap in its notifications, when a cancel may have been missed)."""
    if not ids:
        return set()
    rows = await conn.fetch(
        "SELECT id FROM workflow_executions WHERE id = ANY($2::uuid[]) AND lease_owner = $1"
        " AND status = 'RUNNING' AND cancel_requested",
        owner,
        list(ids),
    )
    return {str(r["id"]) for r in rows}


async def release_executions(conn: Conn, owner: str, ids: Sequence[str]) -> int:
    """Hand runs back (drain): status NEW, lease cleared, so any process continues them."""
    if not ids:
        return 0
    result: str = await conn.execute(
        "UPDATE workflow_executions SET status = 'NEW', lease_owner = NULL,"
        " lease_expires_at = NULL, worked_at = now()"
        " WHERE id = ANY($2::uuid[]) AND lease_owner = $1"
        " AND status = 'RUNNING'",
        owner,
        list(ids),
    )
    await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire, "released")
    return int(result.split()[-1])


async def fetch_versions(conn: Conn, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT v.id, v.workflow_id, w.key AS workflow_key, v.version, v.graph,"
        " v.parameter_schema, v.env_config, v.timeout_ms"
        " FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id"
        " WHERE v.id = ANY($1::uuid[])",
        list(ids),
    )
    return {str(r["id"]): dict(r) for r in rows}


async def fetch_node_rows(conn: Conn, execution_id: str) -> list[dict[str, Any]]:
    """The node rows of a run being resumed, each with its encrypted resume copy
    (``resume_copy``, None when the stored output is the value itself)."""
    rows = await conn.fetch(
        "SELECT n.node_id, n.node_type, n.status, n.attempt, n.output, n.branch, n.error_code,"
        " n.error_message, n.start_time, n.end_time, r.ciphertext AS resume_copy"
        " FROM node_executions n LEFT JOIN node_outputs_resume r"
        " ON r.execution_id = n.execution_id AND r.node_id = n.node_id AND r.attempt = n.attempt"
        " WHERE n.execution_id = $1 ORDER BY n.node_id, n.attempt",
        execution_id,
    )
    return [dict(r) for r in rows]


class NodeRow(NamedTuple):
    """One node_executions row to write (insert, or update the same attempt). A NamedTuple
    rather than a frozen dataclass, like the webhook inbox's rows: a run makes one per node
    on the executor's hot path, and a frozen dataclass of these 16 fields took three times
    as long to make (4.7 against 1.6 microseconds)."""

    execution_id: str
    node_id: str
    node_type: str
    status: str
    attempt: int
    input: JSON = None
    output: JSON = None
    branch: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    execution_time_ms: float | None = None
    from_node_id: str | None = None
    edge_condition: str | None = None
    # The encrypted full output, when ``output`` (the display copy) is not the value itself.
    resume_copy: bytes | None = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}"
                          for name, value in zip(self._fields, self, strict=True)
                          if name != "resume_copy")  # ciphertext: long, and of no use here
        return f"NodeRow({shown})"


@dataclass(frozen=True, kw_only=True)
class ExecutionUpdate:
    """The final (or parked) state of one execution."""

    id: str
    status: str
    output: JSON = None
    error_code: str | None = None
    error_message: str | None = None
    resume_at: datetime | None = None
    # The run has resume copies: delete them if this is its end (kept while it waits).
    drop_resume_copies: bool = False
    # The node whose failure ended the run ERROR (for its error workflow's summary).
    failed_node: str | None = None
    # A park that counts as work until then (a retry's backoff cut by a restart).
    worked_until: datetime | None = None


FINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELED"})


# The rows arrive as one JSON array (:func:`_node_rows_json`): encoding fifteen arrays
# element by element cost the executor's process three times as much CPU per row, and
# PostgreSQL reads the document in C.
_UPSERT_NODES = """
INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt, input, output,
    branch, error_code, error_message, start_time, end_time, execution_time_ms, from_node_id,
    edge_condition)
SELECT d.execution_id, d.node_id, d.node_type, d.status, d.attempt, d.input, d.output,
    d.branch, d.error_code, d.error_message, d.start_time, d.end_time, d.execution_time_ms,
    d.from_node_id, d.edge_condition
FROM json_to_recordset($1::text::json)
    AS d(execution_id uuid, node_id text, node_type text, status text, attempt int,
         input jsonb, output jsonb, branch text, error_code text, error_message text,
         start_time timestamptz, end_time timestamptz, execution_time_ms float8,
         from_node_id text, edge_condition text)
-- What the foreign key did, without its trigger call per row (migration 0028): the
-- execution is locked FOR KEY SHARE, so a concurrent delete of it waits for this
-- statement, or wins and its rows are not written. Only the lease's holder writes: a
-- process that lost it (stopped past its lease while another took the run up) would
-- overwrite the new owner's rows of the same attempts.
WHERE EXISTS (SELECT FROM workflow_executions e WHERE e.id = d.execution_id
              AND e.lease_owner = $2 AND e.status = 'RUNNING' FOR KEY SHARE)
ON CONFLICT (execution_id, node_id, attempt) DO UPDATE SET
    status = EXCLUDED.status, output = EXCLUDED.output, branch = EXCLUDED.branch,
    error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
    end_time = EXCLUDED.end_time, execution_time_ms = EXCLUDED.execution_time_ms
-- An attempt's RUNNING row never reopens one that ended (the progress writer keeps a run's
-- writes in order; this holds whatever writes them).
WHERE EXCLUDED.status <> 'RUNNING'
   OR node_executions.status NOT IN ('SUCCESS', 'ERROR', 'CANCELED', 'SKIPPED')
RETURNING execution_id
"""

# {after}: a condition of ``held`` that orders this update after another part of the same
# statement (empty when alone; see _WRITE_ONE_STATEMENT).
_FINISH_TEMPLATE = """
UPDATE workflow_executions e SET
    status = d.status, output = d.output::jsonb, error_code = d.error_code,
    error_message = d.error_message,
    -- A wake-up that came while the run was running (a child ended, a decision arrived:
    -- they set resume_at on the RUNNING row, which a claim clears) is kept when the run
    -- parks, so it is claimed again at once instead of missing it.
    -- A cancel that came while the run was parking (its executor's CANCELED write needs
    -- the lease this write gives up) is taken up at once, and the take-up cancels it.
    -- A child that ends in this same statement wakes its parent here: woken_parents
    -- cannot, as a statement does not update a row twice (the park wins, the wake-up was
    -- lost, and the parent waited for ever). The subquery runs only for a parking run.
    resume_at = CASE WHEN d.status = 'WAITING' AND e.cancel_requested THEN now()
                     WHEN d.status = 'WAITING' AND d.id IN (
                         SELECT c.parent_execution_id
                         FROM unnest($2::uuid[], $3::text[]) AS x(id, status)
                         JOIN workflow_executions c ON c.id = x.id
                         WHERE x.status IN ('SUCCESS', 'ERROR', 'CANCELED')
                           AND c.trigger_type <> 'retry')
                     THEN now()
                     WHEN d.status = 'WAITING' AND e.resume_at IS NOT NULL
                     THEN LEAST(e.resume_at, coalesce(d.resume_at, e.resume_at))
                     ELSE d.resume_at END,
    end_time = CASE WHEN d.status IN ('SUCCESS', 'ERROR', 'CANCELED') THEN now() ELSE NULL END,
    -- A park is not work, unless it waits out a retry's backoff (worked_until, its end).
    worked_at = GREATEST(now(), d.worked_until),
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
            $8::text[], $9::timestamptz[])
     AS d(id, status, output, error_code, error_message, resume_at, failed_node,
          worked_until),
     (SELECT id FROM workflow_executions WHERE id = ANY($2::uuid[]) AND lease_owner = $1{after}
      ORDER BY id FOR NO KEY UPDATE) AS held
WHERE e.id = d.id AND held.id = d.id AND e.lease_owner = $1
RETURNING e.id, e.status, e.trigger_id, e.scheduled_for, e.end_time, e.start_time,
          e.parent_execution_id, e.resume_at,
          e.workflow_id, e.workflow_version_id, e.trigger_type, e.trigger_name,
          e.error_code, e.error_message, d.failed_node,
          -- A run of the live schedule (a backfill's runs count for neither max_runs nor
          -- pause_after_failures).
          -- CASE: the context is read only for runs with a schedule's key.
          CASE WHEN e.dedupe_key LIKE 'cron:%'
               THEN NOT coalesce(e.context->'trigger' ? 'backfill', false)
               ELSE false END AS scheduled,
          e.concurrency_key IS NOT NULL AS keyed,
          -- A run below an error run (triggerd.store.subworkflows.UNDER_ERROR_RUN), or a
          -- retry of an error run or of such a run (a retry keeps the context it retries).
          CASE WHEN e.trigger_type = 'workflow'
               THEN coalesce(e.context->'trigger' ? 'under_error_run', false)
               WHEN e.trigger_type = 'retry'
               THEN coalesce(e.context->'trigger'->>'type' = 'on_failure'
                             OR e.context->'trigger' ? 'under_error_run', false)
               ELSE false END AS under_error_run
"""
_FINISH = _FINISH_TEMPLATE.format(after="")
# ``held`` locks the rows in id order (renew_leases does the same), so the heartbeat and
# the writer never wait for each other in a cycle.

# What a finished scheduled run tells its trigger's runtime state (trigger_state), for the
# triggers that ask (pause_after_failures or monitor in their config; the others pay one
# primary key lookup): the last success, and the consecutive failed runs, which pause the
# trigger once they reach pause_after_failures (actor scheduler, audited, the note naming
# the runs). Runs of one trigger finished in one batch are folded in the order of their
# slots: a success among them resets the count to the failures after it. The increments
# are applied to the row as locked (ON CONFLICT DO UPDATE), so two executors finishing runs
# of one trigger at once both count.
# Expressions of the ON CONFLICT branch below: ``s`` is the row as locked, EXCLUDED what
# this batch adds, ``acct`` says whether the batch had a success and the threshold.
_ACCT_OF = "(SELECT a.{column} FROM acct a WHERE a.trigger_id = s.trigger_id)"
_FAILURES = (f"CASE WHEN {_ACCT_OF.format(column='reset')}"
             " THEN EXCLUDED.consecutive_failures"
             " ELSE s.consecutive_failures + EXCLUDED.consecutive_failures END")
# The newest failed runs only (the note names them): at most MAX_NAMED_FAILURES.
MAX_NAMED_FAILURES = 100
_FAILED_ALL = (f"CASE WHEN {_ACCT_OF.format(column='reset')} THEN EXCLUDED.failed_executions"
               " ELSE s.failed_executions || EXCLUDED.failed_executions END")
_FAILED = (f"({_FAILED_ALL})[GREATEST(1, cardinality({_FAILED_ALL})"
           f" - {MAX_NAMED_FAILURES - 1}):]")
_NEWLY_PAUSED = (f"(NOT s.paused AND {_ACCT_OF.format(column='threshold')} IS NOT NULL"
                 f" AND {_FAILURES} >= {_ACCT_OF.format(column='threshold')})")
_PAUSE_NOTE = "format('paused after %s consecutive failed scheduled runs: %s', {n}, {ids})"

_ACCOUNT = f""",
acct_in AS (
    SELECT f.trigger_id, f.id, f.status, f.scheduled_for, f.end_time, f.scheduled,
           (t.config->>'pause_after_failures')::int AS threshold,
           t.workflow_id, t.name, t.tenant_id
    FROM done f
    JOIN workflow_triggers t ON t.id = f.trigger_id
    -- Only runs of the live schedule count (manual, webhook and backfill runs skip the
    -- join altogether).
    WHERE f.scheduled AND f.status IN ('SUCCESS', 'ERROR')
      AND (t.config ? 'pause_after_failures' OR t.config ? 'monitor')
),
acct AS (
    SELECT c.*, c.last_ok IS NOT NULL AS reset, ARRAY(
               SELECT a.id FROM acct_in a
               WHERE a.trigger_id = c.trigger_id AND a.scheduled AND a.status = 'ERROR'
                 AND c.threshold IS NOT NULL
                 AND (c.last_ok IS NULL OR a.scheduled_for > c.last_ok)
               ORDER BY a.scheduled_for, a.id) AS errors
    FROM (
        SELECT a.trigger_id, max(a.threshold) AS threshold,
               (SELECT w.key FROM workflows w WHERE w.id = max(a.workflow_id::text)::uuid)
                   || '/' || max(a.name) AS full_name,
               max(a.tenant_id) AS tenant_id,
               max(a.end_time) FILTER (WHERE a.status = 'SUCCESS') AS last_success,
               max(a.scheduled_for) FILTER (WHERE a.scheduled AND a.status = 'SUCCESS')
                   AS last_ok
        FROM acct_in a GROUP BY a.trigger_id
    ) c
),
acct_state AS (
    INSERT INTO trigger_state AS s (trigger_id, consecutive_failures, failed_executions,
                                    last_success_at, paused, note, changed_by, changed_at)
    SELECT a.trigger_id, cardinality(a.errors), a.errors, a.last_success,
           coalesce(cardinality(a.errors) >= a.threshold, false),
           CASE WHEN cardinality(a.errors) >= a.threshold THEN
               {_PAUSE_NOTE.format(n="cardinality(a.errors)",
                                   ids="array_to_string(a.errors, ', ')")} END,
           CASE WHEN cardinality(a.errors) >= a.threshold THEN 'scheduler' END,
           CASE WHEN cardinality(a.errors) >= a.threshold THEN now() END
    FROM acct a
    ORDER BY a.trigger_id
    ON CONFLICT (trigger_id) DO UPDATE SET
        last_success_at = GREATEST(s.last_success_at, EXCLUDED.last_success_at),
        note = CASE WHEN {_NEWLY_PAUSED} THEN
                   {_PAUSE_NOTE.format(n=_FAILURES, ids=f"array_to_string({_FAILED}, ', ')")}
                   ELSE s.note END,
        changed_by = CASE WHEN {_NEWLY_PAUSED} THEN 'scheduler' ELSE s.changed_by END,
        changed_at = CASE WHEN {_NEWLY_PAUSED} THEN now() ELSE s.changed_at END,
        paused = s.paused OR {_NEWLY_PAUSED},
        consecutive_failures = {_FAILURES},
        failed_executions = {_FAILED},
        updated_at = now()
    RETURNING s.trigger_id, s.paused AND s.changed_by = 'scheduler' AND s.changed_at = now()
              AS newly_paused, s.note, s.failed_executions
),
error_runs AS (
    -- A failed run of a workflow with on_failure starts that workflow's latest version
    -- with a summary, once: the new run's id is derived from the failed run's, so a
    -- second write of the same final state inserts nothing. Runs started this way never
    -- start another (an error workflow that fails does not call itself, or a chain), nor
    -- do the children they start (a child of the failed workflow looped).
    INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_type,
                                     trigger_name, dedupe_key, input, context, tenant_id)
    SELECT md5('on_failure:' || f.id::text)::uuid, target.id, latest.id, 'on_failure',
           src.key, 'on_failure:' || f.id::text,
           jsonb_build_object(
               'execution_id', f.id, 'workflow', src.key, 'version', v.version,
               'trigger', f.trigger_name, 'trigger_type', f.trigger_type,
               'failed_node', f.failed_node, 'error_code', f.error_code,
               'error_message', f.error_message, 'started_at', f.start_time,
               'ended_at', f.end_time),
           jsonb_build_object('trigger', jsonb_build_object(
               'type', 'on_failure', 'name', src.key, 'failed_execution', f.id)),
           target.tenant_id
    FROM done f
    JOIN workflow_versions v ON v.id = f.workflow_version_id
    JOIN workflows src ON src.id = f.workflow_id
    JOIN workflows target ON target.tenant_id = src.tenant_id
                         AND target.key = v.env_config->>'on_failure'
                         AND target.status = 'active'
    JOIN workflow_versions latest ON latest.workflow_id = target.id AND latest.is_latest
    WHERE f.status = 'ERROR' AND f.trigger_type <> 'on_failure' AND NOT f.under_error_run
      AND v.env_config ? 'on_failure'
    ON CONFLICT DO NOTHING
    RETURNING id
),
-- A child run that ended wakes its parent if the parent waits for it (a workflow node
-- with wait): the parent's node runs again and finds the child's end. A parent this same
-- statement parks is woken by ``done`` itself: a statement updates a row once, so this
-- update of it is dropped. The count makes ``done`` finish first, whatever the plan: were
-- this update first, ``done``'s park or end of the parent would be the one dropped.
woken_parents AS (
    UPDATE workflow_executions p SET resume_at = now()
    FROM done f
    WHERE f.parent_execution_id IS NOT NULL AND p.id = f.parent_execution_id
      -- Not the retry of a child: it is its parent's child too, but no node of the
      -- parent waits for it.
      AND f.trigger_type <> 'retry'
      AND f.status IN ('SUCCESS', 'ERROR', 'CANCELED') AND p.status IN ('WAITING', 'RUNNING')
      AND (SELECT count(*) FROM done) >= 0
    RETURNING p.id
),
-- Runs claimable now that were not before (error runs, woken parents, runs that parked
-- until a time already past): the executors are told after the commit.
wakes AS (
    SELECT count(*) AS n
    FROM (SELECT id FROM error_runs UNION ALL SELECT id FROM woken_parents
          UNION ALL SELECT id FROM done WHERE status = 'WAITING' AND resume_at <= now()) x
),
acct_audit AS (
    -- In the trigger's tenant (the column's default is the default tenant's trail).
    INSERT INTO audit_log (tenant_id, actor, action, target_kind, target, target_id, note,
                           detail)
    SELECT a.tenant_id, 'scheduler', 'pause', 'trigger', a.full_name, a.trigger_id, x.note,
           jsonb_build_object('reason', 'pause_after_failures', 'threshold', a.threshold,
                              'failed_executions', to_jsonb(x.failed_executions::text[]))
    FROM acct_state x JOIN acct a USING (trigger_id)
    WHERE x.newly_paused
)
"""


def _shift_parameters(sql: str, shift: Callable[[int], int]) -> str:
    return re.sub(r"\$(\d+)", lambda m: f"${shift(int(m.group(1)))}", sql)


# The common batch in one statement (no BEGIN/COMMIT round trips; a statement is atomic on
# its own): the node rows, then the final states and a notification per finished run. Both
# modifying parts run to completion whatever the outer query reads; the notification is
# sent per row returned, which the caller reads in full.
# The node rows go first: their lock on the execution (FOR KEY SHARE) must come before this
# statement's update of it, or it would find the row updated by the statement itself and
# skip it (and its node rows). The finish waits for them by reading their count.
_FINISH_AFTER_NODES = _FINISH_TEMPLATE.format(after=" AND (SELECT count(*) FROM nodes) >= 0")
_WRITE_ONE_STATEMENT = f"""
WITH nodes AS ({_shift_parameters(_UPSERT_NODES.strip(), lambda n: 1 if n == 2 else n + 1)}),
done AS ({_shift_parameters(_FINISH_AFTER_NODES.strip(), lambda n: n if n == 1 else n + 1)})
{_ACCOUNT}
-- A row per run whose final state was written, or one row of nulls when none was; each
-- with the runs whose node rows were written (the others' lease is lost).
SELECT done.id, done.status, done.trigger_id, done.trigger_type, done.keyed,
       (SELECT n FROM wakes) AS wakes, w.node_runs
FROM (SELECT array_agg(DISTINCT execution_id::text) AS node_runs FROM nodes) w
LEFT JOIN done ON true
"""

_FINISH_ACCOUNTED = f"""
WITH done AS ({_FINISH.strip()})
{_ACCOUNT}
SELECT done.id, done.status, done.trigger_id, done.trigger_type, done.keyed,
       (SELECT n FROM wakes) AS wakes
FROM done
"""

_UPSERT_RESUME = """
INSERT INTO node_outputs_resume (execution_id, node_id, attempt, ciphertext)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bytea[])
    AS r (execution_id, node_id, attempt, ciphertext)
WHERE EXISTS (SELECT FROM workflow_executions e WHERE e.id = r.execution_id
              AND e.lease_owner = $5 AND e.status = 'RUNNING')
ON CONFLICT (execution_id, node_id, attempt) DO UPDATE SET ciphertext = EXCLUDED.ciphertext
"""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: JSON) -> JSON:
    """``value`` with what PostgreSQL's text and jsonb cannot hold replaced: NUL and lone
    surrogates by U+FFFD (in strings and keys), NaN and infinities by null. The executor
    keeps the exact value in a resume copy when this changes anything."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {
            _UNSTORABLE.sub("\ufffd", k) if isinstance(k, str) else k: storable(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or Infinity
    return value


def _json_text(value: JSON) -> str | None:
    """A document as JSON text for a ``text[]`` parameter cast to jsonb in SQL: asyncpg reads
    a Python list inside a ``jsonb[]`` parameter as one more array dimension, so a node
    whose output is a JSON array could not be stored."""
    return None if value is None else _storable_json(value)


def _storable_json(value: Any) -> str:
    """``value`` as JSON text holding only what PostgreSQL's text and jsonb can store (see
    :func:`storable`); datetimes in RFC 3339."""
    try:
        # orjson (several times faster) writes NaN and Infinity as null, as storable()
        # does, and escapes NUL; it refuses lone surrogates, keys that are not strings and
        # integers beyond 64 bits. Those, and a NUL, take the slow path.
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        pass
    else:
        if "\\u0000" not in text:
            return text
    return json.dumps(storable(value), default=_isoformat)


def _storable_text(value: str | None) -> str | None:
    return None if value is None else _UNSTORABLE.sub("\ufffd", value)


_NODE_FIELDS = (
    "execution_id", "node_id", "node_type", "status", "attempt", "input", "output", "branch",
    "error_code", "error_message", "start_time", "end_time", "execution_time_ms",
    "from_node_id", "edge_condition",
)


def _node_rows_json(rows: Sequence[NodeRow]) -> str:
    """The rows as one JSON array for :data:`_UPSERT_NODES`."""
    # A row's first fields are _NODE_FIELDS, in order (zip stops before resume_copy).
    return _storable_json([dict(zip(_NODE_FIELDS, row, strict=False)) for row in rows])


def _isoformat(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _finish_arrays(finished: Sequence[ExecutionUpdate]) -> list[list[Any]]:
    return [
        [f.id for f in finished],
        [f.status for f in finished],
        [_json_text(f.output) for f in finished],
        [f.error_code for f in finished],
        [_storable_text(f.error_message) for f in finished],
        [f.resume_at for f in finished],
        [f.failed_node for f in finished],
        [f.worked_until for f in finished],
    ]


async def write_progress(
    conn: asyncpg.Connection,
    owner: str,
    nodes: Sequence[NodeRow],
    finished: Sequence[ExecutionUpdate],
    lost: set[str] | None = None,
) -> set[str]:
    """Write node rows and final execution states in one transaction; returns the ids of
    executions whose final state was written. Runs whose lease this owner lost are left
    alone (another process owns them now): neither their node rows nor their final state
    is written, and the ids of those with node rows here are added to ``lost``. The runs
    that ended are announced after the commit
    (:func:`triggerd.store.notifications.send_finished`)."""
    copies = [n for n in nodes if n.resume_copy is not None]
    if not copies and not any(
        f.drop_resume_copies and f.status in FINAL_STATUSES for f in finished
    ):
        # No resume copies to write or drop (the common case): one statement, one round trip.
        if not finished:
            if nodes:
                _note_lost(lost, nodes, await conn.fetch(
                    _UPSERT_NODES, _node_rows_json(nodes), owner))
            return set()
        rows = await conn.fetch(
            _WRITE_ONE_STATEMENT, owner, _node_rows_json(nodes), *_finish_arrays(finished)
        )
        if nodes and lost is not None:
            kept = set(rows[0]["node_runs"] or ()) if rows else set()
            lost.update({n.execution_id for n in nodes} - kept)
        rows = [r for r in rows if r["id"] is not None]
    else:
        async with conn.transaction():
            if nodes:
                _note_lost(lost, nodes, await conn.fetch(
                    _UPSERT_NODES, _node_rows_json(nodes), owner))
            if copies:
                # After their node rows, which a concurrent delete of the execution must
                # wait for; its trigger then removes these too (migration 0004).
                await conn.execute(
                    _UPSERT_RESUME,
                    [n.execution_id for n in copies],
                    [n.node_id for n in copies],
                    [n.attempt for n in copies],
                    [n.resume_copy for n in copies],
                    owner,
                )
            rows = []
            if finished:
                rows = await conn.fetch(_FINISH_ACCOUNTED, owner, *_finish_arrays(finished))
                written = {str(r["id"]) for r in rows}
                # Only runs known to have copies pay for this statement (most have none).
                drop = [
                    f.id
                    for f in finished
                    if f.drop_resume_copies and f.status in FINAL_STATUSES and f.id in written
                ]
                if drop:
                    await conn.execute(
                        "DELETE FROM node_outputs_resume WHERE execution_id = ANY($1::uuid[])",
                        drop,
                    )
    if any(r["wakes"] for r in rows):
        await send_hints(conn, EXECUTIONS.wire, [DUE])
    if any(r["keyed"] and r["status"] in FINAL_STATUSES for r in rows):
        # A run of a concurrency key (or a buffer_one schedule) ended, maybe after a
        # park (its executor's own hint covers only runs it claimed from the held queue):
        # the next of its key may start now, not at the executors' next poll.
        await send_hints(conn, EXECUTIONS.wire, [HELD])
    await send_finished(conn, FINISHED.wire, [
        (str(r["id"]), None if r["trigger_type"] != "webhook" else str(r["trigger_id"]))
        for r in rows if r["status"] in FINAL_STATUSES])
    return {str(r["id"]) for r in rows}


def _note_lost(lost: set[str] | None, nodes: Sequence[NodeRow], written: Sequence[Any]) -> None:
    if lost is not None:
        lost.update({n.execution_id for n in nodes} - {str(r["execution_id"]) for r in written})


# Per tenant (its own retention, or the default one): the tenants are found with one
# probe each of workflow_executions_tenant_created (a loose index scan), and each one's
# oldest runs are read from the same index, oldest first. A run ends after it was created,
# so every run that ended before the cut was created before it: the range read stops at
# the cut, whatever the history of a tenant that keeps its runs longer. Within one pass a
# batch starts after the last run the previous one deleted ($5-$7): old runs that are
# kept (parked for weeks, or their parent's) were read again by every batch (66 ms a
# batch behind 100,000 of them in a 500,000-run history, against 11 ms).
_RETENTION = """
WITH RECURSIVE tenants AS (
    (SELECT tenant_id FROM workflow_executions ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT e.tenant_id FROM workflow_executions e WHERE e.tenant_id > t.tenant_id
             ORDER BY e.tenant_id LIMIT 1)
    FROM tenants t WHERE t.tenant_id IS NOT NULL
), cut AS (
    SELECT t.tenant_id, now() - coalesce(o.ms, $1) * interval '1 millisecond' AS before,
           -- An index condition, not an OR that the scan would filter by.
           coalesce(p.created_at, '-infinity') AS done_at,
           coalesce(p.id, '00000000-0000-0000-0000-000000000000') AS done_id
    FROM tenants t LEFT JOIN unnest($3::text[], $4::bigint[]) AS o (tenant, ms)
      ON o.tenant = t.tenant_id
    LEFT JOIN unnest($5::text[], $6::timestamptz[], $7::uuid[]) AS p (tenant, created_at, id)
      ON p.tenant = t.tenant_id
    WHERE t.tenant_id IS NOT NULL
), doomed AS (
    SELECT x.id FROM cut c CROSS JOIN LATERAL (
        SELECT e.id FROM workflow_executions e
         WHERE e.tenant_id = c.tenant_id AND e.created_at < c.before
           AND (e.created_at, e.id) > (c.done_at, c.done_id)
           AND e.status IN ('SUCCESS', 'ERROR', 'CANCELED') AND e.end_time < c.before
           -- Test runs keep [executor] test_retention (delete_old_test_runs), and a run
           -- whose child still runs keeps it pointing at something.
           AND NOT e.test
           -- A delivery id dedupes until its key expires (dedupe.ttl, 7 days by default,
           -- may outlast the retention): deleted, a redelivery would start a second run.
           AND (e.dedupe_expires_at IS NULL OR e.dedupe_expires_at <= now())
           -- Both checks are index probes per candidate, written so the planner cannot
           -- make them joins: as NOT EXISTS it read every active run once per candidate
           -- when the statistics said there were none (ANALYZE of a finished history;
           -- webhooks stored meanwhile), 1-3 s a batch behind 60,000 NEW runs.
           AND NOT (SELECT EXISTS (SELECT FROM workflow_executions k
                                   WHERE k.parent_execution_id = e.id
                                     AND k.status IN ('NEW', 'RUNNING', 'WAITING')))
           -- A child whose parent has not ended: its workflow node reads it when the
           -- parent goes on (deleted, it would be started a second time). The parent's
           -- status is read by its key (a status test in the WHERE let the planner scan
           -- the partial index of active runs instead).
           AND coalesce((SELECT p.status FROM workflow_executions p
                          WHERE p.id = e.parent_execution_id), 'gone')
               NOT IN ('NEW', 'RUNNING', 'WAITING')
         ORDER BY e.created_at, e.id LIMIT $2 FOR UPDATE SKIP LOCKED) x
), gone AS (
    -- An index probe per id (see _FRESH on IN (subquery) in a big table).
    DELETE FROM workflow_executions WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING tenant_id, created_at, id
)
-- Every tenant, with its cut: one whose batch was not full read all its runs up to the
-- cut, and the next batch starts there.
SELECT c.tenant_id, c.before, count(g.id) AS deleted,
       (array_agg(g.created_at ORDER BY g.created_at DESC, g.id DESC))[1] AS created_at,
       (array_agg(g.id ORDER BY g.created_at DESC, g.id DESC))[1] AS id
FROM cut c LEFT JOIN gone g ON g.tenant_id = c.tenant_id
GROUP BY c.tenant_id, c.before
"""

# Per tenant, where the next batch starts: after the last run a full batch deleted, or at
# the cut a batch that was not full read up to. Kept runs before it (a live delivery id,
# a parked run, a parent's child) are not read again until the positions start over
# (executor.retention.RetentionCursor), so a week of runs held by their keys is not read
# by every pass.
RetentionPositions = dict[str, tuple[datetime, str]]
_LAST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


async def retention_batch(conn: Conn, older_than: timedelta, batch: int = 500,
                          tenants: Mapping[str, timedelta] | None = None,
                          positions: RetentionPositions | None = None) -> int:
    """Delete up to ``batch`` finished executions per tenant older than ``older_than`` (or
    the tenant's own retention in ``tenants``); their node and request rows go with them.
    Returns how many were deleted. ``positions`` (updated here) makes each batch start
    after the runs the previous ones looked at."""
    overrides = tenants or {}
    done = positions if positions is not None else {}
    rows = await conn.fetch(
        _RETENTION,
        int(older_than.total_seconds() * 1000),
        batch,
        list(overrides),
        [int(d.total_seconds() * 1000) for d in overrides.values()],
        list(done), [p[0] for p in done.values()], [p[1] for p in done.values()],
    )
    for row in rows:
        if row["deleted"] >= batch:
            done[row["tenant_id"]] = (row["created_at"], str(row["id"]))
        else:
            done[row["tenant_id"]] = (row["before"], _LAST_ID)
    return sum(int(row["deleted"]) for row in rows)


async def drop_stale_resume_copies(conn: Conn, batch: int = 500) -> int:
    """Delete resume copies of runs that ended (or are gone) by a path that did not drop
    them itself; returns how many were deleted. A safety net: the table stays small."""
    result: str = await conn.execute(
        "DELETE FROM node_outputs_resume WHERE ctid IN ("
        " SELECT r.ctid FROM node_outputs_resume r WHERE NOT EXISTS ("
        "  SELECT 1 FROM workflow_executions e WHERE e.id = r.execution_id"
        "  AND e.status IN ('NEW', 'RUNNING', 'WAITING')) LIMIT $1)",
        batch,
    )
    return int(result.split()[-1])


async def release_expired_dedupe_keys(conn: Conn, batch: int = 1000) -> int:
    """Forget webhook dedupe keys past their TTL so a later delivery with the same id runs."""
    result: str = await conn.execute(
        "UPDATE workflow_executions SET dedupe_key = NULL, dedupe_expires_at = NULL"
        " WHERE id IN (SELECT id FROM workflow_executions WHERE dedupe_expires_at < now()"
        " LIMIT $1 FOR UPDATE SKIP LOCKED)",
        batch,
    )
    return int(result.split()[-1])


# The concurrency key of a buffer_one schedule's runs (see store.slots' _RECORD).
OVERLAP_KEY = "overlap:buffer_one"

# A retry of a run held by a concurrency key is a run of that key too: it waits for the
# key's place like the run it retries (it started beside the key's running runs). A
# buffer_one schedule's key is not one: that run was held for its slot, not a retry.
_RETRY_KEEPS_KEY = f"""
UPDATE workflow_executions r SET concurrency_key = o.concurrency_key,
       concurrency_limit = o.concurrency_limit
  FROM workflow_executions o
 WHERE r.id = $1 AND o.id = $2 AND o.concurrency_key IS NOT NULL
   AND o.concurrency_key <> '{OVERLAP_KEY}'
RETURNING r.id
"""


# Whether a run (alias {0}) is canceled or being canceled: ended CANCELED, or flagged by a
# cancel and not ended (its executor ends it CANCELED; a cancel of a parking run leaves
# it WAITING with the flag until its executor takes it up). Only cancels set the flag.
_CANCEL_REACHED = ("({0}.status = 'CANCELED' OR ({0}.cancel_requested"
                   " AND {0}.status IN ('NEW', 'RUNNING', 'WAITING')))")

# The nearest run canceled or being canceled among run $1 and the runs above it (through
# ``parent_execution_id``), as the sweep of orphaned children walks them.
_CANCELED_ANCESTOR = f"""
WITH RECURSIVE up AS (
  SELECT id, status, cancel_requested, parent_execution_id, 1 AS depth
    FROM workflow_executions WHERE id = $1
  UNION ALL
  SELECT p.id, p.status, p.cancel_requested, p.parent_execution_id, up.depth + 1
    FROM up JOIN workflow_executions p ON p.id = up.parent_execution_id
   WHERE NOT {_CANCEL_REACHED.format('up')} AND up.depth <= {MAX_WORKFLOW_DEPTH_LIMIT})
SELECT id::text, status FROM up WHERE {_CANCEL_REACHED.format('up')} LIMIT 1
"""

# Run $1 and the runs above it, nearest first.
_ANCESTORS = f"""
WITH RECURSIVE up AS (
  SELECT id, parent_execution_id, 1 AS depth FROM workflow_executions WHERE id = $1
  UNION ALL
  SELECT p.id, p.parent_execution_id, up.depth + 1
    FROM up JOIN workflow_executions p ON p.id = up.parent_execution_id
   WHERE up.depth <= {MAX_WORKFLOW_DEPTH_LIMIT})
SELECT id::text FROM up ORDER BY depth
"""


async def retry_execution(conn: Conn, execution_id: str) -> str:
    """A new execution with the same input, version and trigger, linked to the old one.
    The retry of a child run (a workflow node's) is a child of the same parent: a cancel
    of the parent (or of a run above it) reaches it as it reaches the parent's others."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await retry_execution(acquired, execution_id)
    old = await get_execution(conn, execution_id)
    if isinstance(old.context, dict) and "test" in old.context:
        # Its workflow is a scratch copy only `triggerd test` runs (migration 0025).
        raise Conflict(f"execution {execution_id} is a test run: run triggerd test again"
                       " instead of retrying it")
    parent = old.parent_execution_id
    if parent is not None:
        canceled = await conn.fetchrow(_CANCELED_ANCESTOR, parent)
        if canceled is not None:
            # As its parent's child, the retry would be canceled with it (by the sweep of
            # orphaned children) as it starts. A cancel that commits after this look is
            # settle_retry's to catch.
            ancestor = canceled["id"]
            how = "was canceled" if canceled["status"] == "CANCELED" else "is being canceled"
            raise Conflict(
                f"execution {execution_id} was started by the run {ancestor}, which {how}:"
                f" its retry would be canceled with it; retry {ancestor} instead")
    item = NewExecution(
        workflow_id=old.workflow_id,
        trigger_id=old.trigger_id,
        trigger_name=old.trigger_name,
        trigger_type="retry",
        input=old.input if isinstance(old.input, dict) else {},
        context={**(old.context if isinstance(old.context, dict) else {}), "retry_of": old.id},
        scheduled_for=old.scheduled_for,
        version=old.version,
        retry_of=old.id,
    )
    # One transaction: no claim sees the row before it has its key.
    async with conn.transaction():
        await insert_executions(conn, [item])
        if parent is not None:
            await conn.execute(
                "UPDATE workflow_executions SET parent_execution_id = $2 WHERE id = $1",
                item.id, parent)
        if await conn.fetchval(_RETRY_KEEPS_KEY, item.id, old.id) is not None:
            await send_hints(conn, EXECUTIONS.wire, [HELD])
    return item.id


async def settle_retry(conn: Conn, execution_id: str) -> bool:
    """Cancel the retry ``execution_id`` of a child run, as its parent's cancel would have,
    if a run above it is canceled or being canceled; returns whether it was. Call it after
    the retry's commit, outside a transaction.

    retry_execution's look for a canceled run above and a cancel's walk down
    (cancel_children) are two statements under READ COMMITTED: a cancel whose walk read
    before the retry's commit missed the new run, and the retry's look, before the cancel's
    commit, missed the cancel. Locking the ancestors in the retry's transaction instead
    would deadlock: a cancel locks its run, then the runs below it, then its parent (to wake
    it); a child's end locks the child, then its parent. Here each ancestor is locked FOR
    SHARE in a statement of its own (holding nothing else while it waits), which waits for
    a cancel still writing it; the look after that sees every cancel that did not see the
    retry, whose update of an ancestor came before the retry's commit."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            return await settle_retry(acquired, execution_id)
    parent = await conn.fetchval(
        "SELECT parent_execution_id::text FROM workflow_executions WHERE id = $1",
        execution_id)
    if parent is None:
        return False
    for ancestor in await conn.fetch(_ANCESTORS, parent):
        await conn.execute("SELECT FROM workflow_executions WHERE id = $1 FOR SHARE",
                           ancestor["id"])
    canceled = await conn.fetchrow(_CANCELED_ANCESTOR, parent)
    if canceled is None:
        return False
    await cancel_children(conn, [canceled["id"]])
    return True
