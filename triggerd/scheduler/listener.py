"""LISTEN on a dedicated connection that reconnects.

A notification is a hint, never the truth: after any gap in the connection the scheduler
reconciles from the tables (``on_reconnect``), because notifications sent meanwhile are
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from triggerd import db

logger = logging.getLogger(__name__)

TRIGGERS_CHANNEL = "triggerd_triggers"
# A connection can die without a FIN (a dropped network path); a cheap query finds out.
PING_INTERVAL = 10.0
PING_TIMEOUT = 5.0
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0


class TriggerListener:
    """Calls ``on_change(trigger_id)`` for every ``workflow_triggers`` change and
    ``on_reconnect()`` whenever the connection came back after a gap."""

    def __init__(
        self,
        *,
        dsn: str,
        on_change: Callable[[str], None],
        on_reconnect: Callable[[], None],
        connect: Callable[[str], Awaitable[Any]] = db.connect,
        channel: str = TRIGGERS_CHANNEL,
    ) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._on_reconnect = on_reconnect
        self._connect = connect
        self._channel = channel
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._had_gap = False
        self.connected = False
        self.reconnects = 0

    async def start(self) -> None:
        """Connect once (a failure is logged and retried in the background), then keep the
        connection up."""
        try:
            await self._open()
        except Exception as exc:
            self._had_gap = True
            logger.warning(
                "trigger listener cannot connect; retrying",
                extra={"event": "cron_listener_lost", "error": str(exc)},
            )
        self._task = asyncio.create_task(self._run(), name="triggerd-cron-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _open(self) -> None:
        conn = await self._connect(self._dsn)
        try:
            await conn.add_listener(self._channel, self._notified)
            conn.add_termination_listener(self._terminated)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._conn = conn
        self._lost.clear()
        self.connected = True

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        self.connected = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _terminated(self, _conn: Any) -> None:
        self._lost.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            trigger_id = json.loads(payload)["id"]
        except (ValueError, KeyError, TypeError):
            logger.warning(
                "unreadable trigger notification",
                extra={"event": "cron_listener_payload", "payload": payload[:200]},
            )
            return
        self._on_change(str(trigger_id))

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            if self._conn is None or self._conn.is_closed():
                await self._close()
                try:
                    await self._open()
                except Exception as exc:
                    self._had_gap = True
                    logger.warning(
                        "trigger listener cannot connect; retrying",
                        extra={"event": "cron_listener_lost", "error": str(exc),
                               "retry_in_s": backoff},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_FIRST
                if self._had_gap:
                    self._had_gap = False
                    self.reconnects += 1
                    logger.info("trigger listener reconnected",
                                extra={"event": "cron_listener_reconnected"})
                    self._on_reconnect()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), PING_INTERVAL)
            if self._lost.is_set() or not await self._alive():
                self._had_gap = True
                logger.warning("trigger listener lost its connection",
                               extra={"event": "cron_listener_lost"})
                await self._close()

    async def _alive(self) -> bool:
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT)
        except Exception:
            return False
        return True
