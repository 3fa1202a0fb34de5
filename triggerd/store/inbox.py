"""The webhook inbox as a list: one page of stored requests, one request, the replay's
execution, and retention of the rows no run's deletion removes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from triggerd.ids import WEBHOOK_REQUEST, IdQuery
from triggerd.model import JSON, Correlation
from triggerd.notifications.channels import EXECUTIONS, HELD
from triggerd.store.executions import correlation_arrays
from triggerd.store.id_prefixes import resolve_id

Conn = Any  # a connection or a pool

OUTCOMES = ("accepted", "filtered", "debounced")


@dataclass(frozen=True, kw_only=True)
class InboxSummary:
    """A stored request as listed (no headers or body)."""

    id: str
    trigger_id: str | None
    trigger: str | None  # workflow_key/trigger_name; None when the trigger was deleted
    method: str
    path: str
    received_at: datetime
    outcome: str
    execution_id: str | None
    delivery_count: int
    last_seen_at: datetime | None
    body_bytes: int
    detail: str | None
    tenant_id: str | None = None  # None when the trigger was deleted


@dataclass(frozen=True, kw_only=True)
class InboxRequest:
    """A stored request in full (auth material was removed before it was stored)."""

    summary: InboxSummary
    query: dict[str, JSON]
    headers: dict[str, JSON]
    body: bytes  # its start only when read with ``shown_bytes``: see ``body_cut``
    remote_addr: str | None

    @property
    def body_cut(self) -> bool:
        """Whether ``body`` is the start of a longer stored body (``summary.body_bytes``)."""
        return len(self.body) < self.summary.body_bytes


_SUMMARY = (
    "r.id::text AS id, r.trigger_id::text AS trigger_id,"
    " CASE WHEN w.key IS NULL THEN NULL ELSE w.key || '/' || t.name END AS trigger,"
    " r.method, r.path, r.received_at, r.outcome, r.execution_id::text AS execution_id,"
    " r.delivery_count, r.last_seen_at, octet_length(r.body) AS body_bytes, r.detail,"
    " t.tenant_id"
)
_FROM = (
    " FROM webhook_requests r LEFT JOIN workflow_triggers t ON t.id = r.trigger_id"
    " LEFT JOIN workflows w ON w.id = t.workflow_id"
)


def _summary(row: Any) -> InboxSummary:
    return InboxSummary(
        id=row["id"], trigger_id=row["trigger_id"], trigger=row["trigger"],
        method=row["method"], path=row["path"], received_at=row["received_at"],
        outcome=row["outcome"], execution_id=row["execution_id"],
        delivery_count=row["delivery_count"], last_seen_at=row["last_seen_at"],
        body_bytes=row["body_bytes"], detail=row["detail"], tenant_id=row["tenant_id"],
    )


def _conditions(alias: str, *, trigger_id: str | None, outcome: str | None,
                after_id: str | None) -> list[str]:
    """The filters as literals, each checked first (a UUID, an outcome of OUTCOMES)."""
    found: list[str] = []
    if trigger_id is not None:
        found.append(f"{alias}.trigger_id = '{uuid.UUID(trigger_id)}'::uuid")
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        found.append(f"{alias}.outcome = '{outcome}'")
    if after_id is not None:
        found.append(f"{alias}.id < '{uuid.UUID(after_id)}'::uuid")
    return found


def inbox_list_query(
    *, trigger_id: str | None, outcome: str | None, after_id: str | None, limit: int,
    tenant: str | None = None,
) -> tuple[str, list[Any]]:
    """One page, newest first by id (time-ordered), with only the conditions asked for
    (a tenant's page without a trigger: :func:`tenant_inbox_query`).

    The values are written into the statement as literals, each checked first (a UUID, an
    outcome of :data:`OUTCOMES`, an int), so there is no generic plan: with parameters,
    PostgreSQL's generic plan for a rare trigger or outcome walks the primary key and
    filters, reading the whole inbox; with the values it picks the index of migration 0012
    that fits and reads about one page."""
    conditions = _conditions("r", trigger_id=trigger_id, outcome=outcome, after_id=after_id)
    args: list[Any] = []
    if tenant is not None:
        # A parameter: a tenant name is not checked like the values above. (A request
        # whose trigger was deleted belongs to no tenant: only all-tenant lists show it.)
        args.append(tenant)
        conditions.append("t.tenant_id = $1")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {_SUMMARY}{_FROM}{where} ORDER BY r.id DESC LIMIT {int(limit)}", args


# Up to this many webhook triggers, a tenant's page is one ordered branch per trigger with
# its id as a literal (the planner sees how many requests each has); beyond, one lateral
# read per trigger, planned once for all.
MAX_LITERAL_TRIGGERS = 64


def tenant_inbox_query(
    trigger_ids: Sequence[str], *, outcome: str | None, after_id: str | None, limit: int,
    tenant: str,
) -> tuple[str, list[Any]]:
    """A tenant's page without a trigger filter: each of its webhook triggers offers its
    newest requests (one index read each, webhook_requests_trigger_id or
    _trigger_outcome_id) and the newest of those make the page, whatever the size of the
    other tenants' inbox. Filtering all requests by the joined trigger's tenant read the
    whole inbox (61 ms a page at 520,000 requests, 232 ms near the tenant's last one)."""
    limit = int(limit)
    own = "".join(
        f" AND {c}" for c in _conditions("r", trigger_id=None, outcome=outcome,
                                        after_id=after_id))

    def offer(trigger: str) -> str:
        return (f"SELECT {_SUMMARY}, r.id AS sort_id{_FROM} WHERE r.trigger_id = {trigger}"
                f"{own} ORDER BY r.id DESC LIMIT {limit}")

    if len(trigger_ids) <= MAX_LITERAL_TRIGGERS:
        offers = " UNION ALL ".join(
            f"({offer(repr(str(uuid.UUID(t))) + '::uuid')})" for t in trigger_ids)
    else:
        # Each trigger offers only ids, from its index in order (planned once for all
        # triggers, whole rows made it read and sort every trigger's whole inbox: 1.8 s a
        # page for 1,000 triggers over 220,000 requests); the page's rows are read last.
        mine = "".join(
            f" AND {c}" for c in _conditions("q", trigger_id=None, outcome=outcome,
                                            after_id=after_id))
        offers = (
            f"SELECT {_SUMMARY}, r.id AS sort_id{_FROM} WHERE r.id = ANY(ARRAY("
            "SELECT x.id FROM workflow_triggers tt CROSS JOIN LATERAL ("
            f"SELECT q.id FROM webhook_requests q WHERE q.trigger_id = tt.id{mine}"
            f" ORDER BY q.id DESC LIMIT {limit}) x"
            f" WHERE tt.tenant_id = $1 AND tt.type = 'webhook' ORDER BY x.id DESC"
            f" LIMIT {limit}))")
    # The tenant is checked again in the page (the literal branches do not name it).
    return (f"SELECT * FROM ({offers}) o WHERE o.tenant_id = $1"
            f" ORDER BY o.sort_id DESC LIMIT {limit}"), [tenant]


async def list_inbox(
    conn: Conn, *, trigger_id: str | None = None, outcome: str | None = None,
    after_id: str | None = None, limit: int = 50, tenant: str | None = None,
) -> list[InboxSummary]:
    if tenant is not None and trigger_id is None:
        # Its webhook triggers (migration 0032's index), then their newest requests.
        triggers = [str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM workflow_triggers WHERE tenant_id = $1 AND type = 'webhook'",
            tenant)]
        if not triggers:
            return []
        query, args = tenant_inbox_query(triggers, outcome=outcome, after_id=after_id,
                                          limit=limit, tenant=tenant)
    else:
        query, args = inbox_list_query(
            trigger_id=trigger_id, outcome=outcome, after_id=after_id, limit=limit,
            tenant=tenant)
    return [_summary(r) for r in await conn.fetch(query, *args)]


async def get_inbox_request(
    conn: Conn, request_id: str, *, for_update: bool = False, shown_bytes: int | None = None
) -> InboxRequest | None:
    """One stored request; ``for_update`` locks its row (replays of one request are
    numbered one after another). With ``shown_bytes`` (a page), the body comes as its first
    ``shown_bytes`` bytes: PostgreSQL cuts it, so a 10 MB body is neither sent nor
    rendered whole (its size stays in ``summary.body_bytes``)."""
    lock = " FOR UPDATE OF r" if for_update else ""
    body = "r.body" if shown_bytes is None else "substring(r.body FROM 1 FOR $2) AS body"
    row = await conn.fetchrow(
        f"SELECT {_SUMMARY}, r.query, r.headers, {body}, r.remote_addr{_FROM}"
        f" WHERE r.id = $1::uuid{lock}",
        request_id, *(() if shown_bytes is None else (shown_bytes,)),
    )
    if row is None:
        return None
    return InboxRequest(
        summary=_summary(row), query=row["query"], headers=row["headers"],
        body=bytes(row["body"]), remote_addr=row["remote_addr"],
    )


# The ids in a prefix's range, on the primary key index. Visible as get_inbox_request's
# callers check: a tenant sees its triggers' requests; a request whose trigger was deleted
# has no tenant, and only an all-tenant actor ($3 NULL) sees it.
REQUEST_ID_RANGE = (
    "SELECT r.id::text AS id FROM webhook_requests r"
    " LEFT JOIN workflow_triggers t ON t.id = r.trigger_id"
    " WHERE r.id BETWEEN $1::uuid AND $2::uuid AND ($3::text IS NULL OR t.tenant_id = $3)"
    " ORDER BY r.id LIMIT 2"
)


async def resolve_request_id(conn: Conn, query: IdQuery, tenant: str | None = None) -> str:
    """The one webhook request id ``query`` names (among ``tenant``'s; None: any), by the
    rules of :func:`resolve_id`: another tenant's requests neither make a prefix ambiguous
    nor are named by it."""
    return await resolve_id(conn, REQUEST_ID_RANGE, query, WEBHOOK_REQUEST, tenant)


async def next_replay_number(conn: Conn, request_id: str) -> int:
    """The n of the request's next replay (``replay:<id>:<n>``): one past the highest the
    kept replays hold. Their count + 1 named a kept one's key once retention had removed
    older replays, and every replay after was refused."""
    value: int = await conn.fetchval(
        "SELECT coalesce(max(substring(dedupe_key FROM '[0-9]{1,9}$')::int), 0) + 1"
        " FROM workflow_executions WHERE replay_of = $1::uuid AND dedupe_key LIKE 'replay:%'",
        request_id)
    return value


async def insert_replay(
    conn: asyncpg.Connection,
    *,
    execution_id: str,
    workflow_id: str,
    version_id: str,
    trigger_id: str,
    trigger_name: str,
    dedupe_key: str,
    input: dict[str, JSON],
    context: dict[str, JSON],
    replay_of: str,
    correlation: Correlation | None = None,
    concurrency: tuple[str, int] | None = None,
) -> bool:
    """The replay's run; False when its dedupe key exists already (nothing inserted).
    ``concurrency``: its (key, limit), held back like any run of that key."""
    key, limit = concurrency if concurrency is not None else (None, None)
    row = await conn.fetchrow(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,"
        " trigger_name, trigger_type, dedupe_key, input, context, replay_of, tenant_id,"
        " agent_id, session_id, conversation_id, correlation, concurrency_key,"
        " concurrency_limit)"
        " SELECT $1, $2, $3, $4, $5, 'webhook', $6, $7::jsonb, $8::jsonb, $9, t.tenant_id,"
        " $10, $11, $12, $13, $14, $15 FROM workflow_triggers t WHERE t.id = $4"
        " ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING"
        " RETURNING id",
        execution_id, workflow_id, version_id, trigger_id, trigger_name, dedupe_key,
        input, context, replay_of,
        *(column[0] for column in correlation_arrays([correlation])),
        key, limit,
    )
    if row is None:
        return False
    await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire,
                       "1" if key is None else HELD)
    return True


