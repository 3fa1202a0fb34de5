"""Migration 0002: the hot tables reference their parents without per-row foreign keys.
What the foreign keys did must still hold: deletes cascade or clear references, and a
writer racing a delete either makes the delete wait or writes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.helpers import wait_until_blocked
from tests.integration.test_webhooks_group_commit import item
from triggerd import db
from triggerd.errors import NotFound
from triggerd.model import OverlapPolicy
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.slots import SlotRequest, record_slots
from triggerd.store.webhooks import GONE, InboxItem, InboxWriter

CONFIG = '{"cron": "* * * * *"}'
SOON = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


async def make_workflow(conn: asyncpg.Connection, key: str) -> tuple[str, str, str, str]:
    """A workflow with a published version, a cron trigger and a webhook trigger; returns
    (workflow, version, cron trigger, webhook trigger) ids."""
    wid = await conn.fetchval(
        "INSERT INTO workflows (key, name) VALUES ($1, $1) RETURNING id::text", key
    )
    vid = await conn.fetchval(
        "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest, published_at)"
        " VALUES ($1, 1, '{}', true, now()) RETURNING id::text",
        wid,
    )
    cron = await conn.fetchval(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, enabled_at)"
        " VALUES ($1, 'every', 'cron', $2::jsonb, now() - interval '1 hour') RETURNING id::text",
        wid,
        json.loads(CONFIG),
    )
    hook = await conn.fetchval(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config)"
        " VALUES ($1, 'hook', 'webhook', $2::jsonb) RETURNING id::text",
        wid,
        {"path": key},
    )
    return wid, vid, cron, hook


def inbox_item(workflow_id: str, version_id: str, trigger_id: str) -> InboxItem:
    return item(0, trigger_id=trigger_id, workflow_id=workflow_id, version_id=version_id,
                trigger_name="hook")


def slot(trigger_id: str, at: datetime = SOON) -> SlotRequest:
    return SlotRequest(
        trigger_id=trigger_id,
        scheduled_for=at,
        slot_iso=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        config_text=CONFIG,
        overlap=OverlapPolicy.ALLOW,
    )


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    tables = ("workflow_executions", "webhook_requests", "trigger_slots")
    return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def fill(pool: asyncpg.Pool, key: str) -> dict[str, str]:
    """One workflow with a cron execution (and its slot) and a webhook execution (and its
    request)."""
    async with pool.acquire() as conn:
        wid, vid, cron, hook = await make_workflow(conn, key)
    fired = await record_slots(pool, [slot(cron)], fired_at="x")
    assert fired.inserted == 1
    request = inbox_item(wid, vid, hook)
    writer = InboxWriter(pool)
    try:
        [stored] = await writer.store([request])
    finally:
        await writer.close()
    assert stored is not None and stored.created
    execution = fired.recorded[0].execution_id
    assert execution is not None
    return {"workflow": wid, "version": vid, "cron": cron, "hook": hook,
            "cron_execution": execution, "hook_execution": request.id}


async def test_deleting_a_workflow_deletes_its_executions_and_requests(
    pool: asyncpg.Pool,
) -> None:
    gone = await fill(pool, "gone")
    kept = await fill(pool, "kept")
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM workflows WHERE id = $1", gone["workflow"])
        assert await counts(conn) == {
            "workflow_executions": 2, "webhook_requests": 1, "trigger_slots": 1,
        }
        left = await conn.fetch("SELECT workflow_id::text FROM workflow_executions")
    assert {r[0] for r in left} == {kept["workflow"]}


async def test_deleting_a_trigger_keeps_its_history_without_the_reference(
    pool: asyncpg.Pool,
) -> None:
    ids = await fill(pool, "w")
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM workflow_triggers WHERE id = ANY($1::uuid[])", [ids["cron"], ids["hook"]]
        )
        executions = await conn.fetch(
            "SELECT id::text, trigger_id, trigger_name FROM workflow_executions ORDER BY id"
        )
        request = await conn.fetchrow("SELECT id::text, trigger_id FROM webhook_requests")
        slots = await conn.fetchval("SELECT count(*) FROM trigger_slots")
    assert sorted((r["id"], r["trigger_id"], r["trigger_name"]) for r in executions) == sorted(
        [(ids["cron_execution"], None, "every"), (ids["hook_execution"], None, "hook")]
    )
    assert (request["id"], request["trigger_id"]) == (ids["hook_execution"], None)
    assert slots == 0  # the slot ledger goes with the trigger


async def test_deleting_an_execution_deletes_its_request_and_leaves_the_slot(
    pool: asyncpg.Pool,
) -> None:
    ids = await fill(pool, "w")
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM workflow_executions WHERE id = ANY($1::uuid[])",
            [ids["cron_execution"], ids["hook_execution"]],
        )
        assert await counts(conn) == {
            "workflow_executions": 0, "webhook_requests": 0, "trigger_slots": 1,
        }
        # The ledger keeps the id of the execution the slot created.
        kept = await conn.fetchval("SELECT execution_id::text FROM trigger_slots")
    assert kept == ids["cron_execution"]


async def test_deleting_a_version_clears_it_from_executions(pool: asyncpg.Pool) -> None:
    ids = await fill(pool, "w")
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM workflow_versions WHERE id = $1", ids["version"])
        versions = await conn.fetch("SELECT workflow_version_id FROM workflow_executions")
    assert [r[0] for r in versions] == [None, None]


async def test_deleting_a_retried_execution_clears_retry_of(pool: asyncpg.Pool) -> None:
    ids = await fill(pool, "w")
    retry = NewExecution(workflow_id=ids["workflow"], trigger_id=None, trigger_name=None,
                         trigger_type="retry", retry_of=ids["cron_execution"])
    await insert_executions(pool, [retry])
    await pool.execute("DELETE FROM workflow_executions WHERE id = $1", ids["cron_execution"])
    assert await pool.fetchval(
        "SELECT retry_of FROM workflow_executions WHERE id = $1", retry.id
    ) is None


async def test_request_rows_share_their_execution_id(pool: asyncpg.Pool) -> None:
    ids = await fill(pool, "w")
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE webhook_requests SET execution_id = $1", ids["cron_execution"]
        )


async def test_slots_racing_a_trigger_delete_write_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        _, _, cron, _ = await make_workflow(conn, "w")
    async with pool.acquire() as deleter:
        transaction = deleter.transaction()
        await transaction.start()
        await deleter.execute("DELETE FROM workflow_triggers WHERE id = $1", cron)
        writing = asyncio.create_task(record_slots(pool, [slot(cron)], fired_at="x"))
        await wait_until_blocked(pool, "WITH d AS")
        await transaction.commit()
        result = await writing
    assert result.recorded == ()
    assert result.stale == ((cron, SOON),)
    async with pool.acquire() as conn:
        assert await counts(conn) == {
            "workflow_executions": 0, "webhook_requests": 0, "trigger_slots": 0,
        }


async def test_a_trigger_delete_waits_for_slots_being_written(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        _, _, cron, _ = await make_workflow(conn, "w")
    async with pool.acquire() as writer:
        transaction = writer.transaction()
        await transaction.start()
        result = await record_slots(writer, [slot(cron)], fired_at="x")
        assert result.inserted == 1
        deleting = asyncio.create_task(
            pool.execute("DELETE FROM workflow_triggers WHERE id = $1", cron)
        )
        await wait_until_blocked(pool, "DELETE FROM workflow_triggers")
        await transaction.commit()
        await deleting
    async with pool.acquire() as conn:
        # The delete saw the committed slot and removed it; the execution stays, unlinked.
        assert await counts(conn) == {
            "workflow_executions": 1, "webhook_requests": 0, "trigger_slots": 0,
        }
        assert await conn.fetchval("SELECT trigger_id FROM workflow_executions") is None


async def test_webhook_requests_racing_a_trigger_delete_are_not_stored(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        wid, vid, _, hook = await make_workflow(conn, "w")
        other_wid, other_vid, _, other_hook = await make_workflow(conn, "other")
    writer = InboxWriter(pool)
    try:
        async with pool.acquire() as deleter:
            transaction = deleter.transaction()
            await transaction.start()
            await deleter.execute("DELETE FROM workflow_triggers WHERE id = $1", hook)
            storing = asyncio.create_task(
                writer.store([inbox_item(wid, vid, hook), inbox_item(other_wid, other_vid,
                                                                      other_hook)])
            )
            await wait_until_blocked(pool, "WITH d AS")
            await transaction.commit()
            gone, stored = await storing
    finally:
        await writer.close()
    assert gone == GONE
    assert stored is not None and stored.created
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT trigger_id::text FROM workflow_executions")
        requests = await conn.fetchval("SELECT count(*) FROM webhook_requests")
    assert [r[0] for r in rows] == [other_hook]
    assert requests == 1


async def test_manual_execution_of_a_deleted_workflow_is_not_found(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        wid, _, _, _ = await make_workflow(conn, "w")
    live = NewExecution(workflow_id=wid, trigger_id=None, trigger_name=None,
                        trigger_type="manual")
    orphan = NewExecution(workflow_id=str(uuid.uuid4()), trigger_id=None, trigger_name=None,
                          trigger_type="manual")
    with pytest.raises(NotFound) as info:
        await insert_executions(pool, [live, orphan])
    assert str(info.value) == (
        f"execution {orphan.id} not created: its workflow or trigger no longer exists"
    )
    ids = await pool.fetch("SELECT id::text FROM workflow_executions")
    assert [r[0] for r in ids] == [live.id]


async def test_upgrade_from_0001_keeps_every_row(empty_dsn: str) -> None:
    first = db.known_migrations()[:1]
    await db.migrate(empty_dsn, first)
    pool = await db.create_pool(empty_dsn, min_size=1, max_size=4)
    try:
        async with pool.acquire() as conn:
            wid, vid, cron, hook = await make_workflow(conn, "w")
            execution = await conn.fetchval(
                "INSERT INTO workflow_executions (workflow_id, workflow_version_id, trigger_id,"
                " trigger_type) VALUES ($1, $2, $3, 'webhook') RETURNING id",
                wid, vid, hook,
            )
            await conn.execute(
                "INSERT INTO webhook_requests (id, trigger_id, method, path, execution_id)"
                " VALUES ($1, $2, 'POST', '/hooks/w', $1)",
                execution, hook,
            )
            await conn.execute(
                "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id)"
                " VALUES ($1, now(), 'fired', $2)",
                cron, execution,
            )
            before = await counts(conn)
        report = await db.migrate(empty_dsn)
        assert report.applied == tuple(m.name for m in db.known_migrations()[1:])
        async with pool.acquire() as conn:
            assert await counts(conn) == before == {
                "workflow_executions": 1, "webhook_requests": 1, "trigger_slots": 1,
            }
            foreign_keys = await conn.fetch(
                "SELECT conrelid::regclass::text AS t, conname FROM pg_constraint"
                " WHERE contype = 'f' AND conrelid::regclass::text IN"
                " ('workflow_executions', 'trigger_slots', 'webhook_requests')"
            )
    finally:
        await pool.close()
    assert [(r["t"], r["conname"]) for r in foreign_keys] == [
        ("workflow_executions", "workflow_executions_retry_of_fkey")
    ]


# --- migration 0029: trigger rows reference their workflow without a per-row check ------


async def test_a_trigger_of_a_missing_workflow_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        wid, _, _, _ = await make_workflow(conn, "w")
        missing = str(uuid.uuid4())
        with pytest.raises(asyncpg.ForeignKeyViolationError) as raised:
            # One row of the statement points at no workflow: the whole statement fails.
            await conn.execute(
                "INSERT INTO workflow_triggers (workflow_id, name, type)"
                " VALUES ($1, 'fine', 'manual'), ($2, 'orphan', 'manual')",
                wid, missing,
            )
        assert raised.value.constraint_name == "workflow_triggers_workflow_id_fkey"
        assert raised.value.table_name == "workflow_triggers"
        assert missing in str(raised.value.detail)
        names = await conn.fetch("SELECT name FROM workflow_triggers ORDER BY name")
        assert [r["name"] for r in names] == ["every", "hook"]
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE workflow_triggers SET workflow_id = $1 WHERE name = 'every'",
                               missing)
        other, _, _, _ = await make_workflow(conn, "other")
        # Moving to a workflow that exists is allowed, as with the foreign key.
        await conn.execute("UPDATE workflow_triggers SET workflow_id = $1, name = 'moved'"
                           " WHERE workflow_id = $2 AND name = 'every'", other, wid)
        assert await conn.fetchval(
            "SELECT workflow_id::text FROM workflow_triggers WHERE name = 'moved'") == other
        constraints = await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'workflow_triggers'::regclass"
            " AND confrelid = 'workflows'::regclass")
    assert constraints == 0


async def test_deleting_a_workflow_deletes_its_triggers(pool: asyncpg.Pool) -> None:
    gone = await fill(pool, "gone")
    kept = await fill(pool, "kept")
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM workflows WHERE id = $1", gone["workflow"])
        left = await conn.fetch("SELECT id::text FROM workflow_triggers")
        slots = await conn.fetch("SELECT trigger_id::text FROM trigger_slots")
    assert {r["id"] for r in left} == {kept["cron"], kept["hook"]}
    assert [r["trigger_id"] for r in slots] == [kept["cron"]]


async def test_a_workflow_delete_waits_for_triggers_being_added_and_takes_them(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        wid, _, _, _ = await make_workflow(conn, "w")
    async with pool.acquire() as writer:
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(
            "INSERT INTO workflow_triggers (workflow_id, name, type) VALUES ($1, 'new', 'manual')",
            wid,
        )
        deleting = asyncio.create_task(pool.execute("DELETE FROM workflows WHERE id = $1", wid))
        await wait_until_blocked(pool, "DELETE FROM workflows")
        await transaction.commit()
        await deleting
    # The delete waited for the new trigger's commit and removed it with the rest.
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 0


async def test_triggers_added_after_their_workflow_was_deleted_are_refused(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        wid, _, _, _ = await make_workflow(conn, "w")
    async with pool.acquire() as deleter:
        transaction = deleter.transaction()
        await transaction.start()
        await deleter.execute("DELETE FROM workflows WHERE id = $1", wid)
        adding = asyncio.create_task(pool.execute(
            "INSERT INTO workflow_triggers (workflow_id, name, type) VALUES ($1, 'late', 'manual')",
            wid,
        ))
        await wait_until_blocked(pool, "INSERT INTO workflow_triggers")
        await transaction.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await adding
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 0
