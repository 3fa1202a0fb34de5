"""Operations on triggers. Each is the one implementation behind the CLI, the admin API
and the console: typed arguments and an actor in; validation, the store and an audit row
in one transaction; a typed result or an error of :mod:`triggerd.errors` out."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from triggerd.errors import Conflict, UsageError
from triggerd.inputs import check_input
from triggerd.model import JSON, WorkflowStatus
from triggerd.operations.actor import Actor
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import get_trigger, get_workflow, resolve_version

logger = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


@dataclass(frozen=True, kw_only=True)
class FireRequest:
    trigger: str  # workflow_key/trigger_name
    input: dict[str, JSON] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class FireResult:
    execution_id: str
    trigger: str
    version: int


def _check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    return reason


async def fire(pool: asyncpg.Pool, actor: Actor, request: FireRequest) -> FireResult:
    """Start a manual run of a trigger's workflow now.

    The trigger must be enabled and its workflow active with a published version (the
    pinned one, if the trigger pins one); the trigger's static input merged under
    ``request.input`` must match the version's ``parameter_schema``. The run's context
    records who fired it and why (its provenance)."""
    reason = _check_reason(request.reason)
    async with pool.acquire() as conn, conn.transaction():
        trigger = await get_trigger(conn, request.trigger)
        if not trigger.enabled:
            raise Conflict(f"trigger {request.trigger} is disabled; enable it first")
        workflow = await get_workflow(conn, trigger.workflow_key)
        if workflow.status == WorkflowStatus.ARCHIVED.value:
            raise Conflict(f"workflow {trigger.workflow_key} is archived; activate it first")
        version = await resolve_version(conn, trigger.workflow_id, trigger.version)
        if version is None:
            wanted = "no published version" if trigger.version is None else (
                f"no version {trigger.version}")
            raise Conflict(f"workflow {trigger.workflow_key} has {wanted}")
        merged = {**trigger.input, **request.input}
        check_input(version.parameter_schema or {}, merged)
        provenance: dict[str, Any] = {"type": "manual", "name": request.trigger,
                                      "fired_by": actor.via, "actor": actor.name}
        if reason is not None:
            provenance["reason"] = reason
        item = NewExecution(
            workflow_id=trigger.workflow_id,
            trigger_id=trigger.id,
            trigger_name=trigger.name,
            trigger_type="manual",
            input=merged,
            context={"trigger": provenance},
            version=version.version,
        )
        await insert_executions(conn, [item])
        await record_audit(conn, AuditEntry(
            actor=actor.name, action="fire", target_kind="trigger", target=request.trigger,
            target_id=trigger.id, note=reason,
            detail={"execution_id": item.id, "version": version.version},
        ))
    logger.info("trigger fired", extra={"event": "trigger_fired", "trigger": request.trigger,
                                        "execution": item.id, "actor": actor.name})
    return FireResult(execution_id=item.id, trigger=request.trigger, version=version.version)
