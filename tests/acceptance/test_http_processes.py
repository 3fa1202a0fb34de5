"""[http] processes = 2: a second process answers webhooks on the same port. Every request
is sent on a new connection, so the kernel spreads them over both processes; whichever
answers, the answer is the one the main process alone would give."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: spread
    name: Spread
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: plain, type: webhook, path: spread/plain}
      - {name: limited, type: webhook, path: spread/limited, rate: 0.01, burst: 3}
"""
TOKEN = "processes-token"


async def start(daemons: Daemons, dsn: str, tmp_path: Path,
                http: dict[str, TomlValue] | None = None) -> DaemonProcess:
    definitions = tmp_path / "spread.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {
        "http": {"processes": 2, **(http or {})},
        "daemon": {"definitions": [str(definitions)]},
        "api": {"token": TOKEN},
    }
    daemon = await daemons.start(database_url=dsn, sections=sections)
    await daemon.wait_for_event("http_worker_ready")
    return daemon


async def send_each_on_a_new_connection(
    daemon: DaemonProcess, method: str, path: str, count: int, **kwargs: Any
) -> list[tuple[int, Any]]:
    answers = []
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(count):
            async with session.request(method, daemon.base_url + path,
                                       **{"json": {"n": n}, **kwargs}) as response:
                answers.append((response.status, await response.json(content_type=None)))
    return answers


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0


async def scrape(daemon: DaemonProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        daemon.base_url + "/metrics"
    ) as response:
        assert response.status == 200
        return await response.text()


