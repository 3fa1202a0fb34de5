"""Sub-workflows: a workflow node starts a child run (once per parent run and node), the
parent waits without a worker and takes the child's output or failure, or goes on at once;
canceling a parent cancels its waiting children; runs nest at most max_workflow_depth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import yaml

from tests.helpers import apply_doc, final_status, fire, wait_for, wait_until_blocked
from triggerd.config import load_settings
from triggerd.errors import Conflict, DefinitionError
from triggerd.executor.service import Executor
from triggerd.operations import Actor
from triggerd.operations.executions import cancel, retry
from triggerd.store.executions import child_executions, request_cancel

OPERATOR = Actor(name="token:ops", via="api")

DOC = """
workflows:
  - key: order
    graph:
      nodes:
        - {id: invoice, type: workflow, params: {workflow: invoice, input: {n: "{{ input.n }}"}}}
        - {id: log, type: workflow, params: {workflow: trail, wait: false}}
        - {id: done, type: set, params: {value: {total: "{{ nodes.invoice.output.total }}"}}}
      edges:
        - {from: invoice, to: log}
        - {from: log, to: done}
    triggers: [{name: manual, type: manual}]
  - key: invoice
    graph:
      nodes:
        - {id: price, type: set, params: {value: {total: "{{ input.n * 10 }}"}}}
  - key: trail
    graph: {nodes: [{id: a, type: noop}]}
  - key: slow
    graph: {nodes: [{id: hold, type: wait, params: {duration: 1h}}]}
  - key: waits-on-slow
    graph: {nodes: [{id: call, type: workflow, params: {workflow: slow}}]}
    triggers: [{name: manual, type: manual}]
  - key: fails
    graph: {nodes: [{id: boom, type: fail, params: {code: NOPE, message: "no stock"}}]}
  - key: calls-failing
    graph: {nodes: [{id: call, type: workflow, params: {workflow: fails}}]}
    triggers: [{name: manual, type: manual}]
  - key: fails-first
    graph:
      nodes:
        - {id: count, type: memory, params: {op: increment, key: runs}}
        - {id: first, type: if, params: {condition: "{{ nodes.count.output.value == 1 }}"}}
        - {id: boom, type: fail, params: {code: NOPE, message: "first run fails"}}
        - {id: hold, type: wait, params: {duration: 1h}}
      edges:
        - {from: count, to: first}
        - {from: first, to: boom, when: "true"}
        - {from: first, to: hold, when: "false"}
  - key: spawns
    graph:
      nodes:
        - {id: call, type: workflow, params: {workflow: fails-first, wait: false}}
        - {id: hold, type: wait, params: {duration: 1h}}
      edges: [{from: call, to: hold}]
    triggers: [{name: manual, type: manual}]
"""


@pytest.fixture
async def executor(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[Executor]:
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_MAX_WORKFLOW_DEPTH": "3"})
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    yield ex
    await ex.stop()


async def _apply(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, yaml.safe_load(DOC))


async def test_the_parent_waits_for_the_child_and_takes_its_output(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await _apply(pool)
    parent = await fire(pool, "order/manual", {"n": 4})
    row = await final_status(pool, parent)
    assert row["status"] == "SUCCESS", row["error_message"]
    assert row["output"] == {"total": 40}
    children = await child_executions(pool, parent)
    assert [(c["workflow"], c["status"] in ("NEW", "RUNNING", "SUCCESS")) for c in children
            ] == [("invoice", True), ("trail", True)]
    invoice = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1",
                                  children[0]["id"])
    assert (str(invoice["parent_execution_id"]), invoice["trigger_type"], invoice["input"]) == (
        parent, "workflow", {"n": 4})
    assert invoice["context"]["trigger"]["depth"] == 1
    # No wait: the node's output is the child's id.
    log = await pool.fetchval("SELECT output FROM node_executions WHERE execution_id = $1"
                              " AND node_id = 'log'", parent)
    assert log == {"execution_id": children[1]["id"]}


async def test_a_childs_output_cut_at_the_limit_fails_the_node_clearly(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """The parent got the truncation marker as the child's output: its nodes read the
    marker's keys (`output['items']` found dict.items) and failed with a puzzling error."""
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                      "TRIGGERD_EXECUTOR_MAX_OUTPUT_BYTES": "2000"})
    await apply_doc(pool, yaml.safe_load("""
workflows:
  - key: big
    graph: {nodes: [{id: s, type: set, params: {value: {items: "{{ range(1000) | list }}"}}}]}
  - key: parent
    graph:
      nodes:
        - {id: c, type: workflow, params: {workflow: big}}
        - {id: use, type: set, params: {value: "{{ nodes.c.output['items'] | length }}"}}
      edges: [{from: c, to: use}]
    triggers: [{name: manual, type: manual}]
"""))
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    try:
        parent = await fire(pool, "parent/manual")
        row = await final_status(pool, parent)
    finally:
        await ex.stop()
    [child] = await child_executions(pool, parent)
    assert (row["status"], row["error_code"]) == ("ERROR", "CHILD_OUTPUT_TRUNCATED")
    assert row["error_message"].startswith(
        f"node 'c' failed: workflow node: the output of the run {child['id']} of big (")
    assert row["error_message"].endswith(
        " bytes) was cut at [executor] max_output_bytes (2000); a parent gets the child's"
        " stored output: return less from the child, or raise the limit")


