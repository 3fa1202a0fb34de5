"""What ``triggerd backup`` and ``triggerd restore`` ask the database before and after
pg_dump or pg_restore do the work."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

# Connections that belong to triggerd processes (the pool, the notifications hub):
# a daemon (or another command) is using the database while any of these is open.
TRIGGERD_APPLICATION_NAMES = ("triggerd", "triggerd-notify")
# The connections of `triggerd backup` and `restore` themselves: not counted as a daemon.
BACKUP_APPLICATION_NAME = "triggerd-backup"


async def server_version(conn: asyncpg.Connection) -> tuple[int, str]:
    """(major version, the full version text) of the server."""
    num = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    text = str(await conn.fetchval("SELECT current_setting('server_version')"))
    return num // 10000, text.split()[0]


async def triggerd_connections(conn: asyncpg.Connection) -> int:
    """Other triggerd processes' connections to this database."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND application_name = ANY($1::text[])",
        list(TRIGGERD_APPLICATION_NAMES),
    )
    return count


# The rows operators see: test runs' scratch workflows and runs are left out of the counts
# (`workflows list` does not show them either; "15 workflow(s)" for 6 listed misled).
_VISIBLE = {"workflows": "status <> 'test'", "workflow_executions": "NOT test"}


async def count_rows(conn: asyncpg.Connection, table: str) -> int:
    """Rows of ``table`` (``workflows`` or ``workflow_executions``) an operator sees, test
    runs' left out; 0 when it does not exist yet (an empty database)."""
    if table not in _VISIBLE:
        raise ValueError(f"not a countable table: {table}")
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {_VISIBLE[table]}")
    except asyncpg.UndefinedTableError:
        return 0
    except asyncpg.UndefinedColumnError:  # a schema from before test runs
        count = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def resume_copy_keys(conn: asyncpg.Connection) -> dict[str, int]:
    """How many resume copies each key encrypted, by key id (the copy's header bytes 2-9,
    see executor/resume.py); empty when there are none or no such table yet."""
    try:
        rows = await conn.fetch(
            "SELECT encode(substring(ciphertext FROM 2 FOR 8), 'hex') AS key_id,"
            " count(*) AS n FROM node_outputs_resume GROUP BY 1")
    except asyncpg.UndefinedTableError:
        return {}
    return {str(r["key_id"]): int(r["n"]) for r in rows}


async def restored_schedules(conn: asyncpg.Connection, types: Sequence[str]
                             ) -> tuple[int, datetime | None]:
    """The enabled schedules of active workflows, and the newest past slot the ledger
    holds (the backup's last decision): from there the daemon catches up missed slots."""
    scheduled = ("FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
                 " WHERE t.type = ANY($1::text[]) AND t.enabled AND w.status = 'active'")
    count: int = await conn.fetchval(f"SELECT count(*) {scheduled}", list(types))
    last: datetime | None = await conn.fetchval(
        "SELECT max(s.scheduled_for) FROM trigger_slots s WHERE s.scheduled_for <= now()"
        f" AND s.trigger_id IN (SELECT t.id {scheduled})", list(types))
    return count, last


async def skip_missed_slots(conn: asyncpg.Connection, types: Sequence[str]) -> int:
    """Move every schedule's catch-up floor to now, as a resume without catch-up does: no
    slot from before now runs. Returns how many schedules."""
    result: str = await conn.execute(
        "INSERT INTO trigger_state (trigger_id, floor_at)"
        " SELECT id, now() FROM workflow_triggers WHERE type = ANY($1::text[])"
        " ON CONFLICT (trigger_id) DO UPDATE"
        " SET floor_at = GREATEST(trigger_state.floor_at, now()), updated_at = now()",
        list(types))
    return int(result.split()[-1])
