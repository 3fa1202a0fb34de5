"""Webhook runs are taken up by the process that stores them (triggerd.store.webhooks
RunsHere): stored RUNNING under its executor's lease, with no claim, while the executor
has room and no queue to serve first; otherwise queued NEW and claimed in order. Real
daemons, real requests; a loopback server holds a node's request open so the tests can
see a run in flight, fill the executor, or kill the process under it.

A run taken up where it was stored has ``start_time = created_at`` (one statement wrote
both); a claimed run starts in a later transaction."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue
from tests.helpers import apply_doc, final_status, fire, free_port, wait_for


@dataclass(kw_only=True)
class Gate:
    """Counts requests per path; ``/hold`` requests wait until ``open`` is set."""

    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    open: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        if request.path == "/hold":
            self.held += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.open.wait(), 60)
        return web.json_response({"path": request.path})


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    server = Gate(port=free_port())
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        server.open.set()
        await runner.cleanup()


def definitions(tmp_path: Path, base_url: str) -> Path:
    """``quick`` (set -> set) and ``held`` (an http node to /hold), each with an async
    webhook and a manual trigger."""
    path = tmp_path / "flows.yaml"
    path.write_text(f"""\
workflows:
  - key: quick
    name: quick
    graph:
      nodes:
        - {{id: keep, type: set, params: {{value: "{{{{ input.n }}}}"}}}}
        - {{id: done, type: set, params: {{value: "{{{{ nodes.keep.output }}}}"}}}}
      edges: [{{from: keep, to: done}}]
    triggers:
      - {{name: hook, type: webhook, path: quick}}
  - key: held
    name: held
    graph:
      nodes:
        - {{id: call, type: http, params: {{method: GET, url: "{base_url}/hold"}}}}
    triggers:
      - {{name: hook, type: webhook, path: held}}
      - {{name: manual, type: manual}}
