"""Webhook request id prefixes against a real PostgreSQL: unique, ambiguous, missing,
tenant-scoped, indexed (the command line's ``webhooks show | replay``)."""

from __future__ import annotations

import asyncpg
import pytest

from tests.helpers import apply_doc
from triggerd.errors import NotFound, UsageError
from triggerd.ids import WEBHOOK_REQUEST, parse_id
from triggerd.store.inbox import REQUEST_ID_RANGE, resolve_request_id
from triggerd.store.workflows import get_trigger

IDS = (
    "abcdef01-0000-4000-8000-000000000001",
    "abcdef01-0000-4000-8000-000000000002",
    "abcdef02-0000-4000-8000-000000000000",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
)


def _doc(tenant: str) -> dict[str, object]:
    return {"tenant": tenant, "workflows": [{
        "key": "ids", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "hook", "type": "webhook", "path": f"ids-{tenant}"}]}]}


async def _store(pool: asyncpg.Pool, tenant: str, *ids: str) -> None:
    trigger = await get_trigger(pool, "ids/hook", tenant=tenant)
    await pool.executemany(
        "INSERT INTO webhook_requests (id, trigger_id, method, path, outcome)"
        " VALUES ($1::uuid, $2::uuid, 'POST', '/hooks/ids', 'filtered')",
        [(i, trigger.id) for i in ids])


async def resolve(pool: asyncpg.Pool, text: str, tenant: str | None = None) -> str:
    return await resolve_request_id(pool, parse_id(text, WEBHOOK_REQUEST), tenant)


async def test_prefixes(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, _doc("default"))
    await _store(pool, "default", *IDS)
    assert await resolve(pool, "abcdef02") == IDS[2]
    assert await resolve(pool, "ABCDEF01-0000-4000-8000-000000000001") == IDS[0]
    assert await resolve(pool, "abcdef01000040008000000000000002") == IDS[1]
    assert await resolve(pool, "ffffffff") == IDS[3]
    with pytest.raises(UsageError) as ambiguous:
        await resolve(pool, "abcdef01")
    assert str(ambiguous.value) == (
        "webhook request id prefix 'abcdef01' is ambiguous: it matches more than one"
        " webhook request; give more digits"
    )
    assert ambiguous.value.exit_code == 2
    with pytest.raises(NotFound) as missing:
        await resolve(pool, "abcdef03")
    assert str(missing.value) == "no webhook request whose id starts with 'abcdef03'"
    # A full id needs no lookup; show and replay say whether it exists.
    assert await resolve(pool, "99999999-0000-4000-8000-000000000000") == (
        "99999999-0000-4000-8000-000000000000")


async def test_a_tenant_sees_only_its_own_requests(pool: asyncpg.Pool) -> None:
    """As show and replay: another tenant's request neither makes a prefix ambiguous nor
    is named by it; one whose trigger was deleted only an all-tenant actor sees."""
    await apply_doc(pool, _doc("default"))
    await apply_doc(pool, _doc("acme"))
    await _store(pool, "default", IDS[0])
    await _store(pool, "acme", IDS[1], IDS[3])
    assert await resolve(pool, "abcdef01", "acme") == IDS[1]
    assert await resolve(pool, "abcdef01", "default") == IDS[0]
    with pytest.raises(UsageError):
        await resolve(pool, "abcdef01")  # every tenant's: both
    await pool.execute("DELETE FROM workflow_triggers WHERE tenant_id = 'acme'")
    with pytest.raises(NotFound):
        await resolve(pool, "ffffffff", "acme")
    assert await resolve(pool, "ffffffff") == IDS[3]


async def test_prefix_lookup_uses_the_primary_key(pool: asyncpg.Pool) -> None:
    query = parse_id("abcdef01", WEBHOOK_REQUEST)
    async with pool.acquire() as conn, conn.transaction():
        # Rule the sequential scan out, so the plan shows whether the condition is indexable.
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN " + REQUEST_ID_RANGE, query.low,
                                           query.high, None)
        )
    assert "webhook_requests_pkey" in plan, plan
    assert "Index Cond: ((id >= " in plan, plan
