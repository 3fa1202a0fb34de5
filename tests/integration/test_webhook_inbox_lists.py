"""The webhook inbox list reads about one page of rows whatever its filters, whichever plan
PostgreSQL picks (migration 0012's indexes). Counted from EXPLAIN ANALYZE, never timed."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc
from tests.integration.test_history_lists import Recorder, _rows_read
from triggerd.store.inbox import list_inbox
from triggerd.store.workflows import get_trigger

ROWS = 4000
LIMIT = 20
MAX_READ = 4 * LIMIT + 40


async def _read_by(pool: asyncpg.Pool, query: str, args: tuple[Any, ...], mode: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE listing AS {query}")
        try:
            types = await conn.fetchval(
                "SELECT parameter_types::text[] FROM pg_prepared_statements"
                " WHERE name = 'listing'"
            )
            values = ", ".join(
                "NULL" if a is None else "'" + str(a).replace("'", "''") + f"'::{t}"
                for a, t in zip(args, types, strict=True)
            )
            call = f"listing({values})" if values else "listing"
            text = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {call}")
        finally:
            await conn.execute("DEALLOCATE listing")
    doc = json.loads(text) if isinstance(text, str) else text
    return _rows_read(doc[0]["Plan"], "webhook_requests")


@pytest.fixture
async def inbox(pool: asyncpg.Pool) -> dict[str, Any]:
    await apply_doc(pool, {"workflows": [{
        "key": "wf", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": f"h{n}", "type": "webhook", "path": f"h{n}"} for n in range(5)],
    }]})
    triggers = [await get_trigger(pool, f"wf/h{n}") for n in range(5)]
    # Filtered rows (no run) over five triggers, a third the busy one's, one in a hundred
    # the quiet one's; ids time-ordered like the ingress's.
    await pool.execute(
        "INSERT INTO webhook_requests (id, trigger_id, method, path, outcome, received_at)"
        " SELECT (lpad(to_hex(i), 12, '0') || '-7000-8000-000000000000')::uuid"
        "        ::text::uuid, ($1::uuid[])[k + 1], 'POST', '/hooks/x',"
        "        CASE WHEN i % 50 = 0 THEN 'debounced' ELSE 'filtered' END,"
        "        now() - ($2 - i) * interval '1 second'"
        " FROM generate_series(1, $2) AS i,"
        " LATERAL (SELECT CASE WHEN i % 100 = 0 THEN 4 WHEN i % 3 = 0 THEN 0"
        "          ELSE 1 + i % 3 END AS k) AS x",
        [t.id for t in triggers], ROWS,
    )
    # Another tenant's trigger with few requests among the default tenant's many: its
    # page read the whole inbox by the primary key, filtering by the trigger's tenant.
    await apply_doc(pool, {"tenant": "acme", "workflows": [{
        "key": "wf", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": f"h{n}", "type": "webhook", "path": f"h{n}"} for n in range(2)],
    }]})
    acme = [await get_trigger(pool, f"wf/h{n}", tenant="acme") for n in range(2)]
    await pool.execute(
        "UPDATE webhook_requests SET trigger_id = $1 WHERE id IN (SELECT id FROM"
        " webhook_requests ORDER BY id LIMIT 60)", acme[0].id)
    await pool.execute("ANALYZE webhook_requests")
    middle = await pool.fetchval(
        "SELECT id::text FROM webhook_requests ORDER BY id DESC OFFSET $1 LIMIT 1", ROWS // 2)
    first_acme = await pool.fetchval(
        "SELECT id::text FROM webhook_requests WHERE trigger_id = $1 ORDER BY id DESC"
        " OFFSET 30 LIMIT 1", acme[0].id)
    return {"busy": triggers[0].id, "quiet": triggers[4].id, "after": middle,
            "acme_after": first_acme}


CALLS: dict[str, Callable[[Any, dict[str, Any]], Awaitable[Any]]] = {
    "all": lambda c, h: list_inbox(c, limit=LIMIT + 1),
    "all, page 2": lambda c, h: list_inbox(c, limit=LIMIT + 1, after_id=h["after"]),
    "outcome": lambda c, h: list_inbox(c, outcome="filtered", limit=LIMIT + 1),
    "rare outcome": lambda c, h: list_inbox(c, outcome="accepted", limit=LIMIT + 1),
    "trigger": lambda c, h: list_inbox(c, trigger_id=h["busy"], limit=LIMIT + 1),
    "quiet trigger, page 2": lambda c, h: list_inbox(
        c, trigger_id=h["quiet"], limit=LIMIT + 1, after_id=h["after"]),
    "trigger and outcome": lambda c, h: list_inbox(
        c, trigger_id=h["quiet"], outcome="debounced", limit=LIMIT + 1),
    "quiet tenant": lambda c, h: list_inbox(c, tenant="acme", limit=LIMIT + 1),
    "quiet tenant, page 2 of an outcome": lambda c, h: list_inbox(
        c, tenant="acme", outcome="filtered", after_id=h["acme_after"], limit=LIMIT + 1),
    "busy tenant": lambda c, h: list_inbox(c, tenant="default", limit=LIMIT + 1),
}


@pytest.mark.parametrize("literal", [True, False])
async def test_a_tenants_inbox_page_holds_its_own_requests(
    pool: asyncpg.Pool, inbox: dict[str, Any], literal: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerd.store import inbox as store

    if not literal:  # a tenant with more webhook triggers than literal branches
        monkeypatch.setattr(store, "MAX_LITERAL_TRIGGERS", 0)
    async with pool.acquire() as conn:
        acme = await list_inbox(conn, tenant="acme", limit=100)
        page = await list_inbox(conn, tenant="default", limit=30)
        filtered = await list_inbox(conn, tenant="default", outcome="debounced", limit=5,
                                    after_id=inbox["after"])
        everything = await list_inbox(conn, limit=ROWS + 1)
    assert len(acme) == 60 and {r.tenant_id for r in acme} == {"acme"}
    assert [r.id for r in acme] == sorted((r.id for r in acme), reverse=True)
    expected = [r.id for r in everything if r.tenant_id == "default"][:30]
    assert [r.id for r in page] == expected
    expected = [r.id for r in everything if r.tenant_id == "default"
                and r.outcome == "debounced" and r.id < inbox["after"]][:5]
    assert [r.id for r in filtered] == expected and len(expected) == 5


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
@pytest.mark.parametrize("name", sorted(CALLS))
async def test_an_inbox_list_reads_about_one_page(
    pool: asyncpg.Pool, inbox: dict[str, Any], name: str, mode: str
) -> None:
    recorder = Recorder(pool)
    await CALLS[name](recorder, inbox)
    assert recorder.last is not None
    query, args = recorder.last
    assert await _read_by(pool, query, args, mode) <= MAX_READ


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_tenant_with_many_webhook_triggers_reads_a_page_per_trigger_at_most(
    pool: asyncpg.Pool, mode: str
) -> None:
    """Past MAX_LITERAL_TRIGGERS one lateral read per trigger is planned for all of them:
    it read and sorted each trigger's whole inbox (1.8 s a page for 1,000 triggers over
    220,000 requests). Each trigger offers a page of ids now, and the page's rows are
    read last."""
    from triggerd.store import inbox as store

    triggers = store.MAX_LITERAL_TRIGGERS + 36
    await apply_doc(pool, {"tenant": "many", "workflows": [{
        "key": "wf", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": f"h{n}", "type": "webhook", "path": f"h{n}"}
                     for n in range(triggers)]}]})
    await pool.execute(
        "INSERT INTO webhook_requests (id, trigger_id, method, path, outcome, received_at)"
        " SELECT gen_random_uuid(), t.id, 'POST', '/x', 'filtered', now()"
        " FROM workflow_triggers t, generate_series(1, 300) WHERE t.tenant_id = 'many'")
    async with pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE webhook_requests")
    recorder = Recorder(pool)
    page = await list_inbox(recorder, tenant="many", limit=LIMIT + 1)
    assert len(page) == LIMIT + 1 and {r.tenant_id for r in page} == {"many"}
    assert recorder.last is not None
    read = await _read_by(pool, *recorder.last, mode)
    assert read <= triggers * (LIMIT + 1) + LIMIT + 1, read  # of 30,000 requests
