"""JSON documents of stored records: one shape for the admin API and the CLI's ``--json``.

Values stay Python values (datetimes, UUID strings); the caller's encoder renders them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from triggerd.cron import utc_iso
from triggerd.store.audit import AuditRecord
from triggerd.store.backfills import BackfillRecord
from triggerd.store.records import (
    ExecutionRecord,
    NodeExecutionRecord,
    SlotRecord,
    TriggerRecord,
    VersionRecord,
    WorkflowRecord,
)
from triggerd.store.trigger_state import TriggerState

if TYPE_CHECKING:  # the operations import the store and jsonschema: a CLI call needs neither
    from triggerd.operations.backfills import PlannedSlot
    from triggerd.operations.triggers import StateChange


def workflow_json(w: WorkflowRecord) -> dict[str, Any]:
    return {
        "id": w.id,
        "tenant_id": w.tenant_id,
        "key": w.key,
        "name": w.name,
        "description": w.description,
        "status": w.status,
        "latest_version": w.latest_version,
        "created_at": w.created_at,
        "updated_at": w.updated_at,
    }


def version_json(v: VersionRecord) -> dict[str, Any]:
    return {
        "id": v.id,
        "workflow_id": v.workflow_id,
        "version": v.version,
        "graph": v.graph,
        "parameter_schema": v.parameter_schema,
        "env_config": v.env_config,
        "timeout_ms": v.timeout_ms,
        "is_latest": v.is_latest,
        "published_at": v.published_at,
        "created_at": v.created_at,
    }


def trigger_state(t: TriggerRecord, *, paused: bool, completed: bool, now: datetime) -> str:
    """What a list says of a trigger: archived or draft (its workflow), disabled, paused,
    completed (max_runs made, or past end_at) or enabled."""
    if t.workflow_status in ("archived", "draft"):
        return t.workflow_status  # its triggers do not fire, enabled or not
    if not t.enabled:
        return "disabled"
    if paused:
        return "paused"
    end_at = t.config.get("end_at")
    if completed or (isinstance(end_at, str) and datetime.fromisoformat(end_at) <= now):
        return "completed"
    return "enabled"


def trigger_json(t: TriggerRecord, state: str | None = None) -> dict[str, Any]:
    """A trigger as lists show it (``state``, the list's ``status``: see
    :func:`trigger_state`)."""
    doc = {
        "id": t.id,
        "name": t.full_name,
        "workflow": t.workflow_key,
        "trigger": t.name,
        "type": t.type,
        "enabled": t.enabled,
        "version": t.version,
        "config": t.config,
        "input": t.input,
        "enabled_at": t.enabled_at,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "tenant": t.tenant_id,
        "workflow_status": t.workflow_status,
    }
    if state is not None:
        doc["status"] = state  # lists only (the detail has its own "state" object)
    return doc


def execution_json(e: ExecutionRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "workflow": e.workflow_key,
        "workflow_id": e.workflow_id,
        "version": e.version,
        "trigger": e.trigger_name,
        "trigger_id": e.trigger_id,
        "trigger_type": e.trigger_type,
        "status": e.status,
        "input": e.input,
        "output": e.output,
        "error_code": e.error_code,
        "error_message": e.error_message,
        "scheduled_for": e.scheduled_for,
        "created_at": e.created_at,
        "start_time": e.start_time,
        "end_time": e.end_time,
        "resume_at": e.resume_at,
        "attempt": e.attempt,
        "retry_of": e.retry_of,
        "parent_execution_id": e.parent_execution_id,
        "lease_owner": e.lease_owner,
        "lease_expires_at": e.lease_expires_at,
        "tenant": e.tenant_id,
        "agent_id": e.agent_id,
        "session_id": e.session_id,
        "conversation_id": e.conversation_id,
        "correlation": e.correlation or {},
    }


def node_json(n: NodeExecutionRecord) -> dict[str, Any]:
    return {
        "id": n.id,
        "node_id": n.node_id,
        "node_type": n.node_type,
        "status": n.status,
        "attempt": n.attempt,
        "from": n.from_node_id,
        "edge": n.edge_condition,
        "branch": n.branch,
        "input": n.input,
        "output": n.output,
        "error_code": n.error_code,
        "error_message": n.error_message,
        "start_time": n.start_time,
        "end_time": n.end_time,
        "execution_time_ms": n.execution_time_ms,
    }


def slot_json(s: SlotRecord) -> dict[str, Any]:
    return {
        "scheduled_for": s.scheduled_for,
        "outcome": s.outcome,
        "execution_id": s.execution_id,
        "decided_at": s.decided_at,
        "detail": s.detail,
    }


def state_json(state: TriggerState) -> dict[str, Any]:
    """A trigger's runtime state, as the CLI and the admin API show it."""
    return {
        "paused": state.paused,
        "note": state.note,
        "changed_by": state.changed_by,
        "changed_at": state.changed_at,
        "completed_at": state.completed_at,
        "scheduled_runs": state.scheduled_runs,
        "consecutive_failures": state.consecutive_failures,
        "failed_executions": list(state.failed_executions),
        "last_success_at": state.last_success_at,
    }


def state_change_json(result: StateChange) -> dict[str, Any]:
    """A pause's or a resume's answer, as the CLI's --json and the admin API give it."""
    return {"trigger": result.trigger, "changed": result.changed,
            "state": state_json(result.state), "forgotten_slots": result.forgotten_slots}


def audit_json(a: AuditRecord) -> dict[str, Any]:
    return {"id": a.id, "at": a.at, "actor": a.actor, "action": a.action,
            "target_kind": a.target_kind, "target": a.target, "target_id": a.target_id,
            "note": a.note, "detail": a.detail, "tenant": a.tenant_id}


def backfill_json(b: BackfillRecord) -> dict[str, Any]:
    return {"backfill_id": b.id, "trigger": b.trigger, "from": b.range_from, "to": b.range_to,
            "only_missing": b.only_missing, "overlap": b.overlap,
            "rate_per_second": b.rate_per_second, "state": b.state, "total": b.total,
            "done": b.next_index, "started": b.started, "skipped": b.skipped,
            "actor": b.actor, "note": b.note, "created_at": b.created_at,
            "finished_at": b.finished_at, "tenant": b.tenant_id, "waiting_for": b.waiting_for}


def planned_json(slots: Iterable[PlannedSlot]) -> list[dict[str, Any]]:
    return [{"at": utc_iso(s.at), "action": s.action, "reason": s.reason} for s in slots]
