"""Rolling upgrades (DESIGN §5b): only `migrate` and the daemon migrate; everything else
refuses a schema behind the code and works on one ahead of it (a newer triggerd migrated
first and added columns: expand/contract)."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from tests.helpers import apply_doc, fire
from triggerd import db
from triggerd.errors import MigrationError
from triggerd.store.admin import page_executions
from triggerd.store.executions import get_execution, list_executions, node_timeline
from triggerd.store.workflows import (
    get_trigger,
    get_workflow,
    list_triggers,
    list_versions,
    list_workflows,
    resolve_version,
)

# What a newer triggerd's migration could do: add a column to the tables we read.
NEWER_MIGRATION = """
ALTER TABLE workflows ADD COLUMN newer_note text;
ALTER TABLE workflow_versions ADD COLUMN newer_note text;
ALTER TABLE workflow_triggers ADD COLUMN newer_note text;
ALTER TABLE workflow_executions ADD COLUMN newer_note text NOT NULL DEFAULT 'x';
ALTER TABLE node_executions ADD COLUMN newer_note text;
ALTER TABLE webhook_requests ADD COLUMN newer_note text;
INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, '9999_future.sql', 'x');
"""

DOC = {
    "workflows": [
        {
            "key": "wf",
            "name": "wf",
            "graph": {"nodes": [{"id": "a", "type": "noop"}], "edges": []},
            "triggers": [{"name": "manual", "type": "manual"}],
        }
    ]
}


async def test_store_reads_survive_a_column_added_by_a_newer_triggerd(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """A statement reading `*` changes its result type when a column is added; inside a
    transaction the connection's cached statement then fails ("cached plan must not change
    result type"). Every read names its columns."""
    await apply_doc(pool, DOC)
    execution_id = await fire(pool, "wf/manual")

    async def read_everything(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            workflow = await get_workflow(conn, "wf")
            assert [w.key for w in await list_workflows(conn)] == ["wf"]
            assert [v.version for v in await list_versions(conn, workflow.id)] == [1]
            assert (await resolve_version(conn, workflow.id, None)) is not None
            assert (await resolve_version(conn, workflow.id, 1)) is not None
            assert (await get_trigger(conn, "wf/manual")).name == "manual"
            assert len(await list_triggers(conn)) == 1
            assert (await get_execution(conn, execution_id)).id == execution_id
            assert len(await list_executions(conn, limit=10)) == 1
            assert len(await page_executions(conn, limit=10)) == 1
            assert await node_timeline(conn, execution_id) == []

    async with pool.acquire() as conn:
        await read_everything(conn)  # prepares (and caches) every statement
        other = await asyncpg.connect(dsn)
        try:
            await other.execute(NEWER_MIGRATION)
        finally:
            await other.close()
        await read_everything(conn)


async def test_migrate_on_a_newer_schema_applies_nothing_and_warns(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(NEWER_MIGRATION)
    finally:
        await conn.close()
    with caplog.at_level(logging.WARNING, logger="triggerd.db"):
        report = await db.migrate(dsn)
    assert report.applied == ()
    assert [r.getMessage() for r in caplog.records] == [
        "the database has migration(s) 9999_future.sql which this triggerd does not know"
        " (a newer triggerd applied them); continuing"
    ]
    assert [getattr(r, "event", None) for r in caplog.records] == ["schema_ahead"]


async def test_check_schema_works_on_a_newer_schema_with_a_warning(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(NEWER_MIGRATION)
        with caplog.at_level(logging.WARNING, logger="triggerd.db"):
            state = await db.check_schema(dsn)
        assert state == db.SchemaState(missing=(), unknown=("9999_future.sql",))
        assert [getattr(r, "event", None) for r in caplog.records] == ["schema_ahead"]
        # /readyz: a newer schema is ready (older replicas keep serving during the upgrade).
        assert await db.schema_status(conn) is None
    finally:
        await conn.close()


async def test_check_schema_refuses_an_older_schema_and_changes_nothing(empty_dsn: str) -> None:
    known = db.known_migrations()
    with pytest.raises(MigrationError) as info:
        await db.check_schema(empty_dsn)
    names = ", ".join(m.name for m in known)
    assert str(info.value) == (
        f"the database schema is older than this triggerd: {len(known)} migrations not"
        f" applied ({names}); run 'triggerd migrate' first"
    )
    assert info.value.exit_code == 4
    await db.migrate(empty_dsn, known[:-1])
    with pytest.raises(MigrationError) as info:
        await db.check_schema(empty_dsn)
    assert str(info.value) == (
        "the database schema is older than this triggerd: 1 migration not applied"
        f" ({known[-1].name}); run 'triggerd migrate' first"
    )
    conn = await asyncpg.connect(empty_dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert count == len(known) - 1


async def test_check_schema_still_refuses_an_edited_migration(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(MigrationError) as info:
        await db.check_schema(dsn)
    assert str(info.value).startswith("migration 0001_initial.sql was changed after it was applied")
