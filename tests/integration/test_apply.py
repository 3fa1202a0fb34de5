"""``apply``: create, update, publish, disable, prune, all-or-nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from triggerd.definitions import load_documents, load_files
from triggerd.errors import DefinitionError
from triggerd.store.workflows import apply_workflows, list_triggers

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
    assert all(line.endswith(": unchanged") for line in second.lines), second.lines
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


async def test_a_webhook_path_differing_only_by_slashes_is_taken(pool: asyncpg.Pool) -> None:
    # Routing ignores slashes at either end: "t/none/" beside "t/none" could never fire.
    await apply(pool, hook_doc("one", "t/none"))
    with pytest.raises(DefinitionError) as caught:
        await apply(pool, hook_doc("two", "t/none/"))
    assert caught.value.message == (
        "webhook path 't/none' of trigger two/hook is already used by another enabled trigger"
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
