"""Exactly once across replicas: three daemons on one database schedule the same
every-second trigger; one is SIGKILLed half-way. Every slot of the window has exactly one
execution, none is missing."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.acceptance.conftest import Daemons, TomlValue

DEFINITIONS = """\
workflows:
  - key: ticker
    name: Ticker
    graph:
      nodes:
        - {id: a, type: set, params: {value: "{{ trigger.scheduled_for }}"}}
    triggers:
      - {name: tick, type: cron, cron: "* * * * * *", overlap: allow, misfire: all}
"""

WINDOW = 20.0  # seconds of every-second slots, as the issue asks


async def test_three_replicas_one_killed_every_slot_once(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    definitions = tmp_path / "ticker.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {
        "daemon": {"definitions": [str(definitions)]},
        "executor": {"lease": "2s"},
    }
    replicas = [await daemons.start(database_url=dsn, sections=sections) for _ in range(3)]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep(WINDOW / 2)
    replicas[1].kill()
    await asyncio.sleep(WINDOW / 2)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    await asyncio.sleep(1.5)  # let the last slots of the window land
    for replica in (replicas[0], replicas[2]):
        assert await replica.stop(signal.SIGTERM) == 0

    rows = await pool.fetch(
        "SELECT scheduled_for, count(*) AS n FROM workflow_executions"
        " WHERE trigger_type = 'cron' AND scheduled_for BETWEEN $1 AND $2"
        " GROUP BY scheduled_for ORDER BY scheduled_for", start, end)
    expected = int((end - start).total_seconds()) + 1
    assert expected >= WINDOW - 3
    assert [r["n"] for r in rows] == [1] * expected, [(r["scheduled_for"], r["n"]) for r in rows]
    seconds = [r["scheduled_for"] for r in rows]
    assert seconds == [start + timedelta(seconds=i) for i in range(expected)]
    fired = await pool.fetchval(
        "SELECT count(*) FROM trigger_slots WHERE outcome = 'fired'"
        " AND scheduled_for BETWEEN $1 AND $2", start, end)
    assert fired == expected
