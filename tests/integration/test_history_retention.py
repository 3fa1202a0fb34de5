"""Every history table that grows has retention (issue 14.3): the cron slot ledger loses
slots older than ``[scheduler] ledger_retention`` in batches, except each trigger's newest slot,
which the scheduler's catch-up reads as the trigger's last fire. Counted, never timed."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from tests.helpers import apply_doc, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.store.slots import delete_old_slots
from triggerd.store.workflows import get_trigger

DOC = {
    "workflows": [
        {
            "key": "ledger",
            "graph": {"nodes": [{"id": "a", "type": "noop"}]},
            "triggers": [
                {"name": "often", "type": "cron", "cron": "* * * * *"},
                {"name": "monthly", "type": "cron", "cron": "0 0 1 * *"},
            ],
        }
    ]
}


async def _slots(pool: asyncpg.Pool) -> dict[str, list[int]]:
    """Trigger name -> the age in days of each of its slots, oldest first."""
    rows = await pool.fetch(
        "SELECT t.name, round(extract(epoch FROM now() - s.scheduled_for) / 86400)::int AS age"
        " FROM trigger_slots s JOIN workflow_triggers t ON t.id = s.trigger_id"
        " ORDER BY t.name, s.scheduled_for"
    )
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["name"], []).append(row["age"])
    return found


async def _record(pool: asyncpg.Pool, trigger: str, ages: list[int]) -> None:
    trigger_id = (await get_trigger(pool, f"ledger/{trigger}")).id
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, decided_at)"
        " SELECT $1, now() - d * interval '1 day', 'fired', now() - d * interval '1 day'"
        " FROM unnest($2::int[]) AS d",
        trigger_id,
        ages,
    )


async def test_old_slots_go_in_batches_but_each_triggers_newest_stays(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    await _record(pool, "often", [40, 35, 31, 29, 1])
    await _record(pool, "monthly", [70, 40])  # its newest slot is old too: it stays
    async with pool.acquire() as conn:
        assert await delete_old_slots(conn, timedelta(days=30), 2) == 2
        assert await delete_old_slots(conn, timedelta(days=30), 2) == 2
        assert await delete_old_slots(conn, timedelta(days=30), 2) == 0
    assert await _slots(pool) == {"often": [29, 1], "monthly": [40]}


async def test_the_executors_retention_loop_trims_the_ledger_and_the_audit_trail(
    pool: asyncpg.Pool, dsn: str
) -> None:
    await apply_doc(pool, DOC)
    await _record(pool, "often", [12, 11, 10, 2])
    await _record(pool, "monthly", [12])
    # Audit rows 400, 20 and 1 days old; ids in time order, as the trail writes them.
    await pool.execute(
        "INSERT INTO audit_log (at, actor, action, target_kind, target)"
        " SELECT now() - make_interval(days => d), 'cli:x', 'pause', 'trigger', 'ledger/often'"
        " FROM unnest(ARRAY[400, 20, 1]) AS d")
    # The runs' retention is not the ledger's (nor the audit trail's).
    settings = load_settings(environ={"TRIGGERD_SCHEDULER_LEDGER_RETENTION": "7d",
                                      "TRIGGERD_EXECUTOR_AUDIT_RETENTION": "10d",
                                      "TRIGGERD_EXECUTOR_RETENTION": "365d"})
    executor = Executor(pool=pool, dsn=dsn, settings=settings)
    await executor.start()
    try:
        await wait_for(lambda: _trimmed(pool))
    finally:
        await executor.stop()
    assert await _slots(pool) == {"often": [2], "monthly": [12]}
    ages = await pool.fetch("SELECT extract(day FROM now() - at)::int AS d FROM audit_log")
    assert [r["d"] for r in ages] == [1]


async def test_audit_retention_reads_only_the_oldest_rows(pool: asyncpg.Pool) -> None:
    from triggerd.store.audit import audit_retention_batch

    await pool.execute(
        "INSERT INTO audit_log (at, actor, action, target_kind, target)"
        " SELECT now() - make_interval(days => d), 'cli:x', 'pause', 'trigger', 't'"
        " FROM unnest(ARRAY[50, 40, 30, 2]) AS d")
    async with pool.acquire() as conn:
        assert await audit_retention_batch(conn, timedelta(days=10), 2) == 2
        assert await audit_retention_batch(conn, timedelta(days=10), 2) == 1
        assert await audit_retention_batch(conn, timedelta(days=10), 2) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1


async def _trimmed(pool: asyncpg.Pool) -> bool:
    slots: int = await pool.fetchval("SELECT count(*) FROM trigger_slots")
    audit: int = await pool.fetchval("SELECT count(*) FROM audit_log")
    return slots == 2 and audit == 1


async def test_a_triggers_slot_counts_read_its_newest_slots_only(pool: asyncpg.Pool) -> None:
    # An every-second trigger keeps 2.6 million slots in 30 days: counting them all took
    # 230-300 ms for each `triggers show`. The counts cover its newest 10,000 slots.
    from triggerd.store.trigger_state import COUNTED_SLOTS, slot_counts

    await apply_doc(pool, DOC)
    trigger_id = (await get_trigger(pool, "ledger/often")).id
    await pool.execute(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, decided_at)"
        " SELECT $1, now() - s * interval '1 minute',"
        "        CASE WHEN s > $2 THEN 'skipped_misfire' ELSE 'fired' END, now()"
        " FROM generate_series(1, $2 + 500) AS s", trigger_id, COUNTED_SLOTS)
    assert await slot_counts(pool, trigger_id) == {"fired": COUNTED_SLOTS}
    monthly = (await get_trigger(pool, "ledger/monthly")).id
    await _record(pool, "monthly", [1, 40])
    assert await slot_counts(pool, monthly) == {"fired": 2}


async def test_ended_backfills_go_with_the_audit_trail(pool: asyncpg.Pool) -> None:
    # Each holds up to 10,000 instants, and only deleting its trigger removed one.
    from triggerd.store.backfills import backfill_retention_batch

    await apply_doc(pool, DOC)
    trigger_id = (await get_trigger(pool, "ledger/often")).id
    rows = [("old", "done", 400), ("canceled", "canceled", 400), ("recent", "done", 5),
            ("running", "running", None)]
    for note, state, days in rows:
        await pool.execute(
            "INSERT INTO backfills (id, trigger_id, range_from, range_to, only_missing,"
            " overlap, rate_per_second, slots, state, actor, note, finished_at)"
            " VALUES (gen_random_uuid(), $1, now() - interval '2 days', now() - interval"
            " '1 day', false, 'allow', 10, ARRAY[now()], $2, 'cli:root', $3,"
            " now() - $4 * interval '1 day')", trigger_id, state, note, days)
    assert await backfill_retention_batch(pool, timedelta(days=365), 1) == 1
    assert await backfill_retention_batch(pool, timedelta(days=365), 10) == 1
    assert await backfill_retention_batch(pool, timedelta(days=365), 10) == 0
    left = {r["note"] for r in await pool.fetch("SELECT note FROM backfills")}
    assert left == {"recent", "running"}
