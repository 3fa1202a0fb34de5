"""Retention keeps what a webhook's dedupe window still needs: a delivery id dedupes for
its trigger's `dedupe.ttl` (7 days by default), and `[executor] retention` may be as short
as an hour. A run (or a filtered request) deleted before its key expired let a redelivery
inside the window start a second run. Counted against a real database, never timed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from triggerd.executor.retention import RESCAN_INTERVAL, RetentionCursor
from triggerd.model import (
    DedupeConfig,
    Graph,
    Node,
    TriggerSpec,
    TriggerType,
    WebhookConfig,
    WorkflowSpec,
)
from triggerd.store.executions import (
    RetentionPositions,
    release_expired_dedupe_keys,
    retention_batch,
)
from triggerd.store.inbox import InboxPosition, inbox_retention_batch
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


async def test_runs_held_by_their_keys_are_not_read_again_until_the_positions_start_over(
    pool: asyncpg.Pool,
) -> None:
    """A pass goes on from where the previous one read up to: with a retention shorter
    than the ttl, the runs held by live keys were read by every pass (a minute apart)."""
    trigger = await _trigger(pool)
    held = await _deliver(pool, trigger, "d-held")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', created_at = now() - interval"
        " '3 days', end_time = now() - interval '3 days' WHERE id = $1", held.execution_id)
    positions: RetentionPositions = {}
    assert await retention_batch(pool, timedelta(days=2), 500, None, positions) == 0
    [(at, _)] = positions.values()
    # Up to its cut (now() - 2 days, in the statement's own transaction).
    assert await pool.fetchval("SELECT $1 BETWEEN now() - interval '2 days 1 minute'"
                               " AND now() - interval '2 days'", at)
    # Its key expires; a later run (a cron one, without a key) passes its retention too.
    await pool.execute("UPDATE workflow_executions SET dedupe_expires_at = now()"
                       " - interval '1 second' WHERE id = $1", held.execution_id)
    assert await release_expired_dedupe_keys(pool) == 1
    later = await pool.fetchval(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, status, created_at,"
        " end_time) SELECT id, 'cron', 'SUCCESS', now() - interval '36 hours', now()"
        " - interval '36 hours' FROM workflows RETURNING id")
    # The next pass (its cut a day later, as a shorter retention puts it) reads only the
    # runs after the last cut: the later run goes, the one read before is not read again.
    assert await retention_batch(pool, timedelta(days=1), 500, None, positions) == 1
    left = {str(r["id"]) for r in await pool.fetch("SELECT id FROM workflow_executions")}
    assert left == {held.execution_id} and str(later) not in left
    # Started over, the pass reads it and it goes.
    assert await retention_batch(pool, timedelta(days=1), 500, None, {}) == 1


async def test_filtered_requests_held_by_their_keys_are_not_read_again_until_start_over(
    pool: asyncpg.Pool,
) -> None:
    trigger = await _trigger(pool)
    await _deliver(pool, trigger, "d-f1", outcome="filtered")
    await pool.execute("UPDATE webhook_requests SET received_at = now() - interval '3 days'")
    position = InboxPosition()
    assert await inbox_retention_batch(pool, timedelta(days=2), 500, position) == 0
    assert await pool.fetchval("SELECT $1 BETWEEN now() - interval '2 days 1 minute'"
                               " AND now() - interval '2 days'", position.after)
    await pool.execute("UPDATE webhook_requests SET dedupe_expires_at = now()"
                       " - interval '1 second'")
    await _deliver(pool, trigger, "d-f2", outcome="filtered")
    await pool.execute("UPDATE webhook_requests SET received_at = now() - interval '36 hours'"
                       " WHERE dedupe_key = 'webhook:d-f2'")
    await pool.execute("UPDATE webhook_requests SET dedupe_expires_at = now()"
                       " - interval '1 second' WHERE dedupe_key = 'webhook:d-f2'")
    assert await inbox_retention_batch(pool, timedelta(days=1), 500, position) == 1
    assert await pool.fetchval("SELECT dedupe_key FROM webhook_requests") == "webhook:d-f1"
    assert await inbox_retention_batch(pool, timedelta(days=1), 500, InboxPosition()) == 1


def _state(cursor: RetentionCursor) -> tuple[RetentionPositions, datetime | None]:
    return cursor.runs, cursor.inbox.after


def test_the_retention_cursor_starts_over_at_the_first_pass_and_then_hourly() -> None:
    cursor = RetentionCursor()
    cursor.runs["default"] = (RECEIVED, "x")
    cursor.inbox.after = RECEIVED
    cursor.for_pass(100.0)  # the first pass starts from the oldest rows
    assert _state(cursor) == ({}, None)
    cursor.runs["default"] = (RECEIVED, "x")
    cursor.inbox.after = RECEIVED
    cursor.for_pass(100.0 + RESCAN_INTERVAL - 1)
    assert _state(cursor) == ({"default": (RECEIVED, "x")}, RECEIVED)
    cursor.for_pass(100.0 + RESCAN_INTERVAL)
    assert _state(cursor) == ({}, None)
