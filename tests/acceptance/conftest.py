"""Acceptance fixtures: the real ``triggerd`` process, driven over HTTP, signals and its
command line.

:class:`DaemonProcess` runs ``python -m triggerd --config FILE run`` with a configuration
written for the test (a free port, the per-test database from ``dsn`` or the embedded
server under a temporary ``state_dir``), waits until ``/readyz`` answers 200, and keeps
every stdout line (the daemon logs JSON lines there). The ``daemons`` fixture starts them
and kills whatever is still running at teardown, so a failing test never leaves a process
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import pytest

from tests import external_pg
from tests.external_pg import Endpoint
from tests.helpers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

# Variables of the test's own environment that would change the daemon's behaviour.
_SCRUBBED_PREFIXES = ("TRIGGERD_",)
_SCRUBBED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY",
             "CREDENTIALS_DIRECTORY")

TomlValue = str | int | bool | Sequence[str]


def toml_document(sections: Mapping[str, Mapping[str, TomlValue]]) -> str:
    """A TOML file from plain values (strings, integers, booleans, lists of strings)."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(json.dumps(v) for v in value) + "]"


def daemon_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if k not in _SCRUBBED and not k.startswith(_SCRUBBED_PREFIXES)
    }
    # Import triggerd from this checkout whatever the working directory is.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True, kw_only=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_cli(config: Path, *args: str, env: Mapping[str, str] | None = None,
                  timeout: float = 60.0) -> CliResult:
    """Run ``triggerd --config CONFIG ARGS...`` to completion (in a thread, so the test's
    event loop keeps serving)."""

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerd", "--config", str(config), *args],
            capture_output=True, text=True, timeout=timeout, env=daemon_environment(env),
            cwd=config.parent, check=False,
        )

    done = await asyncio.to_thread(call)
    return CliResult(returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)


def _pump(stream: TextIO, sink: list[str]) -> None:
    with stream:
        for line in stream:
            sink.append(line.rstrip("\n"))


@dataclass(kw_only=True)
class DaemonProcess:
    """One ``triggerd run`` subprocess."""

    config: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    embedded_state: Path | None = None  # the state_dir when it runs the embedded server
    cwd: Path | None = None  # working directory; default: the configuration file's
    proc: subprocess.Popen[str] | None = None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    started_at: float = 0.0
    ready_after: float | None = None  # seconds from spawn to the first /readyz 200
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triggerd", "--config", str(self.config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=daemon_environment(self.env), cwd=self.cwd or self.config.parent,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for stream, sink in ((self.proc.stdout, self.stdout_lines),
                             (self.proc.stderr, self.stderr_lines)):
            thread = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- output ----------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """The stdout lines, parsed; a line that is not a JSON object fails the test."""
        parsed = []
        for line in list(self.stdout_lines):
            doc = json.loads(line)
            assert isinstance(doc, dict), line
            parsed.append(doc)
        return parsed

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == name]

    async def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events_named(name)
            if found:
                return found[0]
            self._fail_if_exited(f"waiting for event {name!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name!r} event within {timeout}s; {self.describe()}")
            await asyncio.sleep(0.05)

    def describe(self) -> str:
        tail_out = "\n".join(self.stdout_lines[-20:])
        tail_err = "\n".join(self.stderr_lines[-20:])
        code = None if self.proc is None else self.proc.poll()
        return f"exit={code}\n--- stdout ---\n{tail_out}\n--- stderr ---\n{tail_err}"

    def _fail_if_exited(self, doing: str) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            self._join_output()
            raise AssertionError(f"triggerd exited while {doing}; {self.describe()}")

    # -- HTTP ----------------------------------------------------------------------------

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.get(
            self.base_url + path, timeout=aiohttp.ClientTimeout(total=5)
        ) as response:
            text = await response.text()
            try:
                body: Any = json.loads(text)
            except ValueError:
                body = text
            return response.status, body

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._fail_if_exited("waiting for /readyz")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                status, _ = await self.get("/readyz")
                if status == 200:
                    self.ready_after = time.monotonic() - self.started_at
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"/readyz not 200 within {timeout}s; {self.describe()}")
            await asyncio.sleep(0.1)

    # -- signals and exit ---------------------------------------------------------------

    def send(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit status, waiting at most ``timeout`` seconds (a bound, not a speed
        assertion); all output has been read when this returns."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"triggerd still running after {timeout}s; "
                                     f"{self.describe()}")
            await asyncio.sleep(0.05)
        self._join_output()
        return self.proc.returncode

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.send(sig)
        return await self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._join_output()

    def _join_output(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)


