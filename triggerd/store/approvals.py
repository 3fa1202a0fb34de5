"""The SQL of approvals (migration 0021): resume tokens, the decisions recorded on them,
and the approval requests runs parked on.

A token is 32 random bytes given out once (in ``execution.resume_url``); only its SHA-256
is stored. A decision is written on one token, once (``decision IS NULL`` in the update
decides a race between two requests). An ``approval`` node consumes the oldest decided
token of its run and names itself on it, so the node run again after a crash finds the
same decision instead of consuming another.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triggerd.model import DEFAULT_TENANT, JSON
from triggerd.notifications.channels import DUE, EXECUTIONS

Conn = Any  # a connection or a pool

DECISIONS = ("approved", "rejected")

# A row ``x`` of an approval node that ended it for good: a success, a skip, or a failure
# the run goes on from. An attempt cut short (INTERRUPTED: its process died; CANCELED: its
# run was handed back) or a failure followed by a retry runs the node again, so the node
# still waits for a decision (counted as done, such a row made the run refuse every link
# once it parked again: "waits for no decision", and it waited until its deadline).
_NODE_DONE = (
    "(x.status IN ('SUCCESS', 'SKIPPED') OR (x.status = 'ERROR'"
    " AND x.error_code IS DISTINCT FROM 'INTERRUPTED' AND x.branch IS DISTINCT FROM 'retry'))")


def new_token() -> tuple[str, bytes]:
    """A fresh token (URL-safe text) and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(conn: Conn, execution_id: str) -> str:
    """Store a new token for the run; returns it (never stored itself)."""
    token, digest = new_token()
    await conn.execute(
        "INSERT INTO resume_tokens (token_hash, execution_id) VALUES ($1, $2)",
        digest, execution_id)
    return token


@dataclass(frozen=True, kw_only=True)
class Decision:
    decision: str
    note: str | None
    by: str | None
    input: JSON


@dataclass(frozen=True, kw_only=True)
class TimedOut:
    """An approval whose deadline passed undecided."""

    node_id: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class TokenDecided:
    """What deciding on a token found: the run, its status, and whether this call wrote
    the decision (``False``: the token was already used, or the run had ended)."""

    execution_id: str
    status: str
    written: bool
    already: str | None  # the decision the token already carried
    tenant_id: str = DEFAULT_TENANT  # the run's (its audit row's tenant)
    # Not written because the run waits for no decision: one is already waiting to be
    # used, or every approval node of the run was decided (by an operator, say).
    unwanted: bool = False
    # Not written because the approval the run waits on passed its deadline.
    timed_out: TimedOut | None = None


async def decide_on_token(conn: Conn, digest: bytes, decision: Decision
                          ) -> TokenDecided | None:
    """Write ``decision`` on the token with hash ``digest`` if it carries none and its run
    has not ended; ``None`` for an unknown token. Call inside a transaction."""
    execution_id = await conn.fetchval(
        "SELECT execution_id::text FROM resume_tokens WHERE token_hash = $1", digest)
    if execution_id is None:
        return None
    # The run's lock, then the token's: the order of an operator's decision and of a run's
    # deletion (its tokens go with it), so none of them waits on another in a circle. Each
    # in a statement of its own, so the reads below see a decision that won either lock (a
    # read in the locking statement saw the snapshot from before the wait: two decisions).
    row = await conn.fetchrow(
        "SELECT status, tenant_id FROM workflow_executions WHERE id = $1::uuid FOR UPDATE",
        execution_id)
    token = await conn.fetchrow(
        "SELECT decision FROM resume_tokens WHERE token_hash = $1 FOR UPDATE", digest)
    if row is None or token is None:
        return None  # deleted meanwhile, with its run
    if token["decision"] is not None or row["status"] in ("SUCCESS", "ERROR", "CANCELED"):
        return TokenDecided(execution_id=execution_id, status=row["status"],
                            written=False, already=token["decision"],
                            tenant_id=row["tenant_id"])
    # A link may be used before the run reaches its approval (the decision waits for it),
    # but not once another decision waits or every approval was decided: it would be
    # taken by a later approval, or wake the run for nothing.
    wanted = await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM resume_tokens WHERE execution_id = e.id"
        "                   AND decision IS NOT NULL AND used_by_node IS NULL)"
        " AND (SELECT count(*) FROM jsonb_array_elements(v.graph->'nodes') n"
        "      WHERE n->>'type' = 'approval')"
        "   > (SELECT count(DISTINCT x.node_id) FROM node_executions x"
        "      WHERE x.execution_id = e.id AND x.node_type = 'approval'"
        f"        AND {_NODE_DONE})"
        " FROM workflow_executions e JOIN workflow_versions v ON v.id = e.workflow_version_id"
        " WHERE e.id = $1::uuid", execution_id)
    if not wanted:
        return TokenDecided(execution_id=execution_id, status=row["status"],
                            written=False, already=None, tenant_id=row["tenant_id"],
                            unwanted=True)
    # After the waiting decision's check: one made in time is the node's, past the deadline
    # too (it takes a waiting decision before it looks at the clock).
    timed_out = await expired(conn, execution_id)
    if timed_out is not None:
        return TokenDecided(execution_id=execution_id, status=row["status"], written=False,
                            already=None, tenant_id=row["tenant_id"], timed_out=timed_out)
    await conn.execute(
        "UPDATE resume_tokens SET decision = $2, note = $3, decided_by = $4, input = $5,"
        " decided_at = now() WHERE token_hash = $1",
        digest, decision.decision, decision.note, decision.by, decision.input)
    await wake(conn, execution_id)
    return TokenDecided(execution_id=execution_id, status=row["status"], written=True,
                        already=None, tenant_id=row["tenant_id"])


