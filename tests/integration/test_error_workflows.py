"""Error workflows (``on_failure: KEY``): a failed run starts the named workflow once, with
a summary of the failure; a failure of an error run starts nothing more; apply refuses an
error workflow that does not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, final_status, fire, wait_for
from triggerd.config import load_settings
from triggerd.errors import DefinitionError
from triggerd.executor.service import Executor
from triggerd.store.executions import ExecutionUpdate, claim_executions, write_progress

BILLING = {
    "key": "billing",
    "on_failure": "alert",
    "graph": {"nodes": [{"id": "charge", "type": "fail",
                         "params": {"code": "CARD_DECLINED", "message": "card declined"}}]},
    "triggers": [{"name": "manual", "type": "manual"}],
}
ALERT = {
    "key": "alert",
    "graph": {"nodes": [{"id": "tell", "type": "set",
                         "params": {"value": {"failed": "{{ input.execution_id }}",
                                              "node": "{{ input.failed_node }}"}}}]},
}
FAILING_ALERT: dict[str, Any] = {
    "key": "alert",
    "on_failure": "billing",
    "graph": {"nodes": [{"id": "tell", "type": "fail", "params": {"message": "pager down"}}]},
}


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    yield ex
    await ex.stop()


async def _runs(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT e.id::text AS id, w.key, e.trigger_type, e.status, e.input, e.dedupe_key"
        " FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
        " ORDER BY e.created_at"))

async def _billing_failed_then_its_alert(pool: asyncpg.Pool, executor: Executor) -> None:
    """billing/manual fired and failed, its error run (alert) failed too, and one more
    claim round made nothing new appear."""
    failed = await fire(pool, "billing/manual")
    await final_status(pool, failed)

    async def alert_failed() -> bool:
        return any(r["key"] == "alert" and r["status"] == "ERROR" for r in await _runs(pool))

    await wait_for(alert_failed)
    await executor.stop()
    await executor.start()



async def test_a_failed_run_starts_its_error_workflow_once_with_a_summary(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, {"workflows": [BILLING, ALERT]})
    failed = await fire(pool, "billing/manual")
    assert (await final_status(pool, failed))["status"] == "ERROR"

    async def two_done() -> bool:
        runs = await _runs(pool)
        return len(runs) == 2 and all(r["status"] in ("SUCCESS", "ERROR") for r in runs)

    await wait_for(two_done)
    _, alert = await _runs(pool)
    assert (alert["key"], alert["trigger_type"], alert["status"], alert["dedupe_key"]) == (
        "alert", "on_failure", "SUCCESS", f"on_failure:{failed}")
    summary = alert["input"]
    assert {k: summary[k] for k in ("execution_id", "workflow", "version", "trigger",
                                    "trigger_type", "failed_node", "error_code")} == {
        "execution_id": failed, "workflow": "billing", "version": 1, "trigger": "manual",
        "trigger_type": "manual", "failed_node": "charge", "error_code": "CARD_DECLINED"}
    assert summary["error_message"] == "node 'charge' failed: card declined"
    assert summary["started_at"] and summary["ended_at"]
    output = await pool.fetchval("SELECT output FROM workflow_executions WHERE id = $1",
                                 alert["id"])
    assert output == {"failed": failed, "node": "charge"}


async def test_an_error_run_that_fails_starts_nothing_more(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, {"workflows": [BILLING, FAILING_ALERT]})
    await _billing_failed_then_its_alert(pool, executor)
    assert [(r["key"], r["status"]) for r in await _runs(pool)] == [
        ("billing", "ERROR"), ("alert", "ERROR")]


async def test_writing_the_same_failure_twice_starts_one_error_run(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, {"workflows": [BILLING, ALERT]})
    failed = await fire(pool, "billing/manual")
    update = ExecutionUpdate(id=failed, status="ERROR", error_code="X", error_message="x",
                             failed_node="charge")
    for _ in range(2):
        async with pool.acquire() as conn:
            # Taken up again (as after a lost lease), and its end written again.
            await conn.execute("UPDATE workflow_executions SET status = 'RUNNING',"
                               " lease_owner = NULL, lease_expires_at = now() - interval '1s'"
                               " WHERE id = $1", failed)
            claimed = await claim_executions(conn, "owner", timedelta(minutes=1), 10)
            assert failed in [c.id for c in claimed]
            assert await write_progress(conn, "owner", [], [update]) == {failed}
    assert [(r["key"], r["trigger_type"]) for r in await _runs(pool)] == [
        ("billing", "manual"), ("alert", "on_failure")]


async def test_apply_refuses_an_error_workflow_that_does_not_exist(pool: asyncpg.Pool) -> None:
    with pytest.raises(DefinitionError, match=r"^on_failure: no workflow 'alert' in the files"
                                              r" or the database$"):
        await apply_doc(pool, {"workflows": [BILLING]})
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    # Defined earlier (in the database) is enough.
    await apply_doc(pool, {"workflows": [ALERT]})
    await apply_doc(pool, {"workflows": [BILLING]})
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 2


@pytest.mark.parametrize(("status", "state"), [("draft", "a draft"), ("archived", "archived")])
async def test_apply_refuses_an_error_workflow_that_starts_nothing(
    pool: asyncpg.Pool, status: str, state: str
) -> None:
    """Only an active error workflow runs: a draft or archived one was accepted, and every
    failure then started nothing."""
    await apply_doc(pool, {"workflows": [{**ALERT, "status": status}]})
    with pytest.raises(DefinitionError, match=rf"^on_failure: workflow 'alert' is {state}$"):
        await apply_doc(pool, {"workflows": [BILLING]})
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 1
    await apply_doc(pool, {"workflows": [{**ALERT, "status": "active"}]})
    await apply_doc(pool, {"workflows": [BILLING]})
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 2


async def test_apply_refuses_an_error_workflow_whose_schema_refuses_the_summary(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """Its every run ended INPUT_INVALID: the alerting path never worked."""
    strict = {**ALERT, "graph": {"nodes": [{"id": "tell", "type": "noop"}]},
              "parameter_schema": {
        "type": "object", "required": ["severity"], "additionalProperties": False,
        "properties": {"severity": {"type": "string"}}}}
    with pytest.raises(DefinitionError) as refused:
        await apply_doc(pool, {"workflows": [BILLING, strict]})
    messages = [p.message for p in refused.value.problems]
    assert messages[0] == ("on_failure: 'alert''s parameter_schema refuses the failure"
                           " summary its runs get: $: 'severity' is a required property")
    assert "Additional properties are not allowed" in messages[1]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    # A schema the summary satisfies, stored before: the run's summary passes it.
    fitting = {**ALERT, "parameter_schema": {
        "type": "object", "required": ["execution_id", "error_code"],
        "properties": {"execution_id": {"type": "string"}}}}
    await apply_doc(pool, {"workflows": [fitting]})
    await apply_doc(pool, {"workflows": [BILLING]})
    failed = await fire(pool, "billing/manual")
    assert (await final_status(pool, failed))["status"] == "ERROR"
    alert = await wait_for(lambda: pool.fetchrow(
        "SELECT id FROM workflow_executions WHERE trigger_type = 'on_failure'"))
    assert (await final_status(pool, str(alert["id"])))["status"] == "SUCCESS"


async def test_a_child_of_an_error_run_that_fails_starts_no_error_run(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """An error workflow that calls (a workflow node) the workflow whose failures it
    handles: the child failed, its failure started the error workflow again, which called
    the child again, and so on for ever (each child nested one deep, each error run at the
    top again, so the depth limit never stopped it)."""
    calling_alert = {"key": "alert", "graph": {"nodes": [
        {"id": "again", "type": "workflow", "params": {"workflow": "billing"}}]}}
    await apply_doc(pool, {"workflows": [BILLING, calling_alert]})
    await _billing_failed_then_its_alert(pool, executor)
    assert [(r["key"], r["trigger_type"], r["status"]) for r in await _runs(pool)] == [
        ("billing", "manual", "ERROR"), ("alert", "on_failure", "ERROR"),
        ("billing", "workflow", "ERROR")]


async def test_a_retry_of_an_error_run_that_fails_starts_no_error_run(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """A retry keeps the context of the run it retries, but its type is retry: a retried
    error run that failed started its own workflow's error run (billing again)."""
    from triggerd.store.executions import retry_execution

    await apply_doc(pool, {"workflows": [BILLING, FAILING_ALERT]})
    failed = await fire(pool, "billing/manual")
    await final_status(pool, failed)

    async def alert_failed() -> list[str]:
        return [r["id"] for r in await _runs(pool)
                if r["key"] == "alert" and r["status"] == "ERROR"]

    [alert] = await wait_for(alert_failed)
    async with pool.acquire() as conn:
        retried = await retry_execution(conn, alert)
    assert (await final_status(pool, retried))["status"] == "ERROR"
    await executor.stop()
    await executor.start()  # one more claim round: nothing new appears
    assert [(r["key"], r["trigger_type"], r["status"]) for r in await _runs(pool)] == [
        ("billing", "manual", "ERROR"), ("alert", "on_failure", "ERROR"),
        ("alert", "retry", "ERROR")]
