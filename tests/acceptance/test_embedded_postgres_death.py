"""The embedded PostgreSQL dies under the daemon (issue 12 item 5).

SIGKILL the postmaster under webhook load: requests meanwhile are answered 503 with
``Retry-After``, the daemon starts the server again on the same data directory, becomes
ready again and loses no acknowledged request. When the server cannot be started again,
``/healthz`` fails and the daemon exits non-zero so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue
from tests.helpers import wait_for

# Starting the embedded server (initdb) and its crash recovery take a while on a busy machine.
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


@pytest.fixture
def state_dir(daemons: Daemons) -> Iterator[Path]:
    """A state directory outside pytest's base temp: as root, the embedded server runs as
    the ``pgserver`` user, which must traverse every parent."""
    with tempfile.TemporaryDirectory(prefix="triggerd-pgdeath-") as name:
        yield Path(name) / "state"
        daemons.cleanup()  # before the directory goes: no server left on it


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
    daemons: Daemons, state_dir: Path, tmp_path: Path
) -> None:
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


async def test_embedded_server_that_cannot_start_again_fails_liveness_and_exits(
    daemons: Daemons, state_dir: Path
) -> None:
    daemon = await daemons.start(database_url=None, state_dir=state_dir, ready_timeout=120)
    pgdata = state_dir / "postgres"
    pid = postmaster_pid(state_dir)
    # Without its control file PostgreSQL refuses to start on this data directory.
    os.kill(pid, signal.SIGKILL)
    (pgdata / "global" / "pg_control").rename(pgdata / "global" / "pg_control.moved")

    async def liveness_failed() -> object:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            status, body = await daemon.get("/healthz")
            return body if status == 503 else None
        return None

    body = await wait_for(liveness_failed, timeout=120, interval=0.2)
    assert body["status"] == "failing" and list(body["failing"]) == ["embedded_postgres"], body
    assert body["failing"]["embedded_postgres"].startswith(
        "the embedded PostgreSQL is down; restart attempt "), body
    code = await daemon.wait_exit(timeout=180)
    assert code == 1, daemon.describe()
    lost = daemon.events_named("embedded_postgres_lost")
    assert len(lost) == 1, daemon.describe()
    assert lost[0]["level"] == "error"
    assert lost[0]["pgdata"] == str(pgdata)
    assert daemon.stderr_lines[-1] == (
        f"triggerd: error: the embedded PostgreSQL in {pgdata} died and cannot be started"
        " again; exiting so that the supervisor restarts triggerd"
    ), daemon.describe()
    assert "Traceback" not in "\n".join(daemon.stderr_lines)
    # (asyncpg's pool logs its failed reconnects with a traceback; triggerd itself does not)
    assert [e["event"] for e in daemon.events()
            if "Traceback" in str(e) and e["logger"].startswith("triggerd")] == []
