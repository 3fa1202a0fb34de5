"""Backfills (migration 0010): made by the backfill operation, worked by the daemons'
backfill runners under a lease, a chunk at a time (see triggerd/backfill.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triggerd.cron import utc_iso
from triggerd.errors import NotFound
from triggerd.model import DEFAULT_TENANT
from triggerd.notifications.channels import EXECUTIONS
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.key_locks import key_lock

Conn = Any  # a connection or a pool


@dataclass(frozen=True, kw_only=True)
class BackfillRecord:
    id: str
    trigger_id: str
    trigger: str  # workflow/trigger
    range_from: datetime
    range_to: datetime
    only_missing: bool
    overlap: str
    rate_per_second: float
    total: int
    next_index: int
    started: int
    skipped: int
    state: str
    actor: str
    note: str | None
    created_at: datetime
    finished_at: datetime | None
    tenant_id: str = DEFAULT_TENANT  # the trigger's
    # A running backfill under an overlap policy other than allow starts its next slot
    # only when no run of the trigger is active (NEW, RUNNING, WAITING): how many are.
    waiting_for: int = 0


_COLUMNS = """b.id::text AS id, b.trigger_id::text AS trigger_id, w.key || '/' || t.name AS trigger,
    b.range_from, b.range_to, b.only_missing, b.overlap, b.rate_per_second,
    cardinality(b.slots) AS total, b.next_index, b.started, b.skipped, b.state, b.actor,
    b.note, b.created_at, b.finished_at, t.tenant_id,
    CASE WHEN b.state = 'running' AND b.overlap <> 'allow' THEN
        (SELECT count(*) FROM workflow_executions e WHERE e.trigger_id = b.trigger_id
           AND e.status IN ('NEW', 'RUNNING', 'WAITING'))::int
    ELSE 0 END AS waiting_for"""
_FROM = ("FROM backfills b JOIN workflow_triggers t ON t.id = b.trigger_id"
         " JOIN workflows w ON w.id = t.workflow_id")


async def ledger_outcomes(conn: Conn, trigger_id: str, instants: list[datetime]
                          ) -> dict[datetime, str]:
    """The recorded outcome of each of ``instants`` that has a ledger row."""
    rows = await conn.fetch(
        "SELECT scheduled_for, outcome FROM trigger_slots WHERE trigger_id = $1"
        " AND scheduled_for = ANY($2::timestamptz[])", trigger_id, instants)
    return {r["scheduled_for"]: r["outcome"] for r in rows}


# What a ledger row a backfill claimed says, before the backfill's id.
BACKFILL_DETAIL = "backfill "


async def last_fired_slot(conn: Conn, trigger_id: str) -> datetime | None:
    """The instant of the trigger's newest slot that its schedule ran (what max_runs counts:
    fired, buffered or canceling the previous run; not a backfill's, whose ledger row says
    :data:`BACKFILL_DETAIL` and its id). The ledger keeps each trigger's newest slot
    whatever its age."""
    value: datetime | None = await conn.fetchval(
        "SELECT scheduled_for FROM trigger_slots WHERE trigger_id = $1"
        " AND outcome IN ('fired', 'buffered', 'canceled_previous')"
        " AND (detail IS NULL OR NOT starts_with(detail, $2))"
        " ORDER BY scheduled_for DESC LIMIT 1", trigger_id, BACKFILL_DETAIL)
    return value


async def create_backfill(
    conn: Conn, *, backfill_id: str, trigger_id: str, range_from: datetime,
    range_to: datetime, only_missing: bool, overlap: str, rate_per_second: float,
    slots: list[datetime], actor: str, note: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO backfills (id, trigger_id, range_from, range_to, only_missing, overlap,"
        " rate_per_second, slots, actor, note, state, finished_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz[], $9, $10,"
        " CASE WHEN cardinality($8::timestamptz[]) = 0 THEN 'done' ELSE 'running' END,"
        " CASE WHEN cardinality($8::timestamptz[]) = 0 THEN now() END)",
        backfill_id, trigger_id, range_from, range_to, only_missing, overlap,
        rate_per_second, slots, actor, note)


async def get_backfill(conn: Conn, backfill_id: str, tenant: str | None = None
                       ) -> BackfillRecord:
    """The backfill; with ``tenant``, only one of that tenant's triggers."""
    row = await conn.fetchrow(f"SELECT {_COLUMNS} {_FROM} WHERE b.id = $1::uuid"
                              " AND ($2::text IS NULL OR t.tenant_id = $2)", backfill_id, tenant)
    if row is None:
        raise NotFound(f"no backfill {backfill_id}")
    return BackfillRecord(**dict(row))


