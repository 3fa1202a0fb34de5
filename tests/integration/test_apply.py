"""``apply``: create, update, publish, disable, prune, all-or-nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from triggerd.definitions import load_documents, load_files
from triggerd.errors import DefinitionError
from triggerd.store.workflows import ApplyReport, apply_workflows, list_triggers

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (ROOT / "config" / "examples").glob("*.yaml"))


def doc(**overrides: Any) -> dict[str, Any]:
    workflow: dict[str, Any] = {
        "key": "wf",
        "name": "Workflow",
        "graph": {"nodes": [{"id": "a", "type": "noop"}], "edges": []},
        "triggers": [
            {"name": "m", "type": "manual"},
            {"name": "hook", "type": "webhook", "path": "wf/hook"},
        ],
    }
    workflow.update(overrides)
    return {"workflows": [workflow]}


async def apply(pool: asyncpg.Pool, document: dict[str, Any], prune: bool = False) -> list[str]:
    async with pool.acquire() as conn:
        report = await apply_workflows(conn, load_documents([("t.yaml", document)]), prune=prune)
    return report.lines


async def test_examples_apply_then_reapply_changes_nothing(pool: asyncpg.Pool) -> None:
    specs = load_files(EXAMPLES)
    async with pool.acquire() as conn:
        first = await apply_workflows(conn, specs)
        second = await apply_workflows(conn, load_files(EXAMPLES))
    assert first.changed
    assert any(line.endswith("version 1 published") for line in first.lines)
    assert not second.changed
    # Unchanged objects are counted, not listed (they were one line each).
    assert second.lines == []
    assert second.summary == "no changes"
    assert second.unchanged_workflows == len(specs)
    assert second.unchanged_triggers == sum(len(s.triggers) for s in specs)
    assert second.to_json() == {"changes": [], "unchanged": second.unchanged}
    versions = await pool.fetchval("SELECT count(*) FROM workflow_versions")
    assert versions == len(specs)


async def test_graph_change_publishes_next_version_and_keeps_old(pool: asyncpg.Pool) -> None:
    await apply(pool, doc())
    changed = doc(
        graph={
            "nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
            "edges": [{"from": "a", "to": "b"}],
        }
    )
    lines = await apply(pool, changed)
    assert "workflow wf: version 2 published" in lines
    rows = await pool.fetch("SELECT version, is_latest, graph FROM workflow_versions ORDER BY 1")
    assert [(r["version"], r["is_latest"]) for r in rows] == [(1, False), (2, True)]
    assert len(rows[0]["graph"]["nodes"]) == 1  # the published version 1 is untouched


async def test_name_only_change_updates_without_new_version(pool: asyncpg.Pool) -> None:
    await apply(pool, doc())
    lines = await apply(pool, doc(name="Renamed"))
    assert lines[0] == "workflow wf: updated"
    assert not any("published" in line for line in lines)


async def test_trigger_missing_from_file_is_disabled_or_pruned(pool: asyncpg.Pool) -> None:
    await apply(pool, doc())
    fewer = doc(triggers=[{"name": "m", "type": "manual"}])
    lines = await apply(pool, fewer)
    assert "trigger wf/hook: disabled (not in the file)" in lines
    triggers = {t.name: t.enabled for t in await list_triggers(pool)}
    assert triggers == {"m": True, "hook": False}
    lines = await apply(pool, fewer, prune=True)
    assert "trigger wf/hook: deleted (not in the file)" in lines
    assert [t.name for t in await list_triggers(pool)] == ["m"]


async def test_failure_half_way_writes_nothing(pool: asyncpg.Pool) -> None:
    """The second workflow's webhook path collides with an enabled trigger already in the
    database: the whole apply rolls back, including the first workflow."""
    await apply(pool, doc())
    before = await pool.fetch("SELECT key, name FROM workflows ORDER BY key")
    document = {
        "workflows": [
            {
                "key": "aaa",
                "name": "First",
                "graph": {"nodes": [{"id": "a", "type": "noop"}]},
                "triggers": [{"name": "m", "type": "manual"}],
            },
            {
                "key": "zzz",
                "name": "Second",
                "graph": {"nodes": [{"id": "a", "type": "noop"}]},
                "triggers": [{"name": "clash", "type": "webhook", "path": "wf/hook"}],
            },
        ]
    }
    with pytest.raises(DefinitionError) as info:
        await apply(pool, document)
    assert "webhook path 'wf/hook'" in str(info.value)
    after = await pool.fetch("SELECT key, name FROM workflows ORDER BY key")
    assert after == before
    assert await pool.fetchval("SELECT count(*) FROM workflow_versions") == 1
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 2


async def test_reenabling_a_trigger_resets_enabled_at(pool: asyncpg.Pool) -> None:
    await apply(pool, doc())
    first = await pool.fetchval("SELECT enabled_at FROM workflow_triggers WHERE name = 'm'")
    disabled = copy.deepcopy(doc())
    disabled["workflows"][0]["triggers"][0]["enabled"] = False
    await apply(pool, disabled)
    await apply(pool, doc())
    again = await pool.fetchval("SELECT enabled_at FROM workflow_triggers WHERE name = 'm'")
    assert again > first


def hook_doc(key: str, path: str) -> dict[str, Any]:
    return {"workflows": [{
        "key": key,
        "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": "hook", "type": "webhook", "path": path}],
    }]}


async def test_two_webhooks_swap_their_paths_in_one_apply(pool: asyncpg.Pool) -> None:
    # The unique index was checked row by row: each collided with the other's old path.
    def doc(first: str, second: str) -> dict[str, Any]:
        return {"workflows": [{
            "key": "hooks", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
            "triggers": [{"name": "plain", "type": "webhook", "path": first},
                         {"name": "tok", "type": "webhook", "path": second}]}]}

    await apply(pool, doc("plain2", "tok"))
    await apply(pool, doc("tok", "plain2"))
    rows = await pool.fetch("SELECT name, config->>'path' AS path, enabled"
                            " FROM workflow_triggers ORDER BY name")
    assert [tuple(r) for r in rows] == [("plain", "tok", True), ("tok", "plain2", True)]


async def test_a_webhook_path_differing_only_by_slashes_is_taken(pool: asyncpg.Pool) -> None:
    # Routing ignores slashes at either end: "t/none/" beside "t/none" could never fire.
    await apply(pool, hook_doc("one", "t/none"))
    with pytest.raises(DefinitionError) as caught:
        await apply(pool, hook_doc("two", "t/none/"))
    assert caught.value.message == (
        "webhook path 't/none' of trigger two/hook is already used by the enabled trigger"
        " one/hook (disable it, or give two/hook another path)"
    )
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 1


async def test_a_path_stored_with_slashes_before_they_were_normalized_is_taken(
    pool: asyncpg.Pool,
) -> None:
    # Rows written by earlier versions may still hold "t/none/"; the unique index compares
    # the stored text, so the comparison must be made on the normalized form.
    await apply(pool, hook_doc("one", "t/none"))
    await pool.execute(
        "UPDATE workflow_triggers SET config = jsonb_set(config, '{path}', '\"t/none/\"')"
    )
    with pytest.raises(DefinitionError) as caught:
        await apply(pool, hook_doc("two", "t/none"))
    assert caught.value.message == (
        "webhook path 't/none' of trigger two/hook is already used by the enabled trigger"
        " one/hook (stored as 't/none/')"
    )
    assert [p.message for p in caught.value.problems] == [
        "webhook path 't/none' is already used by the enabled trigger one/hook"
        " (stored as 't/none/')"
    ]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 1
    # Applying the old trigger's own file again stores its path normalized.
    lines = await apply(pool, hook_doc("one", "t/none/"))
    assert "trigger one/hook: updated" in lines
    assert await pool.fetchval("SELECT config->>'path' FROM workflow_triggers") == "t/none"


async def apply_report(
    pool: asyncpg.Pool, document: dict[str, Any], *, prune: bool = False, plan: bool = False
) -> ApplyReport:
    async with pool.acquire() as conn:
        specs = load_documents([("t.yaml", document)])
        return await apply_workflows(conn, specs, prune=prune, plan=plan)


async def test_a_new_version_is_reported_once_and_the_rest_summarized(pool: asyncpg.Pool) -> None:
    # It printed "workflow wf: unchanged" and then "workflow wf: version 2 published".
    await apply(pool, doc())
    graph = {"nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
             "edges": [{"from": "a", "to": "b"}]}
    report = await apply_report(pool, doc(graph=graph))
    assert report.lines == ["workflow wf: version 2 published"]
    assert report.summary == "2 triggers and 0 workflows unchanged"
    assert report.to_json() == {
        "changes": [
            {"kind": "workflow", "name": "wf", "action": "published", "detail": "version 2"}
        ],
        "unchanged": 2,
    }
    fewer = doc(triggers=[{"name": "m", "type": "manual"}], name="Renamed", graph=graph)
    report = await apply_report(pool, fewer)
    assert report.lines == [
        "workflow wf: updated",
        "trigger wf/hook: disabled (not in the file)",
    ]
    assert report.summary == "1 trigger and 0 workflows unchanged"
    assert report.to_json()["changes"][1] == {
        "kind": "trigger", "name": "wf/hook", "action": "disabled", "detail": "not in the file",
    }


async def _rows(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Every row apply writes, without ids and instants (only how the instants relate)."""
    workflows = await pool.fetch(
        "SELECT tenant_id, key, name, description, status, updated_at = created_at AS fresh"
        " FROM workflows ORDER BY key"
    )
    versions = await pool.fetch(
        "SELECT w.key, v.version, v.graph, v.parameter_schema, v.env_config, v.timeout_ms,"
        " v.is_latest, v.published_at IS NOT NULL AS published FROM workflow_versions v"
        " JOIN workflows w ON w.id = v.workflow_id ORDER BY 1, 2"
    )
    triggers = await pool.fetch(
        "SELECT w.key, t.name, t.type, t.enabled, t.version, t.config, t.input,"
        " t.updated_at = t.created_at AS fresh, t.enabled_at = t.updated_at AS enabled_now"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id ORDER BY 1, 2"
    )
    return {
        "workflows": [tuple(r) for r in workflows],
        "versions": [tuple(r) for r in versions],
        "triggers": [tuple(r) for r in triggers],
    }


