"""systemd's notify protocol from the real daemon, read from a datagram socket the test
creates (issue 5 item 2), and SIGHUP reloads (issue 5 item 3)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import REPO_ROOT, DaemonProcess, Daemons, TomlValue
from tests.helpers import wait_for, wait_until_blocked


@dataclass(kw_only=True)
class NotifyListener:
    """An ``AF_UNIX``/``SOCK_DGRAM`` socket standing in for systemd: keeps every datagram,
    each as the list of its ``KEY=VALUE`` lines."""

    path: Path
    messages: list[list[str]] = field(default_factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.settimeout(0.1)
        self._sock = sock
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append(data.decode().split("\n"))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def snapshot(self) -> list[list[str]]:
        return list(self.messages)

    def indexes(self, line: str, after: int = -1) -> list[int]:
        return [i for i, m in enumerate(self.snapshot()) if line in m and i > after]

    async def wait_for(self, line: str, after: int = -1, count: int = 1,
                       timeout: float = 20.0) -> list[int]:
        """Indexes of the first ``count`` datagrams after index ``after`` holding ``line``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.indexes(line, after)
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} x {line!r} after #{after} not received within {timeout}s:"
                    f" {self.snapshot()}")
            await asyncio.sleep(0.02)


@pytest.fixture
def notify_socket() -> Iterator[NotifyListener]:
    # A short path of our own: AF_UNIX paths are limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="tdn-") as folder:
        listener = NotifyListener(path=Path(folder) / "notify.sock")
        listener.start()
        try:
            yield listener
        finally:
            listener.close()


def _value(message: list[str], key: str) -> str:
    values = [line.split("=", 1)[1] for line in message if line.startswith(f"{key}=")]
    assert len(values) == 1, message
    return values[0]


async def _start(daemons: Daemons, dsn: str, listener: NotifyListener,
                 watchdog_usec: int | None = 1_000_000) -> DaemonProcess:
    env = {"NOTIFY_SOCKET": str(listener.path)}
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return await daemons.start(database_url=dsn, env=env)


async def test_ready_watchdog_reload_stopping_in_order(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener
) -> None:
    daemon = await _start(daemons, dsn, notify_socket)

    [ready] = await notify_socket.wait_for("READY=1")
    messages = notify_socket.snapshot()
    # Nothing claims readiness before it; progress is reported as STATUS, and the start
    # asks for more time (below).
    assert all(m[0].startswith(("STATUS=", "EXTEND_TIMEOUT_USEC=")) for m in messages[:ready]
               ), messages[:ready]
    assert _value(messages[ready], "STATUS").endswith("runs in progress")
    # WATCHDOG_USEC=1s: a ping every 0.5s, from the running event loop.
    watchdogs = await notify_socket.wait_for("WATCHDOG=1", after=ready, count=2)

    daemon.send(signal.SIGHUP)
    [reloading] = await notify_socket.wait_for("RELOADING=1", after=watchdogs[-1])
    # MONOTONIC_USEC travels in the same datagram as RELOADING=1 (systemd requires it) and
    # is CLOCK_MONOTONIC, which this process shares with the daemon.
    sent = int(_value(notify_socket.snapshot()[reloading], "MONOTONIC_USEC"))
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 < now - sent < 60_000_000
    [ready_again] = await notify_socket.wait_for("READY=1", after=reloading)
    await daemon.wait_for_event("daemon_reloaded")
    status, _ = await daemon.get("/readyz")
    assert status == 200

    assert await daemon.stop(signal.SIGTERM) == 0
    [stopping] = await notify_socket.wait_for("STOPPING=1", after=ready_again, timeout=5)
    messages = notify_socket.snapshot()
    # Exactly one READY before the reload and one after it; nothing after STOPPING=1 but
    # at most a watchdog ping that was already on its way.
    assert notify_socket.indexes("READY=1") == [ready, ready_again]
    assert notify_socket.indexes("RELOADING=1") == [reloading]
    assert notify_socket.indexes("STOPPING=1") == [stopping]
    assert all("READY=1" not in m for m in messages[stopping + 1:])
    assert daemon.events_named("sd_notify_failed") == []


