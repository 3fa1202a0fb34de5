"""The edit rule: re-enable, resume and schedule edits never run slots from before the
change. An apply that changes a trigger's schedule moves its catch-up floor
(``enabled_at``) to the apply; one that changes only its policies does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.integration.test_scheduler_support import running, slots_of
from triggerd.definitions import load_documents
from triggerd.store.workflows import apply_workflows

Pool = Any


def document(trigger: dict[str, Any]) -> dict[str, Any]:
    return {"workflows": [{"key": "wf", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
                           "triggers": [{"name": "t", **trigger}]}]}


async def apply(pool: asyncpg.Pool, trigger: dict[str, Any]) -> None:
    async with pool.acquire() as conn:
        await apply_workflows(conn, load_documents([("t.yaml", document(trigger))],
                                                   node_types=["noop"]))


BEFORE = {"type": "cron", "cron": "* * * * *", "misfire": "all", "max_catchup": 100}


@pytest.mark.parametrize(
    ("after", "floor_moves"),
    [
        ({**BEFORE, "cron": "*/2 * * * *"}, True),  # a new expression
        ({"type": "interval", "every": "2m", "misfire": "all", "max_catchup": 100}, True),
        ({**BEFORE, "timezone": "Asia/Tokyo"}, True),
        ({**BEFORE, "end_at": "2999-01-01T00:00:00Z"}, True),
        ({**BEFORE, "overlap": "allow"}, False),  # a policy, not the schedule
    ],
)
async def test_a_schedule_edit_catches_up_nothing_from_before_it(
    pool: Pool, dsn: str, after: dict[str, Any], floor_moves: bool
) -> None:
    await apply(pool, BEFORE)
    # The trigger has been enabled for an hour and last fired an hour ago (the daemon was
    # down since): 59 minutely slots are missed.
    hour_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    trigger_id = await pool.fetchval("UPDATE workflow_triggers SET enabled_at = $1"
                                     " RETURNING id::text", hour_ago)
    await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                       " VALUES ($1, $2, 'fired')", trigger_id, hour_ago)
    edited_at = datetime.now(UTC)
    await apply(pool, after)
    enabled_at = await pool.fetchval("SELECT enabled_at FROM workflow_triggers")
    async with running(pool, dsn):
        pass
    caught_up = [s["scheduled_for"] for s in (await slots_of(pool, trigger_id))[1:]]
    if floor_moves:
        assert enabled_at >= edited_at
        assert [at for at in caught_up if at < edited_at] == []
    else:
        assert enabled_at == hour_ago
        assert len([at for at in caught_up if at < edited_at]) >= 50
