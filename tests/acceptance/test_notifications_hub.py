"""The notifications hub of a real daemon: one LISTEN connection per process, shared by the
executor, the scheduler and the webhooks; after it is killed, every component reconciles
and notifications flow again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons
from tests.helpers import apply_doc, wait_for

DEFINITIONS = """\
workflows:
  - key: hubbed
    name: Hubbed
    graph:
      nodes:
        - {id: keep, type: set, params: {value: 1}}
    triggers:
      - {name: hook, type: webhook, path: hubbed/hook}
"""

# The hub's connection names itself so; every other connection of a daemon is "triggerd".
HUB_APPLICATION_NAME = "triggerd-notify"


async def hub_backends(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1 ORDER BY pid",
        HUB_APPLICATION_NAME,
    )
    return [r["pid"] for r in rows]


async def other_listeners(pool: asyncpg.Pool) -> list[Any]:
    """Backends outside the hub whose last statement was a LISTEN (the old listeners)."""
    return list(await pool.fetch(
        "SELECT pid, application_name, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name <> $1"
        " AND query ILIKE 'LISTEN%'",
        HUB_APPLICATION_NAME,
    ))


async def start(daemons: Daemons, dsn: str, tmp_path: Path, **http: int) -> DaemonProcess:
    definitions = tmp_path / "hubbed.yaml"
    definitions.write_text(DEFINITIONS)
    return await daemons.start(
        database_url=dsn,
        sections={"daemon": {"definitions": [str(definitions)]}, "http": {**http}},
    )


async def test_one_listen_connection_and_every_component_reconciles_after_it_is_killed(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    first = await hub_backends(pool)
    assert len(first) == 1, first
    assert await other_listeners(pool) == []

    assert await pool.fetchval("SELECT pg_terminate_backend($1)", first[0])
    back = await daemon.wait_for_event("notifications_reconnected")
    # Every component subscribed to the one hub and was told to re-read its tables.
    assert back["subscribers"] == ["executor", "scheduler", "webhooks"]
    after = await wait_for(lambda: hub_backends(pool), timeout=10.0)
    assert len(after) == 1 and after != first, (first, after)
    assert await other_listeners(pool) == []

    # A trigger change reaches the scheduler again through the new connection (the periodic
    # full reconcile is a minute away, so this can only be the notification).
    await apply_doc(pool, {"workflows": [{
        "key": "ticking",
        "name": "Ticking",
        "graph": {"nodes": [{"id": "keep", "type": "set", "params": {"value": 1}}]},
        "triggers": [{"name": "tick", "type": "cron", "cron": "0 0 1 1 *"}],
    }]})

    def reloaded() -> list[dict[str, Any]]:
        return [e for e in daemon.events_named("cron_reloaded") if e.get("reason") == "notify"]

    async def heard() -> list[dict[str, Any]]:
        return reloaded()

    events = await wait_for(heard, timeout=10.0)
    assert events[0]["added"] == 1, events


async def test_each_http_process_has_its_own_hub(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path, processes=2)
    await daemon.wait_for_event("http_worker_ready")
    assert len(await wait_for(lambda: _two(pool), timeout=10.0)) == 2
    assert await other_listeners(pool) == []


async def _two(pool: asyncpg.Pool) -> list[int] | None:
    backends = await hub_backends(pool)
    return backends if len(backends) >= 2 else None