def _sequence() -> list[tuple[dict[str, Any], bool]]:
    """Files applied one after the other: create, rename, new version, trigger changes,
    a trigger dropped (disabled, then pruned), re-enabled, a second workflow."""
    other = {
        "key": "other",
        "name": "Other",
        "description": "second",
        "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [
            {"name": "c", "type": "cron", "cron": "*/5 * * * *", "timezone": "Europe/Paris"},
            {"name": "h", "type": "webhook", "path": "other/h"},
        ],
    }
    base = doc()
    renamed = doc(name="Renamed", status="draft")
    graph = {"nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
             "edges": [{"from": "a", "to": "b"}]}
    new_graph = doc(name="Renamed", status="draft", graph=graph)
    changed = copy.deepcopy(new_graph)
    changed["workflows"][0]["triggers"][0]["input"] = {"x": 1}
    changed["workflows"][0]["triggers"][1]["enabled"] = False
    changed["workflows"].append(other)
    reenabled = copy.deepcopy(changed)
    reenabled["workflows"][0]["triggers"][1]["enabled"] = True
    dropped = copy.deepcopy(reenabled)
    del dropped["workflows"][0]["triggers"][1]
    dropped["workflows"][1]["triggers"].append({"name": "m2", "type": "manual", "version": 1})
    return [
        (base, False), (base, False), (renamed, False), (new_graph, False), (changed, False),
        (reenabled, False), (dropped, False), (dropped, True), (reenabled, False),
        (base, True),
    ]


