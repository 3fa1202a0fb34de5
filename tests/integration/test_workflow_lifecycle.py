"""A workflow's lifecycle through the operations layer: archive stops its triggers and
keeps its history, activate catches nothing up, delete removes it with its history; each
is audited, and apply keeps the status unless a document names one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, fire
from triggerd.definitions import load_documents
from triggerd.errors import Conflict, NotFound
from triggerd.model import OverlapPolicy
from triggerd.operations import Actor
from triggerd.operations.triggers import FireRequest, set_enabled
from triggerd.operations.triggers import fire as fire_operation
from triggerd.operations.workflows import activate, archive, delete
from triggerd.store.slots import SlotRequest, load_cron_triggers, record_slots
from triggerd.store.workflows import apply_workflows, get_trigger, get_workflow

OPERATOR = Actor(name="token:ops", via="api")


def _doc(key: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "graph": {"nodes": [{"id": "a", "type": "noop"}]},
            "triggers": [{"name": "hourly", "type": "cron", "cron": "0 * * * *"},
                         {"name": "hook", "type": "webhook", "path": f"{key}/in"},
                         {"name": "by-hand", "type": "manual"}], **extra}


DOC = {"workflows": [_doc("report"), _doc("other")]}


async def _plan(pool: asyncpg.Pool, doc: dict[str, Any], *, plan: bool = True
                ) -> list[tuple[str, str, str]]:
    async with pool.acquire() as conn:
        report = await apply_workflows(conn, load_documents([("t.yaml", doc)]), plan=plan)
    return [(c.name, c.action, c.detail) for c in report.changes]


async def _loaded(pool: asyncpg.Pool) -> set[str]:
    return {t.full_name for t in await load_cron_triggers(pool)}


async def test_archive_stops_the_triggers_keeps_history_and_is_audited(
    pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, DOC)
    run = await fire(pool, "report/by-hand")
    result = await archive(pool, OPERATOR, "report", "  replaced by report-v2  ")
    assert (result.changed, result.status, result.previous) == (True, "archived", "active")
    assert (await get_workflow(pool, "report")).status == "archived"
    assert await _loaded(pool) == {"other/hourly"}
    with pytest.raises(Conflict, match=r"^workflow report is archived; activate it first$"):
        await fire_operation(pool, OPERATOR, FireRequest(trigger="report/by-hand"))
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions WHERE id = $1",
                               run) == 1
    audit = await pool.fetchrow("SELECT actor, action, target_kind, target, note, detail"
                                " FROM audit_log")
    assert tuple(audit)[:5] == ("token:ops", "archive", "workflow", "report",
                                "replaced by report-v2")
    assert audit["detail"] == {"previous": "active", "canceled_backfills": 0}
    again = await archive(pool, OPERATOR, "report")
    assert not again.changed
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_a_draft_workflow_runs_nothing_until_activated(pool: asyncpg.Pool) -> None:
    """Its schedules never fired, yet its manual fires ran, its webhook answered 202 and
    the lists called its triggers enabled."""
    from triggerd.store.trigger_state import paused_and_completed
    from triggerd.store.webhooks import load_webhook_triggers
    from triggerd.views import trigger_state

    await apply_doc(pool, {"workflows": [_doc("report", status="draft"), _doc("other")]})
    assert await _loaded(pool) == {"other/hourly"}
    with pytest.raises(Conflict, match=r"^workflow report is a draft; activate it first$"):
        await fire_operation(pool, OPERATOR, FireRequest(trigger="report/by-hand"))
    routes = {f"{r.workflow_key}/{r.trigger_name}" for r in await load_webhook_triggers(pool)}
    assert "report/hook" not in routes and "other/hook" in routes
    trigger = await get_trigger(pool, "report/hourly")
    paused, completed = await paused_and_completed(pool, [trigger.id])
    assert trigger_state(trigger, paused=trigger.id in paused,
                         completed=trigger.id in completed, now=datetime.now(UTC)) == "draft"
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 0
    await activate(pool, OPERATOR, "report")
    assert await _loaded(pool) == {"other/hourly", "report/hourly"}
    await fire_operation(pool, OPERATOR, FireRequest(trigger="report/by-hand"))
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1


async def test_archive_cancels_running_backfills(pool: asyncpg.Pool) -> None:
    from triggerd.operations.backfills import BackfillRequest
    from triggerd.operations.backfills import create as create_backfill

    await apply_doc(pool, DOC)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    plan = await create_backfill(pool, OPERATOR, BackfillRequest(
        trigger="report/hourly", range_from=now - timedelta(hours=5), range_to=now))
    assert plan.backfill_id is not None
    result = await archive(pool, OPERATOR, "report")
    assert result.canceled_backfills == 1
    assert await pool.fetchval("SELECT state FROM backfills") == "canceled"


async def test_activate_catches_nothing_up(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    await archive(pool, OPERATOR, "report")
    missed = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    result = await activate(pool, OPERATOR, "report", "back")
    assert (result.changed, result.status, result.previous) == (True, "active", "archived")
    loaded = {t.full_name: t for t in await load_cron_triggers(pool)}
    assert set(loaded) == {"report/hourly", "other/hourly"}
    assert loaded["report/hourly"].enabled_at > missed
    # A slot from before the activation is stale: recorded nowhere, run never.
    trigger = loaded["report/hourly"]
    written = await record_slots(pool, [SlotRequest(
        trigger_id=trigger.id, scheduled_for=missed,
        slot_iso=missed.strftime("%Y-%m-%dT%H:%M:%SZ"), config_text=trigger.config_text,
        overlap=OverlapPolicy.SKIP)], fired_at="x")
    assert written.inserted == 0 and len(written.stale) == 1
    actions = await pool.fetch("SELECT action, note FROM audit_log ORDER BY id")
    assert [(r["action"], r["note"]) for r in actions] == [("archive", None),
                                                            ("activate", "back")]
    assert not (await activate(pool, OPERATOR, "report")).changed


async def test_apply_keeps_the_status_unless_the_document_names_one(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    await archive(pool, OPERATOR, "report")
    assert await _plan(pool, DOC) == []
    await apply_doc(pool, DOC)
    assert (await get_workflow(pool, "report")).status == "archived"
    named = {"workflows": [_doc("report", status="active"), _doc("other")]}
    assert await _plan(pool, named) == [("report", "updated", "status archived -> active")]
    await apply_doc(pool, named)
    assert (await get_workflow(pool, "report")).status == "active"


async def test_apply_plan_names_the_enabled_values_it_reverts(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    await set_enabled(pool, OPERATOR, "report/hourly", False)
    assert await _plan(pool, DOC) == [("report/hourly", "updated", "enabled false -> true")]
    assert not (await get_trigger(pool, "report/hourly")).enabled  # a plan changes nothing


async def test_delete_removes_the_workflow_and_its_history_only(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    runs = [await fire(pool, name) for name in ("report/by-hand", "report/by-hand",
                                                 "other/by-hand")]
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS', end_time = now()")
    await pool.execute(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt)"
        " SELECT id, 'a', 'noop', 'SUCCESS', 1 FROM workflow_executions")
    hook = await get_trigger(pool, "report/hook")
    await pool.execute(
        "INSERT INTO webhook_requests (trigger_id, method, path, outcome, detail)"
        " VALUES ($1, 'POST', 'report/in', 'filtered', 'no match')", hook.id)
    hourly = await get_trigger(pool, "report/hourly")
    await pool.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                       " VALUES ($1, now(), 'skipped_misfire')", hourly.id)
    workflow = await get_workflow(pool, "report")

    result = await delete(pool, OPERATOR, "report", "retired")
    assert (result.versions, result.triggers, result.executions, result.webhook_requests) == (
        1, 3, 2, 1)
    with pytest.raises(NotFound):
        await get_workflow(pool, "report")
    remaining = await pool.fetch("SELECT id::text AS id FROM workflow_executions")
    assert [r["id"] for r in remaining] == [runs[2]]
    assert await pool.fetchval("SELECT count(*) FROM node_executions") == 1
    for table in ("webhook_requests", "trigger_slots", "workflow_versions"):
        count = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE {'workflow_id' if table == 'workflow_versions' else 'trigger_id'}"  # noqa: E501
            f" = ANY($1::uuid[])", [workflow.id] if table == "workflow_versions"
            else [hook.id, hourly.id])
        assert count == 0, table
    audit = await pool.fetchrow("SELECT action, target, note, detail FROM audit_log")
    assert (audit["action"], audit["target"], audit["note"]) == ("delete", "report", "retired")
    assert audit["detail"] == {"versions": 1, "triggers": 3, "executions": 2,
                               "webhook_requests": 1}
    assert (await get_workflow(pool, "other")).status == "active"


async def test_delete_is_refused_while_runs_are_in_flight(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, DOC)
    await fire(pool, "report/by-hand")
    with pytest.raises(Conflict, match=(
            r"^workflow report has 1 run\(s\) in flight; cancel them or let them finish first"
            r" \(archive it to start no more\)$")):
        await delete(pool, OPERATOR, "report")
    assert (await get_workflow(pool, "report")).status == "active"
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_unknown_workflows_are_not_found(pool: asyncpg.Pool) -> None:
    for operation in (archive, activate, delete):
        with pytest.raises(NotFound, match=r"^no workflow with key 'nope'$"):
            await operation(pool, OPERATOR, "nope")
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_an_apply_that_changes_something_is_audited_with_counts(
    pool: asyncpg.Pool, tmp_path: Any
) -> None:
    from triggerd.operations.apply import apply_files

    path = tmp_path / "defs.json"
    path.write_text(json.dumps(DOC))
    await apply_files(pool, [path], plan=True, actor=OPERATOR)
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 0
    await apply_files(pool, [path], actor=OPERATOR)
    row = await pool.fetchrow("SELECT actor, action, target_kind, target, detail FROM audit_log")
    assert tuple(row)[:4] == ("token:ops", "apply", "definitions", "defs.json")
    assert row["detail"] == {
        "files": [str(path)], "prune": False, "unchanged": 0,
        "changes": {"workflow created": 2, "workflow published": 2, "trigger created": 6}}
    await apply_files(pool, [path], actor=OPERATOR)  # unchanged: nothing to audit
    await apply_files(pool, [path])  # the daemon's own apply is the scheduler's
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1
    path.write_text(json.dumps({"workflows": [_doc("report", description="d"), _doc("other")]}))
    await apply_files(pool, [path])
    row = await pool.fetchrow("SELECT actor, detail FROM audit_log ORDER BY id DESC LIMIT 1")
    assert row["actor"] == "scheduler"
    assert row["detail"]["changes"] == {"workflow updated": 1}
    assert row["detail"]["unchanged"] == 7


async def test_an_apply_is_audited_in_each_tenant_it_changed(
    pool: asyncpg.Pool, tmp_path: Any
) -> None:
    # A `tenant: acme` document is acme's change: it was audited in `default`, so acme's
    # own audit list (its tokens, `--tenant acme audit`) did not show it.
    from triggerd.operations.apply import apply_files

    acme, default = tmp_path / "acme.json", tmp_path / "default.json"
    acme.write_text(json.dumps({"tenant": "acme", "workflows": [_doc("report")]}))
    default.write_text(json.dumps({"workflows": [_doc("other")]}))
    await apply_files(pool, [acme], actor=OPERATOR)
    rows = await pool.fetch("SELECT tenant_id, detail FROM audit_log ORDER BY id")
    assert [(r["tenant_id"], r["detail"]["changes"]) for r in rows] == [
        ("acme", {"workflow created": 1, "workflow published": 1, "trigger created": 3})]
    acme.write_text(json.dumps({"tenant": "acme", "workflows": [_doc("report", name="R")]}))
    await apply_files(pool, [acme, default], actor=OPERATOR)  # one apply, two tenants
    rows = await pool.fetch("SELECT tenant_id, detail FROM audit_log ORDER BY id")
    assert [(r["tenant_id"], r["detail"]["changes"]) for r in rows[1:]] == [
        ("acme", {"workflow updated": 1}),
        ("default", {"workflow created": 1, "workflow published": 1, "trigger created": 3})]