async def test_a_failed_child_fails_the_node(pool: asyncpg.Pool, executor: Executor) -> None:
    await _apply(pool)
    parent = await fire(pool, "calls-failing/manual")
    row = await final_status(pool, parent)
    assert row["status"] == "ERROR"
    [child] = await child_executions(pool, parent)
    assert row["error_code"] == "CHILD_FAILED"
    assert row["error_message"] == (
        f"node 'call' failed: workflow node: the run {child['id']} of fails ended ERROR"
        " (NOPE: node 'boom' failed: no stock)")


async def test_canceling_a_waiting_parent_cancels_its_child(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await _apply(pool)
    parent = await fire(pool, "waits-on-slow/manual")

    async def both_waiting() -> bool:
        rows = await pool.fetch("SELECT status FROM workflow_executions")
        return [r["status"] for r in rows] == ["WAITING", "WAITING"]

    await wait_for(both_waiting)
    await cancel(pool, OPERATOR, parent)
    statuses = await pool.fetch("SELECT id::text AS id, status, error_message"
                                " FROM workflow_executions ORDER BY created_at")
    assert [(r["status"]) for r in statuses] == ["CANCELED", "CANCELED"]
    assert statuses[1]["error_message"] == "canceled with its parent run"
    # Neither leaves a node row open: the child's parked wait stayed WAITING before.
    nodes = await pool.fetch("SELECT node_id, status, error_message FROM node_executions"
                             " ORDER BY node_id")
    assert [(n["node_id"], n["status"]) for n in nodes] == [("call", "CANCELED"),
                                                             ("hold", "CANCELED")]
    assert nodes[1]["error_message"] == "canceled with its parent run"


async def _failed_child_of_waiting_parent(pool: asyncpg.Pool) -> tuple[str, str]:
    """A parent parked in a wait whose ``wait: false`` child ended ERROR."""
    await _apply(pool)
    parent = await fire(pool, "spawns/manual")

    async def parked_with_failed_child() -> str | None:
        # Parked in its wait after the child's end woke it (a parent woken and not yet
        # parked again is RUNNING: a cancel of it only asks its executor to end it). One
        # statement, one snapshot: read apart, the first park and a child that ended (and
        # woke it) just after passed for the end state.
        child: str | None = await pool.fetchval(
            "SELECT c.id::text FROM workflow_executions p"
            " JOIN workflow_executions c ON c.parent_execution_id = p.id"
            " WHERE p.id = $1 AND p.status = 'WAITING'"
            " AND p.resume_at > now() + interval '10 minutes' AND c.status = 'ERROR'", parent)
        return child

    return parent, await wait_for(parked_with_failed_child)


async def test_a_retried_child_is_its_parents_child_and_canceled_with_it(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """The retry of a failed child run had no parent_execution_id: a cancel of the parent
    did not reach it (it ran on for ever in a wait), nor did the parent list it."""
    parent, child = await _failed_child_of_waiting_parent(pool)
    retried = await retry(pool, OPERATOR, child)
    row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", retried)
    assert (str(row["parent_execution_id"]), str(row["retry_of"]), row["trigger_type"]) == (
        parent, child, "retry")
    assert [c["id"] for c in await child_executions(pool, parent)] == [child, retried]

    async def retry_waiting() -> bool:
        return bool(await pool.fetchval(
            "SELECT status = 'WAITING' FROM workflow_executions WHERE id = $1", retried))

    await wait_for(retry_waiting)  # its second run parks in its wait
    await cancel(pool, OPERATOR, parent)
    row = await pool.fetchrow("SELECT * FROM workflow_executions WHERE id = $1", retried)
    assert (row["status"], row["error_message"]) == ("CANCELED", "canceled with its parent run")
    nodes = await pool.fetch("SELECT node_id, status FROM node_executions"
                             " WHERE execution_id = $1 AND status IN ('RUNNING', 'WAITING')",
                             retried)
    assert nodes == []


async def test_a_retried_childs_end_does_not_wake_its_parent(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """No node of the parent waits for the retry of its child: the retry's end leaves the
    parked parent parked until its own time (it was woken, claimed and parked again)."""
    parent, child = await _failed_child_of_waiting_parent(pool)
    before = await pool.fetchrow(
        "SELECT status, resume_at, attempt FROM workflow_executions WHERE id = $1", parent)
    retried = await retry(pool, OPERATOR, child)

    async def retry_status(status: str) -> bool:
        return bool(await pool.fetchval(
            "SELECT status = $2 FROM workflow_executions WHERE id = $1", retried, status))

    await wait_for(lambda: retry_status("WAITING"))
    await cancel(pool, OPERATOR, retried)
    await wait_for(lambda: retry_status("CANCELED"))
    await asyncio.sleep(0.5)  # a wake-up would be taken up within the poll (200 ms)
    row = await pool.fetchrow(
        "SELECT status, resume_at, attempt FROM workflow_executions WHERE id = $1", parent)
    assert tuple(row) == tuple(before)


async def test_a_child_of_a_canceled_run_is_not_retried(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    """Its retry, a child of the canceled run, would be canceled with it as it starts:
    refused, nothing created; the run to retry is the canceled one."""
    parent, child = await _failed_child_of_waiting_parent(pool)
    await cancel(pool, OPERATOR, parent)
    count = await pool.fetchval("SELECT count(*) FROM workflow_executions")
    with pytest.raises(Conflict) as refused:
        await retry(pool, OPERATOR, child)
    assert refused.value.message == (
        f"execution {child} was started by the run {parent}, which was canceled: its retry"
        f" would be canceled with it; retry {parent} instead")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == count
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'retry'") == 0
    # A run above the parent canceled: the same (no executor takes up the run made here).
    await executor.stop()
    await pool.execute("UPDATE workflow_executions SET status = 'ERROR' WHERE id = $1", parent)
    grand = await fire(pool, "spawns/manual")
    await pool.execute("UPDATE workflow_executions SET status = 'CANCELED',"
                       " parent_execution_id = NULL WHERE id = $1", grand)
    await pool.execute("UPDATE workflow_executions SET parent_execution_id = $2 WHERE id = $1",
                       parent, grand)
    with pytest.raises(Conflict) as refused:
        await retry(pool, OPERATOR, child)
    assert f"was started by the run {grand}, which was canceled" in refused.value.message
    # A run above still running, flagged by its cancel: it will end CANCELED.
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING',"
                       " cancel_requested = true WHERE id = $1", grand)
    with pytest.raises(Conflict) as refused:
        await retry(pool, OPERATOR, child)
    assert refused.value.message == (
        f"execution {child} was started by the run {grand}, which is being canceled: its"
        f" retry would be canceled with it; retry {grand} instead")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == count + 1


async def _retry_and_cancel_interleaved(
    pool: asyncpg.Pool, executor: Executor, cancel_first: bool
) -> tuple[str, str]:
    """A retry of a failed child and a cancel of its parent, each in its own transaction,
    in a fixed interleaving: cancel_first, the cancel's statements run (its walk down does
    not see the retry's uncommitted run) while the retry waits for a lock on audit_log
    after its look and insert, and commit; else the cancel's statements run before the
    retry's and commit after it. Returns the parent and the retry's run."""
    parent, child = await _failed_child_of_waiting_parent(pool)
    await executor.stop()  # no executor takes up the retry: its status is the store's
    async with pool.acquire() as holder, pool.acquire() as canceler:
        if cancel_first:
            hold = holder.transaction()
            await hold.start()
            await holder.execute("LOCK TABLE audit_log IN SHARE MODE")
            task = asyncio.create_task(retry(pool, OPERATOR, child))
            try:
                await wait_until_blocked(pool, "INSERT INTO audit_log")
                async with canceler.transaction():
                    await request_cancel(canceler, parent)
            finally:
                await hold.rollback()
        else:
            async with canceler.transaction():
                await request_cancel(canceler, parent)
                task = asyncio.create_task(retry(pool, OPERATOR, child))
                # The retry committed and waits for the cancel still writing the parent.
                await wait_until_blocked(pool, "SELECT FROM workflow_executions")
        retried = await task
    return parent, retried


@pytest.mark.parametrize("cancel_first", [True, False], ids=["before", "during"])
async def test_a_retry_racing_its_parents_cancel_is_canceled_with_it(
    pool: asyncpg.Pool, executor: Executor, cancel_first: bool
) -> None:
    """The retry's look for a canceled run above and the cancel's walk down are two
    statements: a cancel that came between them left the retry NEW below a canceled
    parent until the sweep of orphaned children, and an executor could run it meanwhile."""
    parent, retried = await _retry_and_cancel_interleaved(pool, executor, cancel_first)
    rows = await pool.fetch("SELECT id::text, status, error_message, parent_execution_id::text"
                            " AS parent FROM workflow_executions WHERE id = ANY($1::uuid[])"
                            " ORDER BY id = $2", [parent, retried], parent)
    assert [tuple(r) for r in rows] == [
        (retried, "CANCELED", "canceled with its parent run", parent),
        (parent, "CANCELED", "canceled by request", None),
    ]
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE status IN ('NEW', 'RUNNING', 'WAITING')"
    ) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'retry'") == 1


async def test_a_retry_whose_look_above_fails_after_its_commit_is_answered(
    pool: asyncpg.Pool, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """The retry committed, then its connection died while it looked for a cancel above
    it: the call raised, so a client would retry again and make a second run. The run
    exists, and the answer names it."""
    parent, child = await _failed_child_of_waiting_parent(pool)
    await executor.stop()
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT FROM workflow_executions WHERE id = $1 FOR UPDATE",
                             parent)
        task = asyncio.create_task(retry(pool, OPERATOR, child))
        await wait_until_blocked(pool, "SELECT FROM workflow_executions")
        assert await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT FROM workflow_executions%'"
        ) == 1
        retried = await task
    row = await pool.fetchrow("SELECT status, retry_of::text, parent_execution_id::text"
                              " FROM workflow_executions WHERE id = $1", retried)
    assert tuple(row) == ("NEW", child, parent)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions"
                               " WHERE retry_of = $1", child) == 1
    failed = [r for r in caplog.records if getattr(r, "event", None) == "retry_settle_failed"]
    assert [getattr(r, "execution_id", None) for r in failed] == [retried]