async def test_batched_apply_writes_what_the_per_object_apply_wrote(pool: asyncpg.Pool) -> None:
    from tests.integration.apply_reference import reference_apply

    expected_states = []
    expected_lines = []
    async with pool.acquire() as conn:
        for document, prune in _sequence():
            specs = load_documents([("t.yaml", document)])
            report = await reference_apply(conn, specs, prune=prune)
            expected_lines.append([x for x in report.lines if not x.endswith(": unchanged")])
            expected_states.append(await _rows(pool))
        await conn.execute("TRUNCATE workflows CASCADE")
        for step, (document, prune) in enumerate(_sequence()):
            specs = load_documents([("t.yaml", document)])
            batched = await apply_workflows(conn, specs, prune=prune)
            assert batched.lines == expected_lines[step], step
            assert await _rows(pool) == expected_states[step], step


async def test_plan_reports_the_changes_and_writes_nothing(pool: asyncpg.Pool) -> None:
    planned = await apply_report(pool, doc(), plan=True)
    assert planned.lines[:2] == ["workflow wf: created", "workflow wf: version 1 published"]
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 0
    await apply(pool, doc())
    before = await _rows(pool)
    fewer = doc(triggers=[{"name": "m", "type": "manual", "input": {"a": 1}}])
    planned = await apply_report(pool, fewer, prune=True, plan=True)
    assert planned.lines == [
        "trigger wf/m: updated",
        "trigger wf/hook: deleted (not in the file)",
    ]
    assert await _rows(pool) == before
    applied = await apply_report(pool, fewer, prune=True)
    assert applied.to_json() == planned.to_json()


