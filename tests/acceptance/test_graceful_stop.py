"""SIGTERM while a webhook request is in progress: the request finishes, is stored and is
answered (``Connection: close``) before the daemon stops, in the main process and in an
extra HTTP process alike."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import Daemons
from tests.helpers import apply_doc, serve_get, wait_for

DEFINITIONS = """\
workflows:
  - key: inbox
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: in, type: webhook, path: inbox/in, auth: {scheme: none}}
"""


async def read_answer(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status, *lines = head.rstrip("\r\n").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_body_still_arriving_at_sigterm_is_stored_and_answered(
    daemons: Daemons, dsn: str, tmp_path: Path, processes: int
) -> None:
    # aiohttp's shutdown drops what a connection receives once it is closing: the rest of
    # the body never arrived, and the sender got no answer at all after 5 s.
    definitions = tmp_path / "inbox.yaml"
    definitions.write_text(DEFINITIONS)
    daemon = await daemons.start(database_url=dsn, sections={
        "http": {"processes": processes}, "daemon": {"definitions": [str(definitions)]}})
    if processes > 1:
        await daemon.wait_for_event("http_worker_ready")
    body = json.dumps({"n": 7, "pad": "x" * 2000}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        writer.write(b"POST /hooks/inbox/in HTTP/1.1\r\nHost: triggerd\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
        await writer.drain()
        await asyncio.sleep(0.5)  # the headers are read and the handler waits for the body
        daemon.send(signal.SIGTERM)
        await daemon.wait_for_event("daemon_stopping")
        await asyncio.sleep(0.5)
        writer.write(body[100:])
        await writer.drain()
        status, headers, answer = await asyncio.wait_for(read_answer(reader), 20)
        # The connection ends with the answer: a keep-alive sender's next request goes to a
        # daemon that is not stopping.
        assert await asyncio.wait_for(reader.read(), 20) == b""
    finally:
        writer.close()
    assert status == "HTTP/1.1 202 Accepted", (status, answer)
    assert headers["connection"] == "close"
    execution_id = json.loads(answer)["execution_id"]
    assert await daemon.wait_exit() == 0
    assert daemon.events_named("http_drain_cut") == []
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM webhook_requests WHERE execution_id = $1", execution_id)
        run_input = await conn.fetchval(
            "SELECT input FROM workflow_executions WHERE id = $1", execution_id)
    finally:
        await conn.close()
    assert stored == 1
    assert json.loads(run_input)["n"] == 7


async def test_a_stop_the_database_holds_up_ends_and_its_runs_come_back_by_their_leases(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool
) -> None:
    # An operator's lock on the executions (or an outage) held the hand-back, and with it
    # the stop, for as long as the lock lasted: past TimeoutStopSec, systemd's SIGKILL.
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"ok": True})

    async with serve_get("/slow", slow) as service_port:
        await apply_doc(pool, {"workflows": [{
            "key": "held", "graph": {"nodes": [{
                "id": "call", "type": "http", "timeout": "5m",
                "params": {"url": f"http://127.0.0.1:{service_port}/slow"}}]},
            "triggers": [{"name": "hook", "type": "webhook", "path": "held",
                          "auth": {"scheme": "none"}}]}]})
        sections = {"executor": {"drain": "0s", "lease": "3s"}}
        daemon = await daemons.start(database_url=dsn, sections=sections)
        async with aiohttp.ClientSession() as session, session.post(
                daemon.base_url + "/hooks/held", json={}) as answer:
            assert answer.status == 202
            run = (await answer.json())["execution_id"]

        async def node_running() -> bool:
            return bool(await pool.fetchval(
                "SELECT count(*) FROM node_executions WHERE execution_id = $1"
                " AND status = 'RUNNING'", run) == 1)

        await wait_for(node_running, timeout=30)
        async with pool.acquire() as operator, operator.transaction():
            await operator.execute("LOCK TABLE workflow_executions IN ACCESS EXCLUSIVE MODE")
            daemon.send(signal.SIGTERM)
            # It ends while the lock is still held (the wait is a bound, not a speed).
            assert await daemon.wait_exit(timeout=60) == 0
        [event] = daemon.events_named("executions_not_handed_back")
        assert event["ids"] == [run]
        assert daemon.events_named("executions_released") == []
        assert await pool.fetchval(
            "SELECT status FROM workflow_executions WHERE id = $1", run) == "RUNNING"

        # The lease expires; the next process takes the run up again, as after a crash.
        release.set()
        again = await daemons.start(database_url=dsn, sections=sections)

        async def finished() -> bool:
            return bool(await pool.fetchval(
                "SELECT status FROM workflow_executions WHERE id = $1", run) == "SUCCESS")

        await wait_for(finished, timeout=60)
        await again.stop()
    attempts = await pool.fetch(
        "SELECT attempt, status FROM node_executions WHERE execution_id = $1 ORDER BY attempt",
        run)
    assert [tuple(a) for a in attempts][-1] == (2, "SUCCESS")
