"""Test runs (``triggerd test``, ``POST /api/v1/test-runs``) against a real PostgreSQL: the
CLI as a real subprocess, outside services served on loopback. A test run is recorded like
any run (node rows), marked ``test`` under a scratch workflow, left out of lists, claims and
queue depth, decided with --approve/--reject, stubbed with --dry, and removed by
``[executor] test_retention``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import apply_doc, fire, serve_get
from triggerd.api.admin import add_admin_routes
from triggerd.config import ApiSettings, Settings
from triggerd.daemon import create_app
from triggerd.definitions import load_documents
from triggerd.operations.testruns import TestRunRequest, start_test_run
from triggerd.store.admin import queue_depth
from triggerd.store.executions import claim_executions
from triggerd.store.testruns import delete_old_test_runs

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "admin-s3cret"


@dataclass(frozen=True)
class Cli:
    returncode: int
    stdout: str
    stderr: str


async def _cli(config: Path, *args: str) -> Cli:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("TRIGGERD_")}

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerd", "--config", str(config), *args],
            capture_output=True, text=True, timeout=120, env=env, cwd=config.parent,
            check=False)

    done = await asyncio.to_thread(call)
    return Cli(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "triggerd.toml"
    path.write_text(f'[database]\nurl = {json.dumps(dsn)}\n[log]\nlevel = "error"\n')
    return path


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "defs.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _call_doc(url: str) -> dict[str, Any]:
    return {"workflows": [{
        "key": "notify",
        "parameter_schema": {"type": "object", "properties": {"name": {"type": "string"}},
                             "required": ["name"]},
        "graph": {
            "nodes": [
                {"id": "greet", "type": "set",
                 "params": {"value": {"text": "hi {{ input.name }}"}}},
                {"id": "call", "type": "http",
                 "params": {"url": url, "method": "GET",
                            "headers": {"Authorization": "Bearer literal-t0ken",
                                        "X-Name": "{{ input.name }}"}}},
                {"id": "done", "type": "set",
                 "params": {"value": {"greeting": "{{ nodes.greet.output.text }}"}}},
            ],
            "edges": [{"from": "greet", "to": "call"}, {"from": "call", "to": "done"}],
        },
        "triggers": [{"name": "hook", "type": "webhook", "path": "notify",
                      "input": {"name": "from-trigger"}}],
    }]}


@pytest.fixture
async def outside() -> AsyncIterator[tuple[str, list[str]]]:
    """An outside service on loopback: its URL and the requests it got."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Name", ""))
        return web.json_response({"ok": True})

    async with serve_get("/hook", handler) as port:
        yield f"http://127.0.0.1:{port}/hook", seen


async def _count(pool: asyncpg.Pool, table: str) -> int:
    value: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return value


