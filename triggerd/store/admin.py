"""SQL behind the admin API and the metrics endpoint: execution pages (keyset pagination),
cron slot history and queue depth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from triggerd.store.executions import ExecutionScope, execution_list_query
from triggerd.store.records import ExecutionRecord, SlotRecord, row_to

# An asyncpg Connection or Pool (asyncpg ships no type information).
Conn = Any

# The statuses of runs that are not finished yet, in the order they are reported.
ACTIVE_STATUSES = ("NEW", "RUNNING", "WAITING")


@dataclass(frozen=True, kw_only=True)
class ExecutionPosition:
    """Where a page of executions ended: the last row's ``created_at`` and ``id``. Rows are
    ordered newest first by (created_at, id), so the pair is a stable position even when
    many rows share one ``created_at``."""

    created_at: datetime
    id: str


async def page_executions(
    conn: Conn,
    *,
    status: str | None = None,
    trigger_id: str | None = None,
    workflow_id: str | None = None,
    limit: int = 50,
    after: ExecutionPosition | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
    scope: ExecutionScope | None = None,
    test: bool = False,
) -> list[ExecutionRecord]:
    """Up to ``limit`` executions, newest first, strictly after ``after`` when given;
    ``since`` (inclusive) and ``before`` (exclusive) bound created_at (``test``: the test
    runs instead of the others)."""
    query, args = execution_list_query(
        scope=scope,
        test=test,
        status=status,
        trigger_id=trigger_id,
        workflow_id=workflow_id,
        after=None if after is None else (after.created_at, after.id),
        since=since,
        before=before,
        limit=limit,
    )
    rows = await conn.fetch(query, *args)
    return [row_to(ExecutionRecord, r) for r in rows]


async def slot_history(conn: Conn, trigger_id: str, *, limit: int = 50) -> list[SlotRecord]:
    """The newest ``limit`` recorded cron slots of a trigger, newest first."""
    rows = await conn.fetch(
        "SELECT trigger_id, scheduled_for, outcome, execution_id, decided_at, detail"
        " FROM trigger_slots WHERE trigger_id = $1 ORDER BY scheduled_for DESC LIMIT $2",
        trigger_id,
        limit,
    )
    return [row_to(SlotRecord, r) for r in rows]


async def slot_counts_by_day(
    conn: Conn, trigger_id: str, *, since: datetime, zone: str, limit: int
) -> tuple[dict[tuple[date, str], int], bool]:
    """Ledger rows of a trigger since ``since``, counted by (day in ``zone``, outcome):
    at most the newest ``limit`` rows are read (a primary-key range scan); the flag says
    the limit was reached (older days are then partial)."""
    rows = await conn.fetch(
        "SELECT (s.scheduled_for AT TIME ZONE $3)::date AS day, s.outcome, count(*) AS n,"
        " sum(count(*)) OVER () AS total"
        " FROM (SELECT scheduled_for, outcome FROM trigger_slots"
        "       WHERE trigger_id = $1 AND scheduled_for >= $2"
        "       ORDER BY scheduled_for DESC LIMIT $4) s GROUP BY 1, 2",
        trigger_id, since, zone, limit)
    total = int(rows[0]["total"]) if rows else 0
    return {(r["day"], r["outcome"]): int(r["n"]) for r in rows}, total >= limit


async def queue_depth(conn: Conn) -> dict[tuple[str, str], int]:
    """How many executions are NEW, RUNNING and WAITING, by (tenant, status) (pairs with
    none are left out): one index scan per status on ``workflow_executions_status_created``."""
    rows = await conn.fetch(
        "SELECT tenant_id, status, count(*) AS n FROM workflow_executions"
        " WHERE status = ANY($1::text[]) AND NOT test GROUP BY tenant_id, status",
        list(ACTIVE_STATUSES),
    )
    return {(row["tenant_id"], row["status"]): int(row["n"]) for row in rows}


async def monitored_triggers(conn: Conn, limit: int) -> list[dict[str, Any]]:
    """The enabled triggers of active workflows marked ``monitor: true`` (at most ``limit``,
    by name), with their type, config and runtime state: the partial index
    ``workflow_triggers_monitored`` finds them without reading the others."""
    rows = await conn.fetch(
        "SELECT w.key || '/' || t.name AS name, t.type, t.config::text AS config,"
        " st.last_success_at, coalesce(st.paused, false) AS paused,"
        " coalesce(st.scheduled_runs, 0) AS scheduled_runs"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
        " LEFT JOIN trigger_state st ON st.trigger_id = t.id"
        " WHERE (t.config->>'monitor') = 'true' AND t.enabled AND w.status = 'active'"
        " ORDER BY 1 LIMIT $1", limit)
    return [dict(r) for r in rows]


def is_invalid_value(exc: BaseException) -> bool:
    """Whether PostgreSQL (or asyncpg encoding an argument) refused a value as invalid for
    its column, e.g. an integer out of range: the request's fault, not the server's."""
    return isinstance(exc, asyncpg.DataError)
