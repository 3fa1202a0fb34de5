"""Watch over the embedded PostgreSQL the daemon started: a postmaster that died (killed,
out of memory) is started again; one that cannot be is reported, so the daemon fails its
liveness probe, stops its watchdog pings and exits for its supervisor to restart it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from triggerd import db
from triggerd.component import BaseComponent
from triggerd.errors import TriggerdError

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EmbeddedServerWatch(BaseComponent):
    """A daemon component; only built when the daemon runs the embedded server."""

    state_dir: Path
    dsn: str
    on_lost: Callable[[str], None]
    interval: float = 1.0
    attempts: int = 3
    backoff: float = 1.0
    # Blocking calls, run in a thread (replaceable for tests of the give-up path).
    is_running: Callable[[Path], bool] = db.embedded_server_running
    restart: Callable[[Path], str] = db.restart_embedded
    name: str = "embedded_postgres"
    restarts: int = 0
    _down_since: float | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="triggerd-embedded-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def readiness(self) -> str | None:
        if self._down_since is None:
            return None
        return f"the embedded PostgreSQL is down since {time.monotonic() - self._down_since:.1f}s"

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if await asyncio.to_thread(self.is_running, self.state_dir):
                continue
            await self._recover()

    async def _recover(self) -> None:
        self._down_since = time.monotonic()
        logger.error(
            "the embedded PostgreSQL is not running; starting it again",
            extra={"event": "embedded_postgres_died", "state_dir": str(self.state_dir)},
        )
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                dsn = await asyncio.to_thread(self.restart, self.state_dir)
            except (TriggerdError, OSError) as exc:
                problem = str(exc)
            else:
                if dsn == self.dsn:
                    down = time.monotonic() - self._down_since
                    self._down_since = None
                    self.restarts += 1
                    logger.warning(
                        "the embedded PostgreSQL was started again",
                        extra={
                            "event": "embedded_postgres_restarted",
                            "attempt": attempt,
                            "down_s": round(down, 3),
                        },
                    )
                    return
                # The pool's connections point at the old socket: only a restart helps.
                problem = "it came back on another socket"
                break
            logger.warning(
                "restarting the embedded PostgreSQL failed",
                extra={"event": "embedded_postgres_restart_failed", "attempt": attempt,
                       "error": problem},
            )
            await asyncio.sleep(self.backoff * attempt)
        self.on_lost(f"the embedded PostgreSQL died and could not be started again: {problem}")
        # Stays "down": nothing more to do here, the daemon is stopping.
        await asyncio.Event().wait()