async def test_a_canceled_child_wakes_its_waiting_parent(
    pool: asyncpg.Pool, executor: Executor
) -> None:
    await _apply(pool)
    parent = await fire(pool, "waits-on-slow/manual")

    async def child_waiting() -> str | None:
        children = await child_executions(pool, parent)
        return children[0]["id"] if children and children[0]["status"] == "WAITING" else None

    child = await wait_for(child_waiting)
    await cancel(pool, OPERATOR, child)
    row = await final_status(pool, parent)
    assert (row["status"], row["error_code"]) == ("ERROR", "CHILD_FAILED")


async def test_runs_nest_at_most_max_workflow_depth(pool: asyncpg.Pool,
                                                    executor: Executor) -> None:
    # A chain built by expressions (check cannot see it): each level calls the next.
    await apply_doc(pool, {"workflows": [{
        "key": "deep",
        "graph": {"nodes": [{"id": "next", "type": "workflow",
                             "params": {"workflow": "{{ 'deep' }}"}}]},
        "triggers": [{"name": "manual", "type": "manual"}],
    }]})
    root = await fire(pool, "deep/manual")
    row = await final_status(pool, root)
    assert row["status"] == "ERROR"
    depths = await pool.fetch("SELECT (context->'trigger'->>'depth')::int AS d,"
                              " error_message FROM workflow_executions ORDER BY d NULLS FIRST")
    assert [r["d"] for r in depths] == [None, 1, 2, 3]
    assert "sub-workflows nest deeper than 3" in depths[-1]["error_message"]


