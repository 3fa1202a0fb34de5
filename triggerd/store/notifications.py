"""The LISTEN connection of the notifications hub.

The policy (reconnecting, pinging, fanning out) is in :mod:`triggerd.notifications.hub`;
this is the thin shell over asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg

from triggerd import db

# Names the hub's connection in pg_stat_activity (operators, and the tests that count it).
APPLICATION_NAME = "triggerd-notify"

OnNotify = Callable[[str, str], None]  # (wire channel name, payload)

# Hints go out after the durable write they describe, in a statement of their own. A
# transaction that sends NOTIFY holds one lock for the whole server from the start of its
# commit until its commit record is on disk, so notifying transactions commit strictly one
# after another, each behind the previous one's disk flush. Sent inside the ingress's and
# the executor's group commits, that lock made those writes queue behind each other (the
# executor fell from about 1,900 to 350 runs/s while webhooks arrived, measured); alone
# and without waiting for the disk (a hint needs no durability) it is held for
# microseconds.
_SEND = """
SELECT pg_notify($1, p.payload)
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lazy,
     unnest($2::text[]) AS p (payload)
"""
# Inside a caller's transaction the hint is part of it (and must not make it lazy).
_SEND_IN_TRANSACTION = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"
# Only runs of sync webhooks are waited for (the ingress polls for them too; the hint
# only shortens the wait): the other runs send nothing, and a batch without any sends no
# NOTIFY at all.
_SEND_FINISHED = """
SELECT pg_notify($1, f.id::text)
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS lazy,
     unnest($2::uuid[], $3::uuid[]) AS f (id, trigger_id)
WHERE f.trigger_id IN (SELECT t.id FROM workflow_triggers t
                        WHERE t.id = ANY($3::uuid[]) AND t.config->>'response' = 'sync')
"""


async def send_hints(conn: Any, channel: str, payloads: Sequence[str]) -> None:
    """Notify ``channel`` (a wire name) once per payload, in a transaction of its own.
    Best effort: the write it follows is committed whatever happens here, and listeners
    that miss a hint find the work at their next poll. On a connection inside a
    transaction, the notifications are sent with that transaction (and errors raise)."""
    if not payloads:
        return
    if getattr(conn, "is_in_transaction", lambda: False)():
        await conn.execute(_SEND_IN_TRANSACTION, channel, list(payloads))
        return
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        await conn.execute(_SEND, channel, list(payloads))


async def send_finished(
    conn: Any, channel: str, runs: Sequence[tuple[str, str | None]]
) -> None:
    """Announce the ended runs ``(id, trigger id or None)`` that a sync webhook may be
    waiting for (best effort, like :func:`send_hints`)."""
    webhook_runs = [(i, t) for i, t in runs if t is not None]
    if webhook_runs:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute(_SEND_FINISHED, channel, [i for i, _ in webhook_runs],
                               [t for _, t in webhook_runs])




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

