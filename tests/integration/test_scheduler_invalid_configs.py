"""A stored cron config that does not parse (written by SQL, or by a version that allowed
it) leaves its triggers unscheduled with one warning per config, and every other trigger is
scheduled as usual: one bad row never stops the scheduler's start."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    wait_for,
)

Pool = Any
EVERY_SECOND = "* * * * * *"


async def test_triggers_with_a_config_that_does_not_parse_are_left_out_and_logged_once(
    pool: Pool, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    workflow_id = await make_workflow(pool)
    good = await make_trigger(pool, workflow_id, "good", {"cron": EVERY_SECOND,
                                                          "overlap": "allow"})
    bad_configs: dict[str, dict[str, Any]] = {
        "not-cron": {"cron": "every tuesday"},
        "wrong-type": {"cron": 5},
        "unknown-key": {"cron": EVERY_SECOND, "colour": "blue"},
        "bad-zone": {"cron": EVERY_SECOND, "timezone": "Mars/Olympus"},
        # Durations a version before the century limit stored: added to an instant they
        # leave the calendar (the jitter failed every timer, the window the start).
        "huge-jitter": {"cron": EVERY_SECOND, "jitter": "999999999d"},
        "huge-window": {"cron": EVERY_SECOND, "catchup_window": "999999999d"},
    }
    bad = {name: await make_trigger(pool, workflow_id, name, config)
           for name, config in bad_configs.items()}
    # A second trigger with the same broken text: the config is parsed (and logged) once.
    twin = await make_trigger(pool, workflow_id, "not-cron-twin", bad_configs["not-cron"])

    caplog.set_level(logging.WARNING, logger="triggerd.scheduler.cache")
    async with running(pool, dsn) as scheduler:
        assert scheduler.stats.triggers == 1
        assert await wait_for(lambda: executions_of(pool, good), timeout=3.0)
    for trigger_id in [*bad.values(), twin]:
        assert await executions_of(pool, trigger_id) == []
        assert await pool.fetchval(
            "SELECT count(*) FROM trigger_slots WHERE trigger_id = $1", trigger_id) == 0

    warnings = [r for r in caplog.records
                if getattr(r, "event", None) == "cron_trigger_invalid"]
    logged = {r.__dict__["trigger_id"] for r in warnings}
    assert len(warnings) == len(bad_configs)  # one per distinct config, the twin not again
    assert logged <= {*bad.values(), twin} and len(logged & {bad["not-cron"], twin}) == 1
    assert {*bad.values()} - {bad["not-cron"]} <= logged
    by_trigger = {r.__dict__["trigger_id"]: r.__dict__["error"] for r in warnings}
    assert "colour" in by_trigger[bad["unknown-key"]]
    assert "Mars/Olympus" in by_trigger[bad["bad-zone"]]
    assert "too long a duration" in by_trigger[bad["huge-jitter"]]
    assert all(r.levelno == logging.WARNING for r in warnings)


async def test_an_interval_stored_with_an_unknown_zone_is_left_out_not_fatal(
    pool: Pool, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """check and apply let an interval's unknown zone through (only cron's was checked):
    stored, it raised ZoneInfoNotFoundError in every reload and stopped the daemon's start."""
    workflow_id = await make_workflow(pool)
    good = await make_trigger(pool, workflow_id, "good", {"every": "1s", "overlap": "allow"},
                              kind="interval")
    bad = await make_trigger(pool, workflow_id, "bad",
                             {"every": "1s", "timezone": "Nowhere/Zone"}, kind="interval")
    caplog.set_level(logging.WARNING, logger="triggerd.scheduler.cache")
    async with running(pool, dsn) as scheduler:
        assert scheduler.stats.triggers == 1
        assert await wait_for(lambda: executions_of(pool, good), timeout=3.0)
    assert await executions_of(pool, bad) == []
    errors = [r.__dict__["error"] for r in caplog.records
              if getattr(r, "event", None) == "cron_trigger_invalid"]
    assert len(errors) == 1 and "unknown time zone 'Nowhere/Zone'" in errors[0], errors
