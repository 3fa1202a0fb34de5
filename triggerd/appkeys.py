"""Typed application state keys shared by the aiohttp handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from triggerd.config import Settings


class LiveSettings:
    """The configuration in force, replaced by a reload (the app's own state cannot change
    once it serves): handlers read ``request.app[SETTINGS].current``."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings


POOL = web.AppKey("pool", asyncpg.Pool)
SETTINGS = web.AppKey("settings", LiveSettings)
# name -> async check returning None when fine, else the problem (for /readyz).
ReadinessCheck = Callable[[], Awaitable[str | None]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
# Why the process is no longer alive (for /healthz); empty while it is.
FATAL = web.AppKey("fatal", list[str])
# Seconds the oldest slot the scheduler still owes is late (0.0: nothing owed); set by the
# daemon when it runs a scheduler (the console's overview shows it).
SCHEDULER_LAG = web.AppKey[Callable[[], float]]("scheduler_lag")
# The port the daemon listens on (the one taken when [http] port is 0): http nodes of runs
# started through the app (test runs) may not call it, as the executor's may not.
OWN_PORTS = web.AppKey("own_ports", frozenset[int])
