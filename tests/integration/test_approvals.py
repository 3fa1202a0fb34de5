"""The approval node with a real executor and PostgreSQL: the run parks WAITING, a decision
(by resume token or by an operator) wakes it and picks the edge; a token works once, also
when two decisions race; a timeout is a decision too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, final_status, fire, wait_for
from triggerd.config import load_settings
from triggerd.errors import Conflict, NotFound, UsageError
from triggerd.executor.service import Executor
from triggerd.operations import Actor
from triggerd.operations.approvals import DecisionRequest, decide, decide_by_token

OPERATOR = Actor(name="token:ops", via="api")


def _doc(timeout: str | None = "1h") -> dict[str, Any]:
    ask: dict[str, Any] = {"message": "Ship {{ input.version }}?"}
    if timeout is not None:
        ask["timeout"] = timeout
    return {"workflows": [{
        "key": "release",
        "graph": {
            "nodes": [
                {"id": "link", "type": "set",
                 "params": {"value": {"url": "{{ execution.resume_url }}"}}},
                {"id": "ask", "type": "approval", "params": ask},
                {"id": "ship", "type": "set", "params": {"value": {"shipped": True}}},
                {"id": "stop", "type": "set", "params": {"value": {"shipped": False}}},
                {"id": "late", "type": "log", "params": {"message": "nobody answered"}},
            ],
            "edges": [
                {"from": "link", "to": "ask"},
                {"from": "ask", "to": "ship", "when": "approved"},
                {"from": "ask", "to": "stop", "when": "rejected"},
                {"from": "ask", "to": "late", "when": "timeout"},
            ],
        },
        "triggers": [{"name": "manual", "type": "manual"}],
    }]}


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_HTTP_PUBLIC_URL": "https://t.example.com"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    yield ex
    await ex.stop()


async def _parked(pool: asyncpg.Pool, run: str, executor: Executor) -> str:
    """Wait until the run waits on its approval; the token of its resume URL."""
    async def waiting() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM node_executions WHERE execution_id = $1 AND node_id = 'ask'"
            " AND status = 'WAITING'", run))

    await wait_for(waiting)
    assert await pool.fetchval("SELECT status FROM workflow_executions WHERE id = $1",
                               run) == "WAITING"
    prefix = "https://t.example.com/hooks/_resume/"
    # The link decides the run: whoever reads its rows (a viewer) sees it masked.
    shown = await pool.fetchval("SELECT output->>'url' FROM node_executions WHERE"
                                " execution_id = $1 AND node_id = 'link'", run)
    assert shown == prefix + "***"
    # The nodes after it got it whole; so does the encrypted copy a restart resumes from.
    blob = await pool.fetchval("SELECT ciphertext FROM node_outputs_resume WHERE"
                               " execution_id = $1 AND node_id = 'link'", run)
    assert executor.resume_key is not None
    output = executor.resume_key.decrypt(blob, execution_id=run, node_id="link", attempt=1)
    assert isinstance(output, dict)
    url = output["url"]
    assert isinstance(url, str) and url.startswith(prefix) and len(url) > len(prefix) + 40
    return url.removeprefix(prefix)


async def _nodes(pool: asyncpg.Pool, run: str) -> dict[str, str]:
    rows = await pool.fetch("SELECT node_id, status FROM node_executions WHERE execution_id"
                            " = $1", run)
    return {r["node_id"]: r["status"] for r in rows}


async def test_a_decision_by_resume_link_wakes_the_run_and_picks_the_edge(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, _doc())
    run = await fire(pool, "release/manual", {"version": "1.2"})
    token = await _parked(pool, run, executor)
    assert await pool.fetchval("SELECT message FROM approvals") == "Ship 1.2?"
    decided = await decide_by_token(pool, token, DecisionRequest(
        decision="approved", note="looks good", input={"channel": "prod"}))
    assert (decided.execution_id, decided.decision) == (run, "approved")
    assert (await final_status(pool, run))["status"] == "SUCCESS"
    assert await _nodes(pool, run) == {"link": "SUCCESS", "ask": "SUCCESS", "ship": "SUCCESS",
                                       "stop": "SKIPPED", "late": "SKIPPED"}
    output = await pool.fetchval("SELECT output FROM node_executions WHERE execution_id = $1"
                                 " AND node_id = 'ask' AND status = 'SUCCESS'", run)
    assert output == {"decision": "approved", "note": "looks good", "by": "resume-url",
                      "input": {"channel": "prod"}}
    # Single use: the same link again is refused, and so is any link once the run ended.
    with pytest.raises(Conflict, match=r"^this resume link was already used \(decision:"
                                       r" approved\)$"):
        await decide_by_token(pool, token, DecisionRequest(decision="rejected"))
    with pytest.raises(NotFound, match=r"^unknown resume link$"):
        await decide_by_token(pool, "nope", DecisionRequest(decision="approved"))
    audit = await pool.fetchrow("SELECT actor, action, target, note, detail FROM audit_log")
    assert tuple(audit) == ("resume-url", "decide", run, "looks good",
                            {"decision": "approved"})
    # Only the hash is stored.
    assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE token_hash ="
                               " convert_to($1, 'UTF8')", token) == 0


async def test_an_operator_rejects_and_a_run_not_waiting_is_a_conflict(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, _doc())
    run = await fire(pool, "release/manual", {"version": "2.0"})
    await _parked(pool, run, executor)
    with pytest.raises(UsageError, match=r"^decision: 'maybe' is not one of approved,"
                                         r" rejected$"):
        await decide(pool, OPERATOR, run, DecisionRequest(decision="maybe"))
    await decide(pool, OPERATOR, run, DecisionRequest(decision="rejected", note="not today"))
    # A second decision while the first is not used yet is refused too.
    with pytest.raises(Conflict, match=f"^execution {run} is not waiting for a decision$"):
        await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    assert (await final_status(pool, run))["status"] == "SUCCESS"
    assert (await _nodes(pool, run))["stop"] == "SUCCESS"
    output = await pool.fetchval("SELECT output FROM node_executions WHERE execution_id = $1"
                                 " AND node_id = 'ask' AND status = 'SUCCESS'", run)
    assert (output["decision"], output["by"], output["note"]) == (
        "rejected", "token:ops", "not today")
    with pytest.raises(Conflict, match=f"^execution {run} is not waiting for a decision$"):
        await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    actions = await pool.fetch("SELECT actor, action FROM audit_log")
    assert [tuple(r) for r in actions] == [("token:ops", "decide")]


async def test_a_link_posted_after_an_operator_decided_is_a_conflict(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """The link was still unused: its late decision was written (202, audited) and woke a
    run that waits for none; a later approval would have taken it."""
    doc = _doc()
    graph = doc["workflows"][0]["graph"]
    graph["nodes"].append({"id": "pause", "type": "wait", "params": {"duration": "1h"}})
    graph["edges"].append({"from": "stop", "to": "pause"})
    await apply_doc(pool, doc)
    run = await fire(pool, "release/manual", {"version": "3.0"})
    token = await _parked(pool, run, executor)
    await decide(pool, OPERATOR, run, DecisionRequest(decision="rejected"))

    async def parked_on_the_wait() -> bool:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM node_executions WHERE execution_id = $1"
            " AND node_id = 'pause' AND status = 'WAITING'", run))

    await wait_for(parked_on_the_wait)
    resume_at = await pool.fetchval("SELECT resume_at FROM workflow_executions WHERE id = $1",
                                    run)
    with pytest.raises(Conflict, match=f"^execution {run} is not waiting for a decision$"):
        await decide_by_token(pool, token, DecisionRequest(decision="approved"))
    assert await pool.fetchval("SELECT resume_at FROM workflow_executions WHERE id = $1",
                               run) == resume_at
    assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE decision IS NOT NULL"
                               " AND used_by_node IS NULL") == 0
    actions = await pool.fetch("SELECT actor, action FROM audit_log")
    assert [tuple(r) for r in actions] == [("token:ops", "decide")]


async def test_a_link_issued_before_the_run_was_taken_up_again_stays_masked(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """The run resumes with a new link; the first one (still valid: it decides the run's
    next approval) came back whole from the restored outputs, and a node after the resume
    stored it in clear, for any viewer to use."""
    doc = _doc()
    nodes = doc["workflows"][0]["graph"]["nodes"]
    edges = doc["workflows"][0]["graph"]["edges"]
    nodes.append({"id": "copy", "type": "set", "params": {
        "value": {"again": "{{ nodes.link.output.url }}",
                  "encoded": "{{ nodes.link.output.url | urlencode }}"}}})
    edges.append({"from": "ship", "to": "copy"})
    await apply_doc(pool, doc)
    run = await fire(pool, "release/manual", {"version": "3.0"})
    token = await _parked(pool, run, executor)
    await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    assert (await final_status(pool, run))["status"] == "SUCCESS"
    copied = await pool.fetchval("SELECT output FROM node_executions WHERE execution_id = $1"
                                 " AND node_id = 'copy'", run)
    assert copied == {"again": "https://t.example.com/hooks/_resume/***",
                      "encoded": "https%3A//t.example.com/hooks/_resume/***"}
    stored = await pool.fetchval("SELECT string_agg(coalesce(input::text, '') ||"
                                 " coalesce(output::text, ''), '') FROM node_executions"
                                 " WHERE execution_id = $1", run)
    assert token not in stored


async def test_two_racing_decisions_on_one_link_make_one_decision(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, _doc())
    run = await fire(pool, "release/manual", {"version": "3"})
    token = await _parked(pool, run, executor)
    results = await asyncio.gather(
        decide_by_token(pool, token, DecisionRequest(decision="approved")),
        decide_by_token(pool, token, DecisionRequest(decision="rejected")),
        return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict)
    assert (await final_status(pool, run))["status"] == "SUCCESS"
    taken = "ship" if won[0].decision == "approved" else "stop"
    assert (await _nodes(pool, run))[taken] == "SUCCESS"
    assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE decision IS NOT NULL"
                               ) == 1


async def test_no_decision_before_the_deadline_is_a_timeout(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await apply_doc(pool, _doc(timeout="1s"))
    run = await fire(pool, "release/manual", {"version": "4"})
    token = await _parked(pool, run, executor)
    assert (await final_status(pool, run))["status"] == "SUCCESS"
    nodes = await _nodes(pool, run)
    assert (nodes["late"], nodes["ship"], nodes["stop"]) == ("SUCCESS", "SKIPPED", "SKIPPED")
    output = await pool.fetchval("SELECT output FROM node_executions WHERE execution_id = $1"
                                 " AND node_id = 'ask' AND status = 'SUCCESS'", run)
    assert output == {"decision": "timeout", "note": None, "by": None, "input": None}
    with pytest.raises(Conflict, match=f"^execution {run} already ended \\(SUCCESS\\)$"):
        await decide_by_token(pool, token, DecisionRequest(decision="approved"))


async def test_a_decision_while_the_run_still_runs_is_not_lost(pool: asyncpg.Pool) -> None:
    """The decision lands between the node's look and the park: the park keeps the
    wake-up, so the run is claimable at once rather than at its deadline."""
    from datetime import UTC, datetime, timedelta

    from triggerd.store import approvals
    from triggerd.store.executions import ExecutionUpdate, claim_executions, write_progress

    await apply_doc(pool, _doc())
    run = await fire(pool, "release/manual", {"version": "5"})
    async with pool.acquire() as conn:
        [claimed] = await claim_executions(conn, "owner", timedelta(minutes=1), 10)
        assert claimed.id == run
        async with conn.transaction():
            await approvals.record_decision(conn, run, approvals.Decision(
                decision="approved", note=None, by="token:ops", input=None))
        await write_progress(conn, "owner", [], [ExecutionUpdate(
            id=run, status="WAITING", resume_at=datetime.now(UTC) + timedelta(hours=1))])
        assert await conn.fetchval("SELECT resume_at <= now() FROM workflow_executions"
                                   " WHERE id = $1", run) is True


async def test_a_resume_links_decision_is_audited_in_the_runs_tenant(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.triggers import FireRequest
    from triggerd.operations.triggers import fire as fire_trigger

    await apply_doc(pool, {"tenant": "acme", **_doc()})
    fired = await fire_trigger(pool, cli_actor("acme"), FireRequest(
        trigger="release/manual", input={"version": "2"}))
    token = await _parked(pool, fired.execution_id, executor)
    await decide_by_token(pool, token, DecisionRequest(decision="approved"))
    audit = await pool.fetchrow("SELECT tenant_id, actor, target FROM audit_log"
                                " WHERE action = 'decide'")
    assert tuple(audit) == ("acme", "resume-url", fired.execution_id)


async def test_a_decision_racing_an_operators_makes_one_decision(pool: asyncpg.Pool) -> None:
    """The link's decision waits for the run's lock while an operator decides: it sees the
    operator's decision once it has the lock and is refused (it read the run as it was
    before the wait, wrote a second decision, and the operator's "rejected" was lost)."""
    from tests.helpers import wait_until_blocked
    from triggerd.store import approvals

    await apply_doc(pool, _doc())
    run = await fire(pool, "release/manual", {"version": "6"})
    async with pool.acquire() as conn:
        token = await approvals.create_token(conn, run)
        await conn.execute("UPDATE workflow_executions SET status = 'WAITING' WHERE id = $1",
                           run)
        async with conn.transaction():
            # As decide() does: the run's lock, then the decision.
            await conn.fetchval("SELECT status FROM workflow_executions WHERE id = $1"
                                " FOR UPDATE", run)
            await approvals.record_decision(conn, run, approvals.Decision(
                decision="rejected", note=None, by="token:ops", input=None))
            racing = asyncio.ensure_future(decide_by_token(
                pool, token, DecisionRequest(decision="approved")))
            await wait_until_blocked(pool, "SELECT")
    with pytest.raises(Conflict, match=f"^execution {run} is not waiting for a decision$"):
        await racing
    assert await pool.fetchval("SELECT array_agg(decision) FROM resume_tokens WHERE"
                               " decision IS NOT NULL") == ["rejected"]


