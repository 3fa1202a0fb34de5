"""Workflow memory with real PostgreSQL: the memory node's operations, expiry, a write
applied once when the node runs again, concurrent increments from many runs, and reads in
expressions (a cursor kept between scheduled runs)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, final_status, fire, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.model import JSON, Node
from triggerd.nodes.base import NodeContext, NodeFailure
from triggerd.nodes.memory import MemoryNode
from triggerd.store.memory import sweep_expired
from triggerd.store.workflows import get_workflow

NODE = MemoryNode()


@pytest.fixture
async def workflow_id(pool: asyncpg.Pool) -> str:
    await apply_doc(pool, {"workflows": [{
        "key": "poller", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    return (await get_workflow(pool, "poller")).id


async def _run(pool: asyncpg.Pool, workflow_id: str, params: dict[str, Any],
               execution_id: str, node_id: str = "m") -> JSON:
    ctx = NodeContext(execution_id=execution_id, node=Node(id=node_id, type="memory"),
                      attempt=1, http=None, now=datetime.now(UTC),
                      log=logging.getLogger("test"), db=pool, workflow_id=workflow_id)
    return (await NODE.run(params, ctx)).output


async def test_get_set_delete_increment_and_cas(pool: asyncpg.Pool, workflow_id: str) -> None:
    run = await fire(pool, "poller/manual")
    steps: list[tuple[dict[str, Any], JSON]] = [
        ({"op": "get", "key": "cursor"}, {"found": False, "value": None}),
        ({"op": "set", "key": "cursor", "value": {"id": 7}}, {"found": False,
                                                              "value": {"id": 7}}),
        ({"op": "get", "key": "cursor"}, {"found": True, "value": {"id": 7}}),
        ({"op": "increment", "key": "runs"}, {"found": False, "value": 1}),
        ({"op": "increment", "key": "runs", "value": 2.5}, {"found": True, "value": 3.5}),
        ({"op": "cas", "key": "cursor", "expected": {"id": 6}, "value": {"id": 9}},
         {"swapped": False, "value": {"id": 7}}),
        ({"op": "cas", "key": "cursor", "expected": {"id": 7}, "value": {"id": 9}},
         {"swapped": True, "value": {"id": 9}}),
        ({"op": "cas", "key": "lock", "expected": None, "value": "mine"},
         {"swapped": True, "value": "mine"}),
        ({"op": "delete", "key": "cursor"}, {"found": True, "value": {"id": 9}}),
        ({"op": "delete", "key": "cursor"}, {"found": False, "value": None}),
    ]
    for number, (params, expected) in enumerate(steps):
        # Each step is its own node of the run (a write is applied once per node).
        assert await _run(pool, workflow_id, params, run, f"n{number}") == expected, params
    stored = await pool.fetch("SELECT key, value FROM workflow_memory ORDER BY key")
    assert [(r["key"], r["value"]) for r in stored] == [("lock", "mine"), ("runs", 3.5)]


async def test_bad_params_and_a_non_number_increment_change_nothing(
    pool: asyncpg.Pool, workflow_id: str
) -> None:
    run = await fire(pool, "poller/manual")
    await _run(pool, workflow_id, {"op": "set", "key": "name", "value": "x"}, run, "s")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"op": "push", "key": "k"}, "parameter 'op': 'push' is not one of get, set, delete,"
                                     " increment, cas"),
        ({"op": "set", "key": "k"}, "parameter 'value' is required for op 'set'"),
        ({"op": "get", "key": ""}, "parameter 'key' must be 1-512 characters"),
        ({"op": "increment", "key": "k", "value": "lots"},
         "parameter 'value' must be a number for op 'increment', got 'lots'"),
        ({"op": "increment", "key": "name"}, "key 'name' does not hold a number"),
        # Past 1e308 (a rendered amount) and YAML's .inf or .nan: the counter became the
        # string "Infinity" (or "NaN") for good.
        ({"op": "increment", "key": "k", "value": "1.e999"},
         "parameter 'value' must be a number for op 'increment', got '1.e999'"),
        ({"op": "increment", "key": "k", "value": float("inf")},
         "parameter 'value' must be a finite number for op 'increment', got inf"),
        ({"op": "increment", "key": "k", "value": float("nan")},
         "parameter 'value' must be a finite number for op 'increment', got nan"),
        # Null (a literal, or what "{{ none }}" renders): it crashed the run with the
        # NOT NULL violation's SQL row; text PostgreSQL cannot hold, likewise.
        ({"op": "set", "key": "k", "value": None},
         "parameter 'value' is null: memory holds no null values (op 'delete' removes a"
         " key)"),
        ({"op": "cas", "key": "k", "expected": None, "value": None},
         "parameter 'value' is null: memory holds no null values (op 'delete' removes a"
         " key)"),
        ({"op": "set", "key": "k", "value": {"a": "x\x00"}},
         "parameter 'value': $.a: contains a NUL character (\\u0000), which cannot be"
         " stored"),
        ({"op": "set", "key": "k\x00", "value": 1},
         "parameter 'key' contains a NUL character (\\u0000), which cannot be stored"),
    ]
    for number, (params, message) in enumerate(cases):
        with pytest.raises(NodeFailure) as failure:
            await _run(pool, workflow_id, params, run, f"bad{number}")
        assert failure.value.message == f"memory node: {message}"
    stored = await pool.fetch("SELECT key, value FROM workflow_memory")
    assert [(r["key"], r["value"]) for r in stored] == [("name", "x")]
    assert await pool.fetchval("SELECT count(*) FROM memory_writes") == 1


async def test_a_node_run_again_applies_its_write_once(pool: asyncpg.Pool,
                                                       workflow_id: str) -> None:
    run = await fire(pool, "poller/manual")
    first = await _run(pool, workflow_id, {"op": "increment", "key": "seen"}, run)
    again = await _run(pool, workflow_id, {"op": "increment", "key": "seen"}, run)
    assert first == again == {"found": False, "value": 1}
    assert await pool.fetchval("SELECT value FROM workflow_memory WHERE key = 'seen'") == 1


async def test_expired_keys_read_as_absent_and_are_swept(pool: asyncpg.Pool,
                                                         workflow_id: str) -> None:
    run = await fire(pool, "poller/manual")
    await _run(pool, workflow_id, {"op": "set", "key": "short", "value": 1, "ttl": "1s"},
               run, "a")
    await _run(pool, workflow_id, {"op": "set", "key": "long", "value": 2, "ttl": "1h"},
               run, "b")
    await pool.execute("UPDATE workflow_memory SET expires_at = now() - interval '1s'"
                       " WHERE key = 'short'")
    assert await _run(pool, workflow_id, {"op": "get", "key": "short"}, run, "c") == {
        "found": False, "value": None}
    # An increment of an expired counter starts again from zero.
    assert await _run(pool, workflow_id, {"op": "increment", "key": "short"}, run, "d") == {
        "found": False, "value": 1}
    await pool.execute("UPDATE workflow_memory SET expires_at = now() - interval '1s'"
                       " WHERE key = 'short'")
    async with pool.acquire() as conn:
        assert await sweep_expired(conn) == 1
    assert [r["key"] for r in await pool.fetch("SELECT key FROM workflow_memory")] == ["long"]


@pytest.fixture
async def executors(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[list[Executor]]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms"})
    started = [Executor(pool=pool, dsn=dsn, settings=settings) for _ in range(2)]
    for ex in started:
        await ex.start()
    yield started
    for ex in started:
        await ex.stop()


async def test_runs_on_two_executors_all_count_and_expressions_read_memory(
    pool: asyncpg.Pool, executors: list[Executor]
) -> None:
    await apply_doc(pool, {"workflows": [{
        "key": "counter",
        "graph": {
            "nodes": [
                {"id": "seen", "type": "set",
                 "params": {"value": {"cursor": "{{ memory.cursor }}"}}},
                {"id": "count", "type": "memory", "params": {"op": "increment", "key": "n"}},
                {"id": "move", "type": "memory",
                 "params": {"op": "set", "key": "cursor", "value": "{{ input.at }}"}},
            ],
            "edges": [{"from": "seen", "to": "count"}, {"from": "count", "to": "move"}],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
    }]})
    first = await fire(pool, "counter/manual", {"at": "2027-01-01"})
    row = await final_status(pool, first)
    assert row["status"] == "SUCCESS", (row["error_code"], row["error_message"])
    runs = await asyncio.gather(*(fire(pool, "counter/manual", {"at": f"2027-01-{d:02}"})
                                  for d in range(2, 22)))

    async def all_done() -> bool:
        done = await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE status = 'SUCCESS'")
        return bool(done == 21)

    await wait_for(all_done, timeout=30)
    assert await pool.fetchval("SELECT value FROM workflow_memory WHERE key = 'n'") == 21
    # The second and later runs read the cursor a run before them stored.
    seen = await pool.fetchval("SELECT output FROM node_executions WHERE node_id = 'seen'"
                               " AND execution_id = $1", runs[0])
    assert seen["cursor"].startswith("2027-01-")
    first_seen = await pool.fetchval("SELECT output FROM node_executions WHERE node_id ="
                                     " 'seen' AND execution_id = $1", first)
    assert first_seen == {"cursor": None}


async def test_a_value_its_output_could_not_carry_is_refused_before_the_write(
    pool: asyncpg.Pool, workflow_id: str
) -> None:
    """Written, the value stayed in memory while the run failed OUTPUT_TOO_LARGE (the
    output holds the value), and every retry failed the same way."""
    run = await fire(pool, "poller/manual")

    async def attempt(params: dict[str, Any], node_id: str) -> JSON:
        ctx = NodeContext(execution_id=run, node=Node(id=node_id, type="memory"), attempt=1,
                          http=None, now=datetime.now(UTC), log=logging.getLogger("test"),
                          db=pool, workflow_id=workflow_id, max_output_bytes=1_000)
        return (await NODE.run(params, ctx)).output

    # {"swapped": false, "value": "x...x"}: 31 bytes and the text.
    big = "x" * 970
    cases: list[tuple[dict[str, Any], int]] = [
        ({"op": "set", "key": "big", "value": big}, 1_001),
        ({"op": "cas", "key": "big", "expected": None, "value": {"text": big[:-10]}}, 1_001),
    ]
    for params, size in cases:
        with pytest.raises(NodeFailure) as failure:
            await attempt(params, f"n-{params['op']}")
        assert (failure.value.code, failure.value.message) == (
            "OUTPUT_TOO_LARGE", f"memory node: its output with this value would be {size}"
            " bytes, above [executor] max_resume_output_bytes (1000 bytes); nothing was"
            " written")
    assert await pool.fetchval("SELECT count(*) FROM workflow_memory") == 0
    assert await attempt({"op": "set", "key": "big", "value": big[:-1]}, "ok") == {
        "found": False, "value": big[:-1]}
