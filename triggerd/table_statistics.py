"""Keep the planner's picture of the fast-growing tables current.

PostgreSQL keeps the plan of a prepared statement (after five runs, one generic plan)
until the statistics of a table it reads change, by ANALYZE or VACUUM. A plan made while
a queue table was nearly empty reads it with sequential scans, the cheapest path then.
Autovacuum visits a database at most once a minute (``autovacuum_naptime``), so when the
table then fills fast, every claim and progress write scans all of it until autovacuum
comes. Measured with ``bench/sustained.py``: webhooks at 2,500/s into a table emptied and
vacuumed a moment before. The executor's progress write for 128 runs went from 5 ms to
2.7 s, and the executor finished 240-280 runs/s instead of about 2,100. This lasted the
55 s until autovacuum analyzed the table.

Every few seconds this component compares each table's size now with its size when its
statistics were taken (``pg_class.relpages``). It analyzes a table that has grown a lot
since. ANALYZE replaces the table's statistics, and every cached plan over it is made
again for the table as it is now. A table analyzed at n pages is analyzed next at
``GROWTH`` times n, so a few ANALYZEs take it from empty to the size where autovacuum's
own threshold (10% growth) keeps up. Each ANALYZE took 0.01-0.6 s of one backend. Tables
this large at start, or growing slowly, are left to autovacuum.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg

from triggerd import db
from triggerd.component import BaseComponent
from triggerd.store import statistics as store
from triggerd.store.statistics import TableSize
from triggerd.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0  # seconds
# A table is analyzed once it has this many times the pages its statistics were taken at...
GROWTH = 4
# ...counting a table analyzed while empty (or never) as this many pages...
FLOOR_PAGES = 8
# ...and only from this size on (512 kB): below it any plan reads it quickly.
MIN_PAGES = 64


def outgrown(sizes: Iterable[TableSize], *, growth: int = GROWTH, floor: int = FLOOR_PAGES,
             minimum: int = MIN_PAGES) -> list[str]:
    """The tables whose statistics (and so the plans made from them) describe a table
    much smaller than it is now."""
    return [
        s.table for s in sizes
        if s.pages >= minimum and s.pages > growth * max(s.planned_pages, floor)
    ]


@dataclass(kw_only=True)
class TableStatisticsKeeper(BaseComponent):
    """A daemon component (the main process only)."""

    pool: asyncpg.Pool
    tables: tuple[str, ...] = store.GROWING_TABLES
    interval: float = CHECK_INTERVAL
    name: str = "table_statistics"
    analyzed: int = 0  # ANALYZEs run (for tests and benchmarks)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="triggerd-table-statistics")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:
                # The database may be away (the pool reconnects) or refuse: try again at
                # the next check, quietly when it is only away.
                level = logging.DEBUG if db.is_unavailable(exc) else logging.WARNING
                logger.log(level, "checking table statistics failed",
                           extra={"event": "table_statistics_failed", "error": str(exc)})
            await asyncio.sleep(self.interval)

    async def check(self) -> list[str]:
        """One look: analyze the tables that outgrew their statistics; returns those
        analyzed."""
        async with self.pool.acquire() as conn:
            sizes = {s.table: s for s in await store.table_sizes(conn, self.tables)}
            done = []
            for table in outgrown(sizes.values()):
                started = time.monotonic()
                if not await store.analyze(conn, table):
                    continue  # autovacuum (or another replica) is at it
                self.analyzed += 1
                done.append(table)
                logger.info(
                    "table statistics refreshed",
                    extra={"event": "table_analyzed", "table": table,
                           "pages": sizes[table].pages,
                           "planned_pages": sizes[table].planned_pages,
                           "took_s": round(time.monotonic() - started, 3)},
                )
        return done
