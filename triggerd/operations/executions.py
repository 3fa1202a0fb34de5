"""Operations on executions: cancel and retry, audited."""

from __future__ import annotations

import logging

import asyncpg

from triggerd.errors import Conflict
from triggerd.model import not_running_reason
from triggerd.operations.actor import Actor
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.executions import (
    FINAL_STATUSES,
    get_execution,
    request_cancel,
    retry_execution,
    settle_retry,
)
from triggerd.store.records import ExecutionRecord

logger = logging.getLogger(__name__)


async def cancel(pool: asyncpg.Pool, actor: Actor, execution_id: str) -> ExecutionRecord:
    """Cancel a run: NEW or WAITING ends CANCELED at once, RUNNING is flagged for its
    executor; a finished run is a conflict."""
    async with pool.acquire() as conn, conn.transaction():
        owner = await get_execution(conn, execution_id, actor.tenant)  # another's: 404
        execution = await request_cancel(conn, execution_id)
        await record_audit(conn, AuditEntry(
            tenant_id=owner.tenant_id,
            actor=actor.name, action="cancel", target_kind="execution", target=execution_id,
            target_id=execution_id, detail={"status": execution.status}))
    return execution


async def retry(pool: asyncpg.Pool, actor: Actor, execution_id: str) -> str:
    """A new run with the same input, version and trigger, linked to the old one."""
    async with pool.acquire() as conn, conn.transaction():
        owner = await get_execution(conn, execution_id, actor.tenant)  # another's: 404
        status = await conn.fetchval("SELECT status FROM workflows WHERE id = $1::uuid",
                                     owner.workflow_id)
        refused = not_running_reason(status, owner.workflow_key or owner.workflow_id)
        if refused is not None:
            # As fire: an archived (or draft) workflow starts no run.
            raise Conflict(refused)
        if owner.status not in FINAL_STATUSES:
            # Two runs of one input at once (and as many as the calls): what a retry is for
            # is a run that ended; cancel this one first.
            raise Conflict(f"execution {execution_id} has not ended ({owner.status}); cancel"
                           " it or wait for it to end before retrying it")
        if owner.trigger_id is not None and await conn.fetchval(
                "SELECT NOT enabled FROM workflow_triggers WHERE id = $1::uuid",
                owner.trigger_id):
            # As fire: a disabled trigger starts no run.
            raise Conflict(f"trigger {owner.workflow_key}/{owner.trigger_name} is disabled;"
                           " enable it first")
        new_id = await retry_execution(conn, execution_id)
        await record_audit(conn, AuditEntry(
            tenant_id=owner.tenant_id,
            actor=actor.name, action="retry", target_kind="execution", target=execution_id,
            target_id=execution_id, detail={"execution_id": new_id}))
    # After the commit: a cancel of a run above that raced this retry cancels it now.
    try:
        await settle_retry(pool, new_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The retry exists: answering with an error would have the client retry again and
        # make a second run. The executors' sweep of children of canceled runs (every
        # 30 s) cancels it if a run above it was canceled.
        logger.warning(
            "retry made; its look for a cancel above it failed",
            extra={"event": "retry_settle_failed", "execution_id": new_id,
                   "error": str(exc)})
    return new_id
