"""An extra HTTP process ([http] processes > 1), started by the daemon, never by hand.

It listens on the daemon's port too (SO_REUSEPORT: the kernel spreads the connections
over the processes), answers plain webhook requests itself (its own route table, group
commit and database pool: the guarantees are those of the main process, a 202 only once
the rows are committed), runs the runs it stores while its own executor has room (it claims
queued runs too, as any executor; retention and the child sweep are the main
process's), and forwards
everything else to the main process (:mod:`triggerd.serving.forward`): the admin API,
``/metrics``, ``/healthz``, ``/readyz``, and webhooks with a ``rate`` (one token bucket
for the whole daemon) or ``response: sync``. Every second it reports what it answered and
which runs ended on a pipe, one JSON line, so that the main process's ``/metrics`` counts
every request and run.

SIGHUP re-reads the configuration; SIGTERM stops accepting, stores what was accepted,
lets its runs finish within ``[executor] drain`` (or hands them back) and exits."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from triggerd import db, runtime
from triggerd.config import Settings, load_settings
from triggerd.connections import worker_pool_max
from triggerd.errors import TriggerdError
from triggerd.executor.service import Executor
from triggerd.logs import apply_log_settings, setup_logging
from triggerd.model import DEFAULT_TENANT, ResponseMode
from triggerd.notifications.hub import NotificationHub
from triggerd.serving.drain import RequestDrain
from triggerd.serving.forward import forward, upstream_session
from triggerd.serving.internal_errors import internal_errors
from triggerd.serving.sockets import app_runner, open_listener, set_body_limit
from triggerd.tasks import cancel_and_wait
from triggerd.webhooks.ingress import TENANT_HOOKS, WebhookIngress
from triggerd.webhooks.routes import WebhookRoute

logger = logging.getLogger(__name__)

# What the daemon passes in the environment.
ENV_PORT = "TRIGGERD_WORKER_PORT"
ENV_REPORT_FD = "TRIGGERD_WORKER_REPORT_FD"
ENV_UPSTREAM = "TRIGGERD_WORKER_UPSTREAM"
ENV_INDEX = "TRIGGERD_WORKER_INDEX"
ENV_CONFIG = "TRIGGERD_WORKER_CONFIG"
# "1" when the settings the daemon runs on came from a configuration file that sets
# nothing: else a file that sets nothing is one caught being rewritten, which the main
# process refuses at a reload (Daemon.reload), and so does this process at its start. At
# a reload it compares with the settings it runs on, as the main process does.
ENV_CONFIG_BLANK = "TRIGGERD_WORKER_CONFIG_BLANK"
BLANK_REFUSED = ("the configuration file sets nothing (empty or comments only), while the"
                 " daemon's did; keeping the settings in force")
ENV_RUNS = "TRIGGERD_WORKER_RUNS"  # "1": run what it stores (the daemon has an executor)
ENV_POOL_MAX = "TRIGGERD_WORKER_POOL_MAX"  # its pool's size, as the main process sized it

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
REPORT_INTERVAL = 1.0


class Reporter:
    """Collects this process's webhook answers (it is the ingress's metrics sink) and
    writes them to the main process as one JSON line a second."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._answers: dict[tuple[str | None, int], list[float]] = {}
        self._backpressure = 0
        self._filtered: dict[str, int] = {}
        self._secrets: dict[tuple[str, int], int] = {}
        self._executions: dict[tuple[str, str, str], list[float | None]] = {}
        self._nodes: dict[str, list[float]] = {}

    @classmethod
    async def open(cls, fd: int) -> Reporter:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_write_pipe(
            asyncio.Protocol, os.fdopen(fd, "wb", buffering=0)
        )
        return cls(transport)

    def webhook_request(self, trigger: str | None, status: int, seconds: float) -> None:
        answers = self._answers.get((trigger, status))
        if answers is None:
            answers = self._answers[(trigger, status)] = []
        answers.append(round(seconds, 6))

    def backpressure(self) -> None:
        self._backpressure += 1

    def webhook_filtered_requests(self, trigger: str, count: int = 1) -> None:
        self._filtered[trigger] = self._filtered.get(trigger, 0) + count

    def webhook_secret(self, trigger: str, index: int) -> None:
        key = (trigger, index)
        self._secrets[key] = self._secrets.get(key, 0) + 1

    def execution_finished(self, workflow: str, status: str, seconds: float | None,
                           tenant: str = DEFAULT_TENANT) -> None:
        """A run this process's executor ended (the executor's metrics sink)."""
        ended = self._executions.get((workflow, status, tenant))
        if ended is None:
            ended = self._executions[(workflow, status, tenant)] = []
        ended.append(None if seconds is None else round(seconds, 6))

    def node_finished(self, node_type: str, seconds: float | None) -> None:
        if seconds is not None:
            ended = self._nodes.get(node_type)
            if ended is None:
                ended = self._nodes[node_type] = []
            ended.append(round(seconds, 6))

    def send(self, message: dict[str, Any]) -> None:
        if not self._transport.is_closing():
            self._transport.write(json.dumps(message).encode() + b"\n")

    def flush(self) -> None:
        if (not self._answers and not self._backpressure and not self._secrets
                and not self._filtered and not self._executions and not self._nodes):
            return
        answers, self._answers = self._answers, {}
        backpressure, self._backpressure = self._backpressure, 0
        secrets, self._secrets = self._secrets, {}
        filtered, self._filtered = self._filtered, {}
        executions, self._executions = self._executions, {}
        nodes, self._nodes = self._nodes, {}
        self.send(
            {
                "answers": [[trigger, status, seconds] for (trigger, status), seconds
                            in answers.items()],
                "backpressure": backpressure,
                "filtered": filtered,
                "secrets": [[trigger, index, count] for (trigger, index), count
                            in secrets.items()],
                "executions": [[workflow, status, tenant, seconds] for
                               (workflow, status, tenant), seconds in executions.items()],
                "nodes": [[node_type, seconds] for node_type, seconds in nodes.items()],
            }
        )

    def close(self) -> None:
        self.flush()
        self._transport.close()