async def test_a_wake_up_while_the_parent_still_runs_is_not_lost(pool: asyncpg.Pool) -> None:
    """The child ends between the parent's last look at it and the parent's park: the
    wake-up lands on the running parent and survives the park."""
    from datetime import UTC, datetime, timedelta

    from triggerd.store.executions import ExecutionUpdate, claim_executions, write_progress

    await _apply(pool)
    parent = await fire(pool, "waits-on-slow/manual")
    async with pool.acquire() as conn:
        [claimed] = await claim_executions(conn, "parent-owner", timedelta(minutes=1), 10)
        assert claimed.id == parent
        child = await fire(pool, "calls-failing/manual")  # any run will do as the child
        await conn.execute("UPDATE workflow_executions SET parent_execution_id = $1"
                           " WHERE id = $2", parent, child)
        [taken] = await claim_executions(conn, "child-owner", timedelta(minutes=1), 10)
        assert taken.id == child
        await write_progress(conn, "child-owner", [], [ExecutionUpdate(id=child,
                                                                        status="SUCCESS")])
        later = datetime.now(UTC) + timedelta(hours=1)
        await write_progress(conn, "parent-owner", [], [ExecutionUpdate(
            id=parent, status="WAITING", resume_at=later)])
        row = await conn.fetchrow("SELECT status, resume_at <= now() AS due"
                                  " FROM workflow_executions WHERE id = $1", parent)
        assert (row["status"], row["due"]) == ("WAITING", True)
        [again] = await claim_executions(conn, "parent-owner", timedelta(minutes=1), 10)
        assert again.id == parent
        # Claimed: the wake-up is spent; parking again waits for the next one.
        await write_progress(conn, "parent-owner", [], [ExecutionUpdate(
            id=parent, status="WAITING", resume_at=later)])
        assert await conn.fetchval("SELECT resume_at FROM workflow_executions WHERE id = $1",
                                   parent) == later


