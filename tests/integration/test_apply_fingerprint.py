"""``apply`` of files whose bytes were applied before: answered from a fingerprint, exactly.

A re-apply of unchanged files compares a digest of their bytes (and of the code that reads
them) and a digest of the stored rows with the ones recorded by the apply that wrote them;
anything else, a one-character edit or a row changed behind the file's back, takes the
full comparison."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from triggerd import definitions
from triggerd.definitions import load_files
from triggerd.definitions.api import load_files_by_file
from triggerd.errors import DefinitionError
from triggerd.operations import apply as apply_op
from triggerd.operations.apply import apply_files
from triggerd.store.workflows import ApplyReport, apply_workflows

TEXT = """\
workflows:
  - key: wf
    name: W
    env: {A: b}
    secrets: {S: {env: X}}
    parameter_schema: {type: object, properties: {d: {type: string, default: x}}}
    graph:
      nodes:
        - {id: a, type: noop}
    triggers:
      - {name: c, type: cron, cron: "5 4 * * *", timezone: UTC, input: {k: 1}}
      - {name: h, type: webhook, path: wf/h}
"""


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the files were read and checked in full (load_files_by_file: the
    apply names each file's own workflows, for its tenant and its problems)."""
    calls: list[int] = []

    def counting(real: Any) -> Any:
        def count(*args: object, **kwargs: object) -> object:
            calls.append(1)
            return real(*args, **kwargs)

        return count

    monkeypatch.setattr(apply_op, "load_files_by_file", counting(load_files_by_file))
    return calls


