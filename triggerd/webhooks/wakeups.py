"""What wakes the webhook ingress early: the LISTEN connection for trigger changes (the
route table reloads) and finished runs (sync requests stop waiting).

A notification is a hint, never the truth: after every (re)connect the route table is
reloaded from the database, and the reload loop and the finish waiter poll anyway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from triggerd.errors import DatabaseUnavailable
from triggerd.store.webhooks import FINISHED_CHANNEL, TRIGGERS_CHANNEL, Listener

logger = logging.getLogger(__name__)


async def listen_loop(
    dsn: str, *, reload_wanted: asyncio.Event, finished: Callable[[str], None]
) -> None:
    """Forever: listen on both channels, reconnecting with backoff; ``reload_wanted`` is
    set on every trigger change and on every connect, ``finished`` called with the id of
    every execution that finished."""
    backoff = 0.5
    while True:
        try:
            listener = await Listener.open(
                dsn,
                {
                    TRIGGERS_CHANNEL: lambda _payload: reload_wanted.set(),
                    FINISHED_CHANNEL: finished,
                },
            )
        except DatabaseUnavailable:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        backoff = 0.5
        # Whatever changed while we were not listening: reconcile from the table.
        reload_wanted.set()
        try:
            while not listener.lost.is_set():
                try:
                    await asyncio.wait_for(listener.lost.wait(), 30.0)
                except TimeoutError:
                    with contextlib.suppress(DatabaseUnavailable):
                        await listener.check()
        finally:
            await listener.close()
        logger.warning(
            "webhook notification connection lost; reconnecting",
            extra={"event": "webhook_listener_lost"},
        )