async def test_the_start_extends_systemds_start_timeout_until_ready(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener
) -> None:
    """TimeoutStartSec= (90 s by default) killed a start whose migrations took longer, and
    the restart began them again: the start asks for more time while it runs."""
    daemon = await _start(daemons, dsn, notify_socket)
    [ready] = await notify_socket.wait_for("READY=1")
    extensions = notify_socket.indexes("EXTEND_TIMEOUT_USEC=90000000")
    assert extensions and extensions[0] < ready, notify_socket.snapshot()
    # Once ready, no more: the running service is watched by the watchdog instead.
    watchdogs = await notify_socket.wait_for("WATCHDOG=1", after=ready, count=2)
    later = notify_socket.indexes("EXTEND_TIMEOUT_USEC=", after=ready)
    assert [i for i in later if i <= watchdogs[-1]] == [], notify_socket.snapshot()
    assert await daemon.stop(signal.SIGTERM) == 0


def _write_definitions(path: Path, name: str) -> None:
    path.write_text(json.dumps({"workflows": [{
        "key": "greet", "name": name,
        "graph": {"nodes": [{"id": "greet", "type": "noop"}]},
        "triggers": [{"name": "manual", "type": "manual"}],
    }]}), encoding="utf-8")


async def test_a_reload_extends_systemds_timeout_until_ready_again(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener, tmp_path: Path
) -> None:
    """systemd gives a reload TimeoutStartSec= too: a reload re-planning many triggers, or
    waiting for a slow database, was marked failed while it went on. Made slow here by
    another apply of the same workflow holding its row, as a replica's would."""
    definitions = tmp_path / "greet.json"
    _write_definitions(definitions, "first")
    config, port = daemons.write_config(
        database_url=dsn,
        sections={"daemon": {"definitions": [str(definitions)]}})
    daemon = daemons.spawn(config, port, {"NOTIFY_SOCKET": str(notify_socket.path),
                                          "WATCHDOG_USEC": "1000000"})
    await daemon.wait_ready()
    [ready] = await notify_socket.wait_for("READY=1")
    _write_definitions(definitions, "second")
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT FROM workflows WHERE key = 'greet' FOR UPDATE")
            daemon.send(signal.SIGHUP)
            [reloading] = await notify_socket.wait_for("RELOADING=1", after=ready)
            await wait_until_blocked(pool, "SELECT w.id")  # the reload's apply waits
            await notify_socket.wait_for("EXTEND_TIMEOUT_USEC=90000000", after=reloading)
            assert notify_socket.indexes("READY=1", after=reloading) == []
    finally:
        await pool.close()
    [ready_again] = await notify_socket.wait_for("READY=1", after=reloading)
    reloaded = await daemon.wait_for_event("daemon_reloaded")
    assert daemon.events_named("definitions_applied")[-1]["changed"], reloaded
    # Once ready again, no more: the extensions stopped with the reload.
    watchdogs = await notify_socket.wait_for("WATCHDOG=1", after=ready_again, count=2)
    later = notify_socket.indexes("EXTEND_TIMEOUT_USEC=", after=ready_again)
    assert [i for i in later if i <= watchdogs[-1]] == [], notify_socket.snapshot()
    assert await daemon.stop(signal.SIGTERM) == 0


