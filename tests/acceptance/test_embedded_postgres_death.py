"""The embedded PostgreSQL killed under concurrent webhook load (issue 12 item 5; the
sequential case and the give-up path are in test_embedded_restart.py): requests meanwhile
are answered 503 with ``Retry-After`` (never 500), the daemon starts the server again,
becomes ready again, keeps claiming runs and loses no acknowledged request.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue
from tests.helpers import wait_for

# initdb, crash recovery and draining every run take a while on a busy machine.
pytestmark = pytest.mark.timeout(300)

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


def postmaster_pid(state_dir: Path) -> int:
    return int((state_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True



class Load:
    """16 concurrent senders until stopped: every 202's execution id by delivery id, every
    status, and whether each 503 carried ``Retry-After``."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.accepted: dict[str, str] = {}
        self.statuses: collections.Counter[int] = collections.Counter()
        self.unavailable_without_retry_after = 0
        self.unexpected: list[tuple[int, object]] = []
        self.stop = asyncio.Event()
        self._counter = 0

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._client(session) for _ in range(16)))

    async def _client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            self._counter += 1
            delivery = f"d-{self._counter}"
            try:
                async with session.post(
                    self.daemon.base_url + "/hooks/inbox/in",
                    json={"n": self._counter}, headers={"X-Delivery": delivery},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    body = await response.json(content_type=None)
                    self.statuses[response.status] += 1
                    if response.status == 202:
                        self.accepted[delivery] = body["execution_id"]
                    elif response.status == 503:
                        if not response.headers.get("Retry-After", "").isdigit():
                            self.unavailable_without_retry_after += 1
                        await asyncio.sleep(0.05)
                    else:
                        self.unexpected.append((response.status, body))
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.05)


async def test_killed_embedded_server_is_restarted_and_nothing_acknowledged_is_lost(
    daemons: Daemons, embedded_state_dir: Path, tmp_path: Path
) -> None:
    state_dir = embedded_state_dir
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {"daemon": {"definitions": [str(definitions)]},
                                               "executor": {"lease": "2s"}}
    daemon = await daemons.start(database_url=None, state_dir=state_dir, sections=sections,
                                 ready_timeout=120)
    dsn = daemon.events_named("daemon_ready")[0]["database"]
    load = Load(daemon)
    sending = asyncio.create_task(load.run())

    async def some_accepted() -> bool:
        return len(load.accepted) >= 100

    await wait_for(some_accepted, timeout=60)
    first_pid = postmaster_pid(state_dir)
    os.kill(first_pid, signal.SIGKILL)

    async def refused() -> bool:
        return load.statuses[503] > 0

    await wait_for(refused, timeout=60)
    await daemon.wait_ready(timeout=90)
    accepted_before = len(load.accepted)

    async def accepting_again() -> bool:
        return len(load.accepted) >= accepted_before + 50

    await wait_for(accepting_again, timeout=60)
    load.stop.set()
    await sending
    assert load.unavailable_without_retry_after == 0
    assert set(load.statuses) <= {202, 503}, (
        load.statuses, load.unexpected, daemon.events_named("webhook_internal_error"))
    second_pid = postmaster_pid(state_dir)
    assert second_pid != first_pid and alive(second_pid)
    await daemon.wait_for_event("embedded_postgres_restarted")
    restarted = daemon.events_named("embedded_postgres_restarted")
    assert len(restarted) == 1, "\n".join(
        str(e) for e in daemon.events() if e["event"].startswith("embedded_"))
    status, body = await daemon.get("/healthz")
    assert status == 200, body

    # Every acknowledged request has its execution and stored request, and every run ends.
    ids = list(load.accepted.values())
    conn = await asyncpg.connect(dsn)
    try:
        async def all_final() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE id = ANY($1::uuid[])"
                " AND status IN ('SUCCESS', 'ERROR', 'CANCELED')", ids)
            return bool(n == len(ids))

        try:
            await wait_for(all_final, timeout=120)
        except AssertionError:
            unfinished = await conn.fetch(
                "SELECT id, status, attempt, lease_owner, lease_expires_at, now() AS now"
                " FROM workflow_executions WHERE id = ANY($1::uuid[])"
                " AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELED')", ids)
            raise AssertionError(f"runs never ended: {[dict(r) for r in unfinished][:5]}"
                                 f" ({len(unfinished)}); {daemon.describe()}") from None
        rows = await conn.fetch(
            "SELECT e.status, r.id AS request_id FROM workflow_executions e"
            " LEFT JOIN webhook_requests r ON r.execution_id = e.id"
            " WHERE e.id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()
    assert len(rows) == len(ids)
    assert all(r["request_id"] is not None for r in rows)
    assert {r["status"] for r in rows} == {"SUCCESS"}

    assert await daemon.stop(signal.SIGTERM, timeout=60) == 0
    # The daemon owned the restarted server too: it stops it when it leaves.
    deadline = time.monotonic() + 30
    while alive(second_pid):
        assert time.monotonic() < deadline, "the restarted server outlived the daemon"
        await asyncio.sleep(0.1)