DEADLINE_SETTINGS = {"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                     "TRIGGERD_HTTP_PUBLIC_URL": "https://t.example.com"}


async def _parked_with_no_executor(pool: asyncpg.Pool, dsn: str) -> tuple[str, str]:
    """A run parked on its approval (1 h deadline), and its link; no executor runs."""
    await apply_doc(pool, _doc(timeout="1h"))
    first = Executor(pool=pool, dsn=dsn, settings=load_settings(environ=DEADLINE_SETTINGS))
    await first.start()
    run = await fire(pool, "release/manual", {"version": "7"})
    token = await _parked(pool, run, first)
    await first.stop()
    return run, token


async def _finished_by_a_new_executor(pool: asyncpg.Pool, dsn: str, run: str
                                      ) -> dict[str, str]:
    """The run woken and finished (SUCCESS) by a fresh executor; its nodes' statuses."""
    await pool.execute("UPDATE workflow_executions SET resume_at = now() WHERE id = $1", run)
    second = Executor(pool=pool, dsn=dsn, settings=load_settings(environ=DEADLINE_SETTINGS))
    await second.start()
    try:
        assert (await final_status(pool, run))["status"] == "SUCCESS"
    finally:
        await second.stop()
    return await _nodes(pool, run)


async def test_a_decision_after_the_deadline_is_refused_and_the_run_times_out(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """The deadline passed while no executor looked (a daemon down): the decision is
    'timeout', as promised; a late link or operator is told so, not obeyed."""
    run, token = await _parked_with_no_executor(pool, dsn)
    await pool.execute("UPDATE approvals SET expires_at = now() - interval '1 minute'")
    late = (f"^execution {run} is not waiting for a decision: its approval 'ask' timed out"
            r" at \S+ \(its decision is 'timeout'\)$")
    with pytest.raises(Conflict, match=late):
        await decide_by_token(pool, token, DecisionRequest(decision="approved"))
    with pytest.raises(Conflict, match=late):
        await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE decision IS NOT NULL"
                               ) == 0
    nodes = await _finished_by_a_new_executor(pool, dsn, run)
    assert (nodes["late"], nodes["ship"]) == ("SUCCESS", "SKIPPED")


async def test_a_decision_made_in_time_stays_the_runs_after_the_deadline(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """An operator decided before the deadline; no executor looked before it passed. The
    node takes the waiting decision (it looks before the clock), so a late link is told a
    decision waits, not that the approval timed out."""
    run, token = await _parked_with_no_executor(pool, dsn)
    await decide(pool, OPERATOR, run, DecisionRequest(decision="approved"))
    await pool.execute("UPDATE approvals SET expires_at = now() - interval '1 minute'")
    with pytest.raises(Conflict) as late:
        await decide_by_token(pool, token, DecisionRequest(decision="rejected"))
    assert "timed out" not in str(late.value)
    nodes = await _finished_by_a_new_executor(pool, dsn, run)
    assert (nodes["ship"], nodes["late"]) == ("SUCCESS", "SKIPPED")
