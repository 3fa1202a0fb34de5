"""Crash recovery and drain with real processes (issue 3 item 9, issue 5 item 4).

A loopback HTTP server in the test counts how often each node's request arrives. The
workflow is ``http(/a) -> http(/slow) -> http(/c)``; the first request to ``/slow`` hangs,
so the process can be killed (SIGKILL) or stopped (SIGTERM) while that node runs. Another
daemon then finishes the run: finished nodes are not run again, the interrupted node runs
again as a new attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import Daemons
from tests.helpers import apply_doc, final_status, fire, free_port


@dataclass(kw_only=True)
class Loopback:
    """Counts requests per path; the first ``/slow`` hangs until released or timed out."""

    first_slow_delay: float
    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    slow_hit: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.hits[path] += 1
        number = self.hits[path]
        if path == "/slow" and number == 1:
            self.slow_hit.set()
            # The daemon is killed or drained while it waits here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), self.first_slow_delay)
        return web.json_response({"path": path, "hit": number})


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    server = Loopback(first_slow_delay=3.0, port=free_port())
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", server.port)
    await site.start()
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def chain_workflow(base_url: str) -> dict[str, Any]:
    def http(node_id: str) -> dict[str, Any]:
        return {"id": node_id, "type": "http",
                "params": {"method": "GET", "url": f"{base_url}/{node_id}"}}

    return {"workflows": [{
        "key": "chain",
        "name": "chain",
        "graph": {
            "nodes": [http("a"), http("slow"), http("c")],
            "edges": [{"from": "a", "to": "slow"}, {"from": "slow", "to": "c"}],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
    }]}


async def node_rows(pool: asyncpg.Pool, execution_id: str) -> list[tuple[str, int, str]]:
    rows = await pool.fetch(
        "SELECT node_id, attempt, status FROM node_executions WHERE execution_id = $1"
        " ORDER BY node_id, attempt", execution_id)
    return [(r["node_id"], r["attempt"], r["status"]) for r in rows]


async def execution_row(pool: asyncpg.Pool, execution_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", execution_id)
    assert row is not None
    return row


async def test_sigkill_mid_run_resumes_after_last_finished_node(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, loopback: Loopback
) -> None:
    await apply_doc(pool, chain_workflow(loopback.base_url))
    sections = {"executor": {"lease": "3s", "poll_interval": "300ms"}}
    first = await daemons.start(database_url=dsn, sections=sections, name="first")
    first_owner = (await first.wait_for_event("executor_started"))["owner"]

    execution_id = await fire(pool, "chain/manual")
    await asyncio.wait_for(loopback.slow_hit.wait(), 20)
    first.kill()  # SIGKILL while the /slow node runs
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL

    # The run is left RUNNING under the dead owner's lease, a, done and slow's attempt 1 open.
    row = await execution_row(pool, execution_id)
    assert (row["status"], row["lease_owner"], row["attempt"]) == ("RUNNING", first_owner, 1)
    assert await node_rows(pool, execution_id) == [("a", 1, "SUCCESS"), ("slow", 1, "RUNNING")]

    second = await daemons.start(database_url=dsn, sections=sections, name="second")
    second_owner = (await second.wait_for_event("executor_started"))["owner"]
    assert second_owner != first_owner
    row = await final_status(pool, execution_id, timeout=30)
    assert row["status"] == "SUCCESS", (row["error_code"], row["error_message"])
    assert row["attempt"] == 2
    assert (row["lease_owner"], row["lease_expires_at"]) == (None, None)
    assert row["output"]["body"] == {"path": "/c", "hit": 1}

    # Finished nodes ran once; the interrupted one ran again as attempt 2.
    assert dict(loopback.hits) == {"/a": 1, "/slow": 2, "/c": 1}
    rows = await node_rows(pool, execution_id)
    assert [r for r in rows if r[0] != "slow"] == [("a", 1, "SUCCESS"), ("c", 1, "SUCCESS")]
    assert [r for r in rows if r[0] == "slow"] == [("slow", 1, "ERROR"), ("slow", 2, "SUCCESS")]
    # The attempt that died with its process is closed out, not left RUNNING.
    dead = await pool.fetchrow(
        "SELECT error_code, end_time FROM node_executions"
        " WHERE execution_id = $1 AND node_id = 'slow' AND attempt = 1", execution_id)
    assert dead["error_code"] == "INTERRUPTED"
    assert dead["end_time"] is not None
    # c saw slow's second answer: the resumed run used the new attempt's output.
    c_input = await pool.fetchval(
        "SELECT input FROM node_executions WHERE execution_id = $1 AND node_id = 'c'",
        execution_id)
    assert c_input["url"] == f"{loopback.base_url}/c"

    finished = await second.wait_for_event("execution_finished")
    assert (finished["execution_id"], finished["status"]) == (execution_id, "SUCCESS")
    assert await second.stop(signal.SIGTERM) == 0


async def test_interrupted_close_out_is_not_mistaken_for_a_failure(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, loopback: Loopback
) -> None:
    """A resumed run writes the dead attempt's close-out (ERROR ``INTERRUPTED``) with the
    next durable write, which need not be the node's own next attempt (a concurrent branch,
    a hand-back); if the process dies in between, the close-out is the node's latest row.
    That row says the node never finished: the next resume must run it again, not take its
    failure edge. The state is written directly; one real daemon resumes it."""
    await apply_doc(pool, {"workflows": [{
        "key": "guarded", "name": "guarded",
        "graph": {
            "nodes": [
                {"id": "x", "type": "http",
                 "params": {"method": "GET", "url": f"{loopback.base_url}/x"}},
                {"id": "ok", "type": "set", "params": {"value": "ok"}},
                {"id": "handled", "type": "set", "params": {"value": "handled"}},
            ],
            "edges": [{"from": "x", "to": "ok"},
                      {"from": "x", "to": "handled", "on": "failure"}],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
    }]})
    execution_id = await fire(pool, "guarded/manual")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'gone:1:dead',"
        " lease_expires_at = now() - interval '1 second', attempt = 2, start_time = now()"
        " WHERE id = $1", execution_id)
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
        " input, error_code, error_message, start_time, end_time) VALUES"
        " ($1, 'x', 'http', 'ERROR', 1, $2, 'INTERRUPTED', 'the process running this"
        " attempt stopped before it finished', now(), now())",
        execution_id, {"url": f"{loopback.base_url}/x"})

    daemon = await daemons.start(database_url=dsn, sections={"executor": {"lease": "3s"}})
    row = await final_status(pool, execution_id, timeout=30)
    assert await daemon.stop(signal.SIGTERM) == 0
    assert (row["status"], row["output"]) == ("SUCCESS", "ok")
    assert dict(loopback.hits) == {"/x": 1}
    rows = await node_rows(pool, execution_id)
    assert rows == [("handled", 1, "SKIPPED"), ("ok", 1, "SUCCESS"), ("x", 1, "ERROR"),
                    ("x", 2, "SUCCESS")]


async def test_sigterm_drains_then_hands_the_run_back(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, loopback: Loopback
) -> None:
    loopback.first_slow_delay = 15.0  # far beyond the drain time
    await apply_doc(pool, chain_workflow(loopback.base_url))
    # A long lease: only an explicit hand-back lets another process continue soon.
    sections = {"executor": {"lease": "60s", "drain": "1s", "poll_interval": "300ms"}}
    first = await daemons.start(database_url=dsn, sections=sections, name="first")

    execution_id = await fire(pool, "chain/manual")
    await asyncio.wait_for(loopback.slow_hit.wait(), 20)
    assert await first.stop(signal.SIGTERM, timeout=30) == 0
    assert first.stderr_lines == []

    released = first.events_named("executions_released")
    assert len(released) == 1
    assert (released[0]["count"], released[0]["ids"]) == (1, [execution_id])
    assert [e["event"] for e in first.events()][-1] == "daemon_stopped"
    row = await execution_row(pool, execution_id)
    assert (row["status"], row["lease_owner"], row["lease_expires_at"]) == ("NEW", None, None)
    assert await node_rows(pool, execution_id) == [("a", 1, "SUCCESS"), ("slow", 1, "CANCELED")]

    second = await daemons.start(database_url=dsn, sections=sections, name="second")
    row = await final_status(pool, execution_id, timeout=30)
    assert row["status"] == "SUCCESS", (row["error_code"], row["error_message"])
    assert dict(loopback.hits) == {"/a": 1, "/slow": 2, "/c": 1}
    assert await node_rows(pool, execution_id) == [
        ("a", 1, "SUCCESS"), ("c", 1, "SUCCESS"), ("slow", 1, "CANCELED"), ("slow", 2, "SUCCESS")]
    finished = await second.wait_for_event("execution_finished")
    assert finished["execution_id"] == execution_id
    assert await second.stop(signal.SIGTERM) == 0
    # A run that finished before the drain is not handed back, and no lease is left open.
    assert second.events_named("executions_released") == []
    open_runs = await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING'"
        " OR lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL")
    assert open_runs == 0
