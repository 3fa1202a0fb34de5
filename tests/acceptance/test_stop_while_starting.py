"""A SIGTERM while the daemon starts ends the start: a start waits for as long as another
process holds the migration lock, and the stop must not wait with it."""

from __future__ import annotations

import asyncio
import signal

import asyncpg

from tests.acceptance.conftest import Daemons
from triggerd.db import MIGRATION_LOCK_KEY


async def test_sigterm_while_waiting_for_the_migration_lock_stops_at_once(
    daemons: Daemons, dsn: str
) -> None:
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        config, port = daemons.write_config(database_url=dsn)
        daemon = daemons.spawn(config, port)

        async def waiting_for_the_lock() -> bool:
            return bool(await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"))

        for _ in range(600):
            if await waiting_for_the_lock():
                break
            daemon._fail_if_exited("waiting for the migration lock")
            await asyncio.sleep(0.05)
        assert await waiting_for_the_lock(), daemon.describe()

        # The lock stays held: the stop must not wait for it.
        assert await daemon.stop(signal.SIGTERM, timeout=20) == 0
        assert daemon.events_named("start_abandoned")
        assert daemon.events_named("daemon_ready") == []
        assert daemon.stderr_lines == []
        # The daemon's session is gone, and with it its place in the lock's queue.
        assert not await waiting_for_the_lock()
    finally:
        await holder.close()
