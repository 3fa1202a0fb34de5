"""Child runs that outlived their canceled parent are canceled by a periodic sweep: the
cancel_previous slot write cancels its runs' children only after its commit (a lost answer
or a stop in between skipped it), and a running parent flagged for cancel may start a
child after its cancel ran. A run below a CANCELED one ends as that run's cancel would
have ended it, also through children that ended SUCCESS or ERROR; runs with no CANCELED
ancestor are left alone (`wait: false` children outlive their parent by design)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.helpers import apply_doc, fire, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import CHILD_SWEEP_BATCH, Executor
from triggerd.store.executions import (
    _ORPHANED_CHILDREN,
    cancel_orphaned_children,
    request_cancel,
)
from triggerd.store.subworkflows import start_child

DOC = {"workflows": [
    {"key": "parent", "graph": {"nodes": [{"id": "call", "type": "workflow",
                                           "params": {"workflow": "leaf"}}]},
     "triggers": [{"name": "manual", "type": "manual"}]},
    {"key": "leaf", "graph": {"nodes": [{"id": "a", "type": "noop"}]}},
    {"key": "slow", "graph": {"nodes": [{"id": "hold", "type": "wait",
                                         "params": {"duration": "1h"}}]}},
    {"key": "waits-on-slow", "graph": {"nodes": [{"id": "call", "type": "workflow",
                                                  "params": {"workflow": "slow"}}]},
     "triggers": [{"name": "manual", "type": "manual"}]},
]}

OPEN_NODE = {"RUNNING": "RUNNING", "WAITING": "WAITING"}


async def _child(conn: asyncpg.Connection, parent: str, node: str) -> str:
    child = await start_child(conn, parent_id=parent, node_id=node, key="leaf", version=None,
                              run_input={}, max_depth=8)
    return child.id


async def _set(conn: asyncpg.Connection, execution_id: str, status: str) -> None:
    """Put a run in ``status`` as the executor leaves it: a running one leased by another
    process, a final one ended; a running or waiting one with its node row open."""
    await conn.execute(
        "UPDATE workflow_executions SET status = $2, start_time = now(),"
        " end_time = CASE WHEN $2 IN ('SUCCESS', 'ERROR', 'CANCELED') THEN now() END,"
        " lease_owner = CASE WHEN $2 = 'RUNNING' THEN 'elsewhere' END,"
        " lease_expires_at = CASE WHEN $2 = 'RUNNING' THEN now() + interval '1 hour' END,"
        " resume_at = CASE WHEN $2 = 'WAITING' THEN now() + interval '1 hour' END"
        " WHERE id = $1", execution_id, status)
    if status in OPEN_NODE:
        await conn.execute(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, start_time)"
            " VALUES ($1, 'a', 'noop', $2, now())", execution_id, OPEN_NODE[status])


async def _state(pool: asyncpg.Pool, execution_id: str) -> tuple[str, bool, str | None, list[str]]:
    row = await pool.fetchrow("SELECT status, cancel_requested, error_message"
                              " FROM workflow_executions WHERE id = $1", execution_id)
    nodes = await pool.fetch("SELECT status FROM node_executions WHERE execution_id = $1",
                             execution_id)
    return (row["status"], row["cancel_requested"], row["error_message"],
            [n["status"] for n in nodes])


async def _versions(pool: asyncpg.Pool) -> list[tuple[str, str]]:
    """Every row's id and row version: a statement that writes a row changes its xmin."""
    rows = await pool.fetch(
        "SELECT id::text AS id, xmin::text AS v FROM workflow_executions"
        " UNION ALL SELECT id::text, xmin::text FROM node_executions ORDER BY 1")
    return [(r["id"], r["v"]) for r in rows]


