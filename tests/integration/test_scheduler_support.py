"""Helpers shared by the scheduler tests (no tests here): workflows and triggers written with
plain SQL, settings, and a scheduler that is always stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from triggerd.config import SchedulerSettings, Settings
from triggerd.scheduler import CronScheduler

Pool = Any


def scheduler_settings(
    *, lag_threshold: timedelta = timedelta(seconds=60), reconcile: timedelta = timedelta(minutes=5)
) -> Settings:
    return Settings(
        scheduler=SchedulerSettings(reconcile_interval=reconcile, lag_threshold=lag_threshold)
    )


async def make_workflow(pool: Pool, key: str = "wf") -> str:
    workflow_id = await pool.fetchval(
        "INSERT INTO workflows (key, name) VALUES ($1, $1) RETURNING id::text", key
    )
    await pool.execute(
        "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest, published_at)"
        " VALUES ($1, 1, '{}', true, now())",
        workflow_id,
    )
    return str(workflow_id)


async def make_trigger(
    pool: Pool,
    workflow_id: str,
    name: str,
    config: dict[str, Any],
    *,
    enabled_at: datetime | None = None,
    kind: str = "cron",
) -> str:
    trigger_id = await pool.fetchval(
        "INSERT INTO workflow_triggers (workflow_id, name, type, config, input, enabled_at)"
        " VALUES ($1, $2, $6, $3, $4, COALESCE($5, now())) RETURNING id::text",
        workflow_id,
        name,
        config,
        {"static": name},
        enabled_at,
        kind,
    )
    return str(trigger_id)


@contextlib.asynccontextmanager
async def running(
    pool: Pool,
    dsn: str,
    settings: Settings | None = None,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[CronScheduler]:
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    scheduler = CronScheduler(
        pool=pool, dsn=dsn, settings=settings or scheduler_settings(), **kwargs
    )
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


async def executions_of(pool: Pool, trigger_id: str) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT id::text, scheduled_for, dedupe_key, trigger_type, trigger_name, status,"
            " input, context, error_code, cancel_requested, created_at"
            " FROM workflow_executions WHERE trigger_id = $1 ORDER BY scheduled_for, created_at",
            trigger_id,
        )
    )


async def slots_of(pool: Pool, trigger_id: str) -> list[Any]:
    return list(
        await pool.fetch(
            "SELECT scheduled_for, outcome, execution_id::text, detail FROM trigger_slots"
            " WHERE trigger_id = $1 ORDER BY scheduled_for",
            trigger_id,
        )
    )


async def wait_for(check: Callable[[], Any], timeout: float, step: float = 0.05) -> bool:
    """Poll ``check`` (sync or async) until truthy or ``timeout`` seconds pass."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(step)


def whole_second(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(microsecond=0)


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
