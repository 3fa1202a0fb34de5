"""The LISTEN connection of the notifications hub.

The policy (reconnecting, pinging, fanning out) is in :mod:`triggerd.notifications.hub`;
this is the thin shell over asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from triggerd import db

# Names the hub's connection in pg_stat_activity (operators, and the tests that count it).
APPLICATION_NAME = "triggerd-notify"

OnNotify = Callable[[str, str], None]  # (wire channel name, payload)




class ListenConnection:
    """A dedicated connection LISTENing on channels; ``lost`` is set when it ends."""

    def __init__(self, conn: asyncpg.Connection, on_notify: OnNotify) -> None:
        self._conn = conn
        self._on_notify = on_notify
        self._channels: set[str] = set()
        self.lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self.lost.set())

    @classmethod
    async def open(
        cls, dsn: str, channels: Iterable[str], on_notify: OnNotify
    ) -> ListenConnection:
        """Connect and LISTEN on ``channels``; raises DatabaseUnavailable."""
        conn = await db.connect(dsn, application_name=APPLICATION_NAME)
        listening = cls(conn, on_notify)
        try:
            for channel in channels:
                await listening.listen(channel)
        except BaseException:
            await listening.close()
            raise
        return listening

    @property
    def backend_pid(self) -> int:
        pid: int = self._conn.get_server_pid()
        return pid

    async def listen(self, channel: str) -> None:
        if channel in self._channels:
            return
        with db.translated("listening for notifications"):
            await self._conn.add_listener(channel, self._dispatch)
        self._channels.add(channel)

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self._on_notify(channel, payload)

    async def ping(self, within: float) -> bool:
        """A cheap round trip: a connection that died without a FIN is noticed here."""
        if self._conn.is_closed():
            return False
        try:
            await self._conn.fetchval("SELECT 1", timeout=within)
        except Exception:  # whatever the reason, this connection is no use any more
            return False
        return True

    async def close(self) -> None:
        if not self._conn.is_closed():
            try:
                await asyncio.wait_for(self._conn.close(), timeout=2.0)
            except (Exception, asyncio.CancelledError):
                self._conn.terminate()