@dataclass
class InboxPosition:
    """Where the next inbox retention batch starts: rows received before ``after`` were
    read by an earlier batch that was not full (those kept, by a live delivery id, are not
    read again until the position starts over; executor.retention.RetentionCursor)."""

    after: datetime | None = None


_INBOX_RETENTION = """
WITH gone AS (
    DELETE FROM webhook_requests WHERE id IN (
        SELECT r.id FROM webhook_requests r
        WHERE (r.execution_id IS NULL OR r.outcome = 'debounced')
          AND r.received_at < now() - $1 * interval '1 millisecond'
          AND r.received_at >= coalesce($3::timestamptz, '-infinity')
          -- A filtered or debounced row's delivery id dedupes until it expires, as a run's.
          AND (r.dedupe_expires_at IS NULL OR r.dedupe_expires_at <= now())
          AND (r.execution_id IS NULL OR NOT EXISTS (
               SELECT 1 FROM workflow_executions e WHERE e.id = r.execution_id))
        LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deleted, now() - $1 * interval '1 millisecond' AS cut
"""


async def inbox_retention_batch(conn: Conn, older_than: timedelta, batch: int = 500,
                                position: InboxPosition | None = None) -> int:
    """Delete up to ``batch`` inbox rows older than ``older_than`` that no run's deletion
    removes: filtered ones, and debounced ones whose run is gone. (A row that shares its
    id with a run goes with that run, in executions' retention.) ``position`` (updated
    here) makes a batch start where the previous one, not full, read up to."""
    row = await conn.fetchrow(
        _INBOX_RETENTION, int(older_than.total_seconds() * 1000), batch,
        None if position is None else position.after,
    )
    assert row is not None
    deleted = int(row["deleted"])
    if position is not None and deleted < batch:
        position.after = row["cut"]
    return deleted
