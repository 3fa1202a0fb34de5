"""The SQL of workflow memory (migration 0023): values per workflow and key, with an
optional expiry; writes recorded per (execution, node) so a node run again after a crash
applies its write once. An expired key reads as absent everywhere, before retention has
swept it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from triggerd.model import JSON

Conn = Any  # a connection inside the caller's transaction

_LIVE = "(expires_at IS NULL OR expires_at > now())"
# Keys an expression context loads at most (memory is for cursors and counters).
SNAPSHOT_LIMIT = 1000


async def get(conn: Conn, workflow_id: str, key: str) -> tuple[bool, JSON]:
    row = await conn.fetchrow(
        f"SELECT value FROM workflow_memory WHERE workflow_id = $1 AND key = $2 AND {_LIVE}",
        workflow_id, key)
    return (False, None) if row is None else (True, row["value"])


async def snapshot(conn: Conn, workflow_id: str) -> dict[str, JSON]:
    """The workflow's live keys (at most SNAPSHOT_LIMIT, by key), for expressions."""
    rows = await conn.fetch(
        f"SELECT key, value FROM workflow_memory WHERE workflow_id = $1 AND {_LIVE}"
        " ORDER BY key LIMIT $2", workflow_id, SNAPSHOT_LIMIT)
    return {r["key"]: r["value"] for r in rows}


async def applied(conn: Conn, execution_id: str, node_id: str) -> JSON:
    """The result of this node's write in this run, if it was applied (None if not)."""
    result: JSON = await conn.fetchval(
        "SELECT result FROM memory_writes WHERE execution_id = $1 AND node_id = $2",
        execution_id, node_id)
    return result


async def record(conn: Conn, execution_id: str, node_id: str, result: JSON) -> None:
    await conn.execute(
        "INSERT INTO memory_writes (execution_id, node_id, result) VALUES ($1, $2, $3)",
        execution_id, node_id, result)


async def set_value(conn: Conn, workflow_id: str, key: str, value: JSON,
                    ttl: timedelta | None) -> None:
    await conn.execute(
        "INSERT INTO workflow_memory (workflow_id, key, value, expires_at)"
        " VALUES ($1, $2, $3, now() + $4::interval)"
        " ON CONFLICT (workflow_id, key) DO UPDATE SET value = EXCLUDED.value,"
        " expires_at = EXCLUDED.expires_at, updated_at = now()",
        workflow_id, key, value, ttl)


async def delete(conn: Conn, workflow_id: str, key: str) -> tuple[bool, JSON]:
    row = await conn.fetchrow(
        f"DELETE FROM workflow_memory WHERE workflow_id = $1 AND key = $2"
        f" RETURNING value, {_LIVE} AS live", workflow_id, key)
    if row is None or not row["live"]:
        return False, None
    return True, row["value"]


async def increment(conn: Conn, workflow_id: str, key: str, by: float,
                    ttl: timedelta | None) -> tuple[JSON, bool]:
    """Add ``by`` to the key's number (an absent or expired key counts from 0) in one
    statement, so concurrent increments all count; ``(value, ok)``, ``ok`` False when the
    stored value is not a number (nothing changed)."""
    row = await conn.fetchrow(
        "INSERT INTO workflow_memory AS m (workflow_id, key, value, expires_at)"
        " VALUES ($1, $2, to_jsonb($3::numeric), now() + $4::interval)"
        " ON CONFLICT (workflow_id, key) DO UPDATE SET"
        "  value = CASE WHEN m.expires_at IS NOT NULL AND m.expires_at <= now()"
        "               THEN EXCLUDED.value"
        "               ELSE to_jsonb((m.value #>> '{}')::numeric + $3::numeric) END,"
        "  expires_at = coalesce(EXCLUDED.expires_at,"
        "       CASE WHEN m.expires_at <= now() THEN NULL ELSE m.expires_at END),"
        "  updated_at = now()"
        " WHERE jsonb_typeof(m.value) = 'number'"
        "    OR (m.expires_at IS NOT NULL AND m.expires_at <= now())"
        " RETURNING value", workflow_id, key, by, ttl)
    if row is None:
        return None, False
    return row["value"], True


async def compare_and_set(conn: Conn, workflow_id: str, key: str, expected: JSON,
                          value: JSON, ttl: timedelta | None) -> tuple[bool, JSON]:
    """Set ``value`` if the key holds ``expected`` (``None``: the key is absent); else
    leave it. ``(swapped, the value the key holds now)``. The row lock decides a race."""
    current = await conn.fetchrow(
        f"SELECT value, {_LIVE} AS live FROM workflow_memory WHERE workflow_id = $1"
        " AND key = $2 FOR UPDATE", workflow_id, key)
    held = current["value"] if current is not None and current["live"] else None
    if held != expected:
        return False, held
    if current is None:
        inserted = await conn.fetchval(
            "INSERT INTO workflow_memory (workflow_id, key, value, expires_at)"
            " VALUES ($1, $2, $3, now() + $4::interval) ON CONFLICT DO NOTHING RETURNING 1",
            workflow_id, key, value, ttl)
        if inserted is None:  # inserted meanwhile by another run: it won
            _, now_held = await get(conn, workflow_id, key)
            return False, now_held
    else:
        await set_value(conn, workflow_id, key, value, ttl)
    return True, value


async def sweep_expired(conn: Conn, batch: int = 1000) -> int:
    """Delete up to ``batch`` expired keys (the partial index on expires_at finds them)."""
    status: str = await conn.execute(
        "DELETE FROM workflow_memory WHERE (workflow_id, key) IN (SELECT workflow_id, key"
        " FROM workflow_memory WHERE expires_at <= now() ORDER BY expires_at LIMIT $1)",
        batch)
    return int(status.split()[-1])
