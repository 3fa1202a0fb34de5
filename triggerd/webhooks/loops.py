"""The webhook ingress's polling loops: the route table reloaded every few seconds (or
soon after a wakeup) and the count of ``NEW`` executions that backpressure compares with
``[http] max_pending``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from triggerd.errors import DatabaseUnavailable
from triggerd.webhooks.ratelimit import RateLimiter
from triggerd.webhooks.routes import Routes

logger = logging.getLogger(__name__)


async def reload_loop(
    routes: Routes,
    limiter: RateLimiter,
    *,
    reload_wanted: asyncio.Event,
    interval: float,
    monotonic: Callable[[], float],
) -> None:
    """Forever: reload ``routes`` every ``interval`` seconds, or soon after
    ``reload_wanted`` is set, pruning the rate limiter's buckets first."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reload_wanted.wait(), interval)
        # A burst of notifications (an apply touching many triggers) is one reload.
        await asyncio.sleep(0.05)
        reload_wanted.clear()
        # Buckets of triggers that went away (or filled up) are dropped.
        limiter.prune(monotonic())
        try:
            await routes.reload()
        except DatabaseUnavailable as exc:
            logger.warning(str(exc), extra={"event": "webhook_routes_unavailable"})
        except Exception:
            logger.exception(
                "webhook route reload failed", extra={"event": "webhook_reload_failed"}
            )


async def pending_loop(refresh: Callable[[], Awaitable[object]], *, interval: float) -> None:
    """Forever: ``refresh`` the pending count every ``interval`` seconds; a database that
    is down leaves the last count in place."""
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(DatabaseUnavailable):
            await refresh()
