"""Queue-time shedding (``triggerd.webhooks.shedding``) in the real daemon: requests
pipelined on one connection, over raw sockets, and which process of the daemon holds the
connection, read from ``/proc``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons
from tests.acceptance.test_http_processes import worker_pids
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: quick
    name: Quick
    graph:
      nodes:
        - {id: start, type: noop}
    triggers:
      - {name: plain, type: webhook, path: shed/plain}
  - key: slow
    name: Slow
    graph:
      nodes:
        - {id: pause, type: wait, params: {duration: "1h"}}
    triggers:
      - {name: sync, type: webhook, path: shed/sync, response: sync, timeout: 2s}
"""


async def start(daemons: Daemons, dsn: str, tmp_path: Path, processes: int) -> DaemonProcess:
    definitions = tmp_path / "shed.yaml"
    definitions.write_text(DEFINITIONS)
    daemon = await daemons.start(database_url=dsn, sections={
        "http": {"processes": processes}, "daemon": {"definitions": [str(definitions)]}})
    if processes > 1:
        await daemon.wait_for_event("http_worker_ready")
    return daemon


def post(path: str, body: bytes = b"{}") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_answers(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """``count`` answers: (status, body)."""
    answers = []
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        answers.append((int(head.split(b" ", 2)[1]), await reader.readexactly(length)))
    return answers


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the loopback TCP socket from ``local_port`` to ``remote_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.split(":")[1], 16) == local_port
                and int(remote.split(":")[1], 16) == remote_port):
            return fields[9]
    return None


def holds(pid: int, inode: str) -> bool:
    """Whether process ``pid`` has the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    fds = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fds):
        try:
            if os.readlink(fds / fd) == target:
                return True
        except OSError:
            continue
    return False


async def connection_to(
    daemon: DaemonProcess, pid: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that process ``pid`` of the daemon accepted (the kernel spreads new
    connections over the processes: new ones until one lands there)."""
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        client_port = writer.get_extra_info("sockname")[1]

        async def accepted_by(client_port: int = client_port) -> int | None:
            inode = _socket_inode(daemon.port, client_port)
            if inode is None or inode == "0":
                return None
            return next((p for p in [daemon.pid, *worker_pids(daemon)] if holds(p, inode)),
                        None)

        if await wait_for(accepted_by, timeout=10) == pid:
            return reader, writer
        writer.close()
    raise AssertionError(f"no connection landed on process {pid}")


async def test_requests_pipelined_behind_a_forwarded_sync_request_wait_for_it_unrefused(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # [http] processes = 2: the extra process forwards a sync webhook to the main process,
    # whose answer comes once the run ends (here: the 2 s timeout, then the 202). The
    # request pipelined behind it waited those 2 s for an answer its sender asked for: it
    # was refused 429 in the extra process (the main process excused that wait already).
    daemon = await start(daemons, dsn, tmp_path, processes=2)
    [worker] = worker_pids(daemon)
    for pid in (worker, daemon.pid):
        reader, writer = await connection_to(daemon, pid)
        try:
            writer.write(post("/hooks/shed/plain", b'{"n": 1}') + post("/hooks/shed/sync")
                         + post("/hooks/shed/plain", b'{"n": 3}'))
            answers = await read_answers(reader, 3)
        finally:
            writer.close()
        assert [status for status, _ in answers] == [202, 202, 202], (pid, answers)
        ids = [json.loads(body)["execution_id"] for _, body in answers]
        stored = await pool.fetch(
            "SELECT e.input, e.trigger_name FROM webhook_requests r"
            " JOIN workflow_executions e ON e.id = r.execution_id"
            " WHERE r.execution_id = ANY($1::uuid[]) ORDER BY r.received_at", ids)
        assert [(r["trigger_name"], r["input"]) for r in stored] == [
            ("plain", {"n": 1}), ("sync", {}), ("plain", {"n": 3})], pid
    assert daemon.events_named("webhook_internal_error") == []