async def test_sighup_with_invalid_config_keeps_running(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener
) -> None:
    daemon = await _start(daemons, dsn, notify_socket, watchdog_usec=None)
    [ready] = await notify_socket.wait_for("READY=1")
    good = daemon.config.read_text()
    assert 'poll_interval = "500ms"' in good
    daemon.config.write_text(good.replace('poll_interval = "500ms"', 'poll_interval = "soon"'))

    daemon.send(signal.SIGHUP)
    refused = await daemon.wait_for_event("reload_refused")
    assert refused["level"] == "error"
    assert refused["error"].startswith(
        f"{daemon.config}: executor.poll_interval: 'soon' is not a duration"), refused
    assert daemon.events_named("daemon_reloaded") == []
    # systemd is told the reload is over, or it would wait for READY=1 until it times out,
    # and its status says the reload was refused and why (it said "0 triggers, 0 runs in
    # progress", as after a reload that worked).
    [reloading] = await notify_socket.wait_for("RELOADING=1", after=ready)
    [over] = await notify_socket.wait_for("READY=1", after=reloading)
    assert _value(notify_socket.snapshot()[over], "STATUS") == (
        f"reload refused, old configuration kept: {refused['error']};"
        " 0 triggers, 0 runs in progress")

    assert await daemon.get("/healthz") == (200, {"status": "ok"})
    status, body = await daemon.get("/readyz")
    assert status == 200, body
    assert daemon.proc is not None and daemon.proc.poll() is None

    # Once the file is fixed, the next SIGHUP succeeds, and the status says so again.
    daemon.config.write_text(good)
    daemon.send(signal.SIGHUP)
    await daemon.wait_for_event("daemon_reloaded")
    [again] = await notify_socket.wait_for("RELOADING=1", after=over)
    [fixed] = await notify_socket.wait_for("READY=1", after=again)
    assert _value(notify_socket.snapshot()[fixed], "STATUS") == "0 triggers, 0 runs in progress"
    assert await daemon.stop(signal.SIGTERM) == 0
    assert len(daemon.events_named("reload_refused")) == 1


