"""Long-lived runs across real daemon restarts: an approval whose first attempt was cut
short (the daemon SIGKILLed, or stopped with SIGTERM and the run handed back) is still
decided through the link given out before, once its next attempt parks."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import Daemons, TomlValue, run_cli
from tests.helpers import final_status, wait_for
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