def worker_pids(daemon: DaemonProcess) -> list[int]:
    children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
    return [
        int(pid) for pid in children
        if b"triggerd.serving.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


async def test_both_processes_answer_and_every_route_works_through_either(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    assert len(worker_pids(daemon)) == 1
    # The extra process's pool is [database] pool_max (5 here), as the main process's: it
    # runs an executor too (a fixed 6 before, whatever the setting).
    [ready] = daemon.events_named("http_worker_ready")
    assert ready["pool_max"] == 5, ready

    answers = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/plain", 40)
    assert [status for status, _ in answers] == [202] * 40
    ids = [body["execution_id"] for _, body in answers]
    rows = await pool.fetch(
        "SELECT remote_addr, headers FROM webhook_requests WHERE id = ANY($1::uuid[])", ids)
    assert len(rows) == 40
    assert {r["remote_addr"] for r in rows} == {"127.0.0.1"}

    # The main process counts every answer, its own and the worker's (reported each second).
    async def all_counted() -> str | None:
        text = await scrape(daemon)
        counted = metric(text, "triggerd_webhook_requests_total",
                         status="202", trigger="spread/plain")
        return text if counted == 40 else None

    text = await wait_for(all_counted, timeout=10)
    by_worker = metric(text, "triggerd_webhook_worker_requests_total", worker="1")
    assert 0 < by_worker < 40, by_worker  # both processes answered some

    # Health, readiness and the admin API answer the same through either process.
    for status, body in await send_each_on_a_new_connection(daemon, "GET", "/readyz", 12):
        assert status == 200 and body["checks"]["http-workers"] == "ok", body
    listed = await send_each_on_a_new_connection(
        daemon, "GET", "/api/v1/workflows", 12, headers={"Authorization": f"Bearer {TOKEN}"})
    assert {status for status, _ in listed} == {200}
    assert all([w["key"] for w in body["items"]] == ["spread"] for _, body in listed)
    refused = await send_each_on_a_new_connection(daemon, "GET", "/api/v1/workflows", 12)
    assert {(status, body["error"]) for status, body in refused} == {(401, "unauthorized")}
    unknown = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/none", 12)
    assert {(status, body["error"]) for status, body in unknown} == {(404, "not_found")}
    # A gzip body is decoded by whichever process reads it: a webhook's, and an admin
    # request forwarded by the worker as sent (Content-Encoding and all); cut short, 400.
    gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    hooked = await send_each_on_a_new_connection(
        daemon, "POST", "/hooks/spread/plain", 8, data=gzip.compress(b'{"n": 7}'),
        headers=gzipped, json=None)
    assert {status for status, _ in hooked} == {202}
    inputs = await pool.fetch(
        "SELECT input FROM workflow_executions WHERE id = ANY($1::uuid[])",
        [body["execution_id"] for _, body in hooked])
    assert [r["input"] for r in inputs] == [{"n": 7}] * 8
    admin = {**gzipped, "Authorization": f"Bearer {TOKEN}"}
    document = gzip.compress(b'{"workflows": 5}')
    applied = await send_each_on_a_new_connection(
        daemon, "POST", "/api/v1/definitions", 8, data=document, headers=admin, json=None)
    assert {status for status, _ in applied} == {422}, applied
    cut = await send_each_on_a_new_connection(
        daemon, "POST", "/api/v1/definitions", 8, data=document[:-3], headers=admin,
        json=None)
    assert {(status, body["error"]) for status, body in cut} == {(400, "invalid_body")}


async def test_a_rate_limit_holds_for_the_whole_daemon(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    answers = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/limited", 12)
    statuses = [status for status, _ in answers]
    # burst 3 for the daemon, not 3 per process
    assert statuses.count(202) == 3 and statuses.count(429) == 9, statuses
    ids = [body["execution_id"] for status, body in answers if status == 202]
    rows = await pool.fetch(
        "SELECT remote_addr, headers FROM webhook_requests WHERE id = ANY($1::uuid[])", ids)
    # Forwarded or not, the stored request names the client and not the forwarding header.
    assert {r["remote_addr"] for r in rows} == {"127.0.0.1"}
    assert all("x-triggerd-remote" not in r["headers"] for r in rows)


async def test_a_killed_worker_is_started_again(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    (first,) = worker_pids(daemon)
    os.kill(first, signal.SIGKILL)
    exited = await daemon.wait_for_event("http_worker_exited")
    assert exited["worker"] == 1 and exited["returncode"] == -signal.SIGKILL

    async def restarted() -> bool:
        return len(daemon.events_named("http_worker_ready")) == 2

    await wait_for(restarted, timeout=20)
    (second,) = worker_pids(daemon)
    assert second != first
    answers = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/plain", 20)
    assert [status for status, _ in answers] == [202] * 20


async def test_a_worker_restarted_while_the_configuration_file_is_empty_waits_for_it(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """The main process refuses a reload of a file that sets nothing (caught being
    rewritten); a worker restarted meanwhile read it and served on the defaults (another
    [egress], no [tenants] secrets, another body limit) beside the main process's
    settings. It now exits, and is started again until the file sets something."""
    daemon = await start(daemons, dsn, tmp_path)
    good = daemon.config.read_text()
    daemon.config.write_text("# being rewritten\n")
    (first,) = worker_pids(daemon)
    # A SIGHUP the worker gets by itself (the main process passes on only those it took).
    os.kill(first, signal.SIGHUP)
    refused = await daemon.wait_for_event("http_worker_reload_refused")
    assert refused["error"] == (
        f"{daemon.config}: the configuration file sets nothing (empty or comments only),"
        " while the daemon's did; keeping the settings in force"), refused
    os.kill(first, signal.SIGKILL)

    async def refused_twice() -> bool:
        exits = [e for e in daemon.events_named("http_worker_exited")
                 if e["returncode"] == 2]
        return len(exits) >= 2

    await wait_for(refused_twice, timeout=20)
    assert (f"triggerd http worker: {daemon.config}: the configuration file sets nothing"
            " (empty or comments only), while the daemon's did; keeping the settings in"
            " force") in daemon.stderr_lines
    assert len(daemon.events_named("http_worker_ready")) == 1
    # The main process answers meanwhile.
    answers = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/plain", 4)
    assert [status for status, _ in answers] == [202] * 4
    daemon.config.write_text(good)

    async def restarted() -> bool:
        return len(daemon.events_named("http_worker_ready")) == 2

    await wait_for(restarted, timeout=20)
    answers = await send_each_on_a_new_connection(daemon, "POST", "/hooks/spread/plain", 12)
    assert [status for status, _ in answers] == [202] * 12


async def test_a_daemon_started_on_an_empty_file_refuses_it_once_filled(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """Started on a file that sets nothing (settings from the environment), the workers
    take one; once a reload filled it, neither a worker's reload nor a worker's restart
    takes an emptied one again (they compared with the daemon's start)."""
    config, port = daemons.write_config(database_url=dsn)
    config.write_text("# settings from the environment\n")
    daemon = daemons.spawn(config, port, {
        "TRIGGERD_DATABASE_URL": dsn, "TRIGGERD_HTTP_PORT": str(port),
        "TRIGGERD_HTTP_PROCESSES": "2", "TRIGGERD_DAEMON_STATE_DIR": str(tmp_path / "state"),
        "TRIGGERD_LOG_FORMAT": "json"})
    await daemon.wait_ready()
    await daemon.wait_for_event("http_worker_ready")
    config.write_text('[log]\nlevel = "info"\nformat = "json"\n')
    daemon.send(signal.SIGHUP)
    await daemon.wait_for_event("daemon_reloaded")
    await daemon.wait_for_event("http_worker_reloaded")
    config.write_text("")
    (first,) = worker_pids(daemon)
    os.kill(first, signal.SIGHUP)
    refused = await daemon.wait_for_event("http_worker_reload_refused")
    assert "the configuration file sets nothing" in refused["error"], refused
    os.kill(first, signal.SIGKILL)

    async def refused_at_start() -> bool:
        return any(e["returncode"] == 2 for e in daemon.events_named("http_worker_exited"))

    await wait_for(refused_at_start, timeout=20)
    assert len(daemon.events_named("http_worker_ready")) == 1


async def test_sighup_reaches_the_worker(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path, http={"max_body_bytes": 100_000})
    big = {"n": "x" * 2_000}
    answers = await send_each_on_a_new_connection(
        daemon, "POST", "/hooks/spread/plain", 12, json=big)
    assert {status for status, _ in answers} == {202}
    text = daemon.config.read_text().replace("max_body_bytes = 100000", "max_body_bytes = 1000")
    daemon.config.write_text(text)
    daemon.send(signal.SIGHUP)
    await daemon.wait_for_event("http_worker_reloaded")
    await daemon.wait_for_event("daemon_reloaded")
    answers = await send_each_on_a_new_connection(
        daemon, "POST", "/hooks/spread/plain", 12, json=big)
    assert {(status, body["error"]) for status, body in answers} == {(413, "payload_too_large")}


async def test_sigterm_stops_the_worker_too(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    (worker,) = worker_pids(daemon)
    assert await daemon.stop(signal.SIGTERM) == 0
    assert daemon.events_named("http_worker_stopped")
    assert not Path(f"/proc/{worker}").exists()


async def test_a_killed_daemon_takes_its_worker_along(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await start(daemons, dsn, tmp_path)
    (worker,) = worker_pids(daemon)
    daemon.kill()

    async def gone() -> bool:
        return not Path(f"/proc/{worker}").exists()

    await wait_for(gone, timeout=15)


async def test_port_held_by_another_process_still_fails_fast(
    daemons: Daemons, dsn: str
) -> None:
    """With SO_REUSEPORT a second process of this user could share the port silently; the
    daemon checks that the port is free first."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config, _ = daemons.write_config(database_url=dsn, port=port,
                                         sections={"http": {"processes": 2}})
        daemon = daemons.spawn(config, port)
        code = await asyncio.wait_for(daemon.wait_exit(timeout=60), 70)
    assert code != 0
    assert daemon.stderr_lines == [
        f"triggerd: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], daemon.stderr_lines