def _write(tmp_path: Path, text: str, name: str = "defs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def _full(conn: asyncpg.Connection, path: Path, *, plan: bool) -> ApplyReport:
    return await apply_workflows(conn, load_files([path]), plan=plan)


async def _outcome(applying: Awaitable[ApplyReport]) -> object:
    try:
        return (await applying).to_json()
    except DefinitionError as exc:  # e.g. an edited key whose webhook path is taken
        return str(exc)


async def test_unchanged_files_are_not_read_again(
    pool: asyncpg.Pool, tmp_path: Path, counted: list[int]
) -> None:
    path = _write(tmp_path, TEXT)
    async with pool.acquire() as conn:
        first = await apply_files(conn, [path])
        second = await apply_files(conn, [path])
        plan = await apply_files(conn, [path], plan=True)
    assert first.changed and len(counted) == 1
    assert not second.changed
    assert second.summary == "no changes"
    assert second.to_json() == {"changes": [], "unchanged": 3}
    assert (second.unchanged_workflows, second.unchanged_triggers) == (1, 2)
    assert plan.to_json() == second.to_json()
    assert len(counted) == 1  # neither re-apply parsed or validated the file


async def test_every_one_character_edit_is_compared_in_full(
    pool: asyncpg.Pool, tmp_path: Path, counted: list[int]
) -> None:
    path = _write(tmp_path, TEXT)
    async with pool.acquire() as conn:
        await apply_files(conn, [path])
        edits = 0
        for offset, char in enumerate(TEXT):
            for other in ("x",) if char != "x" else ("y",):
                edited = TEXT[:offset] + other + TEXT[offset + 1 :]
                changed = _write(tmp_path, edited, "edited.yaml")
                if definitions.check_files([changed]):
                    continue
                edits += 1
                before = len(counted)
                fast = await _outcome(apply_files(conn, [changed], plan=True))
                full = await _outcome(_full(conn, changed, plan=True))
                assert len(counted) == before + 1, edited  # read in full, not skipped
                assert fast == full, edited
                assert fast != {"changes": [], "unchanged": 3}, edited
    assert edits > 40  # the sweep met values, keys, env, secrets, defaults and triggers


async def test_rows_changed_behind_the_files_back_are_put_back(
    pool: asyncpg.Pool, tmp_path: Path, counted: list[int]
) -> None:
    path = _write(tmp_path, TEXT)
    async with pool.acquire() as conn:
        await apply_files(conn, [path])
        await conn.execute("UPDATE workflow_triggers SET enabled = false WHERE name = 'c'")
        report = await apply_files(conn, [path])
        again = await apply_files(conn, [path])
        await conn.execute("UPDATE workflows SET description = 'by hand'")
        described = await apply_files(conn, [path])
        await conn.execute(
            "INSERT INTO workflow_triggers (workflow_id, name, type, enabled, config, input)"
            " SELECT id, 'extra', 'manual', true, '{}', '{}' FROM workflows"
        )
        extra = await apply_files(conn, [path])
    assert report.lines == ["trigger wf/c: updated (enabled false -> true)"]
    assert not again.changed
    assert described.lines == ["workflow wf: updated"]
    assert extra.lines == ["trigger wf/extra: disabled (not in the file)"]
    assert len(counted) == 4  # every apply after a change behind the file's back read it


async def test_prune_and_file_order_are_part_of_the_fingerprint(
    pool: asyncpg.Pool, tmp_path: Path, counted: list[int]
) -> None:
    one = _write(tmp_path, TEXT)
    two = _write(tmp_path, TEXT.replace("key: wf", "key: wf2").replace("wf/h", "wf2/h"), "b.yaml")
    async with pool.acquire() as conn:
        await apply_files(conn, [one, two])
        await apply_files(conn, [two, one])
        await apply_files(conn, [one, two], prune=True)
        await apply_files(conn, [one, two], prune=True)
    assert len(counted) == 3


async def test_recorded_fingerprints_are_kept_bounded(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        for number in range(apply_op.KEPT_FINGERPRINTS + 5):
            path = _write(tmp_path, TEXT.replace("name: W", f"name: W{number}"))
            await apply_files(conn, [path])
        kept = await conn.fetchval("SELECT count(*) FROM applied_definitions")
    assert kept == apply_op.KEPT_FINGERPRINTS


async def test_a_failed_apply_records_nothing(pool: asyncpg.Pool, tmp_path: Path) -> None:
    path = _write(tmp_path, TEXT)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO workflows (tenant_id, key, name) VALUES ('default', 'other', 'O');"
            "INSERT INTO workflow_triggers (workflow_id, name, type, enabled, config, input)"
            """ SELECT id, 'h', 'webhook', true, '{"path": "wf/h"}', '{}' FROM workflows"""
        )
        with pytest.raises(DefinitionError):
            await apply_files(conn, [path])
        kept = await conn.fetchval("SELECT count(*) FROM applied_definitions")
    assert kept == 0


async def test_a_workflow_deleted_since_makes_the_files_that_name_it_checked_again(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Files naming a workflow another file defines (on_failure) answered "no changes"
    from their fingerprint after that workflow was deleted; read in full they are
    refused."""
    from triggerd.store.lifecycle import delete_workflow
    from triggerd.store.workflows import get_workflow

    parent = await _caller_applied_twice(
        pool, tmp_path, "    on_failure: kid\n    graph: {nodes: [{id: a, type: noop}]}\n")
    async with pool.acquire() as conn, conn.transaction():
        await delete_workflow(conn, (await get_workflow(conn, "kid")).id)
    with pytest.raises(DefinitionError) as refused:
        await apply_files(pool, [parent])
    assert "no workflow 'kid'" in str(refused.value.problems[0].message)


async def test_a_secret_policy_change_makes_unchanged_files_checked_again(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from triggerd.config import Settings, TenantSettings

    path = _write(tmp_path, TEXT.replace("workflows:", "tenant: acme\nworkflows:"))
    open_policy = Settings(tenants=(TenantSettings(name="acme", secrets=("env:*",)),))
    await apply_files(pool, [path], settings=open_policy)
    assert (await apply_files(pool, [path], settings=open_policy)).changes == []
    closed = Settings(tenants=(TenantSettings(name="acme", secrets=()),))
    with pytest.raises(DefinitionError) as refused:
        await apply_files(pool, [path], settings=closed)
    [problem] = refused.value.problems
    # Named as check names it: the file, and the path within it.
    assert (problem.file, problem.path) == (str(path), "$.workflows[0].secrets.S.env")


async def test_a_called_workflow_archived_since_makes_the_callers_files_checked_again(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from triggerd.operations import Actor
    from triggerd.operations.workflows import archive

    parent = await _caller_applied_twice(
        pool, tmp_path,
        "    graph: {nodes: [{id: call, type: workflow, params: {workflow: kid}}]}\n")
    await archive(pool, Actor(name="token:ops", via="api"), "kid")
    with pytest.raises(DefinitionError) as refused:
        await apply_files(pool, [parent])
    assert "workflow 'kid' is archived" in refused.value.problems[0].message


async def _caller_applied_twice(pool: asyncpg.Pool, tmp_path: Path, body: str) -> Path:
    """Workflow kid from one file, then workflow par (``body``: its lines after the key,
    naming kid) from another, applied twice: the second answered from the fingerprint.
    Returns par's file."""
    child = _write(tmp_path, "workflows:\n  - key: kid\n"
                             "    graph: {nodes: [{id: a, type: noop}]}\n", "kid.yaml")
    parent = _write(tmp_path, "workflows:\n  - key: par\n" + body, "par.yaml")
    await apply_files(pool, [child])
    await apply_files(pool, [parent])
    assert (await apply_files(pool, [parent])).changes == []  # from the fingerprint
    return parent
