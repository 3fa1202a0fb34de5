"""A 202 means stored: SIGKILL the daemon under webhook load, restart it, and every
acknowledged request has its rows and reaches a final status. Also SIGTERM under load:
nothing acknowledged is lost and every run ends or returns to NEW."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: inbox
    name: Inbox
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: hook, type: webhook, path: inbox/in, dedupe: {header: X-Delivery}}
"""


async def hammer(
    daemon: DaemonProcess,
    accepted: dict[str, str],
    stop: asyncio.Event,
    statuses: collections.Counter[int] | None = None,
) -> int:
    """Send requests from 16 concurrent clients until ``stop``; record every 202's id by
    its delivery id. Returns how many requests failed (connection errors after the kill)."""
    failures = 0
    counter = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures, counter
        while not stop.is_set():
            counter += 1
            delivery = f"d-{counter}"
            try:
                async with session.post(
                    daemon.base_url + "/hooks/inbox/in",
                    json={"n": counter}, headers={"X-Delivery": delivery},
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as response:
                    body = await response.json(content_type=None)
                    if statuses is not None:
                        statuses[response.status] += 1
                    if response.status == 202:
                        accepted[delivery] = body["execution_id"]
            except (TimeoutError, aiohttp.ClientError):
                failures += 1
                await asyncio.sleep(0.01)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(16)))
    return failures


@pytest.mark.parametrize("processes", [1, 2])
async def test_sigkill_under_load_loses_no_acknowledged_request(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, processes: int
) -> None:
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {
        "daemon": {"definitions": [str(definitions)]}, "executor": {"lease": "2s"},
        "http": {"processes": processes}}
    first = await daemons.start(database_url=dsn, sections=sections)
    accepted: dict[str, str] = {}
    stop = asyncio.Event()
    load = asyncio.create_task(hammer(first, accepted, stop))

    async def some_accepted() -> bool:
        return len(accepted) >= 300

    await wait_for(some_accepted, timeout=30)
    first.kill()  # SIGKILL in the middle of the load
    await asyncio.sleep(0.3)
    stop.set()
    with contextlib.suppress(Exception):
        await load
    assert len(accepted) >= 300

    second = await daemons.start(database_url=dsn, sections=sections)
    ids = list(accepted.values())

    async def all_final() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE id = ANY($1::uuid[])"
            " AND status IN ('SUCCESS', 'ERROR', 'CANCELED')", ids)
        return bool(n == len(ids))

    await wait_for(all_final, timeout=60)
    rows = await pool.fetch(
        "SELECT e.id, e.status, e.output, r.id AS request_id FROM workflow_executions e"
        " LEFT JOIN webhook_requests r ON r.execution_id = e.id WHERE e.id = ANY($1::uuid[])",
        ids)
    assert len(rows) == len(ids)  # every acknowledged id has its execution
    assert all(r["request_id"] is not None for r in rows)  # ... and its stored request
    assert {r["status"] for r in rows} == {"SUCCESS"}
    assert await second.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("processes", [1, 2])
async def test_sigterm_under_load_drains_without_loss(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, processes: int
) -> None:
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {
        "daemon": {"definitions": [str(definitions)]}, "executor": {"drain": "2s"},
        "http": {"processes": processes}}
    daemon = await daemons.start(database_url=dsn, sections=sections)
    accepted: dict[str, str] = {}
    stop = asyncio.Event()
    load = asyncio.create_task(hammer(daemon, accepted, stop))

    async def some_accepted() -> bool:
        return len(accepted) >= 300

    await wait_for(some_accepted, timeout=30)
    assert await daemon.stop(signal.SIGTERM) == 0
    stop.set()
    await load
    ids = list(accepted.values())
    rows = await pool.fetch(
        "SELECT e.status, e.lease_owner, r.id AS request_id FROM workflow_executions e"
        " LEFT JOIN webhook_requests r ON r.execution_id = e.id WHERE e.id = ANY($1::uuid[])",
        ids)
    assert len(rows) == len(ids)
    assert all(r["request_id"] is not None for r in rows)
    # Every run either finished or went back to NEW; none is left RUNNING under a dead owner.
    assert {r["status"] for r in rows} <= {"SUCCESS", "NEW"}
    assert all(r["lease_owner"] is None for r in rows)
    leftovers = await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING'")
    assert leftovers == 0


async def test_reload_under_load_fails_no_request(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {"daemon": {"definitions": [str(definitions)]}}
    daemon = await daemons.start(database_url=dsn, sections=sections)
    accepted: dict[str, str] = {}
    statuses: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()
    load = asyncio.create_task(hammer(daemon, accepted, stop, statuses))
    for _ in range(3):
        await asyncio.sleep(0.4)
        daemon.send(signal.SIGHUP)
        await daemon.wait_for_event("daemon_reloaded", timeout=15)
    await asyncio.sleep(0.4)
    stop.set()
    failures = await load
    assert failures == 0
    assert set(statuses) == {202}, statuses
    assert len(daemon.events_named("daemon_reloaded")) == 3
    assert await daemon.stop(signal.SIGTERM) == 0