@pytest.mark.parametrize("parent_first", [False, True])
@pytest.mark.parametrize("with_resume_copy", [False, True])
async def test_a_child_ending_in_the_batch_that_parks_its_parent_wakes_it(
    pool: asyncpg.Pool, with_resume_copy: bool, parent_first: bool
) -> None:
    """The parent's park and its child's end reach the progress writer together and go
    out in one statement: the wake-up (an update of the parent) met a row the statement
    had already updated and was dropped, and the parent waited for ever. Both statement
    shapes (with and without resume copies) are covered, and both orders of the two runs'
    ids (the statement takes its rows in id order)."""
    from datetime import UTC, datetime, timedelta

    from triggerd.store.executions import (
        ExecutionUpdate,
        NodeRow,
        claim_executions,
        write_progress,
    )

    await _apply(pool)
    parent = await fire(pool, "waits-on-slow/manual")
    async with pool.acquire() as conn:
        [claimed] = await claim_executions(conn, "owner", timedelta(minutes=1), 10)
        assert claimed.id == parent
        child = await fire(pool, "calls-failing/manual")  # any run will do as the child
        low, high = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"
        for old_id, new_id in ((parent, low if parent_first else high),
                               (child, high if parent_first else low)):
            await conn.execute("UPDATE workflow_executions SET id = $2 WHERE id = $1",
                               old_id, new_id)
        parent, child = (low, high) if parent_first else (high, low)
        await conn.execute("UPDATE workflow_executions SET parent_execution_id = $1"
                           " WHERE id = $2", parent, child)
        [taken] = await claim_executions(conn, "owner", timedelta(minutes=1), 10)
        assert taken.id == child
        now = datetime.now(UTC)
        nodes = [NodeRow(execution_id=child, node_id="call", node_type="workflow",
                         status="SUCCESS", attempt=1, start_time=now, end_time=now,
                         resume_copy=b"x" if with_resume_copy else None)]
        later = now + timedelta(hours=1)
        await write_progress(conn, "owner", nodes, [
            ExecutionUpdate(id=parent, status="WAITING", resume_at=later),
            ExecutionUpdate(id=child, status="ERROR", error_code="NOPE")])
        row = await conn.fetchrow("SELECT status, resume_at <= now() AS due"
                                  " FROM workflow_executions WHERE id = $1", parent)
        assert (row["status"], row["due"]) == ("WAITING", True)
        assert await conn.fetchval("SELECT status FROM workflow_executions WHERE id = $1",
                                   child) == "ERROR"
        [again] = await claim_executions(conn, "owner", timedelta(minutes=1), 10)
        assert again.id == parent


