"""The main process's side of [http] processes > 1: it starts the extra HTTP processes
(:mod:`triggerd.serving.worker`) on its listening socket, restarts one that dies, passes
SIGHUP on, stops them first on SIGTERM, and adds what they report to its metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from triggerd.component import BaseComponent
from triggerd.config import Settings
from triggerd.serving.worker import (
    ENV_CONFIG,
    ENV_CONFIG_BLANK,
    ENV_INDEX,
    ENV_POOL_MAX,
    ENV_PORT,
    ENV_REPORT_FD,
    ENV_RUNS,
    ENV_UPSTREAM,
)
from triggerd.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# A worker's stop past its runs' [executor] drain: its requests in progress (10 s), the
# hand-back and last writes of its runs (6 s), storing what it accepted, and a margin.
STOP_TIMEOUT = 30.0
REPORT_LINE_LIMIT = 64 * 1024 * 1024


@dataclass(kw_only=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    reload_pending: bool = False  # a SIGHUP waits for its ready report
    starts: int = 0


@dataclass(kw_only=True)
class HttpWorkers(BaseComponent):
    """A daemon component: ``settings.http.processes - 1`` worker processes."""

    settings: Settings
    port: int  # the port the daemon listens on (the workers too, SO_REUSEPORT)
    upstream: str  # the main process's Unix socket
    dsn: str
    metrics: Any = None  # triggerd.api.metrics.Metrics
    # The workers run the runs they store (as the main process does) only in a daemon
    # that runs an executor.
    runs: bool = True
    # Each worker's pool (triggerd.connections.worker_pool_max).
    pool_max: int = 10
    restart_delay: float = 1.0
    name: str = "http-workers"
    _workers: list[_Worker] = field(default_factory=list)
    # Whether the settings in force came from a file that sets nothing (worker.ENV_CONFIG_BLANK).
    _source_blank: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._source_blank = self.settings.source_blank
        self._workers = [_Worker(index=i) for i in range(1, self.settings.http.processes)]
        self._tasks = [
            asyncio.create_task(self._supervise(w), name=f"http-worker-{w.index}")
            for w in self._workers
        ]

    def apply_settings(self, settings: Settings) -> None:
        # Only this: the rest of a worker's settings it reads from the file itself, and
        # the number of processes changes at a restart.
        self._source_blank = settings.source_blank

    async def reload(self) -> None:
        """Pass SIGHUP on: each worker re-reads the configuration and its routes. A worker
        still starting gets it once it is ready: before its event loop takes SIGHUP over,
        the signal's default action would end it (it may have read the configuration
        before the change, so the reload is not dropped either)."""
        for worker in self._workers:
            if worker.ready:
                self._signal(worker, signal.SIGHUP)
            else:
                worker.reload_pending = True

    async def stop(self) -> None:
        """SIGTERM to every worker, then wait: each stores what it accepted and exits."""
        self._stopping.set()
        for worker in self._workers:
            self._signal(worker, signal.SIGTERM)
        for worker in self._workers:
            process = worker.process
            if process is None or process.returncode is not None:
                continue
            try:
                await asyncio.wait_for(process.wait(), self.stop_timeout)
            except TimeoutError:
                logger.error("http worker did not stop; killing it",
                             extra={"event": "http_worker_killed", "worker": worker.index})
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        await cancel_and_wait(self._tasks)

    @property
    def stop_timeout(self) -> float:
        """How long a worker's stop may take: its requests in progress, then its runs'
        [executor] drain and their hand-back (serving/worker.py), and a margin."""
        return STOP_TIMEOUT + self.settings.executor.drain.total_seconds()

    async def readiness(self) -> str | None:
        for worker in self._workers:
            if not worker.ready:
                return f"http worker {worker.index} is not serving"
        return None

    def _signal(self, worker: _Worker, sig: signal.Signals) -> None:
        process = worker.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    async def _supervise(self, worker: _Worker) -> None:
        while True:
            try:
                code: int | None = await self._run(worker)
            except Exception:
                logger.exception("http worker failed",
                                 extra={"event": "http_worker_failed", "worker": worker.index})
                code = await self._end(worker)  # never two processes for one worker
            if self._stopping.is_set():
                return
            logger.error(
                "http worker exited; starting it again",
                extra={"event": "http_worker_exited", "worker": worker.index,
                       "returncode": code},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.restart_delay)
            if self._stopping.is_set():
                return

    async def _run(self, worker: _Worker) -> int:
        read_fd, write_fd = os.pipe()
        try:
            env = {
                **os.environ,
                ENV_PORT: str(self.port),
                ENV_REPORT_FD: str(write_fd),
                ENV_UPSTREAM: self.upstream,
                ENV_INDEX: str(worker.index),
                ENV_RUNS: "1" if self.runs else "0",
                ENV_POOL_MAX: str(self.pool_max),
                ENV_CONFIG: self.settings.source or "",
                ENV_CONFIG_BLANK: "1" if self._source_blank else "0",
                # The database the main process resolved (the embedded one included).
                "TRIGGERD_DATABASE_URL": self.dsn,
            }
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "triggerd.serving.worker",
                pass_fds=(write_fd,), env=env,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        worker.process = process
        worker.starts += 1
        if self._stopping.is_set():  # stop() began while it was being started
            self._signal(worker, signal.SIGTERM)
        try:
            await self._read_reports(worker, read_fd)
        finally:
            worker.ready = False
        return await process.wait()

    async def _read_reports(self, worker: _Worker, read_fd: int) -> None:
        """Until the worker closes its end of the pipe (it exited)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=REPORT_LINE_LIMIT)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        try:
            while line := await reader.readline():
                try:
                    report = json.loads(line)
                except ValueError:
                    logger.error("unreadable report from an http worker",
                                 extra={"event": "http_worker_bad_report",
                                        "worker": worker.index})
                    continue
                self._apply(worker, report)
        finally:
            transport.close()

    async def _end(self, worker: _Worker) -> int | None:
        """Kill the worker's process if it still runs; its exit code."""
        process = worker.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        return await process.wait()

    def _apply(self, worker: _Worker, report: dict[str, Any]) -> None:
        if report.get("ready"):
            worker.ready = True
            if worker.reload_pending:
                worker.reload_pending = False
                self._signal(worker, signal.SIGHUP)
            return
        if self.metrics is None:
            return
        for trigger, status, seconds in report.get("answers", ()):
            self.metrics.webhook_requests_answered(worker.index, trigger, status, seconds)
        for _ in range(int(report.get("backpressure", 0))):
            self.metrics.backpressure()
        for trigger, count in report.get("filtered", {}).items():
            self.metrics.webhook_filtered_requests(trigger, int(count))
        for trigger, index, count in report.get("secrets", ()):
            self.metrics.webhook_secret(trigger, index, count)
        for workflow, status, tenant, ended in report.get("executions", ()):
            for seconds in ended:
                self.metrics.execution_finished(workflow, status, seconds, tenant)
        for node_type, ended in report.get("nodes", ()):
            for seconds in ended:
                self.metrics.node_finished(node_type, seconds)