""")
    return path


async def post(daemon: DaemonProcess, path: str, body: dict[str, Any]) -> str:
    async with aiohttp.ClientSession() as session, session.post(
        f"{daemon.base_url}/hooks/{path}", json=body
    ) as answer:
        assert answer.status == 202, await answer.text()
        execution_id: str = (await answer.json())["execution_id"]
        return execution_id


async def row(pool: asyncpg.Pool, execution_id: str) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT status, lease_owner, attempt, created_at, start_time,"
        " start_time = created_at AS here FROM workflow_executions WHERE id = $1",
        execution_id)
    assert found is not None
    return found


def sections(tmp_path: Path, base_url: str, **executor: TomlValue
             ) -> dict[str, dict[str, TomlValue]]:
    return {"daemon": {"definitions": [str(definitions(tmp_path, base_url))]},
            "executor": {"poll_interval": "300ms", **executor}}


async def test_webhook_runs_are_taken_up_where_they_are_stored(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    # A long poll: a request stored while a claim is in flight is queued (the claim's room
    # is promised to it), which a poll's claim every 300 ms would make a matter of luck.
    daemon = await daemons.start(database_url=dsn, sections=sections(
        tmp_path, gate.base_url, poll_interval="10s"))
    owner = (await daemon.wait_for_event("executor_started"))["owner"]
    ids = [await post(daemon, "quick", {"n": n}) for n in range(20)]
    for n, execution_id in enumerate(ids):
        done = await final_status(pool, execution_id)
        assert (done["status"], done["output"], done["attempt"]) == ("SUCCESS", n, 1)
        assert (await row(pool, execution_id))["here"], "claimed, not taken up where stored"
    nodes = await pool.fetchval(
        "SELECT count(*) FROM node_executions WHERE execution_id = ANY($1::uuid[])", ids)
    assert nodes == 40

    # While it runs, the run is the executor's as a claimed run is: RUNNING, its lease.
    held = await post(daemon, "held", {})
    await wait_for(lambda: _async_true(gate.held >= 1), timeout=20)
    running = await row(pool, held)
    assert (running["status"], running["lease_owner"], running["attempt"], running["here"]) \
        == ("RUNNING", owner, 1, True)
    gate.open.set()
    assert (await final_status(pool, held))["status"] == "SUCCESS"
    assert await daemon.stop(signal.SIGTERM) == 0
    assert daemon.events_named("take_up_failed") == []


async def _async_true(value: bool) -> bool:
    return value


async def test_runs_queue_when_the_executor_has_no_room(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    daemon = await daemons.start(
        database_url=dsn, sections=sections(tmp_path, gate.base_url, concurrency=1))
    first = await post(daemon, "held", {})
    await wait_for(lambda: _async_true(gate.held >= 1), timeout=20)
    # The one slot is taken: the next requests are stored NEW, for a claim.
    queued = [await post(daemon, "quick", {"n": n}) for n in range(3)]
    for execution_id in queued:
        waiting = await row(pool, execution_id)
        assert (waiting["status"], waiting["lease_owner"], waiting["attempt"]) \
            == ("NEW", None, 0)
    gate.open.set()
    assert (await row(pool, first))["here"]
    for n, execution_id in enumerate(queued):
        done = await final_status(pool, execution_id)
        assert (done["status"], done["output"], done["attempt"]) == ("SUCCESS", n, 1)
        assert not (await row(pool, execution_id))["here"]
    assert await daemon.stop(signal.SIGTERM) == 0


async def test_runs_already_waiting_go_first(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    """A backlog claimed in full says more may wait: a new request then joins the queue
    behind it instead of overtaking it."""
    config = sections(tmp_path, gate.base_url, concurrency=2)
    await apply_doc(pool, {"workflows": []})  # migrated; the daemon applies the file
    starter = await daemons.start(database_url=dsn, sections=config, name="starter")
    assert await starter.stop(signal.SIGTERM) == 0
    backlog = [await fire(pool, "held/manual") for _ in range(4)]
    daemon = await daemons.start(database_url=dsn, sections=config)
    await wait_for(lambda: _async_true(gate.held >= 2), timeout=20)
    late = await post(daemon, "quick", {"n": 7})
    waiting = await row(pool, late)
    assert (waiting["status"], waiting["lease_owner"]) == ("NEW", None)
    gate.open.set()
    for execution_id in [*backlog, late]:
        assert (await final_status(pool, execution_id, timeout=30))["status"] == "SUCCESS"
    assert not (await row(pool, late))["here"]
    assert await daemon.stop(signal.SIGTERM) == 0


async def test_a_run_stored_by_a_killed_process_is_taken_up_when_its_lease_ends(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    config = sections(tmp_path, gate.base_url, lease="3s")
    first = await daemons.start(database_url=dsn, sections=config, name="first")
    first_owner = (await first.wait_for_event("executor_started"))["owner"]
    execution_id = await post(first, "held", {})
    await wait_for(lambda: _async_true(gate.held >= 1), timeout=20)
    first.kill()
    stranded = await row(pool, execution_id)
    assert (stranded["status"], stranded["lease_owner"], stranded["attempt"]) \
        == ("RUNNING", first_owner, 1)

    gate.open.set()
    second = await daemons.start(database_url=dsn, sections=config, name="second")
    done = await final_status(pool, execution_id, timeout=30)
    assert (done["status"], done["attempt"]) == ("SUCCESS", 2)
    assert await second.stop(signal.SIGTERM) == 0


async def test_a_run_stored_by_a_process_killed_before_its_heartbeat_keeps_its_time(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    """Stored RUNNING, the run is worked on from its start (as a claimed run is): the
    process dies before its first heartbeat and no daemon runs for two hours; taken up
    again, the outage is not working time (it ended TIMEOUT at once, its hour gone)."""
    # A long lease: its first heartbeat (a third of it) comes after the kill.
    config = sections(tmp_path, gate.base_url, lease="10m")
    first = await daemons.start(database_url=dsn, sections=config, name="first")
    execution_id = await post(first, "held", {})
    await wait_for(lambda: _async_true(gate.held >= 1), timeout=20)
    first.kill()
    stranded = await pool.fetchrow(
        "SELECT status, start_time, worked_at, idle_ms FROM workflow_executions"
        " WHERE id = $1", execution_id)
    assert (stranded["status"], stranded["worked_at"], stranded["idle_ms"]) \
        == ("RUNNING", stranded["start_time"], 0)
    # Two hours pass with no daemon (every instant recorded so far moves back).
    await pool.execute(
        "UPDATE workflow_executions SET start_time = start_time - interval '2 hours',"
        " worked_at = worked_at - interval '2 hours',"
        " lease_expires_at = now() - interval '1 hour' WHERE id = $1", execution_id)
    await pool.execute(
        "UPDATE node_executions SET start_time = start_time - interval '2 hours'"
        " WHERE execution_id = $1", execution_id)

    gate.open.set()
    second = await daemons.start(database_url=dsn, sections=config, name="second")
    done = await final_status(pool, execution_id, timeout=30)
    assert (done["status"], done["error_code"], done["attempt"]) == ("SUCCESS", None, 2)
    assert 2 * 3600 * 1000 <= done["idle_ms"] < 2 * 3600 * 1000 + 60_000
    assert await second.stop(signal.SIGTERM) == 0


async def test_sigterm_hands_back_a_run_taken_up_where_it_was_stored(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    config = sections(tmp_path, gate.base_url, lease="60s", drain="1s")
    first = await daemons.start(database_url=dsn, sections=config, name="first")
    execution_id = await post(first, "held", {})
    await wait_for(lambda: _async_true(gate.held >= 1), timeout=20)
    assert await first.stop(signal.SIGTERM, timeout=30) == 0
    released = first.events_named("executions_released")
    assert [(e["count"], e["ids"]) for e in released] == [(1, [execution_id])]
    handed_back = await row(pool, execution_id)
    assert (handed_back["status"], handed_back["lease_owner"]) == ("NEW", None)

    gate.open.set()
    second = await daemons.start(database_url=dsn, sections=config, name="second")
    assert (await final_status(pool, execution_id, timeout=30))["status"] == "SUCCESS"
    assert await second.stop(signal.SIGTERM) == 0


def worker_pids(daemon: DaemonProcess) -> list[int]:
    children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"triggerd.serving.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def counted(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is not None and match.group(1) == name and dict(
                re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")) == labels:
            return float(match.group(3))
    return 0.0


async def test_each_http_process_runs_what_it_stores(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, gate: Gate
) -> None:
    """With [http] processes = 2 the extra process runs the webhook runs it stores under
    its own executor's lease (the work is spread with no claim), its runs' ends reach the
    main process's /metrics, and a stop hands back what it could not finish."""
    config = sections(tmp_path, gate.base_url, lease="60s", drain="1s", poll_interval="10s")
    config["http"] = {"processes": 2}
    daemon = await daemons.start(database_url=dsn, sections=config)
    await daemon.wait_for_event("http_worker_ready")
    [worker] = worker_pids(daemon)
    ids: list[str] = []
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(24):
            async with session.post(f"{daemon.base_url}/hooks/held", json={"n": n}) as answer:
                assert answer.status == 202, await answer.text()
                ids.append((await answer.json())["execution_id"])
    await wait_for(lambda: _async_true(gate.held == 24), timeout=30)
    rows = await pool.fetch(
        "SELECT status, lease_owner, start_time = created_at AS here FROM workflow_executions"
        " WHERE id = ANY($1::uuid[])", ids)
    assert {(r["status"], r["here"]) for r in rows} == {("RUNNING", True)}
    pids = Counter(int(r["lease_owner"].split(":")[1]) for r in rows)
    assert set(pids) == {daemon.pid, worker}, pids  # both processes run some

    gate.open.set()
    for execution_id in ids:
        assert (await final_status(pool, execution_id, timeout=30))["status"] == "SUCCESS"

    async def all_counted() -> bool:
        async with aiohttp.ClientSession() as session, session.get(
                daemon.base_url + "/metrics") as answer:
            text = await answer.text()
        return counted(text, "triggerd_executions_total",
                       workflow="held", status="SUCCESS") == 24

    await wait_for(all_counted, timeout=10)  # the worker's reports included

    # A stop while both hold runs: each process hands back what it could not finish.
    gate.open.clear()
    gate.held = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)
                                     ) as session:
        for n in range(12):
            async with session.post(f"{daemon.base_url}/hooks/held", json={"n": n}) as answer:
                assert answer.status == 202
    await wait_for(lambda: _async_true(gate.held == 12), timeout=30)
    owners = {r["lease_owner"] for r in await pool.fetch(
        "SELECT lease_owner FROM workflow_executions WHERE status = 'RUNNING'")}
    assert {int(o.split(":")[1]) for o in owners} == {daemon.pid, worker}
    assert await daemon.stop(signal.SIGTERM, timeout=30) == 0
    left = await pool.fetch(
        "SELECT status, lease_owner FROM workflow_executions WHERE status NOT IN ('SUCCESS')")
    assert [(r["status"], r["lease_owner"]) for r in left] == [("NEW", None)] * 12
    left_ids = await pool.fetch(
        "SELECT id::text AS id FROM workflow_executions WHERE status = 'NEW'")
    # Each run handed back once, by the process that ran it: the main process, stopping,
    # claims none of those its worker hands back (which it would only cut off again).
    released = [i for e in daemon.events_named("executions_released") for i in e["ids"]]
    assert sorted(released) == sorted(r["id"] for r in left_ids)
    assert gate.held == 12  # and none was started a second time