async def test_the_sweep_cancels_the_children_of_canceled_runs_only(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    canceled, succeeded, failed = [await fire(pool, "parent/manual") for _ in range(3)]
    async with pool.acquire() as conn:
        waiting, new, running = [await _child(conn, canceled, n) for n in ("w", "n", "r")]
        # Started by the running child after its parent's cancel missed it.
        grandchild = await _child(conn, running, "g")
        outliving = await _child(conn, succeeded, "k")
        after_error = await _child(conn, failed, "k")
        for run, status in ((canceled, "CANCELED"), (succeeded, "SUCCESS"), (failed, "ERROR"),
                            (waiting, "WAITING"), (running, "RUNNING"),
                            (grandchild, "WAITING"), (outliving, "RUNNING"),
                            (after_error, "WAITING")):
            await _set(conn, run, status)

        # The grandchild too: its parent did not end, its grandparent did, CANCELED.
        assert await cancel_orphaned_children(conn) == 4

    gone = "canceled with its parent run"
    assert await _state(pool, waiting) == ("CANCELED", True, gone, ["CANCELED"])
    assert await _state(pool, new) == ("CANCELED", True, gone, [])
    # Its executor cancels its running node and ends it.
    assert await _state(pool, running) == ("RUNNING", True, None, ["RUNNING"])
    assert await _state(pool, grandchild) == ("CANCELED", True, gone, ["CANCELED"])
    assert await _state(pool, outliving) == ("RUNNING", False, None, ["RUNNING"])
    assert await _state(pool, after_error) == ("WAITING", False, None, ["WAITING"])

    before = await _versions(pool)
    async with pool.acquire() as conn:
        assert await cancel_orphaned_children(conn) == 0
    assert await _versions(pool) == before


async def test_the_sweep_takes_its_batch_and_the_next_one_the_rest(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    canceled = await fire(pool, "parent/manual")
    async with pool.acquire() as conn:
        children = [await _child(conn, canceled, f"n{i}") for i in range(3)]
        await _set(conn, canceled, "CANCELED")
        for child in children:
            await _set(conn, child, "RUNNING")
        assert await cancel_orphaned_children(conn, 2) == 2
        # The parent's whole tree was canceled with the batch's first children.
        assert await cancel_orphaned_children(conn, 2) == 0
    assert {(await _state(pool, c))[:2] for c in children} == {("RUNNING", True)}


async def _tree(conn: asyncpg.Connection, top: str, middle: str) -> list[str]:
    """Below ``top``: a child ended ``middle`` whose own children (started with `wait:
    false`) are waiting, queued and running, and one started by the running one; the
    runs, top down."""
    child = await _child(conn, top, "call")
    waiting, new, running = [await _child(conn, child, n) for n in ("w", "n", "r")]
    below_running = await _child(conn, running, "g")
    for run, status in ((child, middle), (waiting, "WAITING"), (running, "RUNNING"),
                        (below_running, "WAITING")):
        await _set(conn, run, status)
    return [child, waiting, new, running, below_running]


@pytest.mark.parametrize("middle", ["SUCCESS", "ERROR"])
async def test_the_sweep_cancels_what_a_cancel_of_a_canceled_ancestor_would(
    pool: asyncpg.Pool, middle: str
) -> None:
    """A cancel of a run reaches every run below it, through a child that ended SUCCESS or
    ERROR: the sweep gives the runs that cancel missed the same end."""
    await apply_doc(pool, DOC)
    missed, canceled = [await fire(pool, "parent/manual") for _ in range(2)]
    async with pool.acquire() as conn:
        swept, reached = await _tree(conn, missed, middle), await _tree(conn, canceled, middle)
        # Ended as a cancel_previous slot write leaves it when its answer is lost.
        await _set(conn, missed, "CANCELED")
        await _set(conn, canceled, "WAITING")
        await request_cancel(conn, canceled)

        assert await cancel_orphaned_children(conn) == 4

    gone = "canceled with its parent run"
    assert [await _state(pool, r) for r in swept] == [
        (middle, False, None, []),
        ("CANCELED", True, gone, ["CANCELED"]),
        ("CANCELED", True, gone, []),
        # Its executor cancels its running node and ends it.
        ("RUNNING", True, None, ["RUNNING"]),
        ("CANCELED", True, gone, ["CANCELED"]),
    ]
    assert [await _state(pool, r) for r in swept] == [await _state(pool, r) for r in reached]

    before = await _versions(pool)
    async with pool.acquire() as conn:
        assert await cancel_orphaned_children(conn) == 0
    assert await _versions(pool) == before


async def test_the_sweep_leaves_runs_with_no_canceled_ancestor(pool: asyncpg.Pool) -> None:
    """Runs below children that ended SUCCESS or ERROR, under a run that ended SUCCESS or
    ERROR too, outlive them all."""
    await apply_doc(pool, DOC)
    succeeded, failed = [await fire(pool, "parent/manual") for _ in range(2)]
    async with pool.acquire() as conn:
        trees = [await _tree(conn, succeeded, "SUCCESS"), await _tree(conn, failed, "ERROR")]
        await _set(conn, succeeded, "SUCCESS")
        await _set(conn, failed, "ERROR")
        # A chain three deep of runs that ended SUCCESS, the last with a waiting child.
        deep = await _child(conn, trees[0][0], "d")
        deepest = await _child(conn, deep, "e")
        await _set(conn, deep, "SUCCESS")
        await _set(conn, deepest, "WAITING")
        before = await _versions(pool)

        assert await cancel_orphaned_children(conn) == 0

    assert await _versions(pool) == before
    assert (await _state(pool, deepest))[:2] == ("WAITING", False)


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings, child_sweep_interval=0.2)
    await ex.start()
    yield ex
    await ex.stop()


async def test_the_executor_sweeps_a_child_its_parents_cancel_missed(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, DOC)
    parent = await fire(pool, "waits-on-slow/manual")

    async def waiting_child() -> str | None:
        rows = await pool.fetch("SELECT id::text AS id, status FROM workflow_executions"
                                " WHERE parent_execution_id = $1", parent)
        return rows[0]["id"] if rows and rows[0]["status"] == "WAITING" else None

    child = await wait_for(waiting_child)
    # As a cancel_previous slot write leaves it when its answer is lost: the parent ended,
    # its children's cancel never sent.
    await pool.execute("UPDATE workflow_executions SET status = 'CANCELED', end_time = now()"
                       " WHERE id = $1", parent)

    async def child_canceled() -> bool:
        return (await _state(pool, child))[0] == "CANCELED"

    await wait_for(child_canceled)
    assert await _state(pool, child) == ("CANCELED", True, "canceled with its parent run",
                                         ["CANCELED"])


async def test_the_sweep_reads_the_active_children_not_the_history(pool: asyncpg.Pool) -> None:
    """A long history of ended children, and a deleted trigger's queued runs (no trigger,
    like children): the sweep's plan reads the index of active children (migration 0039)."""
    await apply_doc(pool, DOC)
    parent = await fire(pool, "parent/manual")
    workflow = await pool.fetchval("SELECT id FROM workflows WHERE key = 'leaf'")
    await pool.execute(
        "INSERT INTO workflow_executions (id, workflow_id, trigger_type, input, context,"
        " status, end_time, parent_execution_id)"
        " SELECT gen_random_uuid(), $1, 'workflow', '{}', '{}',"
        " CASE WHEN i <= 3000 THEN 'SUCCESS' ELSE 'NEW' END,"
        " CASE WHEN i <= 3000 THEN now() END,"
        " CASE WHEN i <= 3000 OR i > 6000 THEN $2::uuid END"
        " FROM generate_series(1, 6005) AS i", workflow, parent)
    await pool.execute("ANALYZE workflow_executions")
    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN " + _ORPHANED_CHILDREN, CHILD_SWEEP_BATCH))
    assert "workflow_executions_active_children" in plan, plan
    # The walk up from each is probes of the primary key, whatever the history.
    assert "workflow_executions_pkey" in plan and "Seq Scan" not in plan, plan