async def test_apply_refuses_a_workflow_node_naming_no_workflow(pool: asyncpg.Pool) -> None:
    # Accepted before: every run that reached the node failed.
    parent = {"key": "parent", "graph": {"nodes": [
        {"id": "call", "type": "workflow", "params": {"workflow": "child"}},
        {"id": "later", "type": "workflow", "params": {"workflow": "{{ input.which }}"}}],
        "edges": [{"from": "call", "to": "later"}]}}
    with pytest.raises(DefinitionError) as refused:
        await apply_doc(pool, {"workflows": [parent]})
    assert refused.value.message == (
        "node 'call': no workflow 'child' in the files or the database")
    # Named at its place in the file (it was "<database>: parent: ...").
    assert [(p.file, p.path) for p in refused.value.problems] == [
        ("test.yaml", "$.workflows[0].graph.nodes[0].params.workflow")]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    # In the same files, or applied before (a key given by an expression is not checked).
    child = {"key": "child", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}
    await apply_doc(pool, {"workflows": [parent, child]})
    await apply_doc(pool, {"workflows": [parent]})
    # Another tenant's workflow of that key is not the one a node of acme's runs.
    with pytest.raises(DefinitionError, match=r"^node 'call': no workflow 'child'"):
        await apply_doc(pool, {"tenant": "acme", "workflows": [parent]})


async def test_apply_refuses_a_call_that_can_never_start_its_child(pool: asyncpg.Pool) -> None:
    # Each was accepted, and every run ended CHILD_FAILED (INPUT_INVALID) or
    # CHILD_NOT_STARTED at the node.
    child = {"key": "child", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
             "parameter_schema": {"type": "object", "required": ["n"],
                                  "additionalProperties": False,
                                  "properties": {"n": {"type": "integer"}}}}
    await apply_doc(pool, {"workflows": [child]})

    def parent(**call: object) -> dict[str, object]:
        return {"key": "parent", "graph": {"nodes": [
            {"id": "call", "type": "workflow", "params": {"workflow": "child", **call}}]}}

    cases = [
        (parent(input={"m": 1}), [
            "node 'call': its input does not match 'child''s parameter_schema: $: 'n' is a"
            " required property",
            "node 'call': its input does not match 'child''s parameter_schema: $: Additional"
            " properties are not allowed ('m' was unexpected)"]),
        (parent(), ["node 'call': its input does not match 'child''s parameter_schema: $: 'n'"
                    " is a required property"]),
        (parent(input={"n": "{{ input.x }}", "extra": "{{ input.y }}"}), [
            "node 'call': its input does not match 'child''s parameter_schema: $: additional"
            " property 'extra' is not allowed"]),
        (parent(input={"n": 1}, version=5), ["node 'call': workflow 'child' has no version 5"]),
    ]
    for doc, messages in cases:
        with pytest.raises(DefinitionError) as refused:
            await apply_doc(pool, {"workflows": [doc]})
        assert [p.message for p in refused.value.problems] == messages
        field = "version" if "version 5" in messages[0] else "input"
        assert {(p.file, p.path) for p in refused.value.problems} == {
            ("test.yaml", f"$.workflows[0].graph.nodes[0].params.{field}")}
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 1
    # What can succeed is applied: a literal input that passes, or one known at run time.
    await apply_doc(pool, {"workflows": [parent(input={"n": 1}, version=1)]})
    await apply_doc(pool, {"workflows": [parent(input={"n": "{{ input.n }}"})]})
    await apply_doc(pool, {"workflows": [parent(input="{{ input }}")]})
    # An archived child starts nothing (the file's check says so, with its path).
    with pytest.raises(DefinitionError, match=r"test\.yaml: \$\.workflows\[0\]\.graph\."
                       r"nodes\[0\]\.params\.workflow: node 'call': workflow 'child' is"
                       r" archived$"):
        await apply_doc(pool, {"workflows": [parent(input={"n": 1}),
                                             {**child, "status": "archived"}]})