async def test_a_test_run_succeeds_prints_its_timeline_and_stays_out_of_lists(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, outside: tuple[str, list[str]]
) -> None:
    url, seen = outside
    defs = _write(tmp_path, _call_doc(url))
    done = await _cli(config, "test", str(defs), "--workflow", "notify",
                      "--input", '{"name": "ada"}')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("test run ") and lines[0].endswith(" of notify")
    execution_id = lines[0].split()[2]
    timeline = [line.split()[:3] for line in lines[1:4]]
    assert timeline == [["greet", "set", "SUCCESS"], ["call", "http", "SUCCESS"],
                        ["done", "set", "SUCCESS"]]
    assert lines[4] == "SUCCESS"
    assert json.loads(lines[5]) == {"greeting": "hi ada"}
    assert seen == ["ada"]  # the side effect ran for real
    row = await pool.fetchrow(
        "SELECT e.test, e.status, e.trigger_type, w.key, w.status AS workflow_status"
        " FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
        " WHERE e.id = $1", execution_id)
    assert row["test"] is True and row["status"] == "SUCCESS"
    assert row["trigger_type"] == "manual"
    assert row["key"] == f"notify~test-{execution_id[:8]}"
    assert row["workflow_status"] == "test"
    nodes = await pool.fetch("SELECT node_id, status FROM node_executions"
                             " WHERE execution_id = $1 ORDER BY start_time", execution_id)
    assert [(n["node_id"], n["status"]) for n in nodes] == [
        ("greet", "SUCCESS"), ("call", "SUCCESS"), ("done", "SUCCESS")]
    # No triggers were stored for the scratch copy: nothing schedules or serves it.
    assert await _count(pool, "workflow_triggers") == 0
    listed = await _cli(config, "executions", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    tests = await _cli(config, "executions", "list", "--test", "--json")
    assert [e["id"] for e in json.loads(tests.stdout)] == [execution_id]
    workflows = await _cli(config, "workflows", "list", "--json")
    assert json.loads(workflows.stdout) == []
    shown = await _cli(config, "executions", "show", execution_id, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "SUCCESS"
    retried = await _cli(config, "executions", "retry", execution_id)
    assert retried.returncode == 4
    assert retried.stderr.strip() == (
        f"triggerd: error: execution {execution_id} is a test run: run triggerd test again"
        " instead of retrying it")


async def test_json_prints_one_document_with_the_nodes(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, outside: tuple[str, list[str]]
) -> None:
    url, _ = outside
    defs = _write(tmp_path, _call_doc(url))
    done = await _cli(config, "test", str(defs), "--workflow", "notify", "--trigger", "hook",
                      "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "SUCCESS" and doc["test"] is True and doc["dry"] is False
    assert doc["workflow"] == "notify"
    assert doc["scratch_workflow"] == f"notify~test-{doc['execution_id'][:8]}"
    assert doc["output"] == {"greeting": "hi from-trigger"}  # the trigger's input
    assert [n["node_id"] for n in doc["nodes"]] == ["greet", "call", "done"]
    trigger = await pool.fetchrow("SELECT trigger_name, trigger_type FROM workflow_executions")
    assert dict(trigger) == {"trigger_name": "hook", "trigger_type": "webhook"}


async def test_dry_records_would_call_and_sends_nothing(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, outside: tuple[str, list[str]]
) -> None:
    url, seen = outside
    defs = _write(tmp_path, _call_doc(url))
    done = await _cli(config, "test", str(defs), "--workflow", "notify",
                      "--input", '{"name": "ada"}', "--dry")
    assert done.returncode == 0, done.stderr
    assert seen == []
    assert "(dry: not run)" in done.stdout
    output = await pool.fetchval("SELECT output FROM node_executions WHERE node_id = 'call'")
    assert output == {"would_call": {
        "url": url, "method": "GET",
        "headers": {"Authorization": "***", "X-Name": "ada"}}}
    assert "literal-t0ken" not in done.stdout


async def test_a_failing_run_exits_1(pool: asyncpg.Pool, config: Path, tmp_path: Path) -> None:
    defs = _write(tmp_path, {"workflows": [{
        "key": "broken",
        "graph": {"nodes": [{"id": "stop", "type": "fail", "params": {"message": "no way"}}]},
    }]})
    done = await _cli(config, "test", str(defs), "--workflow", "broken")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-2] == "ERROR"
    assert "ended ERROR" in done.stderr and "no way" in done.stderr
    # The executor's own log line repeated that without the why; it is left out.
    assert "triggerd: warning: execution finished" not in done.stderr
    assert await pool.fetchval("SELECT status FROM workflow_executions WHERE test") == "ERROR"


def _approval_doc() -> dict[str, Any]:
    return {"workflows": [{
        "key": "release",
        "on_failure": "oops",
        "graph": {
            "nodes": [
                {"id": "ask", "type": "approval", "params": {"message": "ship?"}},
                {"id": "ship", "type": "set", "params": {"value": {"shipped": True}}},
                {"id": "stop", "type": "set", "params": {"value": {"shipped": False}}},
            ],
            "edges": [{"from": "ask", "to": "ship", "when": "approved"},
                      {"from": "ask", "to": "stop", "when": "rejected"}],
        },
    }]}


@pytest.mark.parametrize(("flag", "shipped"), [("--approve", True), ("--reject", False)])
async def test_an_approval_is_decided_by_the_flag(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, flag: str, shipped: bool
) -> None:
    defs = _write(tmp_path, _approval_doc())
    done = await _cli(config, "test", str(defs), "--workflow", "release", flag, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["output"] == {"shipped": shipped}
    decision = await pool.fetchval(
        "SELECT decision FROM resume_tokens WHERE decision IS NOT NULL")
    assert decision == ("approved" if shipped else "rejected")
    audit = await pool.fetchrow("SELECT actor, action FROM audit_log WHERE action <> 'test-run'")
    assert audit["action"] == "decide" and audit["actor"].startswith("cli:")


async def test_an_undecided_approval_fails_the_run(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    await apply_doc(pool, {"workflows": [{
        "key": "oops", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]})
    defs = _write(tmp_path, _approval_doc())
    done = await _cli(config, "test", str(defs), "--workflow", "release", "--json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["status"] == "ERROR" and doc["error_code"] == "APPROVAL_UNDECIDED"
    assert doc["error_message"] == (
        "approval node 'ask' waits for a decision: a test run decides it only when told to"
        ' (--approve or --reject; "decision" in the API)')
    # Its parked approval ends with it (it stayed WAITING under the ended run).
    assert [(n["node_id"], n["status"], n["error_code"]) for n in doc["nodes"]
            if n["node_id"] == "ask"] == [("ask", "ERROR", "APPROVAL_UNDECIDED")]
    assert await pool.fetchval("SELECT count(*) FROM node_executions"
                               " WHERE status IN ('RUNNING', 'WAITING')") == 0
    # The scratch copy starts no error workflow (on_failure names one in the file).
    assert await _count(pool, "workflow_executions") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--workflow", "nope"],
     "triggerd: error: no workflow 'nope' in the definitions (they have: notify)"),
    (["--workflow", "notify", "--input", "{bad"],
     "triggerd: error: --input: not valid JSON: Expecting property name enclosed in double"
     " quotes at position 1"),
    (["--workflow", "notify", "--input", "[1]"], "triggerd: error: --input: must be a JSON object"),
    (["--workflow", "notify", "--trigger", "cron"],
     "triggerd: error: workflow 'notify' has no trigger 'cron' (it has: hook)"),
    (["--workflow", "notify", "--input", '{"name": 5}'],
     "triggerd: error: the input does not match the workflow's parameter_schema (1 problem)"),
    (["--workflow", "notify", "--approve", "--reject"],
     "triggerd: error: argument --reject: not allowed with argument --approve"
     " (see 'triggerd test --help')"),
])
async def test_bad_input_exits_2_and_writes_nothing(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    defs = _write(tmp_path, _call_doc("http://127.0.0.1:9/x"))
    done = await _cli(config, "test", str(defs), *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == message
    assert await _count(pool, "workflows") == 0
    assert await _count(pool, "workflow_executions") == 0


async def test_a_bad_file_exits_2_and_writes_nothing(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    defs = tmp_path / "bad.yaml"
    defs.write_text("workflows:\n  - key: x\n    graph: {nodes: [{id: a, type: nosuch}]}\n")
    done = await _cli(config, "test", str(defs), "--workflow", "x")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith("triggerd: error: ")
    assert "unknown node type 'nosuch'" in done.stderr
    assert await _count(pool, "workflows") == 0


async def test_a_secret_check_and_apply_refuse_exits_2_and_writes_nothing(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    """The daemon's own configuration is no workflow's secret: check and apply refused
    the file, and the test run read it (then ended SECRET_MISSING, exit 1)."""
    defs = _write(tmp_path, {"workflows": [{
        "key": "leak", "secrets": {"A": {"env": "PGPASSWORD"}},
        "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]})
    done = await _cli(config, "test", str(defs), "--workflow", "leak")
    assert done.returncode == 2, done.stderr
    assert "environment variable PGPASSWORD is the daemon's own configuration" in done.stderr
    assert str(defs) in done.stderr
    assert await _count(pool, "workflow_executions") == 0


def _request(doc: dict[str, Any], workflow: str) -> TestRunRequest:
    return TestRunRequest(specs=load_documents([("t.json", doc)]), workflow=workflow)


async def test_a_test_run_that_crashes_ends_internal_error_not_running(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a daemon's run does: before, the error reached the command (exit 70) and the
    run stayed RUNNING with its node row for good."""
    from triggerd.executor import runner
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.testruns import run_test

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(runner, "output_copies", broken)
    doc = {"workflows": [{"key": "crashy", "graph": {"nodes": [
        {"id": "w", "type": "wait", "params": {"duration": "10ms"}}]}}]}
    result = await run_test(pool, Settings(), cli_actor(), _request(doc, "crashy"))
    assert (result.execution.status, result.execution.error_code) == (
        "ERROR", "INTERNAL_ERROR")
    assert await pool.fetchval(
        "SELECT count(*) FROM node_executions WHERE status IN ('RUNNING', 'WAITING')") == 0


async def test_no_claim_takes_a_test_run_and_queue_depth_leaves_it_out(
    pool: asyncpg.Pool,
) -> None:
    await start_test_run(pool, _request(_approval_doc(), "release"))
    async with pool.acquire() as conn:
        assert await claim_executions(conn, "someone", timedelta(seconds=30), 10) == []
        assert await queue_depth(conn) == {}
    # An ordinary run is claimed as before.
    await apply_doc(pool, {"workflows": [{
        "key": "plain", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "m", "type": "manual"}]}]})
    run = await fire(pool, "plain/m")
    async with pool.acquire() as conn:
        assert await queue_depth(conn) == {("default", "NEW"): 1}
        claimed = await claim_executions(conn, "someone", timedelta(seconds=30), 10)
    assert [c.id for c in claimed] == [run]


async def test_retention_deletes_old_test_runs_with_their_scratch_workflows(
    pool: asyncpg.Pool,
) -> None:
    old = await start_test_run(pool, _request(_approval_doc(), "release"))
    new = await start_test_run(pool, _request(_approval_doc(), "release"))
    await pool.execute(
        "UPDATE workflows SET created_at = now() - interval '8 days' WHERE id ="
        " (SELECT workflow_id FROM workflow_executions WHERE id = $1)", old)
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt)"
        " VALUES ($1, 'ask', 'approval', 'WAITING', 1)", old)
    async with pool.acquire() as conn:
        assert await delete_old_test_runs(conn, timedelta(days=7)) == 1
        assert await delete_old_test_runs(conn, timedelta(days=7)) == 0
    left = await pool.fetch("SELECT id::text FROM workflow_executions")
    assert [r["id"] for r in left] == [new]
    assert await _count(pool, "workflows") == 1
    assert await _count(pool, "workflow_versions") == 1
    assert await _count(pool, "node_executions") == 0


async def test_retention_keeps_an_old_test_run_with_a_live_child_or_a_live_process(
    pool: asyncpg.Pool,
) -> None:
    """Deleted with its scratch workflow, an old test run left its child (an ordinary run,
    still RUNNING) pointing at nothing."""
    from triggerd.store.subworkflows import start_child

    await apply_doc(pool, {"workflows": [{
        "key": "plain", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "m", "type": "manual"}]}]})
    parent = await start_test_run(pool, _request(_approval_doc(), "release"))
    held = await start_test_run(pool, _request(_approval_doc(), "release"))
    async with pool.acquire() as conn, conn.transaction():
        child = await start_child(conn, parent_id=parent, node_id="sub", key="plain",
                                  version=None, run_input={}, max_depth=8)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING' WHERE id = $1",
                       child.id)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING', lease_owner = 'me',"
                       " lease_expires_at = now() + interval '30 seconds' WHERE id = $1", held)
    await pool.execute("UPDATE workflows SET created_at = now() - interval '8 days'"
                       " WHERE status = 'test'")
    async with pool.acquire() as conn:
        assert await delete_old_test_runs(conn, timedelta(days=7)) == 0
        await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1",
                           child.id)
        await pool.execute("UPDATE workflow_executions SET lease_expires_at = now()"
                           " - interval '1 second' WHERE id = $1", held)
        assert await delete_old_test_runs(conn, timedelta(days=7)) == 2
    assert await _count(pool, "workflow_executions") == 1  # the child, an ordinary run


async def test_the_api_runs_a_test_run_over_http(
    aiohttp_client: Any, pool: asyncpg.Pool, outside: tuple[str, list[str]]
) -> None:
    url, seen = outside
    app = create_app(Settings(api=ApiSettings(token=TOKEN)), pool)
    add_admin_routes(app, environ={})
    client = await aiohttp_client(app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"definition": json.dumps(_call_doc(url)), "workflow": "notify",
            "input": {"name": "ada"}, "dry": True}
    response = await client.post("/api/v1/test-runs", json=body, headers=auth)
    assert response.status == 200, await response.text()
    doc = await response.json()
    assert doc["status"] == "SUCCESS" and doc["dry"] is True
    assert [n["node_id"] for n in doc["nodes"]] == ["greet", "call", "done"]
    assert seen == []
    listed = await client.get("/api/v1/executions", headers=auth)
    assert (await listed.json())["items"] == []
    shown = await client.get(f"/api/v1/executions/{doc['execution_id']}", headers=auth)
    assert shown.status == 200
    approve = {"definition": _approval_doc(), "workflow": "release", "decision": "approve"}
    response = await client.post("/api/v1/test-runs", json=approve, headers=auth)
    assert (await response.json())["output"] == {"shipped": True}
    for bad, message in [
        ({"workflow": "notify"},
         "definition is required: a definition document (an object or YAML text)"),
        ({**body, "decision": "maybe"}, 'decision must be "approve" or "reject"'),
        ({**body, "decision": {}}, 'decision must be "approve" or "reject"'),
        ({**body, "dry": "yes"}, "dry must be true or false"),
        ({**body, "extra": 1},
         "unknown field 'extra' (known: definition, workflow, input, trigger, decision, dry)"),
        ({**body, "workflow": "nope"},
         "no workflow 'nope' in the definitions (they have: notify)"),
    ]:
        response = await client.post("/api/v1/test-runs", json=bad, headers=auth)
        assert response.status == 400, bad
        assert (await response.json())["message"] == message
    # A definition text with a key given twice: its problem at its path (a 422), as check.
    twice = {**body, "definition": "workflows:\n  - key: a\n    key: b\n"}
    response = await client.post("/api/v1/test-runs", json=twice, headers=auth)
    assert response.status == 422
    assert [(p["path"], p["message"]) for p in (await response.json())["problems"]] == [
        ("$.workflows[0].key", "duplicate key 'key' (line 3; first at line 2)")]
    unreadable = {**body, "definition": "workflows: [\n"}
    response = await client.post("/api/v1/test-runs", json=unreadable, headers=auth)
    assert response.status == 400
    assert (await response.json())["message"].startswith("definition: YAML syntax error")
    assert await _count(pool, "workflow_executions") == 2
    # Each run is audited (it runs its nodes for real unless dry); the refused ones not.
    audit = await pool.fetch("SELECT actor, action, target, detail FROM audit_log"
                             " WHERE action = 'test-run' ORDER BY id")
    assert [(a["actor"], a["action"], a["detail"]["workflow"], a["detail"]["dry"])
            for a in audit] == [("token:[api] token (config)", "test-run", "notify", True),
                                ("token:[api] token (config)", "test-run", "release", False)]
    assert audit[0]["target"] == doc["execution_id"]


async def test_an_executor_with_metrics_leaves_test_runs_out(pool: asyncpg.Pool) -> None:
    """The daemon's executor path with its metrics: a test run counts in none of them."""
    from triggerd.api.metrics import Metrics
    from triggerd.executor.service import Executor
    from triggerd.store.testruns import claim_test_run

    metrics = Metrics(process_metrics=False)
    executor = Executor(pool=pool, dsn="", settings=Settings(), metrics=metrics)
    await executor.open_single()
    try:
        run = await start_test_run(pool, _request({"workflows": [{
            "key": "plain", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}, "plain"))
        async with pool.acquire() as conn:
            claimed = await claim_test_run(conn, run, executor.owner, executor.lease)
        assert claimed is not None
        update = await executor.run_one(claimed)
    finally:
        await executor.close_single()
    assert update is not None and update.status == "SUCCESS"
    names = {s.name for m in metrics.registry.collect() for s in m.samples
             if s.name.startswith(("triggerd_executions", "triggerd_execution_seconds",
                                   "triggerd_node_seconds")) and s.value}
    assert names == set()


_CHILDREN = {"workflows": [
    {"key": "price", "parameter_schema": {"type": "object"},
     "graph": {"nodes": [{"id": "sum", "type": "set",
                          "params": {"value": {"total": "{{ input.n * 2 }}"}}}]}},
    {"key": "outer", "graph": {"nodes": [{"id": "inner", "type": "workflow",
                                          "params": {"workflow": "price",
                                                     "input": {"n": 21}}}]}},
]}


def _parent_doc(wait: bool) -> dict[str, Any]:
    return {"workflows": [{
        "key": "order",
        "graph": {
            "nodes": [
                {"id": "price", "type": "workflow",
                 "params": {"workflow": "outer" if wait else "price", "wait": wait,
                            "input": {"n": 5}}},
                {"id": "done", "type": "set", "params": {"value": {"ok": True}}},
            ],
            "edges": [{"from": "price", "to": "done"}],
        },
    }]}


async def test_a_test_run_runs_the_child_runs_it_waits_for_without_a_daemon(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    """Nothing else runs here: the child (and the child's child) are taken by the test
    run's own process; before, the test waited for ever for an executor to take them."""
    await apply_doc(pool, _CHILDREN)
    defs = _write(tmp_path, _parent_doc(wait=True))
    done = await _cli(config, "test", str(defs), "--workflow", "order", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "SUCCESS"
    nodes = {n["node_id"]: n for n in doc["nodes"]}
    assert nodes["price"]["output"] == {"total": 42}, nodes["price"]
    rows = await pool.fetch(
        "SELECT w.key, e.status, e.test FROM workflow_executions e"
        " JOIN workflows w ON w.id = e.workflow_id WHERE NOT e.test ORDER BY w.key")
    assert [(r["key"], r["status"]) for r in rows] == [("outer", "SUCCESS"),
                                                        ("price", "SUCCESS")]


async def test_a_child_started_without_waiting_has_run_when_the_test_ends(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    await apply_doc(pool, _CHILDREN)
    defs = _write(tmp_path, _parent_doc(wait=False))
    done = await _cli(config, "test", str(defs), "--workflow", "order")
    assert done.returncode == 0, done.stderr
    row = await pool.fetchrow(
        "SELECT e.status, e.output FROM workflow_executions e"
        " JOIN workflows w ON w.id = e.workflow_id WHERE w.key = 'price'")
    assert row["status"] == "SUCCESS"
    assert row["output"] == {"total": 10}


_CALLS_RELEASE = {"workflows": [{
    "key": "deploy", "graph": {"nodes": [
        {"id": "call", "type": "workflow", "params": {"workflow": "release"}}]}}]}


@pytest.mark.parametrize(("flag", "shipped"), [("--approve", True), ("--reject", False)])
async def test_the_flag_decides_a_child_runs_approval_too(
    pool: asyncpg.Pool, config: Path, tmp_path: Path, flag: str, shipped: bool
) -> None:
    """"Every approval the run meets": a child's waited for ever (nothing decided it)."""
    doc = _approval_doc()
    del doc["workflows"][0]["on_failure"]
    await apply_doc(pool, doc)
    defs = _write(tmp_path, _CALLS_RELEASE)
    done = await _cli(config, "test", str(defs), "--workflow", "deploy", flag, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"] == {"shipped": shipped}
    audit = await pool.fetch("SELECT action, target_id FROM audit_log WHERE action = 'decide'")
    child = await pool.fetchval("SELECT id::text FROM workflow_executions WHERE NOT test")
    assert [(a["action"], str(a["target_id"])) for a in audit] == [("decide", child)]


async def test_a_child_runs_undecided_approval_fails_the_test_run_not_the_child(
    pool: asyncpg.Pool, config: Path, tmp_path: Path
) -> None:
    doc = _approval_doc()
    del doc["workflows"][0]["on_failure"]
    await apply_doc(pool, doc)
    defs = _write(tmp_path, _CALLS_RELEASE)
    done = await _cli(config, "test", str(defs), "--workflow", "deploy", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    child = await pool.fetchrow("SELECT id::text AS id, status FROM workflow_executions"
                                " WHERE NOT test")
    assert (result["status"], result["error_code"]) == ("ERROR", "APPROVAL_UNDECIDED")
    assert result["error_message"] == (
        f"approval node 'ask' of its child run {child['id']} waits for a decision: a test"
        ' run decides it only when told to (--approve or --reject; "decision" in the API)')
    # The child is an ordinary run: it waits for an operator as any run would.
    assert child["status"] == "WAITING"
    assert [(n["node_id"], n["status"]) for n in result["nodes"]] == [("call", "ERROR")]
