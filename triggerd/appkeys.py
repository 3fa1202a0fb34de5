"""Typed application state keys shared by the aiohttp handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from triggerd.config import Settings

POOL = web.AppKey("pool", asyncpg.Pool)
SETTINGS = web.AppKey("settings", Settings)
# name -> async check returning None when fine, else the problem (for /readyz).
ReadinessCheck = Callable[[], Awaitable[str | None]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, ReadinessCheck])
# name -> check without I/O returning None when alive, else the problem (for /healthz and
# the systemd watchdog).
LivenessCheck = Callable[[], str | None]
LIVENESS_CHECKS = web.AppKey("liveness_checks", dict[str, LivenessCheck])
