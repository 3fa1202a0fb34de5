"""Retention keeps what a webhook's dedupe window still needs: a delivery id dedupes for
its trigger's `dedupe.ttl` (7 days by default), and `[executor] retention` may be as short
as an hour. A run (or a filtered request) deleted before its key expired let a redelivery
inside the window start a second run. Counted against a real database, never timed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from triggerd.model import (
    DedupeConfig,
    Graph,
    Node,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
)
from triggerd.store.executions import release_expired_dedupe_keys, retention_batch
from triggerd.store.inbox import inbox_retention_batch
from triggerd.store.webhooks import InboxItem, InboxResult, InboxWriter
from triggerd.store.workflows import apply_workflows

RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)  # the column's value only; ages are set below


async def _trigger(pool: asyncpg.Pool) -> tuple[str, str, str]:
    spec = WorkflowSpec(
        key="gh", name="gh", graph=Graph(nodes=(Node(id="start", type="noop"),)),
        triggers=(TriggerSpec(
            name="push", type=TriggerType.WEBHOOK,
            config=WebhookConfig(path="gh", dedupe=DedupeConfig(header="X-Id"))),),
    )
    async with pool.acquire() as conn:
        await apply_workflows(conn, [spec])
    row = await pool.fetchrow(
        "SELECT t.id, t.workflow_id, v.id AS version_id FROM workflow_triggers t"
        " JOIN workflow_versions v ON v.workflow_id = t.workflow_id AND v.is_latest")
    assert row is not None
    return str(row["id"]), str(row["workflow_id"]), str(row["version_id"])


async def _deliver(pool: asyncpg.Pool, trigger: tuple[str, str, str], delivery: str,
                   outcome: str = "accepted") -> InboxResult:
    trigger_id, workflow_id, version_id = trigger
    item = InboxItem(
        id=str(uuid.uuid4()), workflow_id=workflow_id, version_id=version_id,
        trigger_id=trigger_id, trigger_name="push", dedupe_key=f"webhook:{delivery}",
        dedupe_ttl=timedelta(days=7), input_json="{}", method="POST", path="/hooks/gh",
        query={}, headers={}, body=b"{}", remote_addr=None, received_at=RECEIVED,
        outcome=outcome, filtering=True,
    )
    writer = InboxWriter(pool)
    try:
        [result] = await writer.store([item])
    finally:
        await writer.close()
    assert result is not None
    return result


async def test_a_finished_run_stays_while_its_delivery_id_still_dedupes(
    pool: asyncpg.Pool,
) -> None:
    trigger = await _trigger(pool)
    first = await _deliver(pool, trigger, "d-1")
    assert first.created
    # Finished two days ago: past a one-day retention, inside the 7-day dedupe window.
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', created_at = now() - interval"
        " '3 days', end_time = now() - interval '2 days' WHERE id = $1", first.execution_id)
    assert await retention_batch(pool, timedelta(days=1)) == 0
    again = await _deliver(pool, trigger, "d-1")
    assert (again.created, again.execution_id) == (False, first.execution_id)
    # Once the key has expired (and been released), the run goes as any other.
    await pool.execute("UPDATE workflow_executions SET dedupe_expires_at = now()"
                       " - interval '1 second' WHERE id = $1", first.execution_id)
    assert await release_expired_dedupe_keys(pool) == 1
    assert await retention_batch(pool, timedelta(days=1)) == 1


async def test_an_expired_key_not_yet_released_does_not_hold_its_run(pool: asyncpg.Pool) -> None:
    trigger = await _trigger(pool)
    first = await _deliver(pool, trigger, "d-2")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', created_at = now() - interval"
        " '3 days', end_time = now() - interval '2 days',"
        " dedupe_expires_at = now() - interval '1 second' WHERE id = $1", first.execution_id)
    assert await retention_batch(pool, timedelta(days=1)) == 1


async def test_a_filtered_request_stays_while_its_delivery_id_still_dedupes(
    pool: asyncpg.Pool,
) -> None:
    trigger = await _trigger(pool)
    first = await _deliver(pool, trigger, "d-3", outcome="filtered")
    assert (first.created, first.execution_id) == (True, "")
    await pool.execute("UPDATE webhook_requests SET received_at = now() - interval '2 days'")
    assert await inbox_retention_batch(pool, timedelta(days=1)) == 0
    again = await _deliver(pool, trigger, "d-3", outcome="filtered")
    assert (again.created, again.execution_id) == (False, "")
    assert await pool.fetchval("SELECT delivery_count FROM webhook_requests") == 2
    # Past its key's expiry it goes.
    await pool.execute("UPDATE webhook_requests SET dedupe_expires_at = now()"
                       " - interval '1 second'")
    assert await inbox_retention_batch(pool, timedelta(days=1)) == 1
