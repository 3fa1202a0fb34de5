"""Keeping the embedded PostgreSQL alive under the daemon.

The daemon is one of the embedded server's owners. When the postmaster dies (killed, out of
memory), nothing else starts it again: every component would retry forever against a
socket nobody listens on. The guard notices the dead postmaster, starts the server again on
the same data directory and lets the components reconnect on their own (pools make new
connections, listeners reconnect and reconcile). When the server cannot be started again
within a few attempts, the daemon is not alive any more: ``/healthz`` fails, the systemd
watchdog pings stop, and the daemon exits with status 1 so its supervisor restarts it.

With an external ``[database] url`` there is no guard: the daemon answers 503 and is not
ready until the database comes back, then carries on by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from triggerd.db import EmbeddedServer
from triggerd.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
RESTART_ATTEMPTS = 5
# Backends of a killed postmaster may hold its shared memory for a moment, which makes
# the first start attempt fail; later attempts wait longer.
RESTART_BACKOFF_FIRST = 1.0
RESTART_BACKOFF_MAX = 8.0


def restart_delays(
    attempts: int = RESTART_ATTEMPTS,
    first: float = RESTART_BACKOFF_FIRST,
    most: float = RESTART_BACKOFF_MAX,
) -> list[float]:
    """The pause after each failed attempt but the last: doubling, capped."""
    return [min(first * 2**n, most) for n in range(attempts - 1)]


class EmbeddedGuard:
    """Watches the postmaster of the embedded server and restarts it.

    ``problem`` is None while the daemon is alive as far as the database goes; it names
    what is wrong from the first failed restart attempt until a restart succeeds (that is
    what ``/healthz`` and the watchdog report). ``on_lost`` is called once, after the last
    attempt failed.
    """

    name = "embedded_postgres"

    def __init__(
        self,
        server: EmbeddedServer,
        *,
        on_lost: Callable[[], None],
        check_interval: float = CHECK_INTERVAL,
        delays: list[float] | None = None,
    ) -> None:
        self._server = server
        self._on_lost = on_lost
        self._check_interval = check_interval
        self._delays = restart_delays() if delays is None else delays
        self._task: asyncio.Task[None] | None = None
        self.problem: str | None = None
        self.restarts = 0
        self.lost = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="triggerd-embedded-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def pgdata(self) -> str:
        return str(self._server.pgdata)

    def liveness(self) -> str | None:
        return self.problem

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            # Reads postmaster.pid and /proc: small, but file I/O, so off the loop.
            if await asyncio.to_thread(self._server.running):
                continue
            if not await self._restart():
                self.lost = True
                logger.error(
                    "the embedded PostgreSQL cannot be started again; exiting",
                    extra={"event": "embedded_postgres_lost", "pgdata": str(self._server.pgdata),
                           "attempts": len(self._delays) + 1, "error": self.problem},
                )
                self._on_lost()
                return

    async def _restart(self) -> bool:
        pgdata = str(self._server.pgdata)
        logger.warning(
            "the embedded PostgreSQL died; starting it again",
            extra={"event": "embedded_postgres_died", "pgdata": pgdata,
                   "pid": self._server.postmaster_pid()},
        )
        attempts = len(self._delays) + 1
        for attempt in range(1, attempts + 1):
            try:
                pid = await asyncio.to_thread(self._server.restart)
            except DatabaseUnavailable as exc:
                self.problem = (
                    f"the embedded PostgreSQL is down; restart attempt {attempt} of {attempts}"
                    f" failed: {exc.message}"
                )
                logger.warning(
                    "the embedded PostgreSQL did not start",
                    extra={"event": "embedded_postgres_restart_failed", "pgdata": pgdata,
                           "attempt": attempt, "attempts": attempts, "error": exc.message},
                )
                if attempt < attempts:
                    await asyncio.sleep(self._delays[attempt - 1])
                continue
            self.problem = None
            self.restarts += 1
            logger.info(
                "the embedded PostgreSQL runs again",
                extra={"event": "embedded_postgres_restarted", "pgdata": pgdata, "pid": pid,
                       "attempt": attempt},
            )
            return True
        return False