@dataclass(kw_only=True)
class Daemons:
    """Starts daemons for one test; :meth:`cleanup` kills what is left."""

    tmp_path: Path
    started: list[DaemonProcess] = field(default_factory=list)
    configs: dict[Path, Path | None] = field(default_factory=dict)  # config -> embedded state
    # systemd's RuntimeDirectory stand-in: a killed daemon (the cleanup's SIGKILL) leaves its
    # [http] processes socket folder behind, which would pile up in /tmp run after run. Short,
    # for the 108-byte limit of a Unix socket's path.
    runtime_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="td-run-")))

    def write_config(
        self,
        *,
        database_url: str | None,
        port: int | None = None,
        name: str | None = None,
        state_dir: Path | None = None,
        sections: Mapping[str, Mapping[str, TomlValue]] | None = None,
    ) -> tuple[Path, int]:
        """A configuration file for one daemon; ``database_url=None`` means embedded."""
        name = name or f"daemon{len(self.configs)}"
        port = free_port() if port is None else port
        state_dir = state_dir or self.tmp_path / f"{name}-state"
        merged: dict[str, dict[str, TomlValue]] = {
            "database": {"url": database_url or "", "pool_min": 1, "pool_max": 5},
            "http": {"host": "127.0.0.1", "port": port},
            "executor": {"poll_interval": "500ms", "drain": "2s"},
            "daemon": {"state_dir": str(state_dir)},
            "log": {"level": "info", "format": "json"},
        }
        for section, values in (sections or {}).items():
            merged.setdefault(section, {}).update(values)
        path = self.tmp_path / f"{name}.toml"
        path.write_text(toml_document(merged), encoding="utf-8")
        self.configs[path] = None if database_url else state_dir
        return path, port

    def spawn(self, config: Path, port: int, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> DaemonProcess:
        daemon = DaemonProcess(config=config, port=port,
                               env={"RUNTIME_DIRECTORY": str(self.runtime_dir), **(env or {})},
                               embedded_state=self.configs.get(config), cwd=cwd)
        self.started.append(daemon)
        daemon.spawn()
        return daemon

    async def start(
        self,
        *,
        database_url: str | None,
        sections: Mapping[str, Mapping[str, TomlValue]] | None = None,
        env: Mapping[str, str] | None = None,
        state_dir: Path | None = None,
        name: str | None = None,
        ready_timeout: float = 30.0,
    ) -> DaemonProcess:
        """Write a configuration, start the daemon and wait until it is ready."""
        config, port = self.write_config(database_url=database_url, sections=sections,
                                         state_dir=state_dir, name=name)
        daemon = self.spawn(config, port, env)
        await daemon.wait_ready(ready_timeout)
        await daemon.wait_for_event("daemon_ready", timeout=5.0)
        return daemon

    def cleanup(self) -> None:
        """Kill every daemon still running; stop an embedded PostgreSQL a killed daemon left
        behind (a daemon that exits normally stops it itself)."""
        for daemon in self.started:
            if daemon.proc is None:
                continue
            if daemon.proc.poll() is None:
                daemon.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.proc.wait(timeout=10)
            daemon._join_output()
        for state_dir in {d.embedded_state for d in self.started if d.embedded_state}:
            _stop_orphaned_postgres(state_dir / "postgres")
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def _stop_orphaned_postgres(pgdata: Path) -> None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.1)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    manager = Daemons(tmp_path=tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def embedded_state_dir(daemons: Daemons) -> Iterator[Path]:
    """A state directory outside pytest's base temp: as root, the embedded server runs as
    the ``pgserver`` user, which must traverse every parent, and a concurrent pytest session
    resets ``/tmp/pytest-of-<user>`` to mode 0700."""
    with tempfile.TemporaryDirectory(prefix="triggerd-acc-") as name:
        yield Path(name) / "state"
        daemons.cleanup()  # before the directory goes: no server left on it


# --- an external PostgreSQL and PgBouncer (tests/external_pg.py), one each per session ----


@pytest.fixture(scope="session")
def external_postgres() -> Iterator[Endpoint]:
    """Debian's PostgreSQL started by the test itself (skips when it cannot be had)."""
    reason = external_pg.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    # fsync off: the machine is shared, and no test here kills the server.
    with external_pg.postgres_server({"fsync": "off"}) as server:
        yield server


@pytest.fixture(scope="session")
def external_pgbouncer(external_postgres: Endpoint) -> Iterator[Endpoint]:
    """PgBouncer in transaction pooling mode in front of ``external_postgres``, with fewer
    server connections than the daemons' pools hold, so transactions really share them."""
    with external_pg.pgbouncer(external_postgres, pool_mode="transaction", pool_size=4) as bouncer:
        yield bouncer
