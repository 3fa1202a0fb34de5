"""Readiness costs the same whatever the number of triggers: a probe does no per-trigger
cron arithmetic and no per-trigger database query while nothing is late."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import triggerd.planning
import triggerd.scheduler.cache
import triggerd.scheduler.service as service
import triggerd.schedules.kinds
import triggerd.store.slots
from tests.integration.test_scheduler_support import (
    make_trigger,
    make_workflow,
    running,
    scheduler_settings,
    wait_for,
)

Pool = Any
TRIGGERS = 10_000
PROBES = 20
CRON_FUNCTIONS = ("next_fire", "next_fires", "last_fires", "fires_between", "count_fires",
                  "plan_catchup", "parse_cron")


def _configs(count: int) -> list[str]:
    """Yearly schedules in the month half a year from now (none due while the test runs,
    whatever its date), a few hundred distinct ones, some with jitter: enough groups that
    per-group work per probe would show."""
    rng = random.Random(14)
    month = (datetime.now(UTC).month + 5) % 12 + 1
    configs = []
    for _ in range(count):
        config: dict[str, Any] = {
            "cron": f"{rng.randrange(60)} {rng.randrange(24)} {rng.randrange(1, 29)} {month} *",
            "timezone": rng.choice(["UTC", "Europe/Madrid", "America/New_York", "Asia/Tokyo"]),
        }
        if rng.random() < 0.1:
            config["jitter"] = "30s"
        configs.append(json.dumps(config))
    return configs


async def _insert_triggers(pool: Pool, workflow_id: str, configs: list[str]) -> None:
    await pool.execute(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, enabled_at)"
        " SELECT $1, 't' || k, 'cron', c::jsonb, now() - interval '400 days'"
        " FROM unnest($2::text[]) WITH ORDINALITY AS x(c, k)",
        workflow_id,
        configs,
    )
    await pool.execute("ANALYZE workflow_triggers")


def _counting(calls: Counter[str], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return function(*args, **kwargs)

    return counted


async def test_readiness_does_no_per_trigger_work_per_probe(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = await make_workflow(pool, key="many")
    await _insert_triggers(pool, workflow_id, _configs(TRIGGERS))
    calls: Counter[str] = Counter()
    # Every cron computation the scheduler, its table and its catch-up planning can reach.
    for module in (service, triggerd.scheduler.cache, triggerd.planning):
        for name in CRON_FUNCTIONS:
            if hasattr(module, name):
                function = getattr(module, name)
                monkeypatch.setattr(module, name, _counting(calls, name, function))
    sent: list[int] = []
    find_overdue = triggerd.store.slots.find_overdue

    async def counted_find_overdue(conn: Any, expected: Any, **kwargs: Any) -> list[str]:
        sent.append(len(expected))
        return await find_overdue(conn, expected, **kwargs)

    monkeypatch.setattr(service, "find_overdue", counted_find_overdue)

    async with running(pool, dsn) as scheduler:
        assert scheduler.stats.triggers == TRIGGERS
        assert await scheduler.readiness() is None
        after_first = Counter(calls)
        for _ in range(PROBES):
            assert await scheduler.readiness() is None
        # The probes computed no fire and asked the database about no trigger.
        assert calls == after_first
        assert sum(sent) == 0


async def test_readiness_names_a_trigger_whose_slot_write_failed_until_a_slot_is_recorded(
    pool: Pool, dsn: str
) -> None:
    workflow_id = await make_workflow(pool, key="reports")
    trigger_id = await make_trigger(
        pool, workflow_id, "every", {"cron": "* * * * * *", "overlap": "allow"}
    )
    # A real statement failure that is not a lost connection: the writes give up after
    # their retries (no rebuild follows), so only readiness can tell.
    await pool.execute(
        "CREATE FUNCTION refuse_slot() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'slot refused'; END $$"
    )
    settings = scheduler_settings(lag_threshold=timedelta(seconds=1))
    async with running(pool, dsn, settings) as scheduler:
        assert await scheduler.readiness() is None
        await pool.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON trigger_slots"
            " FOR EACH ROW EXECUTE FUNCTION refuse_slot()"
        )
        try:
            assert await wait_for(lambda: scheduler.stats.write_errors >= 3, timeout=5.0)
            assert await wait_for(
                lambda: _is(scheduler, "overdue triggers: reports/every"), timeout=5.0
            )
            # What triggerd_scheduler_oldest_owed_seconds shows: the failed slot's age.
            assert scheduler.oldest_owed_seconds() > 1.0
        finally:
            await pool.execute("DROP TRIGGER refuse ON trigger_slots")
        # Later slots are recorded again: the failed one is settled.
        assert await wait_for(lambda: _is(scheduler, None), timeout=5.0)
        assert scheduler.oldest_owed_seconds() < 1.0
        assert await pool.fetchval(
            "SELECT count(*) FROM trigger_slots WHERE trigger_id = $1", trigger_id
        ) > 0


async def test_the_oldest_owed_slot_keeps_its_age_while_rebuilds_fail(pool: Pool, dsn: str
                                                                      ) -> None:
    """A gap (a lost connection: a database outage) rebuilds the schedule, and the rebuild
    forgot what was owed: triggerd_scheduler_oldest_owed_seconds read 0 for the whole
    outage, so its alert could not fire. A rebuild that cannot read the triggers stands in
    for the outage."""
    workflow_id = await make_workflow(pool, key="reports")
    await make_trigger(pool, workflow_id, "every", {"cron": "* * * * * *", "overlap": "allow"})
    async with running(pool, dsn) as scheduler:
        assert await wait_for(lambda: scheduler.stats.triggers == 1, timeout=5.0)
        await pool.execute("ALTER TABLE workflow_triggers RENAME TO workflow_triggers_away")
        try:
            scheduler._request_recovery("test")  # what a lost connection does
            assert await wait_for(lambda: scheduler.oldest_owed_seconds() > 2.0, timeout=8.0)
        finally:
            await pool.execute("ALTER TABLE workflow_triggers_away RENAME TO workflow_triggers")
        # The next rebuild catches them up: nothing is owed late any more.
        assert await wait_for(lambda: scheduler.oldest_owed_seconds() < 1.0, timeout=10.0)


async def _is(scheduler: Any, expected: str | None) -> bool:
    return bool(await scheduler.readiness() == expected)


async def test_readiness_probes_do_no_per_trigger_cron_computation(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = await make_workflow(pool)
    # 10,000 triggers with 1,440 distinct daily schedules (minute, hour), in one statement.
    await pool.execute(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, input)"
        " SELECT $1, 't' || i, 'cron',"
        "   jsonb_build_object('cron', (i % 60) || ' ' || ((i / 60) % 24) || ' * * *',"
        "                      'overlap', 'allow', 'misfire', 'skip'), '{}'"
        " FROM generate_series(1, $2) AS i",
        workflow_id, TRIGGERS,
    )
    calls: Counter[str] = Counter()
    from triggerd.cron import last_fires

    # The newest-slot search the probes (and then a background check) used to run.
    monkeypatch.setattr(service, "last_fires", _counting(calls, "last_fires", last_fires),
                        raising=False)
    settings = scheduler_settings(lag_threshold=timedelta(seconds=20))
    async with running(pool, dsn, settings) as scheduler:
        assert scheduler.stats.triggers == TRIGGERS
        for _ in range(200):
            assert await scheduler.readiness() is None
        probes_cost = sum(calls.values())
        # Nor does anything in the background look for overdue triggers one by one: what
        # is owed is kept as slots are planned and recorded.
        await asyncio.sleep(5.5)
        assert await scheduler.readiness() is None
    assert probes_cost == 0
    assert sum(calls.values()) == 0


async def test_start_computes_each_schedules_next_fire_once(
    pool: Pool, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting with triggers that missed nothing: the catch-up's look for a missed fire
    finds each schedule's next fire, and the timer takes that one instead of computing
    it again (the start's cron arithmetic was a tenth of its time at 100,000 triggers)."""
    workflow_id = await make_workflow(pool, key="fresh")
    configs = _configs(1_000)
    await pool.execute(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, enabled_at)"
        " SELECT $1, 't' || k, 'cron', c::jsonb, now() - interval '1 minute'"
        " FROM unnest($2::text[]) WITH ORDINALITY AS x(c, k)",
        workflow_id, configs,
    )
    calls: Counter[str] = Counter()
    plan_next_fire = triggerd.schedules.kinds.CronPlan.next_fire

    def counted(plan: Any, after: Any) -> Any:
        calls[plan.cron.expression + plan.cron.timezone] += 1
        return plan_next_fire(plan, after)

    monkeypatch.setattr(triggerd.schedules.kinds.CronPlan, "next_fire", counted)
    tails: list[Any] = []
    plan_fires_between = triggerd.schedules.kinds.CronPlan.fires_between

    def counted_tail(plan: Any, start: Any, end: Any) -> Any:
        tails.append(plan)
        return plan_fires_between(plan, start, end)

    monkeypatch.setattr(triggerd.schedules.kinds.CronPlan, "fires_between", counted_tail)
    async with running(pool, dsn) as scheduler:
        assert scheduler.stats.triggers == len(configs)
        schedules = {(json.loads(c)["cron"], json.loads(c)["timezone"]) for c in configs}
        # One computation per schedule: the look for a missed fire (its result is the
        # timer's fire too). Computing the timer's fire again would make it two.
        assert set(calls.values()) == {1}, calls
        assert len(calls) == len(schedules)
        # That fire is after the start, so the fires of the last second (those that go
        # out as usual rather than as catch-up) are known to be none without a look.
        assert tails == []