def forwarded_route(ingress: WebhookIngress, path: str,
                    tenant: str = DEFAULT_TENANT) -> WebhookRoute | None:
    """The route of a webhook whose answer needs the main process (None: answered here):
    one token bucket per trigger (and per tenant) for the whole daemon, and sync answers
    (the main process runs the executions)."""
    route = ingress.routes.table.get(path, tenant)
    if route is None:
        return None
    settings = ingress.settings
    if settings.tenants and settings.tenant(tenant).webhook_rate:
        return route
    if route.rate is not None or route.config.response == ResponseMode.SYNC:
        return route
    return None


async def serve(settings: Settings, *, port: int, report_fd: int, upstream: str,
                index: int, runs: bool = True, pool_max: int | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reporter = await Reporter.open(report_fd)
    dsn = settings.database.url
    pool_max = worker_pool_max(settings) if pool_max is None else pool_max
    pool = await db.create_pool(dsn, min_size=1, max_size=pool_max,
                                pgbouncer=settings.database.behind_pgbouncer)
    # A process of its own, so a LISTEN connection of its own (route changes, sync answers),
    # straight to PostgreSQL when the pool goes through PgBouncer.
    direct = db.direct_dsn(settings, dsn)
    hub = NotificationHub(dsn=direct)
    # The runs this process stores are run here while its executor has room and nothing
    # waits before them (the cores' worth of work is spread, with no claim); it claims
    # queued runs like any executor. Retention and the child sweep are the main
    # process's.
    executor = (Executor(pool=pool, dsn=direct, settings=settings, hub=hub, metrics=reporter,
                         own_ports=frozenset({port}), housekeeping=False) if runs else None)
    ingress = WebhookIngress(pool=pool, dsn=direct, settings=settings, hub=hub,
                             runs_here=executor)
    ingress.stats.sink = reporter
    session = upstream_session(upstream)

    async def hooks(request: web.Request) -> web.StreamResponse:
        route = forwarded_route(ingress, request.match_info["path"],
                                request.match_info.get("tenant", DEFAULT_TENANT))
        if route is None:
            return await ingress.handle(request)
        # Judged here, where its connection's queue is (the main process sees one request
        # at a time from this process), before the main process spends a rate token.
        refused = ingress.shed(request)
        if refused is not None:
            return refused
        started = loop.time()
        try:
            return await forward(session, request)
        finally:
            if route.config.response == ResponseMode.SYNC:
                # Those pipelined behind waited for the run's answer, asked for.
                ingress.excuse(request, loop.time() - started)

    async def everything_else(request: web.Request) -> web.StreamResponse:
        return await forward(session, request)

    drain = RequestDrain()
    app = web.Application(client_max_size=settings.http.max_body_bytes,
                          middlewares=[drain.middleware, internal_errors])
    app.router.add_route("*", "/hooks/{path:.*}", hooks, expect_handler=ingress.expect)
    app.router.add_route("*", TENANT_HOOKS, hooks, expect_handler=ingress.expect)
    app.router.add_route("*", "/{tail:.*}", everything_else)
    background: list[asyncio.Task[None]] = []

    in_force = settings  # what the last reload this process took read (Daemon.reload)

    async def reload() -> None:
        try:
            new = load_settings(os.environ.get(ENV_CONFIG) or None)
        except TriggerdError as exc:
            logger.error("http worker reload refused: configuration invalid",
                         extra={"event": "http_worker_reload_refused", "error": exc.message})
            return
        nonlocal in_force
        if new.source_blank and not in_force.source_blank:
            logger.error("http worker reload refused: configuration file empty",
                         extra={"event": "http_worker_reload_refused",
                                "error": f"{new.source}: {BLANK_REFUSED}"})
            return
        in_force = new
        apply_log_settings(new.log.level, new.log.format)
        set_body_limit(app, new.http.max_body_bytes)
        ingress.apply_settings(new)
        if executor is not None:
            executor.apply_settings(new)
        await ingress.reload()
        logger.info("http worker reloaded", extra={"event": "http_worker_reloaded",
                                                   "worker": index})

    parent = os.getppid()

    async def report_loop() -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            reporter.flush()
            if os.getppid() != parent:  # the daemon is gone (killed): so is this process
                logger.error("the daemon's main process is gone; stopping",
                             extra={"event": "http_worker_orphaned", "worker": index})
                stop.set()

    await hub.start()
    if executor is not None:
        await executor.start()
    await ingress.start()
    runner = app_runner(app)
    await runner.setup()
    listener = open_listener(settings.http.host, port, reuse_port=True, join=True)
    site = web.SockSite(runner, listener)
    await site.start()
    loop.add_signal_handler(
        signal.SIGHUP, lambda: background.append(asyncio.create_task(reload()))
    )
    if runtime.take_early_reload():  # the daemon passed a SIGHUP on while this one started
        background.append(asyncio.create_task(reload()))
    background.append(asyncio.create_task(report_loop()))
    reporter.send({"ready": True, "pid": os.getpid()})
    logger.info("http worker ready", extra={"event": "http_worker_ready", "worker": index,
                                            "pid": os.getpid(), "pool_max": pool_max})
    try:
        await stop.wait()
    finally:
        # Stop accepting, let the requests in progress finish and answer them, store what
        # was accepted (the group commit is flushed), leave.
        with contextlib.suppress(Exception):
            await site.stop()
        cut = await drain.wait()
        if cut:
            logger.warning("requests still in progress when the http worker stopped;"
                           " they are cut", extra={"event": "http_drain_cut",
                                                   "worker": index, "requests": cut})
        await ingress.stop()
        # After the ingress: the runs its last batches stored here are running; they
        # finish within [executor] drain or are handed back.
        if executor is not None:
            await executor.stop()
        await hub.stop()
        await runner.cleanup()
        await cancel_and_wait(background)
        await session.close()
        await pool.close()
        reporter.close()
        logger.info("http worker stopped", extra={"event": "http_worker_stopped",
                                                  "worker": index})


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the daemon dies, even by SIGKILL (the report loop
    also notices within a second, on any system)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    del argv  # everything comes from the environment the daemon sets
    runtime.defer_early_reload()
    try:
        settings = load_settings(os.environ.get(ENV_CONFIG) or None)
        port = int(os.environ[ENV_PORT])
        report_fd = int(os.environ[ENV_REPORT_FD])
        upstream = os.environ[ENV_UPSTREAM]
        index = int(os.environ[ENV_INDEX])
        pool_max = int(os.environ[ENV_POOL_MAX]) if os.environ.get(ENV_POOL_MAX) else None
    except (KeyError, ValueError, TriggerdError) as exc:
        print(f"triggerd http worker: started without its daemon's environment ({exc})",
              file=sys.stderr)
        return 2
    if settings.source_blank and os.environ.get(ENV_CONFIG_BLANK) != "1":
        # Restarted while the file is being rewritten: the daemon restarts it again.
        print(f"triggerd http worker: {settings.source}: {BLANK_REFUSED}", file=sys.stderr)
        return 2
    setup_logging(settings.log.level, settings.log.format)
    _die_with_parent()
    try:
        runtime.run(serve(settings, port=port, report_fd=report_fd, upstream=upstream,
                          index=index, runs=os.environ.get(ENV_RUNS, "1") == "1",
                          pool_max=pool_max))
    except Exception as exc:  # the daemon logs the exit and starts this process again
        logger.error("http worker failed", extra={"event": "http_worker_failed",
                                                  "worker": index,
                                                  "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
