"""How runs end when they are canceled or time out around a park or a dead process: no node
row is left open (RUNNING or WAITING) after its run ended, a cancel that meets a park is not
lost, and the workflow's timeout counts the time the run works, not the time it waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import apply_doc, final_status, fire, serve_get, wait_for
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.operations import Actor
from triggerd.operations.approvals import DecisionRequest, decide
from triggerd.store.executions import (
    ExecutionUpdate,
    claim_executions,
    release_executions,
    renew_leases,
    request_cancel,
    write_progress,
)

OPERATOR = Actor(name="token:ops", via="api")


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    try:
        yield ex
    finally:
        await ex.stop()


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    async with running(pool, dsn) as ex:
        yield ex


def approval_doc(**workflow: Any) -> dict[str, Any]:
    return {"workflows": [{
        "key": "release",
        "graph": {
            "nodes": [{"id": "ask", "type": "approval", "params": {"message": "Ship?"}},
                      {"id": "ship", "type": "set", "params": {"value": {"shipped": True}}}],
            "edges": [{"from": "ask", "to": "ship", "when": "approved"}],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
        **workflow,
    }]}


async def node_statuses(pool: asyncpg.Pool, run: str) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT node_id, status FROM node_executions WHERE execution_id = $1", run)
    return {r["node_id"]: r["status"] for r in rows}


async def parked(pool: asyncpg.Pool, run: str) -> None:
    async def waiting() -> bool:
        return await node_statuses(pool, run) == {"ask": "WAITING"} and await pool.fetchval(
            "SELECT status FROM workflow_executions WHERE id = $1", run) == "WAITING"

    await wait_for(waiting)


@pytest.mark.parametrize("parked_by", ["this triggerd", "a triggerd before 0040"])
async def test_time_parked_does_not_count_toward_the_workflow_timeout(
    pool: asyncpg.Pool, executor: Executor, parked_by: str
) -> None:
    # The README's approval example keeps the default 1 h workflow timeout: a decision
    # made 2 h later ran into it (TIMEOUT, and the approval's row left RUNNING).
    await apply_doc(pool, approval_doc())
    run = await fire(pool, "release/manual")
    await parked(pool, run)
    # Two hours pass while it waits (every instant recorded so far moves back). A triggerd
    # before migration 0040 (a rolling upgrade) parked it without recording when.
    await pool.execute("UPDATE workflow_executions SET start_time = start_time"
                       " - interval '2 hours', worked_at = CASE WHEN $2 THEN NULL"
                       " ELSE worked_at - interval '2 hours' END WHERE id = $1",
                       run, parked_by != "this triggerd")
    await pool.execute("UPDATE node_executions SET start_time = start_time"
                       " - interval '2 hours' WHERE execution_id = $1", run)
    await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == ("SUCCESS", None)
    assert await node_statuses(pool, run) == {"ask": "SUCCESS", "ship": "SUCCESS"}


async def test_parallel_parks_count_once_toward_the_idle_time(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """Two approvals parked side by side for 90 minutes of a run started three hours ago:
    it has worked 90 minutes, past its hour. The spans of its parking rows (three hours,
    added up) were a floor under the idle time the store keeps, for every run: the run
    went on with an hour to spare."""
    await apply_doc(pool, {"workflows": [{
        "key": "both",
        "graph": {"nodes": [
            {"id": "go", "type": "noop"},
            {"id": "a", "type": "approval", "params": {"message": "A?"}},
            {"id": "b", "type": "approval", "params": {"message": "B?"}}],
            "edges": [{"from": "go", "to": "a"}, {"from": "go", "to": "b"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    run = await fire(pool, "both/manual")

    async def both_parked() -> bool:
        return await node_statuses(pool, run) == {
            "go": "SUCCESS", "a": "WAITING", "b": "WAITING"} and \
            await pool.fetchval(
                "SELECT status FROM workflow_executions WHERE id = $1", run) == "WAITING"

    await wait_for(both_parked)
    await pool.execute("UPDATE workflow_executions SET start_time = start_time"
                       " - interval '3 hours', worked_at = worked_at - interval '90 minutes'"
                       " WHERE id = $1", run)
    await pool.execute("UPDATE node_executions SET start_time = start_time"
                       " - CASE WHEN node_id = 'go' THEN interval '3 hours'"
                       " ELSE interval '90 minutes' END, end_time = end_time"
                       " - interval '3 hours' WHERE execution_id = $1", run)
    await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))

    async def taken_up() -> Any:
        return await pool.fetchrow(
            "SELECT status, error_code, idle_ms FROM workflow_executions"
            " WHERE id = $1 AND attempt = 2 AND status <> 'RUNNING'", run)

    row = await wait_for(taken_up)
    assert (row["status"], row["error_code"]) == ("ERROR", "TIMEOUT")
    assert 90 * 60_000 <= row["idle_ms"] < 91 * 60_000
    assert set((await node_statuses(pool, run)).values()) <= {"CANCELED", "ERROR", "SUCCESS"}


async def test_working_time_still_counts_and_a_timed_out_run_leaves_no_open_row(
    pool: asyncpg.Pool, dsn: str
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    async with serve_get("/slow", slow) as port:
        call = {"method": "GET", "url": f"http://127.0.0.1:{port}/slow"}
        await apply_doc(pool, {"workflows": [{
            "key": "late", "timeout": "1h",
            "graph": {"nodes": [{"id": "call", "type": "http", "params": call}]},
            "triggers": [{"name": "manual", "type": "manual"}]}]})
        run = await fire(pool, "late/manual")
        # Taken up for the first time with its hour of work already used (start_time is
        # kept across take-ups): the deadline falls during the node's first write. The
        # executor starts only after the change, so it cannot take the run up before it.
        await pool.execute("UPDATE workflow_executions SET start_time = now()"
                           " - interval '2 hours' WHERE id = $1", run)
        async with running(pool, dsn):
            row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == ("ERROR", "TIMEOUT")
    statuses = await node_statuses(pool, run)
    assert statuses in ({}, {"call": "CANCELED"}), statuses


async def test_canceling_a_parked_run_closes_its_waiting_row(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, approval_doc())
    run = await fire(pool, "release/manual")
    await parked(pool, run)
    await request_cancel(pool, run)
    row = await pool.fetchrow(
        "SELECT status, error_code FROM workflow_executions WHERE id = $1", run)
    assert tuple(row) == ("CANCELED", "CANCELED")
    node = await pool.fetchrow("SELECT status, error_code, end_time FROM node_executions"
                               " WHERE execution_id = $1", run)
    assert (node["status"], node["error_code"]) == ("CANCELED", "CANCELED")
    assert node["end_time"] is not None


async def test_a_run_canceled_after_its_process_died_closes_the_interrupted_attempt(
    pool: asyncpg.Pool, dsn: str
) -> None:
    await apply_doc(pool, approval_doc())
    run = await fire(pool, "release/manual")
    # A process took it up, wrote the RUNNING row of its node and died; then a cancel came.
    now = datetime.now(UTC)
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'dead', attempt = 1,"
        " start_time = $2, lease_expires_at = $2 WHERE id = $1", run, now - timedelta(minutes=1))
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
        " start_time) VALUES ($1, 'ask', 'approval', 'RUNNING', 1, $2)", run, now)
    assert (await request_cancel(pool, run)).status == "RUNNING"  # flagged for its owner
    async with running(pool, dsn):
        row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == ("CANCELED", "CANCELED")
    assert await node_statuses(pool, run) == {"ask": "CANCELED"}


async def test_a_cancel_that_meets_the_park_is_not_lost(pool: asyncpg.Pool, dsn: str) -> None:
    await apply_doc(pool, approval_doc())
    run = await fire(pool, "release/manual")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'owner', attempt = 1,"
        " start_time = now(), lease_expires_at = now() + interval '1 minute' WHERE id = $1", run)
    await request_cancel(pool, run)  # while it runs: flagged
    # Its executor parks it a day ahead; the cancel's own write (which needs the lease)
    # would be refused after this.
    async with pool.acquire() as conn:
        written = await write_progress(conn, "owner", [], [ExecutionUpdate(
            id=run, status="WAITING", resume_at=datetime.now(UTC) + timedelta(days=1))])
    assert written == {run}
    due = await pool.fetchval(
        "SELECT resume_at <= now() FROM workflow_executions WHERE id = $1", run)
    assert due  # taken up at once, not in a day
    async with running(pool, dsn):
        row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == ("CANCELED", "CANCELED")


def slow_call_doc(port: int) -> dict[str, Any]:
    call = {"method": "GET", "url": f"http://127.0.0.1:{port}/answer"}
    return {"workflows": [{
        "key": "outage", "timeout": "1h",
        "graph": {"nodes": [{"id": "call", "type": "http", "params": call}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]}


async def test_time_handed_back_does_not_count_toward_the_workflow_timeout(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """A graceful stop hands the run back; two hours later a daemon takes it up again: its
    hour of working time is not used up (it ended TIMEOUT at once)."""
    answer = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await answer.wait()
        return web.json_response({"ok": True})

    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_DRAIN": "100ms"})
    async with serve_get("/answer", held) as port:
        await apply_doc(pool, slow_call_doc(port))
        run = await fire(pool, "outage/manual")
        first = Executor(pool=pool, dsn=dsn, settings=settings)
        await first.start()
        try:
            await wait_for(lambda: pool.fetchrow(
                "SELECT 1 FROM node_executions WHERE execution_id = $1 AND status = 'RUNNING'",
                run))
        finally:
            await first.stop()
        handed = await pool.fetchrow(
            "SELECT status, start_time, worked_at FROM workflow_executions WHERE id = $1", run)
        assert handed["status"] == "NEW"
        assert handed["worked_at"] >= handed["start_time"]
        # Two hours pass with no daemon (every instant recorded so far moves back).
        await pool.execute(
            "UPDATE workflow_executions SET start_time = start_time - interval '2 hours',"
            " worked_at = worked_at - interval '2 hours' WHERE id = $1", run)
        await pool.execute(
            "UPDATE node_executions SET start_time = start_time - interval '2 hours',"
            " end_time = end_time - interval '2 hours' WHERE execution_id = $1", run)
        answer.set()
        async with running(pool, dsn):
            row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == ("SUCCESS", None), row["error_message"]
    assert row["idle_ms"] >= 2 * 3600 * 1000
    attempts = await pool.fetch(
        "SELECT attempt, status FROM node_executions WHERE execution_id = $1 ORDER BY attempt",
        run)
    assert [tuple(a) for a in attempts] == [(1, "CANCELED"), (2, "SUCCESS")]


@pytest.mark.parametrize(("worked_minutes", "outcome"), [
    (10, ("SUCCESS", None)),
    # The working time before the crash still counts.
    (61, ("ERROR", "TIMEOUT")),
])
async def test_time_after_a_dead_process_last_heartbeat_does_not_count(
    pool: asyncpg.Pool, executor: Executor, worked_minutes: int,
    outcome: tuple[str, str | None],
) -> None:
    """A process took the run up two hours ago, worked on it (its last heartbeat
    ``worked_minutes`` later) and died; the run's lease ran out long ago. Taken up again,
    the run has what is left of its hour: the outage is not working time."""
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.json_response({"ok": True})

    async with serve_get("/answer", slow) as port:
        await apply_doc(pool, slow_call_doc(port))
        await executor.stop()
        run = await fire(pool, "outage/manual")
        await pool.execute(
            "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'dead',"
            " attempt = 1, start_time = now() - interval '2 hours',"
            " worked_at = now() - interval '2 hours' + $2 * interval '1 minute',"
            " lease_expires_at = now() - interval '90 minutes' WHERE id = $1",
            run, worked_minutes)
        await executor.start()
        row = await final_status(pool, run)
    assert (row["status"], row["error_code"]) == outcome
    # Credited: from the last heartbeat to the take-up.
    assert (120 - worked_minutes) * 60_000 <= row["idle_ms"] < (121 - worked_minutes) * 60_000


async def test_heartbeats_hand_backs_and_take_ups_record_the_working_time(
    pool: asyncpg.Pool,
) -> None:
    """The store's accounting: a heartbeat and a hand-back record when the run was last
    worked on; a take-up credits the time since then as idle."""
    await apply_doc(pool, {"workflows": [{
        "key": "ledger", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    run = await fire(pool, "ledger/manual")
    lease = timedelta(minutes=1)

    async def state() -> Any:
        return await pool.fetchrow(
            "SELECT status, worked_at, idle_ms FROM workflow_executions WHERE id = $1", run)

    async def db_now() -> datetime:
        value: datetime = await pool.fetchval("SELECT now()")
        return value

    async def an_hour_ago() -> None:
        await pool.execute("UPDATE workflow_executions SET worked_at = worked_at"
                           " - interval '1 hour' WHERE id = $1", run)

    before = await db_now()
    [claimed] = await claim_executions(pool, "me", lease, 10)
    first = await state()
    assert (claimed.id, claimed.idle, first["idle_ms"]) == (run, timedelta(0), 0)
    assert not claimed.idle_known  # never worked on before: nothing was known
    assert before <= first["worked_at"] <= await db_now()
    await an_hour_ago()
    before = await db_now()
    assert await renew_leases(pool, "me", [run], lease) == {run: False}
    beat = await state()
    assert before <= beat["worked_at"] <= await db_now()
    assert beat["idle_ms"] == 0  # a heartbeat credits nothing: the run was worked on
    await an_hour_ago()
    before = await db_now()
    assert await release_executions(pool, "me", [run]) == 1
    handed = await state()
    assert (handed["status"], handed["idle_ms"]) == ("NEW", 0)
    assert before <= handed["worked_at"] <= await db_now()
    await an_hour_ago()  # an hour handed back
    [again] = await claim_executions(pool, "other", lease, 10)
    taken = await state()
    assert again.idle == timedelta(milliseconds=taken["idle_ms"]) and again.idle_known
    assert 60 * 60_000 <= taken["idle_ms"] < 61 * 60_000


@pytest.mark.parametrize("cuts", [1, 2])
async def test_a_wait_cut_before_it_parked_keeps_its_end(
    pool: asyncpg.Pool, executor: Executor, cuts: int
) -> None:
    """A process died between a wait node's RUNNING row and its park (``cuts`` times, the
    first ten minutes ago): taken up again, the wait ends an hour after it first started,
    not an hour after the take-up."""
    await apply_doc(pool, {"workflows": [{
        "key": "pause",
        "graph": {"nodes": [{"id": "hold", "type": "wait", "params": {"duration": "1h"}},
                            {"id": "after", "type": "noop"}],
                  "edges": [{"from": "hold", "to": "after"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    await executor.stop()
    run = await fire(pool, "pause/manual")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'dead',"
        " attempt = $2, start_time = now() - interval '10 minutes', worked_at = now(),"
        " lease_expires_at = now() - interval '1 second' WHERE id = $1", run, cuts)
    # What the dead processes left: the wait's attempts, the last one still RUNNING.
    for attempt in range(1, cuts + 1):
        last = attempt == cuts
        await pool.execute(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
            " input, start_time, end_time, error_code)"
            " VALUES ($1, 'hold', 'wait', $2, $3, '{\"duration\": \"1h\"}',"
            " now() - interval '10 minutes' + $3::int * interval '1 minute', $4, $5)",
            run, "RUNNING" if last else "ERROR", attempt,
            None if last else datetime.now(UTC), None if last else "INTERRUPTED")
    first_start = await pool.fetchval(
        "SELECT start_time FROM node_executions WHERE execution_id = $1 AND attempt = 1", run)
    await executor.start()
    parked_row = await wait_for(lambda: pool.fetchrow(
        "SELECT resume_at FROM workflow_executions WHERE id = $1 AND status = 'WAITING'", run))
    assert parked_row["resume_at"] == first_start + timedelta(hours=1)
    rows = await pool.fetch(
        "SELECT attempt, status, error_code, output FROM node_executions"
        " WHERE execution_id = $1 ORDER BY attempt", run)
    assert [(r["attempt"], r["status"], r["error_code"]) for r in rows] == [
        *[(a, "ERROR", "INTERRUPTED") for a in range(1, cuts + 1)], (cuts + 1, "WAITING", None)]
    until = (first_start + timedelta(hours=1)).isoformat()
    assert rows[-1]["output"] == {"wait_until": until, "until": until}


async def test_a_cut_wait_whose_end_has_passed_goes_on_at_once(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """A one-hour wait cut two hours ago (its process died before it parked; the outage
    outlasted it): taken up, it ends at once. It parked until an instant already past and
    needed a second take-up to go on."""
    await apply_doc(pool, {"workflows": [{
        "key": "pause", "timeout": "4h",
        "graph": {"nodes": [{"id": "hold", "type": "wait", "params": {"duration": "1h"}},
                            {"id": "after", "type": "noop"}],
                  "edges": [{"from": "hold", "to": "after"}]},
        "triggers": [{"name": "manual", "type": "manual"}]}]})
    await executor.stop()
    run = await fire(pool, "pause/manual")
    await pool.execute(
        "UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'dead',"
        " attempt = 1, start_time = now() - interval '2 hours', worked_at = now(),"
        " lease_expires_at = now() - interval '1 second' WHERE id = $1", run)
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
        " input, start_time) VALUES ($1, 'hold', 'wait', 'RUNNING', 1,"
        " '{\"duration\": \"1h\"}', now() - interval '2 hours')", run)
    first_start = await pool.fetchval(
        "SELECT start_time FROM node_executions WHERE execution_id = $1", run)
    await executor.start()
    row = await final_status(pool, run)
    # Taken up once (attempt 2), never parked and woken again.
    assert (row["status"], row["attempt"], row["resume_at"]) == ("SUCCESS", 2, None)
    rows = await pool.fetch(
        "SELECT node_id, attempt, status, error_code, output FROM node_executions"
        " WHERE execution_id = $1 ORDER BY start_time, attempt", run)
    until = (first_start + timedelta(hours=1)).isoformat()
    assert [(r["node_id"], r["attempt"], r["status"], r["error_code"], r["output"])
            for r in rows] == [
        ("hold", 1, "ERROR", "INTERRUPTED", None),
        ("hold", 2, "SUCCESS", None, {"until": until}),
        ("after", 1, "SUCCESS", None, None)]
