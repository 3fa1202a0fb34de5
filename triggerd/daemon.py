"""Wiring of the parts: database, definitions, HTTP, components, signals, systemd notify and
graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from triggerd import db
from triggerd.api import health
from triggerd.api.admin import add_admin_routes
from triggerd.api.auth import API_AUTH, StoredTokens, create_initial_token
from triggerd.api.metrics import METRICS, LoopLagMonitor, add_metrics_routes
from triggerd.appkeys import (
    FATAL,
    OWN_PORTS,
    POOL,
    READINESS_CHECKS,
    SCHEDULER_LAG,
    SETTINGS,
    LiveSettings,
    ReadinessCheck,
)
from triggerd.component import Component
from triggerd.config import Settings, load_settings
from triggerd.connections import (
    ServerSlots,
    connections_needed,
    shortfall,
    worker_pool_max,
)
from triggerd.console import TRUSTED_PROXIES, add_console_routes
from triggerd.errors import DatabaseUnavailable, TriggerdError
from triggerd.logs import apply_log_settings
from triggerd.notifications.hub import NotificationHub
from triggerd.operations.apply import apply_files
from triggerd.runtime import take_early_reload
from triggerd.sdnotify import Notifier
from triggerd.serving.drain import RequestDrain
from triggerd.serving.internal_errors import internal_errors
from triggerd.serving.sockets import app_runner, open_listener, set_body_limit
from triggerd.store import diagnostics
from triggerd.tasks import Coalesced

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, pool: asyncpg.Pool, *, tokens: StoredTokens | None = None
) -> web.Application:
    """The one aiohttp application. ``tokens``: the named admin API tokens that open
    ``/api/v1`` besides ``[api] token`` (the daemon passes them; None: only that one)."""
    # internal_errors first: a crash anywhere below it is a JSON 500 (the console's own
    # middleware answers its pages' crashes with a page).
    app = web.Application(client_max_size=settings.http.max_body_bytes,
                          middlewares=[internal_errors])
    app[SETTINGS] = LiveSettings(settings)
    app[POOL] = pool
    app[READINESS_CHECKS] = {}
    app[FATAL] = []
    health.add_routes(app)
    add_metrics_routes(app)  # app[METRICS], GET /metrics
    add_admin_routes(app, tokens=tokens)  # app[API_AUTH], /api/v1 and its middleware
    add_console_routes(app)  # /ui/, after the admin API (it reads app[API_AUTH])
    return app


# An apply that lost a race with another replica's (the same new workflow or trigger):
# tried again this many times in all.
APPLY_ATTEMPTS = 3
# Seconds a stop waits for the pool's connections to come back before closing them.
POOL_CLOSE_TIMEOUT = 3.0
APPLY_COLLISIONS = (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError,
                    asyncpg.SerializationError)
# The longest reason of a refused reload that STATUS= carries (the log line has it all).
STATUS_REASON_CHARS = 300
# Settings that only take effect after a restart.
# [executor] and [scheduler] are read by their loops when they start (a reload that changed
# them said nothing).
_RESTART_ONLY = ("database", "http.host", "http.port", "http.processes", "daemon.state_dir",
                 "executor", "scheduler", "metrics.label_limit")


@dataclass(kw_only=True)
class Daemon:
    settings: Settings
    components: list[Component] = field(default_factory=list)
    pool: asyncpg.Pool | None = None
    runner: web.AppRunner | None = None
    site: web.BaseSite | None = None
    app: web.Application | None = None
    dsn: str = ""
    executor: Any = None
    # The process's one LISTEN connection, shared by the components.
    hub: NotificationHub | None = None
    notifier: Notifier = field(default_factory=Notifier)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _serving: bool = False  # start() finished: a SIGHUP reloads at once
    _reload_pending: bool = False  # a SIGHUP came while starting
    _drain: RequestDrain = field(default_factory=RequestDrain)
    _background: list[asyncio.Task[Any]] = field(default_factory=list)
    _reloads: Coalesced = field(init=False)
    _listen_port: int = 0
    # The settings it started with: the restart-only keys in force.
    _started_with: Settings | None = None
    # [http] processes > 1: the private directory of the Unix socket the workers forward
    # requests to.
    _worker_dir: str | None = None
    # Their pools' size, once the server's slots were read (None: [database] pool_max).
    _worker_pool_max: int | None = None
    # Set when the daemon cannot go on (the embedded server is lost): it stops and exits
    # non-zero so its supervisor restarts it.
    _fatal: str | None = None
    _watchdog: asyncio.Task[None] | None = None
    # The components whose start() ran, in start order: a stop while starting stops only
    # those.
    _running: list[Component] = field(default_factory=list)
    # Why the last reload was refused (None: it succeeded, or none came yet): STATUS= says
    # so until a reload succeeds, or `systemctl status` showed the refused reload as fine.
    _reload_refused: str | None = None

    def __post_init__(self) -> None:
        # SIGHUPs while a reload runs make one more reload after it (they read the same
        # files), not one each.
        self._reloads = Coalesced(self.reload, name="triggerd-reload")

    async def apply_definitions(self, settings: Settings) -> None:
        files = list(settings.daemon.definitions)
        if not files or self.pool is None:
            return
        # Reading and checking a large file takes seconds: apply_files does it in a thread,
        # so the loop keeps serving webhooks and firing schedules meanwhile (start and reload).
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                report = await apply_files(self.pool, files, settings=settings)
                break
            except APPLY_COLLISIONS as exc:
                # Replicas reloaded by one deploy apply the same new workflow at once: the
                # loser's transaction rolled back whole, and a second look finds it there.
                if attempt == APPLY_ATTEMPTS:
                    raise
                logger.warning("definitions collided with another replica's apply; again",
                               extra={"event": "definitions_apply_retry", "attempt": attempt,
                                      "error": f"{type(exc).__name__}: {exc}"[:300]})
                await asyncio.sleep(random.uniform(0.1, 0.5) * attempt)
        logger.info(
            "definitions applied",
            extra={
                "event": "definitions_applied",
                "files": files,
                "changed": report.changed,
                "summary": [line for line in report.lines if not line.endswith("unchanged")],
            },
        )

    async def ensure_api_token(self) -> None:
        """First start without any admin token ([api] token, credential or stored): make
        one, so the admin API is usable at once, and say where it is (never what)."""
        assert self.app is not None and self.pool is not None
        if self.app[API_AUTH].source != "none":
            return
        path = await create_initial_token(self.pool, self.settings.state_dir)
        if path is not None:
            logger.warning(
                f"created the admin API token 'initial' in {path} (mode 0600): send it as"
                " 'Authorization: Bearer <token>'; manage tokens with 'triggerd token'",
                extra={"event": "api_token_created", "path": str(path), "token_name": "initial"},
            )

    def bind(self) -> socket.socket:
        """Take the HTTP port before anything else, so a port in use fails fast; requests
        are served only once every part has started."""
        http = self.settings.http
        return open_listener(http.host, http.port, reuse_port=http.processes > 1)

    async def start(self) -> None:
        started = time.monotonic()
        self._started_with = self.settings
        listener = self.bind()
        # The workers listen on the port actually taken (port 0 picks one).
        self._listen_port = int(listener.getsockname()[1])
        self.notifier.status("starting: database")
        dsn = await db.resolve_dsn(self.settings)
        # LISTEN and the migrations' advisory lock need a session: never through PgBouncer.
        direct = db.direct_dsn(self.settings, dsn)
        if self.settings.database.migrate:
            report = await db.migrate(direct)
        else:  # migrations are an operator's step (`triggerd migrate`); refuse an older schema
            await db.check_schema(direct)
            report = db.MigrationReport(applied=(), current=0)
        self.pool = await db.create_pool(
            dsn, min_size=self.settings.database.pool_min, max_size=self.settings.database.pool_max,
            pgbouncer=self.settings.database.behind_pgbouncer,
        )
        self.dsn = direct
        if not self.settings.database.behind_pgbouncer:
            await self.warn_of_connection_shortfall()
        self.notifier.status("starting: definitions")
        await self.apply_definitions(self.settings)
        self.app = create_app(self.settings, self.pool, tokens=StoredTokens(self.pool))
        self.app.middlewares.insert(0, self._drain.middleware)
        await self.ensure_api_token()
        self.build_components(direct)
        self.notifier.status("starting: components")
        for component in self.components:
            await component.start()
            self._running.append(component)
            self.add_readiness_check(component.name, component.readiness)
        self.runner = app_runner(self.app)
        await self.runner.setup()
        self.site = web.SockSite(self.runner, listener)
        await self.site.start()
        if self.settings.http.processes > 1:
            await self.start_http_workers(dsn)
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

    async def warn_of_connection_shortfall(self) -> None:
        """Log when the pool (and the HTTP workers' pools) may need more connections than
        the server has free: under load they would fail with "too many clients"."""
        assert self.pool is not None
        try:
            async with self.pool.acquire() as conn:
                limit, reserved, in_use = await diagnostics.connection_slots(conn)
        except asyncpg.PostgresError:
            return  # a role that may not read the settings: nothing to say
        slots = ServerSlots(max_connections=limit, reserved=reserved, in_use=in_use)
        # The extra processes' pools share what the server takes (the embedded server's
        # max_connections is PostgreSQL's default: the daemon sets none).
        self._worker_pool_max = worker_pool_max(self.settings, slots.available)
        needed = connections_needed(self.settings, slots.available)
        problem = shortfall(needed, slots, own=self.pool.get_size())
        if problem is not None:
            logger.warning(
                "database connections may run short: %s", problem,
                extra={"event": "database_connections_short", "needed": needed,
                       "max_connections": limit, "reserved": reserved, "in_use": in_use,
                       "fix": "lower [database] pool_max (or [http] processes), raise the"
                              " server's max_connections, or put PgBouncer in front"},
            )

    async def start_http_workers(self, dsn: str) -> None:
        """[http] processes > 1: serve the app on a Unix socket only this user can open
        (the workers forward what they do not answer themselves), then start them."""
        from triggerd.serving.workers import HttpWorkers

        assert self.runner is not None and self.app is not None
        self._worker_dir = tempfile.mkdtemp(
            prefix="triggerd-http-", dir=os.environ.get("RUNTIME_DIRECTORY") or None
        )
        path = os.path.join(self._worker_dir, "main.sock")
        await web.UnixSite(self.runner, path).start()
        os.chmod(path, 0o600)
        workers = HttpWorkers(
            settings=self.settings, port=self._listen_port, upstream=path, dsn=dsn,
            metrics=self.app[METRICS], runs=self.executor is not None,
            pool_max=self._worker_pool_max or worker_pool_max(self.settings),
        )
        await workers.start()
        self.components.append(workers)
        self._running.append(workers)  # stopped first
        self.add_readiness_check(workers.name, workers.readiness)

    def build_components(self, dsn: str) -> None:
        """The long-running parts, in start order (stopped in reverse)."""
        from triggerd.executor.service import Executor
        from triggerd.scheduler import CronScheduler
        from triggerd.webhooks.ingress import setup_webhooks

        assert self.pool is not None and self.app is not None
        self.hub = hub = NotificationHub(dsn=dsn)
        self.app[OWN_PORTS] = frozenset({self._listen_port})
        self.executor = Executor(
            pool=self.pool, dsn=dsn, settings=self.settings, metrics=self.app[METRICS],
            own_ports=frozenset({self._listen_port}), hub=hub,
        )
        # First, so it also sees the loop held while the other parts start; then the hub,
        # which the others subscribe to (stopped after them).
        self.components = [LoopLagMonitor(self.app[METRICS]), hub, self.executor]
        scheduler = CronScheduler(pool=self.pool, dsn=dsn, settings=self.settings, hub=hub)
        scheduler.metrics = self.app[METRICS]
        oldest_owed = self.app[METRICS].oldest_owed_slot
        self.app[METRICS].add_scrape_hook(
            lambda: oldest_owed.set(scheduler.oldest_owed_seconds())
        )
        self.app[SCHEDULER_LAG] = scheduler.oldest_owed_seconds
        listening = self.app[METRICS].notifications_connected
        self.app[METRICS].add_scrape_hook(lambda: listening.set(1 if hub.connected else 0))
        ingress = setup_webhooks(
            self.app, pool=self.pool, dsn=dsn, settings=self.settings, hub=hub,
            runs_here=self.executor,
        )
        ingress.stats.sink = self.app[METRICS]
        from triggerd.backfill import BackfillRunner
        from triggerd.table_statistics import TableStatisticsKeeper

        self.components += [
            scheduler, ingress, BackfillRunner(self.pool), TableStatisticsKeeper(pool=self.pool)
        ]
        if not self.settings.database.url:
            from triggerd.embedded import EmbeddedServerWatch

            watch = EmbeddedServerWatch(
                state_dir=self.settings.state_dir, dsn=dsn, on_lost=self.lose
            )
            self.components.insert(0, watch)  # started first, stopped last

    def lose(self, problem: str) -> None:
        """The daemon cannot go on: fail liveness, stop the watchdog pings, exit non-zero."""
        logger.critical(problem, extra={"event": "daemon_failing", "error": problem})
        self._fatal = problem
        if self.app is not None:
            self.app[FATAL].append(problem)
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.request_stop()

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        assert self.app is not None
        self.app[READINESS_CHECKS][name] = check

    def status_line(self) -> str:
        running = self.executor.in_progress if self.executor is not None else 0
        triggers = sum(component.trigger_count for component in self.components)
        counts = f"{triggers} triggers, {running} runs in progress"
        if self._reload_refused is None:
            return counts
        return f"reload refused, old configuration kept: {self._reload_refused}; {counts}"

    def refuse_reload(self, msg: str, error: str, **fields: Any) -> bool:
        """Log a refused reload as one line and keep its reason for STATUS=."""
        logger.error(msg, extra={"event": "reload_refused", "error": error, **fields})
        # One line: a STATUS= value ends at the datagram's newline.
        reason = " ".join(error.split())
        self._reload_refused = reason if len(reason) <= STATUS_REASON_CHARS else (
            reason[:STATUS_REASON_CHARS - 3] + "...")
        return False

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if not self._serving:
            # SIGHUP while starting: reloading parts not started yet (and READY=1 from the
            # reload's end) came before the daemon was ready. It runs once the daemon is.
            self._reload_pending = True
            logger.info("reload requested while starting: it runs once the daemon is ready",
                        extra={"event": "reload_deferred"})
            return
        self._reloads.request()

    async def reload(self) -> bool:
        """SIGHUP: re-read configuration and definitions, reconcile triggers, swap routes.
        A configuration or definition that no longer validates is refused; the old one stays
        in force."""
        async with self._reload_lock:
            self.notifier.reloading()
            # As the start: systemd gives a reload TimeoutStartSec= too (90 s by default),
            # which a reload re-planning many triggers or waiting for a slow database
            # outlasted, and it was marked failed while it went on.
            extending = asyncio.create_task(self.notifier.extend_while_busy(),
                                            name="triggerd-reload-timeout")
            try:
                try:
                    new = load_settings(self.settings.source)
                except TriggerdError as exc:
                    return self.refuse_reload(
                        "reload refused: configuration invalid, keeping the old one",
                        exc.message)
                if new.source_blank and not self.settings.source_blank:
                    # Valid TOML, but a file caught while it is rewritten (emptied before
                    # its new contents are written) or emptied by mistake: taken, it reset
                    # every setting to its default, the definitions and the API token
                    # included. The extra http processes refuse it too (serving.worker).
                    return self.refuse_reload(
                        "reload refused: configuration file empty, keeping the old one",
                        f"{new.source}: the configuration file sets nothing (empty or"
                        " comments only); a reload keeps the settings in force: restart the"
                        " daemon to run on the defaults")
                try:
                    await self.apply_definitions(new)
                except TriggerdError as exc:
                    return self.refuse_reload(
                        "reload refused: definitions invalid, keeping the old ones",
                        exc.message,
                        problems=[str(p) for p in getattr(exc, "problems", [])])
                except Exception as exc:
                    # The database gone, or a bug: the task's error was never read, so the
                    # reload ended without a word and its new settings were dropped.
                    return self.refuse_reload(
                        "reload refused: the definitions could not be applied, keeping the"
                        " old configuration; send SIGHUP again"
                        + (" once the database is back" if db.is_unavailable(exc) else ""),
                        f"{type(exc).__name__}: {exc}"[:500])
                # Against what runs, not the last file read: a second reload of the same
                # change still needs the restart, and going back to what runs does not.
                running = self._started_with or self.settings
                changed_restart = [
                    key for key in _RESTART_ONLY if _get(new, key) != _get(running, key)
                ]
                if changed_restart:
                    logger.warning(
                        "some settings change only after a restart",
                        extra={"event": "reload_needs_restart", "keys": changed_restart},
                    )
                if new.log != self.settings.log:
                    apply_log_settings(new.log.level, new.log.format)
                self.settings = new
                if self.app is not None:
                    self.app[SETTINGS].current = new
                    self.app[API_AUTH].update(new)
                    self.app[TRUSTED_PROXIES].update(new)
                    set_body_limit(self.app, new.http.max_body_bytes)
                for component in self.components:
                    component.apply_settings(new)
                    await component.reload()
                self._reload_refused = None
                logger.info("reloaded", extra={"event": "daemon_reloaded"})
                return True
            finally:
                extending.cancel()  # before READY=1: no extension follows the reload's end
                self.notifier.ready(self.status_line())

    async def stop(self) -> None:
        # A reload in progress ends first (its definitions' transaction rolls back): it
        # would call on stopped components, and its READY=1 could follow STOPPING=1.
        await self._reloads.cancel()
        self.notifier.stopping()
        # Stop accepting first: new connections are refused while runs drain. Then the
        # requests in progress finish while every part they need still runs.
        if self.site is not None:
            with contextlib.suppress(Exception):
                await self.site.stop()
            await self._drain_requests()
        if self.executor is not None:
            self.executor.start_draining()
        for component in reversed(self._running):
            try:
                await component.stop()
            except Exception:
                logger.exception(
                    "component stop failed",
                    extra={"event": "component_stop_failed", "component": component.name},
                )
        if self.runner is not None:
            await self.runner.cleanup()
        for task in self._background:
            task.cancel()
        if self.pool is not None:
            try:
                # A connection still in a statement (stuck behind a lock) would hold the
                # close, and the stop, as long as the lock lasts.
                async with asyncio.timeout(POOL_CLOSE_TIMEOUT):
                    await self.pool.close()
            except TimeoutError:
                self.pool.terminate()
        if self._worker_dir is not None:
            shutil.rmtree(self._worker_dir, ignore_errors=True)
        self.notifier.close()

    async def _start_unless_stopped(self) -> bool:
        """Start, unless a SIGTERM comes first: a start waits for as long as another
        process holds the migration lock, and a stop asked meanwhile went unheard until
        then (and the daemon became ready, applied definitions and served, to stop)."""
        starting = asyncio.create_task(self.start(), name="triggerd-start")
        stopped = asyncio.create_task(self._stop.wait(), name="triggerd-stop-while-starting")
        try:
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if starting.done():
            starting.result()  # its error, if it failed
            return True
        logger.info("stop requested while starting: the start is abandoned",
                    extra={"event": "start_abandoned"})
        starting.cancel()
        # The error a step raised while it was cancelled (a rolled-back migration) is moot.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        return False

    async def _drain_requests(self) -> None:
        started = time.monotonic()
        cut = await self._drain.wait()
        if cut:
            logger.warning(
                "requests still in progress when the daemon stopped; they are cut",
                extra={"event": "http_drain_cut", "requests": cut,
                       "waited_s": round(time.monotonic() - started, 1)},
            )

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if take_early_reload():  # one came while the process was starting
            self._reload_pending = True
        extending = asyncio.create_task(self.notifier.extend_while_busy(),
                                        name="triggerd-start-timeout")
        try:
            try:
                started = await self._start_unless_stopped()
            finally:
                extending.cancel()
            if not started:
                return
            self._serving = True
            self.notifier.ready(self.status_line())
            if self._reload_pending:
                self._reload_pending = False
                self.request_reload()
            self._watchdog = asyncio.create_task(
                self.notifier.watchdog_loop(self.status_line), name="triggerd-watchdog"
            )
            self._background.append(self._watchdog)
            await self._stop.wait()
            logger.info("stopping", extra={"event": "daemon_stopping"})
        finally:
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        logger.info("stopped", extra={"event": "daemon_stopped"})
        if self._fatal is not None:
            raise DatabaseUnavailable(self._fatal)


def _get(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


async def run_daemon(settings: Settings) -> None:
    daemon = Daemon(settings=settings)
    await daemon.serve()
