"""Two daemons, two overlapping --only-missing backfills and the live schedule race over
the same slots: every instant runs exactly once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.acceptance.conftest import Daemons, run_cli

DEFINITIONS = {"workflows": [{
    "key": "tick",
    "graph": {"nodes": [{"id": "a", "type": "noop"}]},
    "triggers": [{"name": "second", "type": "cron", "cron": "* * * * * *",
                  "overlap": "allow", "misfire": "all"}],
}]}


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_backfills_on_two_daemons_and_the_schedule_run_each_slot_once(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    first = await daemons.start(database_url=dsn, name="one")
    await daemons.start(database_url=dsn, name="two")
    path = tmp_path / "tick.json"
    path.write_text(json.dumps(DEFINITIONS))
    assert (await run_cli(first.config, "apply", str(path))).returncode == 0
    applied = datetime.now(UTC).replace(microsecond=0)
    await asyncio.sleep(3)  # the live schedule fires every second meanwhile
    end = datetime.now(UTC).replace(microsecond=0)
    start = applied - timedelta(seconds=40)
    runs = await asyncio.gather(
        run_cli(first.config, "triggers", "backfill", "tick/second", "--only-missing",
                "--from", _iso(start), "--to", _iso(end), "--rate", "50/s", "--json"),
        run_cli(first.config, "triggers", "backfill", "tick/second", "--only-missing",
                "--from", _iso(start + timedelta(seconds=20)), "--to", _iso(end),
                "--rate", "50/s", "--json"),
    )
    for run in runs:
        assert run.returncode == 0, run.stderr
    started = sum(run.json()["started"] for run in runs)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT scheduled_for, count(*) AS n FROM workflow_executions"
            " WHERE scheduled_for >= $1 AND scheduled_for < $2 GROUP BY scheduled_for",
            start, end)
    finally:
        await conn.close()
    counts = {r["scheduled_for"]: r["n"] for r in rows}
    expected = {start + timedelta(seconds=s) for s in range(int((end - start).total_seconds()))}
    assert set(counts) == expected  # every instant ran...
    assert set(counts.values()) == {1}  # ...exactly once
    assert started >= 40  # the slots before the trigger existed came from the backfills
