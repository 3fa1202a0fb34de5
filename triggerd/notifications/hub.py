"""The notifications hub: one LISTEN connection per process, shared by every component.

Components subscribe with a callback per channel and an ``on_gap`` callback. The hub keeps
the connection up: it reconnects with a doubling backoff, pings it so that a connection
that died silently (no FIN) is noticed, and after every gap (a lost connection, or a first
connection that failed) calls every subscriber's ``on_gap`` so each re-reads its tables:
notifications sent while nobody listened are lost, so they are hints, never the truth.

The daemon owns one hub (a component, started before the others and stopped after them);
each extra HTTP worker process owns its own. A component given no hub makes and runs its
own, so it can be used alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from triggerd.component import BaseComponent
from triggerd.notifications.channels import Channel
from triggerd.store.notifications import ListenConnection, OnNotify
from triggerd.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

PING_INTERVAL = 10.0
PING_TIMEOUT = 5.0
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
# How long the LISTEN connection may be down before /readyz says so (a restart of the
# database or a failover reconnects well within it).
READINESS_GRACE = 30.0

Opener = Callable[[str, list[str], OnNotify], Awaitable[ListenConnection]]


@dataclass(frozen=True, eq=False)
class Subscription:
    """One subscriber: its callbacks by channel wire name, and what to do after a gap."""

    subscriber: str
    callbacks: Mapping[str, Callable[[str], None]]
    on_gap: Callable[[], None]


class NotificationHub(BaseComponent):
    """See the module docstring."""

    name = "notifications"

    def __init__(
        self,
        *,
        dsn: str,
        open_connection: Opener = ListenConnection.open,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        readiness_grace: float = READINESS_GRACE,
    ) -> None:
        self._dsn = dsn
        self._open_connection = open_connection
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._readiness_grace = readiness_grace
        self._subscriptions: list[Subscription] = []
        self._conn: ListenConnection | None = None
        # Held while connecting or adding a channel, so no channel is left out of LISTEN.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._gap = False
        self.reconnects = 0
        # Since when (monotonic) the LISTEN connection has been down; None while it is up.
        self._down_since: float | None = None
        self._down_error = ""

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.lost.is_set()

    async def readiness(self) -> str | None:
        """Not ready once the LISTEN connection has been down for READINESS_GRACE: the
        replica would serve webhook routes and schedules other replicas changed since,
        and notice cancels only at its heartbeats."""
        since = self._down_since
        if since is None or self._task is None:
            return None
        down = time.monotonic() - since
        if down < self._readiness_grace:
            return None
        return (f"no LISTEN connection for {round(down)}s"
                + (f": {self._down_error}" if self._down_error else ""))

    def _went_down(self, error: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._down_error = error[:200]

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend of the LISTEN connection (None while disconnected)."""
        return self._conn.backend_pid if self._conn is not None else None

    def _channels(self) -> list[str]:
        return sorted({wire for s in self._subscriptions for wire in s.callbacks})

    # -- subscribers --

    async def subscribe(
        self,
        subscriber: str,
        channels: Mapping[Channel, Callable[[str], None]],
        on_gap: Callable[[], None],
    ) -> Subscription:
        """Register ``channels`` (callbacks of the payload) and ``on_gap``. When the hub is
        connected, returns once the LISTEN is in effect, so a subscriber that loads its
        tables afterwards misses nothing; when it is not, ``on_gap`` runs once it is."""
        subscription = Subscription(
            subscriber=subscriber,
            callbacks={channel.wire: callback for channel, callback in channels.items()},
            on_gap=on_gap,
        )
        async with self._lock:
            self._subscriptions.append(subscription)
            conn = self._conn
            if conn is not None and not conn.lost.is_set():
                try:
                    for wire in subscription.callbacks:
                        await conn.listen(wire)
                except Exception as exc:
                    # Treated as a lost connection: the reconnect listens on every channel
                    # and calls every on_gap, this one's included.
                    logger.warning(
                        "notification channel not listened to; reconnecting",
                        extra={"event": "notifications_lost", "error": str(exc)},
                    )
                    conn.lost.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        # The channel stays LISTENed until the next reconnect; its notifications are dropped.
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def _notified(self, channel: str, payload: str) -> None:
        for subscription in list(self._subscriptions):
            callback = subscription.callbacks.get(channel)
            if callback is None:
                continue
            try:
                callback(payload)
            except Exception:
                logger.exception(
                    "notification subscriber failed",
                    extra={"event": "notification_callback_failed", "channel": channel,
                           "subscriber": subscription.subscriber},
                )

    def _after_gap(self) -> None:
        for subscription in list(self._subscriptions):
            try:
                subscription.on_gap()
            except Exception:
                logger.exception(
                    "notification subscriber failed to reconcile",
                    extra={"event": "notification_callback_failed",
                           "subscriber": subscription.subscriber},
                )

    # -- the component --

    async def start(self) -> None:
        """Connect once (a failure is logged and retried in the background: a gap), then
        keep the connection up."""
        if self._task is not None:
            return
        try:
            await self._open()
        except Exception as exc:
            self._gap = True
            self._went_down(str(exc))
            logger.warning(
                "notification connection cannot connect; retrying",
                extra={"event": "notifications_lost", "error": str(exc)},
            )
        self._task = asyncio.create_task(self._run(), name="triggerd-notifications")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait([task])
        await self._close()

    async def _open(self) -> None:
        async with self._lock:
            self._conn = await self._open_connection(self._dsn, self._channels(), self._notified)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            if self._conn is None:
                try:
                    await self._open()
                except Exception as exc:
                    self._gap = True
                    self._went_down(str(exc))
                    logger.warning(
                        "notification connection cannot connect; retrying",
                        extra={"event": "notifications_lost", "error": str(exc),
                               "retry_in_s": backoff},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_FIRST
                self._down_since, self._down_error = None, ""
                if self._gap:
                    self._gap = False
                    self.reconnects += 1
                    logger.info(
                        "notification connection back; subscribers reconcile",
                        extra={"event": "notifications_reconnected",
                               "subscribers": [s.subscriber for s in self._subscriptions]},
                    )
                    self._after_gap()
            conn = self._conn
            assert conn is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.lost.wait(), self._ping_interval)
            if conn.lost.is_set() or not await conn.ping(self._ping_timeout):
                self._gap = True
                self._went_down("the connection was lost")
                logger.warning(
                    "notification connection lost", extra={"event": "notifications_lost"}
                )
                await self._close()
