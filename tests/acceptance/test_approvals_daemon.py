"""Approvals with real daemons: the resume URL over HTTP (single use, also when two
replicas get the same link at once), bad requests, a daemon SIGKILLed while the run waits
(the link it gave out still works after the restart), and the CLI's decision."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import aiohttp
import asyncpg

from tests.acceptance.conftest import Daemons, TomlValue, run_cli
from tests.helpers import final_status, wait_for
from triggerd.config import load_settings
from triggerd.executor.resume import ResumeKey, create_key_file, load_resume_key

DEFINITIONS = """\
workflows:
  - key: release
    graph:
      nodes:
        - {id: link, type: set, params: {value: {url: "{{ execution.resume_url }}"}}}
        - {id: ask, type: approval, params: {message: "Ship it?", timeout: 1h}}
        - {id: ship, type: set, params: {value: {shipped: true}}}
        - {id: stop, type: set, params: {value: {shipped: false}}}
      edges:
        - {from: link, to: ask}
        - {from: ask, to: ship, when: approved}
        - {from: ask, to: stop, when: rejected}
    triggers:
      - {name: manual, type: manual}
"""


async def _waiting_url(pool: asyncpg.Pool, key: ResumeKey) -> tuple[str, str]:
    """The newest run waiting on its approval, and its resume link: masked in the rows a
    viewer reads, whole in the encrypted copy the replicas resume from."""
    async def parked() -> asyncpg.Record | None:
        return await pool.fetchrow(
            "SELECT e.id::text AS id, l.output->>'url' AS shown, c.ciphertext"
            " FROM workflow_executions e"
            " JOIN node_executions l ON l.execution_id = e.id AND l.node_id = 'link'"
            " JOIN node_executions a ON a.execution_id = e.id AND a.node_id = 'ask'"
            " JOIN node_outputs_resume c ON c.execution_id = e.id AND c.node_id = 'link'"
            " WHERE e.status = 'WAITING' AND a.status = 'WAITING'"
            " ORDER BY e.created_at DESC LIMIT 1")

    row = await wait_for(parked, timeout=20)
    assert row["shown"].endswith("/hooks/_resume/***"), row["shown"]
    output = key.decrypt(row["ciphertext"], execution_id=row["id"], node_id="link", attempt=1)
    assert isinstance(output, dict) and isinstance(output["url"], str)
    return row["id"], output["url"]


async def test_resume_links_over_http_across_replicas_and_a_restart(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "release.yaml"
    path.write_text(DEFINITIONS)
    # Replicas share one resume key, as they must (the link's run resumes on either).
    key_file = tmp_path / "resume.key"
    create_key_file(key_file)
    key = load_resume_key(load_settings(environ={
        "TRIGGERD_EXECUTOR_RESUME_KEY_FILE": str(key_file)}), {})
    sections: dict[str, dict[str, TomlValue]] = {
        "daemon": {"definitions": [str(path)]},
        "executor": {"lease": "2s", "resume_key_file": str(key_file)}}
    first = await daemons.start(database_url=dsn, sections=sections)
    second = await daemons.start(database_url=dsn, sections=sections)
    assert (await run_cli(first.config, "triggers", "fire", "release/manual")).returncode == 0
    run, url = await _waiting_url(pool, key)
    assert url.startswith(first.base_url + "/hooks/_resume/") or url.startswith(
        second.base_url + "/hooks/_resume/")
    token = url.rsplit("/", 1)[1]

    async with aiohttp.ClientSession() as session:
        async def post(base: str, body: object, path: str = token) -> tuple[int, dict[str, str]]:
            async with session.post(f"{base}/hooks/_resume/{path}", json=body) as response:
                return response.status, await response.json()

        # Bad requests change nothing.
        assert await post(first.base_url, {"decision": "maybe"}) == (422, {
            "error": "invalid_body", "message": "decision: 'maybe' is not one of approved,"
            " rejected"})
        assert await post(first.base_url, {"decision": "approved", "extra": 1}) == (422, {
            "error": "invalid_body", "message": "unknown field 'extra' (allowed: decision,"
            " note, input)"})
        # An input that is not an object used up the link (the API refused it).
        assert await post(first.base_url, {"decision": "approved", "input": "x"}) == (422, {
            "error": "invalid_body", "message": "input must be an object"})
        nul = await post(first.base_url, {"decision": "approved", "note": "a\u0000b"})
        assert nul[0] == 422 and "NUL" in nul[1]["message"], nul
        assert await post(first.base_url, {"decision": "approved"}, "not-a-token") == (
            404, {"error": "not_found", "message": "unknown resume link"})
        async with session.get(f"{first.base_url}/hooks/_resume/{token}") as response:
            assert response.status == 405 and response.headers["Allow"] == "POST"
        # A body is read as sent and decoded by the daemon: cut short, or past 64 KiB once
        # decoded, it is refused and the link stays unused.
        whole = gzip.compress(json.dumps({"decision": "approved"}).encode())
        gzipped = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with session.post(f"{first.base_url}/hooks/_resume/{token}", data=whole[:-3],
                                headers=gzipped) as response:
            assert (response.status, await response.json()) == (400, {
                "error": "invalid_body",
                "message": "the body could not be decoded as its Content-Encoding 'gzip'"})
        bomb = gzip.compress(json.dumps({"decision": "approved",
                                         "note": "x" * 70_000}).encode())
        async with session.post(f"{first.base_url}/hooks/_resume/{token}", data=bomb,
                                headers=gzipped) as response:
            assert (response.status, await response.json()) == (413, {
                "error": "payload_too_large",
                "message": "the body is larger than 65536 bytes"})
        # Refused by its length as sent (past 64 KiB, a quarter and 1 KiB), it is told so:
        # a zlib stream of empty deflate blocks decodes to nothing at all.
        empty_blocks = b"\x78\x9c" + b"\x00\x00\x00\xff\xff" * 16_600 + (
            b"\x01\x00\x00\xff\xff\x00\x00\x00\x01")
        async with session.post(f"{first.base_url}/hooks/_resume/{token}", data=empty_blocks,
                                headers={**gzipped, "Content-Encoding": "deflate"}) as response:
            assert (response.status, await response.json()) == (413, {
                "error": "payload_too_large",
                "message": "the encoded body takes more than 82944 bytes on the wire, the"
                           " most for a limit of 65536 decoded bytes"})
        assert await pool.fetchval("SELECT count(*) FROM resume_tokens WHERE decision IS NOT"
                                   " NULL") == 0

        # The daemon that runs it dies while it waits; the link it gave out still works.
        first.kill()
        status, answers = await asyncio.gather(
            post(second.base_url, {"decision": "approved", "note": "go"}),
            post(second.base_url, {"decision": "rejected"}))
        assert sorted([status[0], answers[0]]) == [202, 409]
        won = status if status[0] == 202 else answers
        assert won[1] == {"execution_id": run, "decision": won[1]["decision"]}
        row = await final_status(pool, run, timeout=30)
        assert row["status"] == "SUCCESS"
        taken = "ship" if won[1]["decision"] == "approved" else "stop"
        assert await pool.fetchval(
            "SELECT status FROM node_executions WHERE execution_id = $1 AND node_id = $2"
            " ORDER BY attempt DESC LIMIT 1", run, taken) == "SUCCESS"
        assert await post(second.base_url, {"decision": "approved"}) == (409, {
            "error": "conflict",
            "message": f"this resume link was already used (decision: {won[1]['decision']})"})

    # The CLI decides for the next run; a run that waits for nothing is exit 4.
    assert (await run_cli(second.config, "triggers", "fire", "release/manual")).returncode == 0
    run2, _ = await _waiting_url(pool, key)
    decided = await run_cli(second.config, "executions", "resume", run2, "--reject", "--note",
                            "not on a Friday", "--json")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout) == {"execution_id": run2, "decision": "rejected"}
    assert (await final_status(pool, run2, timeout=30))["status"] == "SUCCESS"
    again = await run_cli(second.config, "executions", "resume", run2, "--approve")
    assert again.returncode == 4
    assert again.stderr.strip().splitlines()[-1] == (
        f"triggerd: error: execution {run2} is not waiting for a decision")
    audit = await pool.fetch("SELECT actor, action FROM audit_log WHERE action = 'decide'"
                             " ORDER BY id")
    assert audit[0]["actor"] == "resume-url"
    assert audit[1]["actor"].startswith("cli:")
