"""The heartbeat (renew_leases) and the writer's final states (write_progress) lock a
process's runs in id order: two statements over the same runs in different orders wait
for each other in a cycle (PostgreSQL reported "deadlock detected" with two replicas under
load). Shown with a third transaction holding the smaller id: a statement that locks in id
order waits there holding nothing, so the larger id stays free."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, fire, wait_until_blocked
from triggerd.store.executions import ExecutionUpdate, renew_leases, write_progress

OWNER = "host:1:test"
DOC: dict[str, Any] = {
    "workflows": [{
        "key": "locks",
        "graph": {"nodes": [{"id": "start", "type": "noop"}]},
        "triggers": [{"name": "manual", "type": "manual"}],
    }]
}


RUNS = 20


async def _running_runs(pool: asyncpg.Pool) -> list[str]:
    await apply_doc(pool, DOC)
    ids = sorted([await fire(pool, "locks/manual") for _ in range(RUNS)])
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = $1,"
        " lease_expires_at = now() + interval '1 minute' WHERE id = ANY($2::uuid[])",
        OWNER, ids)
    return ids


async def _others_stay_free_while_blocked_on_the_smallest(
    pool: asyncpg.Pool, query_prefix: str,
    statement: Callable[[asyncpg.Connection, list[str]], Coroutine[Any, Any, Any]],
) -> None:
    ids = await _running_runs(pool)
    smallest, others = ids[0], ids[1:]
    async with pool.acquire() as holder, pool.acquire() as worker, pool.acquire() as probe:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM workflow_executions WHERE id = $1 FOR UPDATE",
                             smallest)
        task = asyncio.create_task(statement(worker, ids[::-1]))  # largest first
        try:
            await wait_until_blocked(pool, query_prefix)
            async with probe.transaction():
                free = await probe.fetchval(
                    "SELECT count(*) FROM (SELECT id FROM workflow_executions"
                    " WHERE id = ANY($1::uuid[]) FOR NO KEY UPDATE SKIP LOCKED) AS f", others)
            assert free == len(others)  # the waiting statement holds none of them
        finally:
            await hold.rollback()
            await task


@pytest.mark.parametrize("kind", ["renew_leases", "write_progress"])
async def test_runs_are_locked_in_id_order(pool: asyncpg.Pool, kind: str) -> None:
    async def renew(conn: asyncpg.Connection, ids: list[str]) -> Any:
        return await renew_leases(conn, OWNER, ids, timedelta(seconds=30))

    async def finish(conn: asyncpg.Connection, ids: list[str]) -> Any:
        return await write_progress(conn, OWNER, [], [
            ExecutionUpdate(id=i, status="SUCCESS", output={"n": n}) for n, i in enumerate(ids)
        ])

    statement = renew if kind == "renew_leases" else finish
    prefix = "UPDATE workflow_executions" if kind == "renew_leases" else "WITH nodes AS"
    await _others_stay_free_while_blocked_on_the_smallest(pool, prefix, statement)
