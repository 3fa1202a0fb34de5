"""``/healthz`` (liveness) and ``/readyz`` (readiness, naming what fails)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from triggerd.appkeys import FATAL, POOL, READINESS_CHECKS
from triggerd.db import schema_status
from triggerd.tasks import cancel_and_wait

# /readyz is probed often (load balancers, systemd, 20 times a second in bench/cron.py's
# part d), and a round trip to a busy database made each probe wait in the database's
# queue: p99 18-32 ms with 100,000 cron triggers while a mass fire's runs were executing,
# 2 ms without the round trip. So a task checks the database in the background, and a
# probe answers from its latest result while that is fresh; before the first result, or
# when the task has fallen behind (a database that takes the whole timeout), the probe
# checks for itself, as every probe did before.
DATABASE_CHECK_INTERVAL = 1.0  # seconds between background checks
DATABASE_CHECK_FRESH = 2.5  # seconds a result answers probes
DATABASE_CHECK_TIMEOUT = 2.0


@dataclass(frozen=True, kw_only=True)
class DatabaseCheck:
    at: float  # monotonic seconds when the check started
    checks: dict[str, str]  # "database" and "migrations": "ok" or the problem
    failing: tuple[str, ...]


async def check_database(pool: asyncpg.Pool, at: float) -> DatabaseCheck:
    checks: dict[str, str] = {}
    failing: list[str] = []
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT):
            async with pool.acquire() as conn:
                # One round trip: reading schema_migrations proves the database answers.
                problem = await schema_status(conn)
                checks["database"] = "ok"
                checks["migrations"] = problem or "ok"
                if problem:
                    failing.append("migrations")
    except Exception as exc:  # any failure to reach the database means not ready
        # A timeout is no answer, reached or not (a lock, a pool whose connections are
        # all busy, an overloaded server): "unreachable" would send whoever is on call to
        # the network.
        checks["database"] = (f"no answer within {DATABASE_CHECK_TIMEOUT:g} s"
                              if isinstance(exc, TimeoutError)
                              else f"unreachable: {type(exc).__name__}")
        checks.setdefault("migrations", "unknown")
        failing.append("database")
    return DatabaseCheck(at=at, checks=checks, failing=tuple(failing))


class DatabaseProbe:
    """The latest database check, kept fresh by :meth:`run`."""

    def __init__(self, pool: asyncpg.Pool, *, interval: float = DATABASE_CHECK_INTERVAL,
                 fresh: float = DATABASE_CHECK_FRESH,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.interval = interval
        self.fresh = fresh
        self.monotonic = monotonic
        self.latest: DatabaseCheck | None = None
        self.checks_run = 0  # round trips made (for tests)

    async def check(self) -> DatabaseCheck:
        result = await check_database(self.pool, self.monotonic())
        self.checks_run += 1
        if self.latest is None or result.at >= self.latest.at:
            self.latest = result
        return result

    async def current(self) -> DatabaseCheck:
        latest = self.latest
        if latest is not None and self.monotonic() - latest.at <= self.fresh:
            return latest
        return await self.check()

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)


DATABASE_PROBE = web.AppKey("database_probe", DatabaseProbe)


async def _probe_in_background(app: web.Application) -> AsyncIterator[None]:
    probe = app[DATABASE_PROBE]
    task = asyncio.create_task(probe.run(), name="triggerd-readiness-database")
    yield
    await cancel_and_wait([task])


async def healthz(request: web.Request) -> web.Response:
    # Answering at all proves the event loop turns; the handler does no I/O on purpose.
    fatal = request.app.get(FATAL)
    if fatal:
        return web.json_response({"status": "failing", "problem": fatal[0]}, status=503)
    return web.json_response({"status": "ok"})


async def readiness(app: web.Application) -> tuple[list[str], dict[str, Any]]:
    """The failing checks (none: ready), and each check's word ("ok" or the problem)."""
    database = await app[DATABASE_PROBE].current()
    checks: dict[str, Any] = dict(database.checks)
    failing: list[str] = list(database.failing)
    for name, check in app[READINESS_CHECKS].items():
        try:
            problem = await check()
        except Exception as exc:
            problem = f"check failed: {type(exc).__name__}: {exc}"
        checks[name] = problem or "ok"
        if problem:
            failing.append(name)
    return failing, checks


async def readyz(request: web.Request) -> web.Response:
    failing, checks = await readiness(request.app)
    status = 200 if not failing else 503
    body: dict[str, Any] = {"status": "ready" if not failing else "not ready", "checks": checks}
    if failing:
        body["failing"] = failing
    return web.json_response(body, status=status)


def add_routes(app: web.Application) -> None:
    """The routes, and the background database check (``app[POOL]`` must be set)."""
    app[DATABASE_PROBE] = DatabaseProbe(app[POOL])
    app.cleanup_ctx.append(_probe_in_background)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
