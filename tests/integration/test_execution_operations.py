"""Cancel and retry through the operations layer: audited in the same transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.helpers import apply_doc, fire
from tests.integration.test_pause_resume import DOC, OPERATOR
from triggerd.errors import Conflict
from triggerd.operations.executions import cancel, retry


async def test_cancel_and_retry_are_audited_and_a_refusal_leaves_no_row(
    pool: asyncpg.Pool,
) -> None:
    await apply_doc(pool, DOC)
    execution_id = await fire(pool, "report/by-hand")
    canceled = await cancel(pool, OPERATOR, execution_id)
    assert canceled.status == "CANCELED"
    with pytest.raises(Conflict, match="already finished with status CANCELED"):
        await cancel(pool, OPERATOR, execution_id)
    new_id = await retry(pool, OPERATOR, execution_id)
    assert await pool.fetchval("SELECT retry_of::text FROM workflow_executions WHERE id = $1",
                               new_id) == execution_id
    rows = await pool.fetch("SELECT actor, action, target FROM audit_log ORDER BY id")
    assert [tuple(r) for r in rows] == [("token:ops", "cancel", execution_id),
                                        ("token:ops", "retry", execution_id)]


async def test_the_cancel_that_loses_a_race_names_the_status_the_winner_left(
    pool: asyncpg.Pool,
) -> None:
    """It read the run before the winner's update: "already finished with status NEW"
    for a run that was just canceled."""
    from triggerd.store.executions import request_cancel

    await apply_doc(pool, DOC)
    execution_id = await fire(pool, "report/by-hand")
    async with pool.acquire() as winner, pool.acquire() as loser:
        first = winner.transaction()
        await first.start()
        await request_cancel(winner, execution_id)  # holds the row until it commits
        racing = asyncio.ensure_future(request_cancel(loser, execution_id))
        while await pool.fetchval(  # the loser waits for the winner's row lock
                "SELECT count(*) FROM pg_locks WHERE NOT granted") == 0:
            await asyncio.sleep(0.01)
        await first.commit()
        with pytest.raises(Conflict) as lost:
            await racing
    assert "already finished with status CANCELED" in str(lost.value), lost.value
