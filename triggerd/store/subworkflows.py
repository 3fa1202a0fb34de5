"""The SQL of sub-workflows (migration 0024): a workflow node's child run, started once per
parent run and node (its id is derived from theirs), and what the parent reads of it."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from triggerd.errors import Conflict, NotFound
from triggerd.model import JSON, inactive_state, tenant_label
from triggerd.notifications.channels import EXECUTIONS

Conn = Any  # a connection inside the caller's transaction


# Marks (in ``context.trigger``) a run started below an error run: its failure starts no
# error run either, or an error workflow calling the workflow it handles looped for ever.
UNDER_ERROR_RUN = "under_error_run"


def under_error_run(trigger: dict[str, Any]) -> bool:
    """Whether a run whose ``context.trigger`` this is runs on behalf of an error run."""
    return trigger.get("type") == "on_failure" or bool(trigger.get(UNDER_ERROR_RUN))


def child_id(parent_id: str, node_id: str) -> str:
    """The child's id: the same for every attempt of the parent's node, so a node run
    again after a crash finds the child it started instead of starting another."""
    digest = hashlib.sha256(f"child:{parent_id}:{node_id}".encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass(frozen=True, kw_only=True)
class Child:
    id: str
    status: str
    output: JSON
    error_code: str | None
    error_message: str | None


async def start_child(conn: Conn, *, parent_id: str, node_id: str, key: str,
                      version: int | None, run_input: JSON, max_depth: int) -> Child:
    """Start (once) the latest or the pinned published version of workflow ``key`` of
    the parent's tenant as the parent's child; returns it as it is now."""
    wanted = child_id(parent_id, node_id)
    existing = await _child(conn, wanted)
    if existing is not None:
        return existing
    parent = await conn.fetchrow(
        "SELECT e.context, w.tenant_id, w.key FROM workflow_executions e"
        " JOIN workflows w ON w.id = e.workflow_id WHERE e.id = $1", parent_id)
    if parent is None:
        raise NotFound(f"no execution {parent_id}")
    context = parent["context"] or {}
    if isinstance(context, str):
        context = json.loads(context)
    parent_trigger = context.get("trigger") or {}
    depth = int(parent_trigger.get("depth", 0)) + 1
    if depth > max_depth:
        raise Conflict(f"workflow {key}: sub-workflows nest deeper than {max_depth}"
                       " ([executor] max_workflow_depth)")
    target = await conn.fetchrow(
        "SELECT w.id, w.status, v.id AS version_id, v.version FROM workflows w"
        " LEFT JOIN workflow_versions v ON v.workflow_id = w.id AND CASE WHEN $3::int IS NULL"
        " THEN v.is_latest ELSE v.version = $3 END"
        " WHERE w.tenant_id = $1 AND w.key = $2", parent["tenant_id"], key, version)
    if target is None:
        raise NotFound(f"no workflow with key {tenant_label(parent['tenant_id'], key)!r}")
    state = inactive_state(target["status"])
    if state is not None:
        raise Conflict(f"workflow {key} is {state}")
    if target["version_id"] is None:
        raise Conflict(f"workflow {key} has no "
                       + ("published version" if version is None else f"version {version}"))
    await conn.execute(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_type,"
        " trigger_name, dedupe_key, input, context, parent_execution_id, tenant_id,"
        " agent_id, session_id, conversation_id, correlation)"
        # A child run belongs to its parent's tenant and conversation.
        " SELECT $1, $2, $3, 'workflow', $4, $5, $6, $7, $8, p.tenant_id, p.agent_id,"
        " p.session_id, p.conversation_id, p.correlation FROM workflow_executions p"
        " WHERE p.id = $8 ON CONFLICT (id) DO NOTHING",
        wanted, target["id"], target["version_id"], parent["key"],
        f"child:{parent_id}:{node_id}", run_input,
        {"trigger": {"type": "workflow", "name": parent["key"], "node": node_id,
                     "parent_execution_id": parent_id, "depth": depth,
                     **({UNDER_ERROR_RUN: True} if under_error_run(parent_trigger) else {})}},
        parent_id)
    await conn.execute("SELECT pg_notify($1, '1')", EXECUTIONS.wire)
    started = await _child(conn, wanted)
    assert started is not None
    return started


async def _child(conn: Conn, execution_id: str) -> Child | None:
    row = await conn.fetchrow(
        "SELECT id::text AS id, status, output, error_code, error_message"
        " FROM workflow_executions WHERE id = $1", execution_id)
    return None if row is None else Child(**dict(row))
