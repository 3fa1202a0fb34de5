"""Decisions for runs parked on an ``approval`` node, audited: by resume token (the
single-use URL a workflow sends out) or by an operator (CLI, admin API)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import asyncpg

from triggerd.errors import Conflict, NotFound, UsageError
from triggerd.model import JSON
from triggerd.operations.actor import Actor
from triggerd.operations.triggers import check_note
from triggerd.store import approvals
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.executions import get_execution

# Who decided through a resume URL: whoever held the link (it names nobody).
RESUME_URL_ACTOR = "resume-url"


@dataclass(frozen=True, kw_only=True)
class DecisionRequest:
    decision: str  # approved | rejected
    note: str | None = None
    input: JSON = None


@dataclass(frozen=True, kw_only=True)
class Decided:
    execution_id: str
    decision: str


def _check(request: DecisionRequest) -> DecisionRequest:
    if request.decision not in approvals.DECISIONS:
        raise UsageError(f"decision: {str(request.decision)[:40]!r} is not one of"
                         f" {', '.join(approvals.DECISIONS)}")
    return DecisionRequest(decision=request.decision, note=check_note(request.note),
                           input=request.input)


def _timed_out(execution_id: str, timed_out: approvals.TimedOut) -> str:
    at = timed_out.expires_at.astimezone(UTC).isoformat(timespec="seconds")
    return (f"execution {execution_id} is not waiting for a decision: its approval"
            f" {timed_out.node_id!r} timed out at {at} (its decision is 'timeout')")


async def decide(pool: asyncpg.Pool, actor: Actor, execution_id: str,
                 request: DecisionRequest) -> Decided:
    """An operator's decision for the approval the run is parked on; a run that waits
    for no decision is a conflict (exit 4, 409)."""
    request = _check(request)
    async with pool.acquire() as conn, conn.transaction():
        # NotFound for an unknown run, and for another tenant's.
        owner = await get_execution(conn, execution_id, actor.tenant)
        node = await approvals.waiting_approval(conn, execution_id)
        if node is None or await approvals.pending_decision(conn, execution_id):
            raise Conflict(f"execution {execution_id} is not waiting for a decision")
        timed_out = await approvals.expired(conn, execution_id)
        if timed_out is not None:
            raise Conflict(_timed_out(execution_id, timed_out))
        await approvals.record_decision(conn, execution_id, approvals.Decision(
            decision=request.decision, note=request.note, by=actor.name, input=request.input))
        await record_audit(conn, AuditEntry(
            tenant_id=owner.tenant_id,
            actor=actor.name, action="decide", target_kind="execution", target=execution_id,
            target_id=execution_id, note=request.note,
            detail={"decision": request.decision, "node": node}))
    return Decided(execution_id=execution_id, decision=request.decision)


async def decide_by_token(pool: asyncpg.Pool, token: str, request: DecisionRequest
                          ) -> Decided:
    """The decision posted to a resume URL: once per token (a second post, also a racing
    one on another replica, is a conflict), and only while the run has not ended."""
    request = _check(request)
    async with pool.acquire() as conn, conn.transaction():
        found = await approvals.decide_on_token(conn, approvals.token_hash(token),
                                                approvals.Decision(
                                                    decision=request.decision,
                                                    note=request.note, by=RESUME_URL_ACTOR,
                                                    input=request.input))
        if found is None:
            raise NotFound("unknown resume link")
        if found.already is not None:
            raise Conflict(f"this resume link was already used (decision: {found.already})")
        if found.timed_out is not None:
            raise Conflict(_timed_out(found.execution_id, found.timed_out))
        if found.unwanted:
            raise Conflict(f"execution {found.execution_id} is not waiting for a decision")
        if not found.written:
            raise Conflict(f"execution {found.execution_id} already ended ({found.status})")
        await record_audit(conn, AuditEntry(
            tenant_id=found.tenant_id,
            actor=RESUME_URL_ACTOR, action="decide", target_kind="execution",
            target=found.execution_id, target_id=found.execution_id, note=request.note,
            detail={"decision": request.decision}))
    return Decided(execution_id=found.execution_id, decision=request.decision)
