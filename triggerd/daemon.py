"""Wiring of the parts: database, definitions, HTTP, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
from aiohttp import web

from triggerd import db
from triggerd.api import health
from triggerd.appkeys import POOL, READINESS_CHECKS, SETTINGS, ReadinessCheck
from triggerd.config import Settings
from triggerd.definitions import load_files
from triggerd.errors import TriggerdError
from triggerd.store.workflows import apply_workflows

logger = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running part of the daemon (scheduler, executor, ...)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def create_app(settings: Settings, pool: asyncpg.Pool) -> web.Application:
    app = web.Application(client_max_size=settings.http.max_body_bytes)
    app[SETTINGS] = settings
    app[POOL] = pool
    app[READINESS_CHECKS] = {}
    health.add_routes(app)
    return app


@dataclass(kw_only=True)
class Daemon:
    settings: Settings
    components: list[Component] = field(default_factory=list)
    pool: asyncpg.Pool | None = None
    runner: web.AppRunner | None = None
    app: web.Application | None = None
    dsn: str = ""
    executor: Any = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def apply_definitions(self, pool: asyncpg.Pool) -> None:
        files = list(self.settings.daemon.definitions)
        if not files:
            return
        specs = load_files(files)
        async with pool.acquire() as conn:
            report = await apply_workflows(conn, specs)
        logger.info(
            "definitions applied",
            extra={"event": "definitions_applied", "files": files, "changed": report.changed,
                   "summary": report.lines},
        )

    async def start(self) -> None:
        started = time.monotonic()
        dsn = await db.resolve_dsn(self.settings)
        report = await db.migrate(dsn)
        self.pool = await db.create_pool(
            dsn, min_size=self.settings.database.pool_min, max_size=self.settings.database.pool_max
        )
        await self.apply_definitions(self.pool)
        self.app = create_app(self.settings, self.pool)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            self.settings.http.host,
            self.settings.http.port,
            reuse_address=True,
        )
        try:
            await site.start()
        except OSError as exc:
            raise TriggerdError(
                f"cannot listen on {self.settings.http.host}:{self.settings.http.port}: {exc.strerror}"
            ) from None
        self.dsn = dsn
        self.build_components(dsn)
        for component in self.components:
            await component.start()
            check = getattr(component, "readiness", None)
            if check is not None:
                self.add_readiness_check(component.name, check)
        logger.info(
            "triggerd ready",
            extra={
                "event": "daemon_ready",
                "listen": f"{self.settings.http.host}:{self.settings.http.port}",
                "database": db.redact_dsn(dsn),
                "migrations_applied": list(report.applied),
                "startup_ms": round((time.monotonic() - started) * 1000, 1),
                "pid": os.getpid(),
            },
        )

    def build_components(self, dsn: str) -> None:
        """The long-running parts, in start order (stopped in reverse)."""
        from triggerd.executor.service import Executor

        assert self.pool is not None and self.app is not None
        self.executor = Executor(pool=self.pool, dsn=dsn, settings=self.settings)
        self.components = [self.executor]

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        assert self.app is not None
        self.app[READINESS_CHECKS][name] = check

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                await component.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.pool is not None:
            await self.pool.close()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            await self._stop.wait()
            logger.info("stopping", extra={"event": "daemon_stopping"})
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        logger.info("stopped", extra={"event": "daemon_stopped"})


def hostname_owner() -> str:
    """A lease owner id that names this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_daemon(settings: Settings) -> None:
    daemon = Daemon(settings=settings)
    await daemon.serve()
