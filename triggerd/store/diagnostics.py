"""SQL behind ``triggerd doctor``. Every statement reads only columns of the first
migration (or treats a later table as empty when it is missing), so the doctor still
answers on a database whose schema is behind the code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

# An asyncpg Connection (asyncpg ships no type information).
Conn = Any


async def server_version(conn: Conn) -> str:
    return str(await conn.fetchval("SHOW server_version"))


async def database_clock(conn: Conn) -> datetime:
    """The database's clock when the statement runs (``now()`` would be the transaction's
    start)."""
    value: datetime = await conn.fetchval("SELECT clock_timestamp()")
    return value


async def routable_webhooks(conn: Conn) -> list[tuple[str, str]]:
    """(full name, URL path) of every webhook trigger the daemon should serve: enabled, of
    a workflow that is not archived (the daemon's own route query, DESIGN §4); another
    tenant's are named tenant:key/name and served under /tenants/{tenant}/hooks/."""
    rows = await conn.fetch(
        # The tenant through to_jsonb: doctor also reads schemas from before tenants
        # (migration 0026), whose triggers have no tenant_id column.
        "SELECT CASE WHEN t.tenant = 'default' THEN '' ELSE t.tenant || ':' END"
        " || w.key || '/' || t.name AS name,"
        " CASE WHEN t.tenant = 'default' THEN '/hooks/'"
        " ELSE '/tenants/' || t.tenant || '/hooks/' END"
        " || btrim(t.config ->> 'path', '/') AS path"
        " FROM (SELECT t.*, coalesce(to_jsonb(t) ->> 'tenant_id', 'default') AS tenant"
        " FROM workflow_triggers t) t JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.enabled AND t.type = 'webhook' AND w.status = 'active'"
        " ORDER BY w.key, t.name"
    )
    return [(str(r["name"]), str(r["path"] or "")) for r in rows]


async def cron_zones(conn: Conn) -> dict[str, list[str]]:
    """Time zone -> full names of the enabled cron triggers that use it."""
    rows = await conn.fetch(
        "SELECT coalesce(t.config ->> 'timezone', 'UTC') AS zone,"
        " array_agg(w.key || '/' || t.name ORDER BY w.key, t.name) AS names"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.enabled AND t.type = 'cron' AND w.status = 'active'"
        " GROUP BY 1 ORDER BY 1"
    )
    return {str(r["zone"]): [str(n) for n in r["names"]] for r in rows}


async def recorded_zone_rules(conn: Conn) -> dict[str, str]:
    """Zone -> the fingerprint of its rules when definitions were last applied (empty on
    a schema from before migration 0007)."""
    try:
        rows = await conn.fetch("SELECT zone, fingerprint FROM zone_rules")
    except asyncpg.UndefinedTableError:
        return {}
    return {str(r["zone"]): str(r["fingerprint"]) for r in rows}


async def connection_slots(conn: Conn) -> tuple[int, int, int]:
    """(max_connections, the slots reserved for superusers and reserved_connections'
    roles, client connections now)."""
    row = await conn.fetchrow(
        "SELECT current_setting('max_connections')::int AS max,"
        " current_setting('superuser_reserved_connections')::int"
        " + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,"
        " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int"
        " AS in_use")
    assert row is not None
    return int(row["max"]), int(row["reserved"]), int(row["in_use"])
