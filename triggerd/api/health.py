"""``/healthz`` (liveness) and ``/readyz`` (readiness, naming what fails)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from triggerd.appkeys import FATAL, POOL, READINESS_CHECKS
from triggerd.db import schema_status


async def healthz(request: web.Request) -> web.Response:
    # Answering at all proves the event loop turns; the handler does no I/O on purpose.
    fatal = request.app.get(FATAL)
    if fatal:
        return web.json_response({"status": "failing", "problem": fatal[0]}, status=503)
    return web.json_response({"status": "ok"})


async def readiness(app: web.Application) -> tuple[list[str], dict[str, Any]]:
    """The failing checks (none: ready), and each check's word ("ok" or the problem)."""
    checks: dict[str, Any] = {}
    failing: list[str] = []
    pool = app[POOL]
    try:
        async with asyncio.timeout(2.0):
            async with pool.acquire() as conn:
                # One round trip: reading schema_migrations proves the database answers.
                problem = await schema_status(conn)
                checks["database"] = "ok"
                checks["migrations"] = problem or "ok"
                if problem:
                    failing.append("migrations")
    except Exception as exc:  # any failure to reach the database means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks.setdefault("migrations", "unknown")
        failing.append("database")
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
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
