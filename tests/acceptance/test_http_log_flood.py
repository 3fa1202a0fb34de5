"""Anonymous clients cannot flood the log: the real daemon with [http] processes = 2 (the
kernel spreads new connections over both processes), fed requests aiohttp cannot parse and
webhook requests with wrong credentials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.acceptance.conftest import DaemonProcess, Daemons
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: flood
    name: Flood
    graph:
      nodes:
        - {id: keep, type: noop}
    triggers:
      - {name: guarded, type: webhook, path: flood/guarded,
         auth: {scheme: token, secret: {env: FLOOD_TOKEN}}}
"""
SECRET = "flood-secret-token-value"
LONG_URL = b"GET /hooks/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
MANY_HEADERS = (
    b"POST /hooks/flood/guarded HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-Filler-%d: v\r\n" % n for n in range(2000))
    + b"\r\n"
)
# The daemon's limits (triggerd.logs / triggerd.webhooks.ingress): a burst, then a rate.
BURST = 10
RATE = 1.0
PROCESSES = 2


async def start(daemons: Daemons, dsn: str, tmp_path: Path) -> DaemonProcess:
    definitions = tmp_path / "flood.yaml"
    definitions.write_text(DEFINITIONS)
    daemon = await daemons.start(
        database_url=dsn,
        sections={"http": {"processes": PROCESSES},
                  "daemon": {"definitions": [str(definitions)]}},
        env={"FLOOD_TOKEN": SECRET},
    )
    await daemon.wait_for_event("http_worker_ready")
    return daemon


async def send_raw(daemon: DaemonProcess, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def accounted(daemon: DaemonProcess, event: str) -> tuple[int, int, int]:
    """(lines of ``event``, their summary lines, the lines those summaries stand for)."""
    lines = daemon.events_named(event)
    summaries = [e for e in daemon.events_named("log_suppressed")
                 if e["suppressed_event"] == event]
    return len(lines), len(summaries), sum(e["suppressed"] for e in summaries)


def bound(seconds: float) -> int:
    """At most this many lines of one event in ``seconds``: in each process the burst, one
    line per earned token, and a summary before each of those."""
    return PROCESSES * (BURST + 2 * (int(seconds * RATE) + 1))


async def test_unparsable_requests_are_info_lines_without_traceback_and_bounded(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    for data in (LONG_URL, MANY_HEADERS):
        assert (await send_raw(daemon, data)).startswith(b"HTTP/1.0 400 Bad Request")

    async def both_logged() -> list[dict[str, Any]] | None:
        found = daemon.events_named("http_protocol_error")
        return found if len(found) == 2 else None

    first = await wait_for(both_logged, timeout=10)
    assert sorted(e["reason"] for e in first) == ["line_too_long", "too_many_headers"]
    for line in first:
        assert line["level"] == "info"
        assert line["remote"] == "127.0.0.1"
        assert "exc" not in line

    started = time.monotonic()
    for n in range(1000):
        await send_raw(daemon, MANY_HEADERS if n % 2 else LONG_URL)

    # Every request is accounted for: logged, or counted in a summary line.
    async def all_accounted() -> bool:
        lines, _, suppressed = accounted(daemon, "http_protocol_error")
        return lines + suppressed == 1002

    await wait_for(all_accounted, timeout=30)
    elapsed = time.monotonic() - started
    lines, summaries, suppressed = accounted(daemon, "http_protocol_error")
    assert suppressed > 0
    assert lines + summaries <= bound(elapsed), (lines, summaries, elapsed)
    # Nothing else from the HTTP server: no error lines, no tracebacks.
    server = [e for e in daemon.events() if e["logger"] == "aiohttp.server"]
    assert {e["event"] for e in server} <= {"http_protocol_error", "log_suppressed"}
    assert all("exc" not in e for e in daemon.events())


async def test_wrong_credentials_are_logged_with_their_reason_in_either_process(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    url = daemon.base_url + "/hooks/flood/guarded"
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(200):
            async with session.post(url, json={}, headers={"Authorization": "Bearer guess"}
                                    ) as response:
                assert response.status == 401
                assert await response.json() == {"error": "unauthorized",
                                                 "message": "authentication failed"}
        async with session.post(url, json={}, headers={"Authorization": f"Bearer {SECRET}"}
                                ) as response:
            assert response.status == 202

    async def all_accounted() -> bool:
        lines, _, suppressed = accounted(daemon, "webhook_rejected")
        return lines + suppressed == 200

    await wait_for(all_accounted, timeout=30)
    elapsed = time.monotonic() - started
    lines, summaries, _ = accounted(daemon, "webhook_rejected")
    assert lines + summaries <= bound(elapsed)
    for line in daemon.events_named("webhook_rejected"):
        assert (line["level"], line["trigger"], line["status"], line["reason"]) == (
            "info", "flood/guarded", 401, "bad_token")
    assert SECRET not in "\n".join(daemon.stdout_lines)
    assert "guess" not in "\n".join(daemon.stdout_lines)