BACKFILL_STATES = ("running", "done", "canceled")


async def list_backfills(
    conn: Conn, *, tenant: str | None, trigger_id: str | None = None,
    state: str | None = None, before: tuple[datetime, str] | None = None, limit: int = 50,
) -> list[BackfillRecord]:
    """Backfills newest first (of ``tenant``; None: of all), optionally of one trigger or
    in one state, after the position ``before`` (the last row's ``created_at`` and
    ``id``) of a previous page. An index read in order (migration 0036)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} {_FROM}"
        " WHERE ($1::text IS NULL OR t.tenant_id = $1)"
        " AND ($2::uuid IS NULL OR b.trigger_id = $2)"
        " AND ($3::text IS NULL OR b.state = $3)"
        " AND ($4::timestamptz IS NULL OR (b.created_at, b.id) < ($4, $5::uuid))"
        " ORDER BY b.created_at DESC, b.id DESC LIMIT $6",
        tenant, trigger_id, state, None if before is None else before[0],
        None if before is None else before[1], limit)
    return [BackfillRecord(**dict(r)) for r in rows]


async def cancel_backfill(conn: Conn, backfill_id: str) -> bool:
    """Stop a running backfill; whether it was running."""
    status: str = await conn.execute(
        "UPDATE backfills SET state = 'canceled', finished_at = now(), owner = NULL"
        " WHERE id = $1::uuid AND state = 'running'", backfill_id)
    return status.endswith(" 1")


@dataclass(frozen=True, kw_only=True)
class Claimed:
    id: str
    trigger_id: str
    workflow_id: str
    name: str
    kind: str
    version: int | None
    input: dict[str, Any]
    only_missing: bool
    overlap: str
    rate_per_second: float
    next_index: int
    total: int  # its slots; the instants stay in the row (read a chunk at a time)


async def claim_backfills(conn: Conn, owner: str, lease: timedelta) -> list[Claimed]:
    """The running backfills this runner may work now: its own, and those whose lease ran
    out (a daemon that died); their leases are renewed for ``lease``."""
    rows = await conn.fetch(
        "UPDATE backfills b SET owner = $1, lease_expires_at = now() + $2"
        " FROM workflow_triggers t WHERE t.id = b.trigger_id AND b.id IN ("
        "   SELECT id FROM backfills WHERE state = 'running' AND (owner = $1"
        "   OR owner IS NULL OR lease_expires_at < now()) ORDER BY created_at"
        "   FOR UPDATE SKIP LOCKED LIMIT 20)"
        " RETURNING b.id::text AS id, b.trigger_id::text AS trigger_id,"
        " t.workflow_id::text AS workflow_id, t.name, t.type AS kind, t.version, t.input,"
        " b.only_missing, b.overlap, b.rate_per_second, b.next_index,"
        " cardinality(b.slots) AS total",
        owner, lease)
    return [Claimed(**dict(r)) for r in rows]


async def release_backfills(conn: Conn, owner: str) -> None:
    await conn.execute("UPDATE backfills SET owner = NULL, lease_expires_at = NULL"
                       " WHERE owner = $1 AND state = 'running'", owner)


async def active_runs(conn: Conn, trigger_id: str) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE trigger_id = $1"
        " AND status IN ('NEW', 'RUNNING', 'WAITING')", trigger_id)
    return value


async def start_slots(conn: Conn, backfill: Claimed, owner: str, count: int,
                      fired_at: str, *, one_at_a_time: bool = False) -> tuple[int, int, bool]:
    """Start the next ``count`` slots of ``backfill`` and move its progress, in one
    transaction; returns (started, skipped, finished). With ``only_missing`` a slot runs
    under the live key ``cron:<instant>`` after claiming its ledger row (a slot decided
    meanwhile by the schedule or another backfill is skipped); without it, under
    ``backfill:<id>:<instant>``. Nothing happens when the lease was lost or the backfill
    canceled, nor, ``one_at_a_time``, while a run of the trigger is active (after the
    trigger's state is read: a backfill waiting on a run still stops when its trigger is
    disabled)."""
    async with conn.transaction():
        # Only the chunk to start: every tick claims each running backfill, and its up to
        # 10,000 instants read each time cost a daemon a fifth of a core for eight of them.
        current = await conn.fetchrow(
            "SELECT next_index, state, started,"
            " slots[next_index + 1 : next_index + $3] AS chunk"
            " FROM backfills WHERE id = $1::uuid AND owner = $2 FOR UPDATE",
            backfill.id, owner, count)
        if current is None or current["state"] != "running":
            return 0, 0, True
        owner_state = await conn.fetchrow(
            "SELECT w.status <> 'active' AS held, NOT t.enabled AS disabled,"
            " w.key || '/' || t.name AS trigger, t.tenant_id"
            " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
            " WHERE t.id = $1::uuid", backfill.trigger_id)
        if owner_state is not None and owner_state["held"]:
            # Held while its workflow is archived (or a draft), as its triggers are.
            return 0, 0, False
        if owner_state is not None and owner_state["disabled"]:
            # Disabled meanwhile (by hand or by an apply): a backfill of a disabled trigger
            # is refused, and a running one stops as an archive stops it.
            await _cancel_for_disabled(conn, backfill.id, owner_state["trigger"],
                                       owner_state["tenant_id"], current["started"])
            return 0, 0, True
        if one_at_a_time:
            # Two backfills of the trigger (leased by two daemons) each counted no active
            # run and each started one: the second now waits here and sees the first's.
            await conn.execute("SELECT pg_advisory_xact_lock($1)",
                               key_lock("backfill", backfill.trigger_id, ""))
            if await active_runs(conn, backfill.trigger_id):
                return 0, 0, False
        first = current["next_index"]
        chunk: list[datetime] = list(current["chunk"] or [])
        started = skipped = 0
        for at in chunk:
            iso = utc_iso(at)  # the schedule's own key: fractions of a second kept
            # Values, not JSON text: the pool's codec encodes jsonb parameters (text would
            # be stored as one JSON string).
            context = {"trigger": {"type": backfill.kind, "name": backfill.name,
                                   "scheduled_for": iso, "fired_at": fired_at,
                                   "backfill": backfill.id}}
            if backfill.only_missing:
                await conn.execute(
                    "DELETE FROM trigger_slots WHERE trigger_id = $1 AND scheduled_for = $2"
                    " AND outcome IN ('skipped_misfire', 'skipped_overlap')",
                    backfill.trigger_id, at)
                key = f"cron:{iso}"
                ran = await conn.fetchval(_START_LIVE, backfill.trigger_id, at, key,
                                          backfill.workflow_id, backfill.name, backfill.kind,
                                          backfill.input, context,
                                          backfill.version, BACKFILL_DETAIL + backfill.id)
            else:
                key = f"backfill:{backfill.id}:{iso}"
                ran = await conn.fetchval(_START_EXTRA, backfill.trigger_id, at, key,
                                          backfill.workflow_id, backfill.name, backfill.kind,
                                          backfill.input, context,
                                          backfill.version)
            if ran:
                started += 1
            else:
                skipped += 1
        done = first + len(chunk) >= backfill.total
        await conn.execute(
            "UPDATE backfills SET next_index = next_index + $2, started = started + $3,"
            " skipped = skipped + $4, state = CASE WHEN $5 THEN 'done' ELSE state END,"
            " finished_at = CASE WHEN $5 THEN now() END WHERE id = $1::uuid",
            backfill.id, len(chunk), started, skipped, done)
        if started:
            await conn.execute(f"SELECT pg_notify('{EXECUTIONS.wire}', $1::text)", str(started))
    return started, skipped, done


# Who the audit trail names for what the daemon does on its own (as its automatic pause
# after failures; triggerd.operations.actor.SCHEDULER).
SCHEDULER_ACTOR = "scheduler"


def cancel_audit(*, backfill_id: str, tenant_id: str, actor: str, trigger: str, started: int,
                 reason: str | None = None, note: str | None = None) -> AuditEntry:
    """The audit row of a backfill's cancel, in the backfill's tenant: by hand, or (with
    the ``reason``) because its trigger was disabled or its workflow archived."""
    detail: dict[str, Any] = {"trigger": trigger, "started": started}
    if reason is not None:
        detail["reason"] = reason
    return AuditEntry(tenant_id=tenant_id, actor=actor, action="cancel_backfill",
                      target_kind="backfill", target=backfill_id, target_id=backfill_id,
                      note=note, detail=detail)


async def _cancel_for_disabled(conn: Conn, backfill_id: str, trigger: str, tenant_id: str,
                               started: int) -> None:
    """Cancel a backfill whose trigger was disabled, as an operator's cancel does: no
    owner kept, and an audit row (the daemon's) saying why, in the caller's transaction."""
    await cancel_backfill(conn, backfill_id)
    await record_audit(conn, cancel_audit(
        backfill_id=backfill_id, tenant_id=tenant_id, actor=SCHEDULER_ACTOR,
        trigger=trigger, started=started, reason="trigger_disabled",
        note=f"trigger {trigger} is disabled"))


_INSERT_RUN = """
INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
    trigger_name, trigger_type, dedupe_key, input, context, scheduled_for, tenant_id,
    agent_id, session_id, conversation_id, correlation)