async def test_the_daemon_reads_its_definitions_off_the_event_loop(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The definitions file is a FIFO: reading it waits for the writer, who writes only
    once the event loop has run something else meanwhile. Read on the loop, nothing else
    ran until the writer gave up waiting."""
    import asyncio
    import os
    import threading

    from triggerd.config import DaemonSettings, Settings
    from triggerd.daemon import Daemon

    fifo = tmp_path / "defs.yaml"
    os.mkfifo(fifo)
    loop_ran = threading.Event()
    ran_before_write: list[bool] = []

    def writer() -> None:
        ran_before_write.append(loop_ran.wait(timeout=30))
        with open(fifo, "w", encoding="utf-8") as pipe:
            pipe.write(
                "workflows:\n  - key: piped\n    graph: {nodes: [{id: a, type: noop}]}\n"
            )

    thread = threading.Thread(target=writer)
    thread.start()
    settings = Settings(daemon=DaemonSettings(definitions=(str(fifo),)))
    daemon = Daemon(settings=settings, pool=pool)
    applying = asyncio.create_task(daemon.apply_definitions(settings))
    await asyncio.sleep(0)  # the apply starts; read on the loop, it blocks here
    loop_ran.set()
    await applying
    await asyncio.to_thread(thread.join)
    assert ran_before_write == [True]
    assert await pool.fetchval("SELECT key FROM workflows") == "piped"


async def test_triggers_of_new_workflows_are_not_compared_with_stored_rows(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow this apply creates has no stored triggers: its triggers are not sent to
    be compared (a first apply of 100,000 triggers sent them all for nothing)."""
    compared: list[list[str]] = []
    real = asyncpg.Connection.fetch

    async def recording(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        if "AS same" in query:
            compared.append(list(args[2]))  # the names of the file's triggers sent
        return await real(self, query, *args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "fetch", recording)
    first = doc()
    await apply(pool, first)
    both = copy.deepcopy(first)
    other = copy.deepcopy(first["workflows"][0])
    other["key"] = "wf2"
    other["triggers"] = [{"name": "m2", "type": "manual"}]
    both["workflows"].append(other)
    assert await apply(pool, both) == ["workflow wf2: created", "workflow wf2: version 1 published",
                                       "trigger wf2/m2: created"]
    assert compared == [["m", "hook"]]


async def test_new_triggers_are_stored_exactly_whatever_their_text(pool: asyncpg.Pool) -> None:
    """New triggers go in with COPY's text format: backslashes, tabs, line breaks, carriage
    returns, COPY's own markers and non-ASCII text come back as they were written."""
    tricky = {"path": "C:\\temp\\new", "tab": "a\tb", "lines": "one\ntwo\r\nthree",
              "marker": "\\.", "null": "\\N", "text": "é ü 漢字 😀", "nothing": None,
              "deep": [{"x": "\\\\", "n": 1.5, "t": True}]}
    document = doc(triggers=[
        {"name": "m", "type": "manual", "input": tricky},
        {"name": "hook", "type": "webhook", "path": "wf/hook", "enabled": False, "version": 1},
    ])
    await apply(pool, document)
    rows = {r["name"]: r for r in await pool.fetch(
        "SELECT name, enabled, version, input, config->>'path' AS path FROM workflow_triggers")}
    assert rows["m"]["input"] == tricky
    assert rows["m"]["enabled"] is True and rows["m"]["version"] is None
    assert rows["hook"]["path"] == "wf/hook"
    assert rows["hook"]["enabled"] is False and rows["hook"]["version"] == 1


async def test_a_path_taken_between_the_check_and_the_write_is_named(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another apply commits the same webhook path after this one's check: the unique index
    refuses the new trigger's row, and the error names the trigger, as the check would."""
    from triggerd.store import workflows

    await apply(pool, doc())  # wf/hook is taken by wf's trigger

    async def no_check(*_args: Any) -> None:
        return None

    monkeypatch.setattr(workflows, "_check_paths", no_check)
    other = doc(key="other", triggers=[{"name": "late", "type": "webhook", "path": "wf/hook"}])
    with pytest.raises(DefinitionError) as info:
        await apply(pool, other)
    assert str(info.value) == (
        "webhook path 'wf/hook' of trigger other/late is already used by the enabled trigger"
        " wf/hook (disable it, or give other/late another path)"
    )
    assert await pool.fetchval("SELECT count(*) FROM workflows WHERE key = 'other'") == 0


async def test_new_triggers_sent_in_several_slices_are_all_stored(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerd.store import workflows

    monkeypatch.setattr(workflows, "COPY_SLICE", 2)
    triggers = [{"name": f"t{i}", "type": "cron", "cron": f"{i} * * * *",
                 "input": {"n": i}} for i in range(5)]
    await apply(pool, doc(triggers=triggers))
    rows = await pool.fetch("SELECT name, config->>'cron' AS cron, input FROM workflow_triggers"
                            " ORDER BY name")
    assert [(r["name"], r["cron"], r["input"]) for r in rows] == [
        (f"t{i}", f"{i} * * * *", {"n": i}) for i in range(5)
    ]


async def test_new_workflows_and_triggers_get_time_ordered_ids(pool: asyncpg.Pool) -> None:
    # UUIDv7s land at the right edge of the primary keys; random ones on a random page each.
    triggers = [{"name": f"t{i}", "type": "cron", "cron": f"{i} * * * *"} for i in range(5)]
    await apply(pool, doc(triggers=triggers))
    workflow = await pool.fetchval("SELECT id FROM workflows")
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM workflow_triggers ORDER BY name")]
    assert workflow.version == 7
    assert [i.version for i in ids] == [7] * 5
    # Made in order, at most a millisecond's random part apart.
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)
    assert ids[0].int >> 80 >= workflow.int >> 80


async def test_a_trigger_pinned_to_a_version_the_workflow_lacks_is_refused(
    pool: asyncpg.Pool,
) -> None:
    """Applied, every fire of it failed NO_VERSION and its webhook answered 404."""
    def doc(version: int, node: str = "a") -> dict[str, Any]:
        return {"workflows": [{
            "key": "pinned", "graph": {"nodes": [{"id": node, "type": "noop"}]},
            "triggers": [{"name": "i", "type": "interval", "every": "1h", "version": version},
                         {"name": "h", "type": "webhook", "path": "pin/h"}]}]}

    async with pool.acquire() as conn:
        with pytest.raises(DefinitionError) as refused:
            await apply_workflows(conn, load_documents([("pin.json", doc(9))]))
        [problem] = refused.value.problems
        assert (problem.file, problem.path, problem.message) == (
            "pin.json", "$.workflows[0].triggers[0].version",
            "trigger 'i': workflow 'pinned' has no version 9 (its versions are 1-1)")
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0  # nothing written
        await apply_workflows(conn, load_documents([("pin.json", doc(1))]))
        # The version this apply publishes counts: a new graph is version 2.
        await apply_workflows(conn, load_documents([("pin.json", doc(2, "b"))]))
        assert await conn.fetchval("SELECT version FROM workflow_triggers WHERE name = 'i'") == 2


async def test_a_tolerance_outlasting_the_dedupe_ttl_is_refused_and_nothing_applied(
    pool: asyncpg.Pool,
) -> None:
    stripe = {"name": "pay", "type": "webhook", "path": "shop/pay",
              "auth": {"scheme": "stripe", "secret": {"env": "STRIPE_SECRET"}},
              "dedupe": {"json": "/id", "ttl": "1m"}}
    with pytest.raises(DefinitionError) as caught:
        await apply(pool, doc(key="shop", triggers=[stripe]))
    assert caught.value.message == (
        "1 problem in definitions: t.yaml: $.workflows[0].triggers[0].dedupe.ttl: webhook"
        " trigger shop/pay: auth"
        " tolerance 5m accepts a signed request for 10m (the tolerance before and after its"
        " timestamp), longer than its dedupe ttl 1m: a captured request could be replayed as"
        " a new run after its delivery id expires; set dedupe ttl to at least 10m or lower"
        " the tolerance"
    )
    assert await pool.fetchval("SELECT count(*) FROM workflows") == 0
    assert await pool.fetchval("SELECT count(*) FROM workflow_triggers") == 0


async def test_a_pool_larger_than_the_server_takes_is_said_at_start(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """It failed only under load, with PostgreSQL's "too many clients"."""
    import logging

    from triggerd.config import DatabaseSettings, Settings
    from triggerd.daemon import Daemon

    limit = int(await pool.fetchval("SHOW max_connections"))
    caplog.set_level(logging.WARNING, logger="triggerd.daemon")
    await Daemon(settings=Settings(), pool=pool).warn_of_connection_shortfall()
    assert not [r for r in caplog.records if r.__dict__.get("event")
                == "database_connections_short"]
    big = Settings(database=DatabaseSettings(pool_max=limit + 10))
    await Daemon(settings=big, pool=pool).warn_of_connection_shortfall()
    [record] = [r for r in caplog.records
                if r.__dict__.get("event") == "database_connections_short"]
    assert record.__dict__["needed"] == limit + 11
    assert record.getMessage().startswith(
        f"database connections may run short: this daemon may open {limit + 11} connections,"
        f" more than the server takes ({limit} max_connections less")
