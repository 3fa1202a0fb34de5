"""Console sessions: opened by a login with an admin API token, ended by logout, expiry,
or the token's end (see migrations/0016_console_sessions.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triggerd.model import DEFAULT_TENANT

Conn = Any  # a connection or a pool


@dataclass(frozen=True, kw_only=True)
class SessionRecord:
    principal: str
    role: str
    tenant: str | None
    csrf: str
    config_hash: bytes | None
    expires_at: datetime


async def create_session(
    conn: Conn, *, id_hash: bytes, principal: str, role: str, tenant: str | None,
    token_id: str | None, config_hash: bytes | None, csrf: str, ttl: timedelta,
) -> None:
    await conn.execute(
        "INSERT INTO console_sessions (id_hash, principal, role, tenant, token_id,"
        " config_hash, csrf, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8)",
        id_hash, principal, role, tenant, token_id, config_hash, csrf, ttl,
    )


async def find_session(conn: Conn, id_hash: bytes) -> SessionRecord | None:
    """The live session with this hash: not expired, and its token (if named) neither
    revoked nor expired."""
    row = await conn.fetchrow(
        "SELECT s.principal, s.role, s.tenant, s.csrf, s.config_hash, s.expires_at"
        " FROM console_sessions s LEFT JOIN api_tokens t ON t.id = s.token_id"
        " WHERE s.id_hash = $1 AND s.expires_at > now()"
        " AND (s.token_id IS NULL OR (t.revoked_at IS NULL"
        " AND (t.expires_at IS NULL OR t.expires_at > now())))",
        id_hash,
    )
    if row is None:
        return None
    return SessionRecord(
        principal=row["principal"], role=row["role"], tenant=row["tenant"], csrf=row["csrf"],
        config_hash=None if row["config_hash"] is None else bytes(row["config_hash"]),
        expires_at=row["expires_at"],
    )


async def delete_session(conn: Conn, id_hash: bytes) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE id_hash = $1", id_hash)


async def delete_expired_sessions(conn: Conn) -> int:
    status: str = await conn.execute("DELETE FROM console_sessions WHERE expires_at <= now()")
    return int(status.split()[-1])


async def token_id_of(conn: Conn, token_hash: bytes) -> str | None:
    value = await conn.fetchval("SELECT id FROM api_tokens WHERE hash = $1", token_hash)
    return None if value is None else str(value)


# Counting stops here: the overview says "more than" rather than scan a busy hour.
OVERVIEW_COUNT_CAP = 100_000


@dataclass(frozen=True, kw_only=True)
class HourCounts:
    runs: int
    failures: int
    capped: bool


async def last_hour_counts(conn: Conn, tenant: str | None = None) -> HourCounts:
    """Runs created in the last hour (of ``tenant``; None: of all) and how many of them
    failed (an index range read on ``created_at``, or the tenant's, capped)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'ERROR') AS failures"
        " FROM (SELECT status FROM workflow_executions"
        " WHERE created_at > now() - interval '1 hour' AND NOT test"
        + ("" if tenant is None else " AND tenant_id = $2")
        + " ORDER BY created_at DESC, id DESC LIMIT $1) recent",
        OVERVIEW_COUNT_CAP + 1, *(() if tenant is None else (tenant,)),
    )
    runs = int(row["runs"])
    return HourCounts(runs=min(runs, OVERVIEW_COUNT_CAP), failures=int(row["failures"]),
                      capped=runs > OVERVIEW_COUNT_CAP)


@dataclass(frozen=True, kw_only=True)
class TriggerAttention:
    name: str  # workflow/trigger
    paused: bool
    note: str | None
    consecutive_failures: int
    tenant_id: str = DEFAULT_TENANT


async def triggers_needing_attention(conn: Conn, limit: int = 20, tenant: str | None = None
                                     ) -> list[TriggerAttention]:
    """Paused triggers and those whose latest scheduled runs failed (runtime state), of
    ``tenant`` (None: of all)."""
    rows = await conn.fetch(
        "SELECT w.key || '/' || t.name AS name, s.paused, s.note, s.consecutive_failures,"
        " t.tenant_id"
        " FROM trigger_state s JOIN workflow_triggers t ON t.id = s.trigger_id"
        " JOIN workflows w ON w.id = t.workflow_id"
        " WHERE (s.paused OR s.consecutive_failures > 0)"
        " AND ($2::text IS NULL OR t.tenant_id = $2)"
        " ORDER BY s.paused DESC, s.consecutive_failures DESC, w.key, t.name LIMIT $1",
        limit, tenant,
    )
    return [TriggerAttention(name=r["name"], paused=r["paused"], note=r["note"],
                             consecutive_failures=r["consecutive_failures"],
                             tenant_id=r["tenant_id"]) for r in rows]


async def version_graph(conn: Conn, version_id: str) -> dict[str, Any] | None:
    value = await conn.fetchval("SELECT graph FROM workflow_versions WHERE id = $1", version_id)
    if value is None:
        return None
    graph: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return graph