SELECT {id}, $4::uuid, (SELECT v.id FROM workflow_versions v WHERE v.workflow_id = $4::uuid
                  AND CASE WHEN $9::int IS NULL THEN v.is_latest ELSE v.version = $9 END),
       $1::uuid, $5, $6, $3, $7::jsonb, $8::jsonb, $2,
       (SELECT t.tenant_id FROM workflow_triggers t WHERE t.id = $1::uuid),
       (SELECT t.config->'correlation'->>'agent_id' FROM workflow_triggers t
         WHERE t.id = $1::uuid),
       (SELECT t.config->'correlation'->>'session_id' FROM workflow_triggers t
         WHERE t.id = $1::uuid),
       (SELECT t.config->'correlation'->>'conversation_id' FROM workflow_triggers t
         WHERE t.id = $1::uuid),
       (SELECT t.config->'correlation' FROM workflow_triggers t WHERE t.id = $1::uuid)
"""

# The live key: claim the ledger row first (naming the run it starts), so the schedule
# and other backfills agree on who runs the slot.
# A slot whose ledger row is gone (ledger retention shorter than the runs') while its run
# is still there was decided: no row is claimed for it (it named a run that never was).
_START_LIVE = f"""
WITH claimed AS (
    INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id, detail)
    SELECT $1, $2, 'fired', gen_random_uuid(), $10
     WHERE NOT EXISTS (SELECT FROM workflow_executions e
                        WHERE e.trigger_id = $1 AND e.dedupe_key = $3)
    ON CONFLICT (trigger_id, scheduled_for) DO NOTHING
    RETURNING execution_id
), run AS (
    {_INSERT_RUN.format(id="claimed.execution_id")} FROM claimed
    ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id
)
SELECT count(*) > 0 FROM run
"""

_START_EXTRA = f"""
WITH run AS (
    {_INSERT_RUN.format(id="gen_random_uuid()")}
    ON CONFLICT (trigger_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id
)
SELECT count(*) > 0 FROM run
"""


async def backfill_retention_batch(conn: Conn, older_than: timedelta, batch: int) -> int:
    """Delete up to ``batch`` ended backfills (done, canceled) that ended before
    ``older_than`` ago: each keeps its slots (up to 10,000 instants), and nothing else
    removed them but deleting their trigger. Kept as long as the audit trail that names
    them ([executor] audit_retention)."""
    result: str = await conn.execute(
        "DELETE FROM backfills WHERE id = ANY(ARRAY(SELECT id FROM backfills"
        " WHERE state <> 'running' AND finished_at < now() - $1 * interval '1 millisecond'"
        " LIMIT $2 FOR UPDATE SKIP LOCKED))",
        int(older_than.total_seconds() * 1000), batch)
    return int(result.split()[-1])
