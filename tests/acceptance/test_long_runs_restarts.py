"""Long-lived runs across real daemon restarts: an approval whose first attempt was cut
short (the daemon SIGKILLed, or stopped with SIGTERM and the run handed back) is still
decided through the link given out before, once its next attempt parks."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.acceptance.conftest import Daemons, TomlValue, run_cli
from tests.helpers import final_status, serve_get, wait_for
from triggerd.config import load_settings
from triggerd.executor.resume import create_key_file, load_resume_key

APPROVAL = """\
workflows:
  - key: release
    graph:
      nodes:
        - {id: link, type: set, params: {value: {url: "{{ execution.resume_url }}"}}}
        - {id: ask, type: approval, params: {message: "Ship it?", timeout: 1h}}
        - {id: ship, type: set, params: {value: {shipped: true}}}
      edges:
        - {from: link, to: ask}
        - {from: ask, to: ship, when: approved}
    triggers:
      - {name: manual, type: manual}
"""


@pytest.mark.parametrize(("stop", "cut"), [
    ("kill", ("ERROR", "INTERRUPTED")), ("term", ("CANCELED", "CANCELED"))])
async def test_approval_cut_short_by_a_stop_is_still_decided_by_its_link(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path, stop: str,
    cut: tuple[str, str],
) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(APPROVAL)
    key_file = tmp_path / "resume.key"
    create_key_file(key_file)
    key = load_resume_key(load_settings(environ={
        "TRIGGERD_EXECUTOR_RESUME_KEY_FILE": str(key_file)}), {})
    sections: dict[str, dict[str, TomlValue]] = {
        "daemon": {"definitions": [str(path)]},
        "executor": {"lease": "2s", "resume_key_file": str(key_file)}}
    first = await daemons.start(database_url=dsn, sections=sections)
    # The approval node's request waits behind this lock, its RUNNING row written: the
    # daemon stops in the middle of the node's first attempt (a SIGTERM's drain cancels
    # it and hands the run back).
    async with pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE approvals IN ACCESS EXCLUSIVE MODE")
        assert (await run_cli(first.config, "triggers", "fire", "release/manual")).returncode == 0
        run = await wait_for(lambda: pool.fetchval(
            "SELECT execution_id::text FROM node_executions WHERE node_id = 'ask'"
            " AND status = 'RUNNING'"), timeout=20)
        if stop == "kill":
            first.kill()
        else:
            assert await first.stop(signal.SIGTERM) == 0
        await tx.rollback()
    second = await daemons.start(database_url=dsn, sections=sections)

    # Taken up (after the lease, when killed): attempt 1 ended, attempt 2 parks.
    await wait_for(lambda: pool.fetchval(
        "SELECT e.status = 'WAITING' FROM workflow_executions e JOIN node_executions n"
        " ON n.execution_id = e.id AND n.node_id = 'ask' AND n.attempt = 2"
        " AND n.status = 'WAITING' WHERE e.id = $1", run), timeout=30)
    ciphertext = await pool.fetchval(
        "SELECT ciphertext FROM node_outputs_resume WHERE execution_id = $1"
        " AND node_id = 'link'", run)
    url = key.decrypt(ciphertext, execution_id=run, node_id="link", attempt=1)["url"]
    token = url.rsplit("/", 1)[1]
    async with aiohttp.ClientSession() as session, session.post(
            f"{second.base_url}/hooks/_resume/{token}", json={"decision": "approved"}
    ) as response:
        assert (response.status, await response.json()) == (
            202, {"execution_id": run, "decision": "approved"})
    assert (await final_status(pool, run, timeout=30))["status"] == "SUCCESS"
    rows = await pool.fetch(
        "SELECT node_id, attempt, status, error_code, branch FROM node_executions"
        " WHERE execution_id = $1 ORDER BY node_id, attempt", run)
    assert [tuple(r) for r in rows] == [
        ("ask", 1, *cut, None),
        ("ask", 2, "SUCCESS", None, "approved"),
        ("link", 1, "SUCCESS", None, None),
        ("ship", 1, "SUCCESS", None, None),
    ]


BESIDE_A_CALL = """\
workflows:
  - key: release
    graph:
      nodes:
        - {id: start, type: noop}
        - {id: ask, type: approval, params: {message: "Ship it?"}}
        - {id: call, type: http, params: {url: "http://127.0.0.1:PORT/slow"}}
        - {id: ship, type: set, params: {value: {shipped: true}}}
      edges:
        - {from: start, to: ask}
        - {from: start, to: call}
        - {from: ask, to: ship, when: approved}
    triggers:
      - {name: manual, type: manual}
"""


async def test_operator_decides_a_handed_back_run_while_no_daemon_runs(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """SIGTERM hands back a run whose approval is parked while its other branch still
    works: with no daemon running, the operator's decision is taken (the run is NEW, its
    approval waits) and used once a daemon takes the run up again."""
    release = asyncio.Event()
    calls = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        return web.json_response({})

    async with serve_get("/slow", slow) as port:
        path = tmp_path / "release.yaml"
        path.write_text(BESIDE_A_CALL.replace("PORT", str(port)))
        sections: dict[str, dict[str, TomlValue]] = {
            "daemon": {"definitions": [str(path)]}, "executor": {"drain": "1s"}}
        first = await daemons.start(database_url=dsn, sections=sections)
        assert (await run_cli(first.config, "triggers", "fire", "release/manual")
                ).returncode == 0
        run = await wait_for(lambda: pool.fetchval(
            "SELECT execution_id::text FROM node_executions WHERE node_id = 'call'"
            " AND status = 'RUNNING'"), timeout=20)
        await wait_for(lambda: asyncio.sleep(0, calls), timeout=20)
        assert await first.stop(signal.SIGTERM) == 0
        assert [tuple(r) for r in await pool.fetch(
            "SELECT e.status, n.status FROM workflow_executions e JOIN node_executions n"
            " ON n.execution_id = e.id AND n.node_id = 'ask' WHERE e.id = $1", run)] == [
            ("NEW", "WAITING")]

        decided = await run_cli(first.config, "executions", "resume", run, "--approve",
                                "--json")
        assert decided.returncode == 0, decided.stderr
        assert json.loads(decided.stdout) == {"execution_id": run, "decision": "approved"}
        # One decision waits: a second is refused.
        again = await run_cli(first.config, "executions", "resume", run, "--reject")
        assert again.returncode == 4
        assert again.stderr.strip().splitlines()[-1] == (
            f"triggerd: error: execution {run} is not waiting for a decision")

        release.set()
        await daemons.start(database_url=dsn, sections=sections)
        assert (await final_status(pool, run, timeout=30))["status"] == "SUCCESS"
    rows = await pool.fetch(
        "SELECT node_id, attempt, status, branch FROM node_executions"
        " WHERE execution_id = $1 ORDER BY node_id, attempt", run)
    assert [tuple(r) for r in rows] == [
        ("ask", 1, "SUCCESS", "approved"),
        ("call", 1, "CANCELED", None),
        ("call", 2, "SUCCESS", None),
        ("ship", 1, "SUCCESS", None),
        ("start", 1, "SUCCESS", None),
    ]
    assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE execution_id = $1"
                               " AND decision IS NOT NULL", run) == 1