async def _next_status(listener: NotifyListener, after: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for message in listener.snapshot()[after + 1:]:
            if message[0].startswith("STATUS="):
                return _value(message, "STATUS")
        assert time.monotonic() < deadline, listener.snapshot()[after:]
        await asyncio.sleep(0.02)


def _write_hook_definitions(path: Path, node_type: str) -> None:
    path.write_text(json.dumps({"workflows": [{
        "key": "hooked", "name": "Hooked",
        "graph": {"nodes": [{"id": "only", "type": node_type}]},
        "triggers": [{"name": "in", "type": "webhook", "path": "hooked/in",
                      "methods": ["POST"], "auth": {"scheme": "none"}}],
    }]}), encoding="utf-8")


async def test_refused_reloads_keep_serving_and_their_status_names_the_problem(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener, tmp_path: Path
) -> None:
    """Definitions that fail `check`, a directory or a symbolic link loop in place of the
    configuration file, a truncated file: each reload is refused with one error line, the
    old configuration and definitions keep serving, and systemd's status names the problem
    until a reload succeeds (with a watchdog, its pings repeat the status)."""
    definitions = tmp_path / "hooked.json"
    _write_hook_definitions(definitions, "noop")
    config, port = daemons.write_config(
        database_url=dsn, sections={"daemon": {"definitions": [str(definitions)]}})
    daemon = daemons.spawn(config, port, {"NOTIFY_SOCKET": str(notify_socket.path),
                                          "WATCHDOG_USEC": "1000000"})
    await daemon.wait_ready()
    [last] = await notify_socket.wait_for("READY=1")
    good = config.read_text()
    moved = tmp_path / "moved.toml"

    def unknown_node() -> None:
        _write_hook_definitions(definitions, "nosuch")

    def directory() -> None:
        _write_hook_definitions(definitions, "noop")
        config.rename(moved)
        config.mkdir()

    def symlink_loop() -> None:
        config.rmdir()
        config.symlink_to(config.name)

    def truncated() -> None:
        config.unlink()
        config.write_text(good[:good.index('url = "') + 10])  # cut inside the URL

    def emptied() -> None:
        config.write_text("# being rewritten\n\n")  # valid TOML that sets nothing

    cases = [
        (unknown_node, f"1 problem in definitions: {definitions}: $.workflows[0].graph"
                       ".nodes[0].type: unknown node type 'nosuch' (known: "),
        (directory, f"{config}: cannot read configuration file: [Errno 21] Is a directory"),
        (symlink_loop, f"{config}: cannot read configuration file: [Errno 40] Too many"
                       " levels of symbolic links"),
        (truncated, f"{config}: invalid TOML: Unterminated string (at end of document)"),
        (emptied, f"{config}: the configuration file sets nothing (empty or comments only);"
                  " a reload keeps the settings in force: restart the daemon to run on the"
                  " defaults"),
    ]
    for number, (damage, expected) in enumerate(cases, start=1):
        damage()
        daemon.send(signal.SIGHUP)
        [reloading] = await notify_socket.wait_for("RELOADING=1", after=last)
        [last] = await notify_socket.wait_for("READY=1", after=reloading)

        async def logged(count: int = number) -> bool:
            # The log line is read from the daemon's stdout apart from the notify socket.
            return len(daemon.events_named("reload_refused")) >= count

        await wait_for(logged)
        refused = daemon.events_named("reload_refused")
        assert len(refused) == number, refused
        assert refused[-1]["level"] == "error"
        assert refused[-1]["error"].startswith(expected), (expected, refused[-1])
        status = _value(notify_socket.snapshot()[last], "STATUS")
        assert status.startswith(f"reload refused, old configuration kept: {expected}"), status
        assert re.fullmatch(r".*; 1 triggers, [01] runs in progress", status), status
        # The watchdog's pings repeat it (they said "1 triggers ..." alone a moment later).
        [ping] = await notify_socket.wait_for("WATCHDOG=1", after=last)
        repeated = await _next_status(notify_socket, after=ping)
        assert repeated.startswith(f"reload refused, old configuration kept: {expected}"), (
            repeated)
        # The webhook the old definitions route is still served.
        async with aiohttp.ClientSession() as session, session.post(
                f"{daemon.base_url}/hooks/hooked/in", json={"n": number}) as response:
            assert response.status == 202, await response.text()
    assert daemon.events_named("daemon_reloaded") == []

    config.unlink()
    moved.rename(config)
    daemon.send(signal.SIGHUP)
    [reloading] = await notify_socket.wait_for("RELOADING=1", after=last)
    [ready] = await notify_socket.wait_for("READY=1", after=reloading)
    assert _value(notify_socket.snapshot()[ready], "STATUS") == "1 triggers, 0 runs in progress"
    await daemon.wait_for_event("daemon_reloaded")
    assert await daemon.stop(signal.SIGTERM) == 0
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as pool:
        inputs = await pool.fetch("SELECT input FROM workflow_executions ORDER BY created_at")
    assert [json.loads(row["input"]) for row in inputs] == [{"n": n} for n in (1, 2, 3, 4, 5)]


async def test_notify_socket_pointing_nowhere_is_harmless(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dir" / "notify.sock"
    daemon = await daemons.start(
        database_url=dsn,
        env={"NOTIFY_SOCKET": str(missing), "WATCHDOG_USEC": "1000000"},
    )
    assert await daemon.get("/healthz") == (200, {"status": "ok"})
    # By now STATUS lines, READY=1 and a watchdog ping have gone nowhere.
    assert await daemon.stop(signal.SIGTERM) == 0
    failed = daemon.events_named("sd_notify_failed")
    # Logged once, not once per message.
    assert len(failed) == 1, failed
    assert (failed[0]["level"], failed[0]["socket"]) == ("warning", str(missing))
    assert not os.path.exists(missing)
    assert daemon.stderr_lines == []


async def test_a_sighup_while_starting_reloads_once_the_daemon_is_ready(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener
) -> None:
    # It reloaded parts that had not started, and the reload's READY=1 told systemd the
    # daemon was ready seconds before it was.
    config, port = daemons.write_config(database_url=dsn)
    daemon = daemons.spawn(config, port, {"NOTIFY_SOCKET": str(notify_socket.path)})
    [starting] = await notify_socket.wait_for("STATUS=starting: database")
    daemon.send(signal.SIGHUP)
    [ready] = await notify_socket.wait_for("READY=1", after=starting)
    await daemon.wait_ready()
    ready_event = await daemon.wait_for_event("daemon_ready")
    reloaded = await daemon.wait_for_event("daemon_reloaded")
    messages = notify_socket.snapshot()
    # The first READY=1 is the start's own, after every part started.
    assert notify_socket.indexes("STATUS=starting: components") < [ready]
    assert "RELOADING=1" not in [line for m in messages[:ready] for line in m]
    deferred = daemon.events_named("reload_deferred")
    if deferred:  # the usual case: the signal came while the start went on
        assert deferred[0]["msg"] == (
            "reload requested while starting: it runs once the daemon is ready")
    assert reloaded["ts"] >= ready_event["ts"]
    assert await daemon.stop(signal.SIGTERM) == 0


# Sends SIGHUP to its own process from inside ``triggerd run`` before its event loop
# exists: after the command line is read, while the configuration is.
_EARLY_SIGHUP = """\
import os, signal
import triggerd.cli

_load_settings = triggerd.cli.load_settings


def _load_after_a_sighup(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGHUP)
    return _load_settings(*args, **kwargs)


triggerd.cli.load_settings = _load_after_a_sighup
"""


async def _reloaded_once_ready(
    daemons: Daemons, dsn: str, tmp_path: Path, hook_source: str,
    sections: dict[str, dict[str, TomlValue]],
) -> DaemonProcess:
    """A daemon started with ``hook_source`` as its sitecustomize (it sends the SIGHUP),
    once it has started and then reloaded (not died)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_source)
    config, port = daemons.write_config(database_url=dsn, sections=sections)
    daemon = daemons.spawn(config, port, {
        "PYTHONPATH": os.pathsep.join([str(hook), str(REPO_ROOT)])})
    await daemon.wait_ready()
    ready = await daemon.wait_for_event("daemon_ready")
    reloaded = await daemon.wait_for_event("daemon_reloaded")
    assert reloaded["ts"] >= ready["ts"]
    return daemon


async def test_a_sighup_before_the_event_loop_is_a_reload_not_the_end(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    # SIGHUP's default action ended the process: `kill -HUP` sent in the start's first
    # half second (before the loop's handler) killed the daemon. The reload it makes once
    # ready is passed on to the extra HTTP process, which is still starting then (importing):
    # that killed it too.
    daemon = await _reloaded_once_ready(daemons, dsn, tmp_path, _EARLY_SIGHUP,
                                        {"http": {"processes": 2}})
    worker = await daemon.wait_for_event("http_worker_reloaded")
    assert worker["worker"] == 1
    assert await daemon.stop(signal.SIGTERM) == 0
    assert daemon.events_named("http_worker_exited") == []
    assert daemon.events_named("http_worker_failed") == []


# A SIGHUP while the command imports its modules (the first third of a second): sent the
# moment `triggerd.cli` starts to import, which the entry point does after deferring.
_SIGHUP_WHILE_IMPORTING = """\
import os, signal, sys


class _HangUpOnCli:
    def find_spec(self, name, path=None, target=None):
        if name == "triggerd.cli":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGHUP)
        return None


sys.meta_path.insert(0, _HangUpOnCli())
"""


async def test_a_sighup_while_the_command_imports_is_a_reload_not_the_end(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    # The deferral came after `import triggerd.cli` and its parser (about 0.35 s): a
    # SIGHUP before it ended the process with 129 and not a line logged.
    daemon = await _reloaded_once_ready(daemons, dsn, tmp_path, _SIGHUP_WHILE_IMPORTING, {})
    assert await daemon.stop(signal.SIGTERM) == 0


async def test_a_reload_applies_the_log_level(
    daemons: Daemons, dsn: str, notify_socket: NotifyListener
) -> None:
    # [log] level changed by a SIGHUP was ignored without a word (info lines went on).
    daemon = await _start(daemons, dsn, notify_socket, watchdog_usec=None)
    [ready] = await notify_socket.wait_for("READY=1")
    good = daemon.config.read_text()
    assert 'level = "info"' in good
    daemon.config.write_text(good.replace('level = "info"', 'level = "warning"'))
    daemon.send(signal.SIGHUP)
    [reloading] = await notify_socket.wait_for("RELOADING=1", after=ready)
    await notify_socket.wait_for("READY=1", after=reloading)
    # The reload's own info line is already below the new level; a warning still shows.
    daemon.config.write_text(good.replace('level = "info"', 'level = "loud"'))
    daemon.send(signal.SIGHUP)
    refused = await daemon.wait_for_event("reload_refused")
    assert refused["level"] == "error"
    assert daemon.events_named("daemon_reloaded") == []
    assert await daemon.stop(signal.SIGTERM) == 0
    assert daemon.events_named("daemon_stopping") == []  # an info line
