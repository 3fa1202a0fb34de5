"""Readiness does no per-trigger work per probe (issue 14): with thousands of distinct
schedules, a probe answered from the last background check; counted, not timed."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_support import make_workflow, running, scheduler_settings
from triggerd.scheduler import service

Pool = Any
TRIGGERS = 10_000


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
    calls = 0
    from triggerd.cron import last_fires

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return last_fires(*args, **kwargs)

    monkeypatch.setattr(service, "last_fires", counting)
    # Background checks every 5 s (a quarter of 20 s, the upper bound): none during the
    # probes below unless they are slower than that.
    settings = scheduler_settings(lag_threshold=timedelta(seconds=20))
    async with running(pool, dsn, settings) as scheduler:
        assert scheduler.stats.triggers == TRIGGERS
        before = calls
        for _ in range(200):
            assert await scheduler.readiness() is None
        probes_cost = calls - before
        # The background check does the work, once per schedule (not per probe).
        await asyncio.sleep(5.5)
        checked = calls - before
    assert probes_cost == 0
    assert 0 < checked <= 2 * 1440
