"""A workflow's lifecycle as operations: archive, activate and delete, each audited in
the transaction of its change.

* ``archive`` stops every trigger of the workflow (schedules plan nothing, webhooks answer
  404, fire and replay are refused, running backfills are canceled) and keeps its history;
  runs already started go on.
* ``activate`` starts them again without catching up: no slot from before the activation
  runs (the triggers' catch-up floors move to now).
* ``delete`` removes the workflow, its versions, triggers and history; it is refused while
  runs are in flight.

The status is the definition's too: ``apply`` sets it only when a document names
``status``, so an operator's archive survives reloads of files that do not say.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from triggerd.errors import Conflict
from triggerd.model import WorkflowStatus
from triggerd.operations.actor import Actor, home
from triggerd.operations.triggers import check_note
from triggerd.store import lifecycle
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.backfills import cancel_audit
from triggerd.store.workflows import get_workflow


@dataclass(frozen=True, kw_only=True)
class WorkflowChange:
    """The answer of archive and activate (doing it twice changes nothing the second
    time, and is not an error)."""

    workflow: str
    changed: bool
    status: str
    previous: str
    canceled_backfills: int = 0


@dataclass(frozen=True, kw_only=True)
class WorkflowDeleted:
    workflow: str
    versions: int
    triggers: int
    executions: int
    webhook_requests: int


async def archive(pool: asyncpg.Pool, actor: Actor, key: str, note: str | None = None
                  ) -> WorkflowChange:
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        workflow = await get_workflow(conn, key, home(actor))
        previous = await lifecycle.lock_workflow(conn, workflow.id)
        if previous == WorkflowStatus.ARCHIVED.value:
            return WorkflowChange(workflow=key, changed=False, status=previous,
                                  previous=previous)
        await lifecycle.set_status(conn, workflow.id, WorkflowStatus.ARCHIVED.value)
        backfills = await lifecycle.cancel_backfills(conn, workflow.id)
        canceled = len(backfills)
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="archive", target_kind="workflow", target=key,
            target_id=workflow.id, note=note,
            detail={"previous": previous, "canceled_backfills": canceled}))
        for backfill in backfills:
            # Each backfill's own trail says why it ended, as a cancel by hand does.
            await record_audit(conn, cancel_audit(
                backfill_id=backfill.id, tenant_id=backfill.tenant_id, actor=actor.name,
                trigger=backfill.trigger, started=backfill.started,
                reason="workflow_archived", note=f"workflow {key} is archived"))
    return WorkflowChange(workflow=key, changed=True, status=WorkflowStatus.ARCHIVED.value,
                          previous=previous, canceled_backfills=canceled)


async def activate(pool: asyncpg.Pool, actor: Actor, key: str, note: str | None = None
                   ) -> WorkflowChange:
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        workflow = await get_workflow(conn, key, home(actor))
        previous = await lifecycle.lock_workflow(conn, workflow.id)
        if previous == WorkflowStatus.ACTIVE.value:
            return WorkflowChange(workflow=key, changed=False, status=previous,
                                  previous=previous)
        await lifecycle.move_floors(conn, workflow.id)
        await lifecycle.set_status(conn, workflow.id, WorkflowStatus.ACTIVE.value)
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="activate", target_kind="workflow", target=key,
            target_id=workflow.id, note=note, detail={"previous": previous}))
    return WorkflowChange(workflow=key, changed=True, status=WorkflowStatus.ACTIVE.value,
                          previous=previous)


async def delete(pool: asyncpg.Pool, actor: Actor, key: str, note: str | None = None
                 ) -> WorkflowDeleted:
    note = check_note(note)
    async with pool.acquire() as conn, conn.transaction():
        workflow = await get_workflow(conn, key, home(actor))
        await lifecycle.lock_workflow(conn, workflow.id)
        in_flight = await lifecycle.runs_in_flight(conn, workflow.id)
        if in_flight:
            raise Conflict(
                f"workflow {key} has {in_flight} run(s) in flight; cancel them or let them"
                " finish first (archive it to start no more)")
        deleted = await lifecycle.delete_workflow(conn, workflow.id)
        result = WorkflowDeleted(workflow=key, versions=deleted.versions,
                                 triggers=deleted.triggers, executions=deleted.executions,
                                 webhook_requests=deleted.webhook_requests)
        await record_audit(conn, AuditEntry(
            tenant_id=home(actor),
            actor=actor.name, action="delete", target_kind="workflow", target=key,
            target_id=workflow.id, note=note,
            detail={"versions": result.versions, "triggers": result.triggers,
                    "executions": result.executions,
                    "webhook_requests": result.webhook_requests}))
    return result
