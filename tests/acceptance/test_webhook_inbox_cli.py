"""``triggerd webhooks list | show | replay`` as a real process: the same operations and
the same answers as the admin API, with exit codes for every kind of bad id."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from tests.acceptance.test_cli import one_line_error, triggerd

DOC = """
workflows:
  - key: gh
    name: gh
    graph: {nodes: [{id: start, type: noop}]}
    triggers:
      - {name: push, type: webhook, path: gh, filter: "{{ input.action == 'opened' }}"}
"""
MISSING = "0190c2a4-0000-7000-8000-000000000000"


async def test_list_show_replay_and_bad_ids(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        trigger_id = await conn.fetchval("SELECT id FROM workflow_triggers")
        opened, closed, binary = [
            str(await conn.fetchval(
                "INSERT INTO webhook_requests (trigger_id, method, path, headers, body,"
                " outcome) VALUES ($1, 'POST', '/hooks/gh', $2::jsonb, $3, 'filtered')"
                " RETURNING id", trigger_id, json.dumps({"content-type": content_type}), body))
            for content_type, body in [("application/json", b'{"action": "opened"}'),
                                       ("application/json", b'{"action": "closed"}'),
                                       ("application/octet-stream", b"\xff\x00")]
        ]
    finally:
        await conn.close()

    listed = triggerd("webhooks", "list", "--trigger", "gh/push", "--json", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    assert {r["id"] for r in json.loads(listed.stdout)} == {opened, closed, binary}
    shown = json.loads(triggerd("webhooks", "show", binary, "--json", dsn=dsn).stdout)
    assert (shown["body_text"], shown["body_base64"]) == (None, "/wA=")

    keys = []
    for _ in range(2):
        replayed = triggerd("webhooks", "replay", opened, "--json", dsn=dsn)
        assert replayed.returncode == 0, replayed.stderr
        keys.append(json.loads(replayed.stdout)["dedupe_key"])
    assert keys == [f"replay:{opened}:1", f"replay:{opened}:2"]

    result = triggerd("webhooks", "replay", closed, dsn=dsn)
    assert result.returncode == 4
    assert one_line_error(result) == (
        f"triggerd: error: webhook request {closed} does not match the trigger's current"
        " filter")
    result = triggerd("webhooks", "show", "nope", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == (
        "triggerd: error: 'nope' is not a webhook request id (a UUID)")
    result = triggerd("webhooks", "replay", MISSING, dsn=dsn)
    assert result.returncode == 3
    assert one_line_error(result) == f"triggerd: error: no webhook request {MISSING}"
    result = triggerd("webhooks", "list", "--limit", "0", dsn=dsn)
    assert (result.returncode, one_line_error(result)) == (
        2, "triggerd: error: --limit: 0 is out of range 1-500")
    result = triggerd("webhooks", "list", "--outcome", "lost", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == (
        "triggerd: error: --outcome: 'lost' is not one of accepted, filtered, debounced")

    # The trigger deleted (the file lists another one; --prune deletes the rest).
    (tmp_path / "doc.yaml").write_text(DOC.replace(
        "{name: push, type: webhook, path: gh,", "{name: other, type: webhook, path: gh2,"))
    assert triggerd("apply", "--prune", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    result = triggerd("webhooks", "replay", opened, dsn=dsn)
    assert result.returncode == 4
    assert one_line_error(result) == (
        f"triggerd: error: webhook request {opened} cannot be replayed: its trigger was"
        " deleted")
