"""SIGTERM while a webhook request is in progress: the request finishes, is stored and is
answered (``Connection: close``) before the daemon stops, in the main process and in an
extra HTTP process alike."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.conftest import Daemons

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
