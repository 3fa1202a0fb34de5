"""``triggerd workflows list | show | archive | activate | delete`` as a real process, and
the same operations through the admin API of a running daemon: archiving takes the
workflow's webhook off the air at once, activating brings it back."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg

from tests.acceptance.conftest import Daemons
from tests.acceptance.test_cli import one_line_error, triggerd
from tests.helpers import wait_for

DOC = """
workflows:
  - key: billing
    name: Billing
    graph: {nodes: [{id: start, type: noop}]}
    triggers:
      - {name: hook, type: webhook, path: billing}
      - {name: by-hand, type: manual}
  - key: other
    graph: {nodes: [{id: start, type: noop}]}
"""
TOKEN = "lifecycle-admin-s3cret"


async def test_list_show_archive_activate_delete(dsn: str, tmp_path: Path) -> None:
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    listed = json.loads(triggerd("workflows", "list", "--json", dsn=dsn).stdout)
    assert [(w["key"], w["status"], w["latest_version"]) for w in listed] == [
        ("billing", "active", 1), ("other", "active", 1)]
    text = triggerd("workflows", "list", dsn=dsn).stdout.splitlines()
    assert text[0].split() == ["KEY", "STATUS", "VERSION", "NAME", "UPDATED"]
    shown = json.loads(triggerd("workflows", "show", "billing", "--json", dsn=dsn).stdout)
    assert [t["trigger"] for t in shown["triggers"]] == ["by-hand", "hook"]

    archived = triggerd("workflows", "archive", "billing", "--note", "moved", dsn=dsn)
    assert archived.returncode == 0, archived.stderr
    assert archived.stdout.strip() == (
        "workflow billing archived: its triggers start nothing (was active)")
    again = triggerd("workflows", "archive", "billing", "--json", dsn=dsn)
    assert json.loads(again.stdout) == {"workflow": "billing", "changed": False,
                                        "status": "archived", "previous": "archived",
                                        "canceled_backfills": 0}
    fired = triggerd("triggers", "fire", "billing/by-hand", dsn=dsn)
    assert (fired.returncode, one_line_error(fired)) == (
        4, "triggerd: error: workflow billing is archived; activate it first")
    # Re-applying the file (which names no status) keeps the operator's archive.
    replan = triggerd("apply", str(tmp_path / "doc.yaml"), "--plan", "--json", dsn=dsn)
    assert json.loads(replan.stdout)["changes"] == []
    activated = triggerd("workflows", "activate", "billing", dsn=dsn)
    assert activated.stdout.strip() == (
        "workflow billing activated: no slot from before now runs (was archived)")

    fired = triggerd("triggers", "fire", "billing/by-hand", dsn=dsn)
    assert fired.returncode == 0, fired.stderr
    refused = triggerd("workflows", "delete", "billing", dsn=dsn)
    assert (refused.returncode, one_line_error(refused)) == (
        2, "triggerd: error: deleting workflow billing removes its versions, triggers and"
           " history for good; add --yes to do it")
    busy = triggerd("workflows", "delete", "billing", "--yes", dsn=dsn)
    assert (busy.returncode, one_line_error(busy)) == (
        4, "triggerd: error: workflow billing has 1 run(s) in flight; cancel them or let them"
           " finish first (archive it to start no more)")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE workflow_executions SET status = 'SUCCESS', end_time = now()")
        deleted = triggerd("workflows", "delete", "billing", "--yes", "--json", dsn=dsn)
        assert deleted.returncode == 0, deleted.stderr
        assert json.loads(deleted.stdout) == {"workflow": "billing", "versions": 1,
                                              "triggers": 2, "executions": 1,
                                              "webhook_requests": 0}
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 0
        assert await conn.fetchval("SELECT array_agg(key) FROM workflows") == ["other"]
        actions = await conn.fetch("SELECT actor, action, note FROM audit_log ORDER BY id")
        assert [r["action"] for r in actions] == ["apply", "archive", "activate", "fire",
                                                  "delete"]
        assert actions[1]["note"] == "moved" and actions[1]["actor"].startswith("cli:")
    finally:
        await conn.close()
    missing = triggerd("workflows", "show", "billing", dsn=dsn)
    assert (missing.returncode, one_line_error(missing)) == (
        3, "triggerd: error: no workflow with key 'billing'")


async def test_archive_through_the_api_takes_the_webhook_off_the_air(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": TOKEN}})
    (tmp_path / "doc.yaml").write_text(DOC)
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session:

        def answered(wanted: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                async with session.post(daemon.base_url + "/hooks/billing",
                                        json={}) as response:
                    return response.status == wanted
            return check

        await wait_for(answered(202))
        async with session.post(daemon.base_url + "/api/v1/workflows/billing/archive",
                                headers=headers, json={"note": "retired"}) as response:
            assert response.status == 200
            assert (await response.json())["status"] == "archived"
        await wait_for(answered(404))
        async with session.post(daemon.base_url + "/api/v1/workflows/billing/activate",
                                headers=headers) as response:
            assert (await response.json())["changed"] is True
        await wait_for(answered(202))
        conn = await asyncpg.connect(dsn)
        try:
            async def all_finished() -> bool:
                return bool(await conn.fetchval(
                    "SELECT count(*) = 0 FROM workflow_executions"
                    " WHERE status NOT IN ('SUCCESS', 'ERROR', 'CANCELED')"))

            await wait_for(all_finished)
            runs = await conn.fetchval("SELECT count(*) FROM workflow_executions")
        finally:
            await conn.close()
        async with session.delete(daemon.base_url + "/api/v1/workflows/billing",
                                  headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        assert (body["triggers"], body["executions"], body["webhook_requests"]) == (
            2, runs, runs)


async def test_triggers_list_and_show_say_when_a_schedule_has_ended(
    dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "doc.yaml").write_text("""
workflows:
  - key: report
    graph: {nodes: [{id: start, type: noop}]}
    triggers:
      - {name: limited, type: cron, cron: "0 2 29 2 *", max_runs: 3}
      - {name: ended, type: cron, cron: "0 2 * * *", end_at: "2026-01-01T00:00:00Z"}
      - {name: going, type: cron, cron: "0 2 29 2 *", max_runs: 3}
""")
    assert triggerd("apply", str(tmp_path / "doc.yaml"), dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO trigger_state (trigger_id, scheduled_runs, completed_at)"
            " SELECT id, 3, now() FROM workflow_triggers WHERE name = 'limited'"
            " UNION ALL SELECT id, 1, NULL FROM workflow_triggers WHERE name = 'going'")
    finally:
        await conn.close()
    listed = triggerd("triggers", "list", dsn=dsn).stdout.splitlines()
    states = {line.split()[0]: line.split()[2] for line in listed[1:]}
    assert states == {"report/ended": "completed", "report/going": "enabled",
                      "report/limited": "completed"}
    shown = triggerd("triggers", "show", "report/limited", dsn=dsn).stdout
    assert "completed:   max_runs reached (3 scheduled runs)" in shown
    assert "remaining:   0 scheduled run(s)" in shown and "next fires:" not in shown
    doc = json.loads(triggerd("triggers", "show", "report/going", "--json", dsn=dsn).stdout)
    assert (doc["remaining_runs"], doc["completed"]) == (2, None)
    doc = json.loads(triggerd("triggers", "show", "report/ended", "--json", dsn=dsn).stdout)
    assert (doc["remaining_runs"], doc["completed"], doc["next_fires"]) == (
        None, "end_at passed (2026-01-01T00:00:00+00:00)", [])
