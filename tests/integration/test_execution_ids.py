"""Execution id prefixes against a real PostgreSQL: unique, ambiguous, missing, indexed."""

from __future__ import annotations

import asyncpg
import pytest

from tests.helpers import apply_doc
from triggerd.errors import NotFound, UsageError
from triggerd.ids import parse_execution_id
from triggerd.store.executions import (
    EXECUTION_ID_RANGE,
    NewExecution,
    insert_executions,
    resolve_execution_id,
)
from triggerd.store.workflows import get_trigger

IDS = (
    "abcdef01-0000-4000-8000-000000000001",
    "abcdef01-0000-4000-8000-000000000002",
    "abcdef02-0000-4000-8000-000000000000",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
    "00000000-0000-4000-8000-000000000000",
)


async def _seed(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, {"workflows": [{
        "key": "ids", "name": "ids",
        "graph": {"nodes": [{"id": "a", "type": "noop"}], "edges": []},
        "triggers": [{"name": "manual", "type": "manual"}],
    }]})
    trigger = await get_trigger(pool, "ids/manual")
    await insert_executions(pool, [
        NewExecution(id=i, workflow_id=trigger.workflow_id, trigger_id=trigger.id,
                     trigger_name=trigger.name, trigger_type="manual")
        for i in IDS
    ])


async def resolve(pool: asyncpg.Pool, text: str) -> str:
    return await resolve_execution_id(pool, parse_execution_id(text))


async def test_prefixes(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    assert await resolve(pool, "abcdef02") == IDS[2]
    assert await resolve(pool, "ABCDEF01-0000-4000-8000-000000000001") == IDS[0]
    assert await resolve(pool, "abcdef01000040008000000000000002") == IDS[1]
    assert await resolve(pool, "ffffffff") == IDS[3]
    assert await resolve(pool, "00000000") == IDS[4]
    with pytest.raises(UsageError) as ambiguous:
        await resolve(pool, "abcdef01")
    assert str(ambiguous.value) == (
        "execution id prefix 'abcdef01' is ambiguous: it matches more than one execution;"
        " give more digits"
    )
    with pytest.raises(UsageError):
        await resolve(pool, "abcdef01-0000-4000-8000-00000000000")
    with pytest.raises(NotFound) as missing:
        await resolve(pool, "abcdef03")
    assert str(missing.value) == "no execution whose id starts with 'abcdef03'"


async def test_full_id_is_taken_as_is(pool: asyncpg.Pool) -> None:
    # A full id needs no lookup; the command that uses it says whether it exists.
    assert await resolve(pool, "99999999-0000-4000-8000-000000000000") == (
        "99999999-0000-4000-8000-000000000000"
    )


async def test_prefix_lookup_uses_the_primary_key(pool: asyncpg.Pool) -> None:
    query = parse_execution_id("abcdef01")
    async with pool.acquire() as conn, conn.transaction():
        # Rule the sequential scan out, so the plan shows whether the condition is indexable.
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + EXECUTION_ID_RANGE, query.low,
                                           query.high, None)
        )
    # The range is the index condition, not a filter over every row in id order.
    assert "workflow_executions_pkey" in plan, plan
    assert "Index Cond: ((id >= " in plan, plan
    assert "Filter" not in plan, plan


async def test_a_tenants_prefix_names_only_its_own_runs(pool: asyncpg.Pool) -> None:
    """Another tenant's run neither makes a prefix ambiguous nor is named by it (its full
    id would tell that it exists)."""
    await _seed(pool)
    await apply_doc(pool, {"tenant": "acme", "workflows": [{
        "key": "ids", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    theirs = await get_trigger(pool, "ids/manual", tenant="acme")
    own = "abcdef02-0000-4000-8000-000000000001"
    await insert_executions(pool, [NewExecution(
        id=own, workflow_id=theirs.workflow_id, trigger_id=theirs.id,
        trigger_name=theirs.name, trigger_type="manual")])
    acme = parse_execution_id("abcdef02")
    assert await resolve_execution_id(pool, acme, "acme") == own
    assert await resolve_execution_id(pool, acme, "default") == IDS[2]
    with pytest.raises(UsageError):
        await resolve_execution_id(pool, acme)  # every tenant's: both
    with pytest.raises(NotFound) as missing:
        await resolve_execution_id(pool, parse_execution_id("abcdef01"), "acme")
    assert str(missing.value) == "no execution whose id starts with 'abcdef01'"
