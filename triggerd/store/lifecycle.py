"""The SQL of a workflow's lifecycle (``draft`` | ``active`` | ``archived``, and delete):
the statements behind :mod:`triggerd.operations.workflows`, run inside its transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triggerd.store.workflows import notify_workflow_triggers

Conn = Any  # a connection, inside the operation's transaction


async def lock_workflow(conn: Conn, workflow_id: str) -> str:
    """Hold the workflow's row until the transaction ends (two lifecycle operations on one
    workflow queue); returns its status as locked."""
    status: str = await conn.fetchval(
        "SELECT status FROM workflows WHERE id = $1 FOR UPDATE", workflow_id)
    return status


async def set_status(conn: Conn, workflow_id: str, status: str) -> None:
    await conn.execute("UPDATE workflows SET status = $2, updated_at = now() WHERE id = $1",
                       workflow_id, status)
    await notify_workflow_triggers(conn, [workflow_id])


async def move_floors(conn: Conn, workflow_id: str) -> None:
    """No slot from before now runs for the workflow's triggers (activation is a change
    after which nothing is caught up, like a resume without --catch-up)."""
    await conn.execute(
        "INSERT INTO trigger_state (trigger_id, floor_at)"
        " SELECT t.id, now() FROM workflow_triggers t WHERE t.workflow_id = $1"
        " ON CONFLICT (trigger_id) DO UPDATE SET floor_at = now(), updated_at = now()",
        workflow_id)


@dataclass(frozen=True, kw_only=True)
class CanceledBackfill:
    id: str
    trigger: str  # workflow/trigger
    tenant_id: str
    started: int


async def cancel_backfills(conn: Conn, workflow_id: str) -> list[CanceledBackfill]:
    """Stop the running backfills of the workflow's triggers (no owner kept, as a cancel
    by hand); returns them, oldest first, for their audit rows."""
    rows = await conn.fetch(
        "UPDATE backfills b SET state = 'canceled', finished_at = now(), owner = NULL"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.id = b.trigger_id AND t.workflow_id = $1 AND b.state = 'running'"
        " RETURNING b.id::text AS id, w.key || '/' || t.name AS trigger, t.tenant_id,"
        " b.started, b.created_at", workflow_id)
    return [CanceledBackfill(id=r["id"], trigger=r["trigger"], tenant_id=r["tenant_id"],
                             started=r["started"])
            for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]


async def runs_in_flight(conn: Conn, workflow_id: str) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE workflow_id = $1"
        " AND status IN ('NEW', 'RUNNING', 'WAITING')", workflow_id)
    return value


@dataclass(frozen=True, kw_only=True)
class Deleted:
    versions: int
    triggers: int
    executions: int
    webhook_requests: int


async def delete_workflow(conn: Conn, workflow_id: str) -> Deleted:
    """Delete the workflow with its versions, triggers (and their state, ledger, backfills,
    debounce windows) and history: executions with their node rows, and every stored
    webhook delivery of its triggers. Audit rows stay: they are the record of the delete."""
    counts = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM workflow_versions WHERE workflow_id = $1) AS versions,"
        " (SELECT count(*) FROM workflow_triggers WHERE workflow_id = $1) AS triggers,"
        " (SELECT count(*) FROM workflow_executions WHERE workflow_id = $1) AS executions",
        workflow_id)
    # Deliveries without a run of their own (filtered, debounced) would otherwise outlive
    # their trigger with trigger_id NULL; the others go with their execution.
    status: str = await conn.execute(
        "DELETE FROM webhook_requests r USING workflow_triggers t"
        " WHERE t.workflow_id = $1 AND r.trigger_id = t.id", workflow_id)
    requests = int(status.split()[-1])
    # The foreign keys and the delete triggers of migrations 0001-0004 remove the rest (and
    # each deleted trigger row notifies the daemons).
    await conn.execute("DELETE FROM workflows WHERE id = $1", workflow_id)
    # Files applied before may name it (on_failure, a workflow node): re-applying them
    # must check them again, not answer "no changes" from their fingerprint.
    await conn.execute("DELETE FROM applied_definitions")
    return Deleted(versions=counts["versions"], triggers=counts["triggers"],
                   executions=counts["executions"], webhook_requests=requests)