async def expired(conn: Conn, execution_id: str) -> TimedOut | None:
    """The approval of the run whose deadline passed before its node took a decision: its
    decision is ``timeout`` whenever the run comes back to it (a daemon down, a busy
    executor), so no later decision may take its place."""
    row = await conn.fetchrow(
        "SELECT a.node_id, a.expires_at FROM approvals a WHERE a.execution_id = $1::uuid"
        " AND a.expires_at <= clock_timestamp() AND NOT EXISTS (SELECT 1 FROM node_executions x"
        "   WHERE x.execution_id = a.execution_id AND x.node_id = a.node_id"
        f"     AND {_NODE_DONE})"
        " ORDER BY a.expires_at LIMIT 1", execution_id)
    return None if row is None else TimedOut(node_id=row["node_id"],
                                             expires_at=row["expires_at"])


async def record_decision(conn: Conn, execution_id: str, decision: Decision) -> None:
    """An operator's decision, on a token of its own (nobody ever holds it)."""
    _, digest = new_token()
    await conn.execute(
        "INSERT INTO resume_tokens (token_hash, execution_id, decision, note, decided_by,"
        " input, decided_at) VALUES ($1, $2, $3, $4, $5, $6, now())",
        digest, execution_id, decision.decision, decision.note, decision.by, decision.input)
    await wake(conn, execution_id)


async def pending_decision(conn: Conn, execution_id: str) -> bool:
    """Whether a decision is recorded that no approval node has used yet."""
    value: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM resume_tokens WHERE execution_id = $1"
        " AND decision IS NOT NULL AND used_by_node IS NULL)", execution_id)
    return value


async def waiting_approval(conn: Conn, execution_id: str) -> str | None:
    """The approval node the run is parked on (``None``: it waits for no decision). Locks
    the run's row until the transaction ends, so two decisions queue. The run itself need
    not be ``WAITING``: one handed back by a stopping daemon (``NEW``) or left ``RUNNING``
    by a killed one still waits on its parked approval, and the decision is used when the
    run is taken up again (as a resume link's is)."""
    status = await conn.fetchval(
        "SELECT status FROM workflow_executions WHERE id = $1 FOR UPDATE", execution_id)
    if status is None or status in ("SUCCESS", "ERROR", "CANCELED"):
        return None
    node: str | None = await conn.fetchval(
        "SELECT n.node_id FROM node_executions n WHERE n.execution_id = $1"
        " AND n.node_type = 'approval' AND n.status = 'WAITING' ORDER BY n.start_time LIMIT 1",
        execution_id)
    return node


async def wake(conn: Conn, execution_id: str) -> None:
    """A parked run becomes claimable now (its approval node then runs again and finds the
    decision); the executors are told. A run still running (about to park) keeps the
    wake-up and parks claimable (see the executor's final-state statement)."""
    await conn.execute(
        "UPDATE workflow_executions SET resume_at = now() WHERE id = $1"
        " AND status IN ('WAITING', 'RUNNING')", execution_id)
    await conn.execute("SELECT pg_notify($1, $2)", EXECUTIONS.wire, DUE)


async def request(conn: Conn, execution_id: str, node_id: str, *, message: str | None,
                  expires_at: datetime | None) -> datetime | None:
    """Record that the node asks for a decision (the first time it runs); returns the
    deadline as first recorded, so a restart does not move it."""
    await conn.execute(
        "INSERT INTO approvals (execution_id, node_id, message, expires_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (execution_id, node_id) DO NOTHING",
        execution_id, node_id, message, expires_at)
    deadline: datetime | None = await conn.fetchval(
        "SELECT expires_at FROM approvals WHERE execution_id = $1 AND node_id = $2",
        execution_id, node_id)
    return deadline


async def consume(conn: Conn, execution_id: str, node_id: str) -> Decision | None:
    """The decision this node uses: the one it consumed before (a run again after a
    crash), else the oldest unused one, now marked as this node's."""
    row = await conn.fetchrow(
        "UPDATE resume_tokens SET used_by_node = $2, used_at = coalesce(used_at, now())"
        " WHERE token_hash = (SELECT token_hash FROM resume_tokens WHERE execution_id = $1"
        "   AND decision IS NOT NULL AND (used_by_node IS NULL OR used_by_node = $2)"
        "   ORDER BY used_by_node IS NULL, decided_at, token_hash LIMIT 1 FOR UPDATE)"
        " RETURNING decision, note, decided_by, input", execution_id, node_id)
    if row is None:
        return None
    return Decision(decision=row["decision"], note=row["note"], by=row["decided_by"],
                    input=row["input"])
