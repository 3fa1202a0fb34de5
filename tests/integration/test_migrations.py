"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from triggerd import db
from triggerd.errors import MigrationError

EXPECTED_TABLES = {
    "workflows",
    "workflow_versions",
    "workflow_triggers",
    "workflow_executions",
    "node_executions",
    "trigger_slots",
    "webhook_requests",
    "schema_migrations",
    "node_outputs_resume",
    "api_tokens",
    "zone_rules",
    "audit_log",
    "trigger_state",
    "console_sessions",
    "backfills",
    "debounce_windows",
    "applied_definitions",
    "resume_tokens",
    "approvals",
    "workflow_memory",
    "memory_writes",
}


async def test_migrate_empty_database_creates_every_table(empty_dsn: str) -> None:
    report = await db.migrate(empty_dsn)
    # Every file of migrations/, in order (the file list itself is checked by
    # test_migration_files_are_numbered_in_order).
    assert report.applied == tuple(m.name for m in db.known_migrations())
    conn = await asyncpg.connect(empty_dsn)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        recorded = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    finally:
        await conn.close()
    assert tables == EXPECTED_TABLES
    assert sorted((r["version"], r["name"]) for r in recorded) == [
        (m.version, m.name) for m in db.known_migrations()
    ]
    assert {r["checksum"] for r in recorded} == {m.checksum for m in db.known_migrations()}


async def test_migrate_twice_applies_nothing_the_second_time(empty_dsn: str) -> None:
    await db.migrate(empty_dsn)
    again = await db.migrate(empty_dsn)
    assert again.applied == ()


async def test_database_ahead_of_code_is_migrated_around(empty_dsn: str) -> None:
    """A migration this triggerd does not know (a newer one applied it during a rolling
    upgrade) is no reason to refuse: the missing known ones are still applied."""
    known = db.known_migrations()
    await db.migrate(empty_dsn, known[:-1])
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum)"
            " VALUES (9999, '9999_future.sql', 'x')"
        )
    finally:
        await conn.close()
    report = await db.migrate(empty_dsn)
    assert report.applied == (known[-1].name,)
    assert report.current == 9999  # the database's version, not the newest this one ships


async def test_another_tools_schema_migrations_is_a_clear_refusal(empty_dsn: str) -> None:
    """A database whose schema_migrations is another tool's (golang-migrate's shape): every
    command crashed (exit 70, UndefinedColumnError) and doctor reported nothing."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY,"
                           " dirty boolean NOT NULL); INSERT INTO schema_migrations"
                           " VALUES (20240101, false)")
    finally:
        await conn.close()
    for attempt in (db.migrate(empty_dsn), db.check_schema(empty_dsn)):
        with pytest.raises(MigrationError) as info:
            await attempt
        assert str(info.value) == db.FOREIGN_MIGRATIONS
    conn = await asyncpg.connect(empty_dsn)
    try:  # nothing of triggerd's was created beside it
        assert await conn.fetchval("SELECT to_regclass('workflows')") is None
    finally:
        await conn.close()


async def test_edited_migration_is_refused(dsn: str) -> None:
    edited = [replace(m, sql=m.sql + "\n-- edited\n") for m in db.known_migrations()]
    with pytest.raises(MigrationError) as info:
        await db.migrate(dsn, edited)
    assert "0001_initial.sql was changed after it was applied" in str(info.value)


async def test_failing_migration_leaves_nothing_behind(empty_dsn: str) -> None:
    known = db.known_migrations()
    following = known[-1].version + 1
    broken = [
        *known,
        db.Migration(
            version=following,
            name=f"{following:04d}_broken.sql",
            sql="CREATE TABLE half_done (id int); SELECT no_such_function();",
        )
    ]
    with pytest.raises(MigrationError) as info:
        await db.migrate(empty_dsn, broken)
    # The file is named, with how many went before it and the server's complaint.
    assert str(info.value).startswith(
        f"migration {following:04d}_broken.sql failed and was rolled back ({len(known)}"
        " applied before it): UndefinedFunctionError: function no_such_function() does not"
        " exist")
    assert info.value.exit_code == 4
    conn = await asyncpg.connect(empty_dsn)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        half = await conn.fetchval("SELECT to_regclass('half_done')")
    finally:
        await conn.close()
    # The good ones stay, the broken one left no trace.
    assert sorted(versions) == [m.version for m in known]
    assert half is None


async def test_two_migrate_processes_at_once(empty_dsn: str) -> None:
    """Two real processes race to migrate the same empty database; the advisory lock makes
    one apply and the other find nothing to do."""
    env = {**os.environ, "TRIGGERD_DATABASE_URL": empty_dsn}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "triggerd",
            "migrate",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = sorted(out.decode().strip() for out, _ in results)
    assert outputs == [
        "\n".join(f"applied {m.name}" for m in db.known_migrations()),
        f"schema is up to date (migration {db.known_migrations()[-1].version:04d})",
    ]
    conn = await asyncpg.connect(empty_dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert count == len(db.known_migrations())


async def test_published_version_cannot_be_updated_in_sql(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        wid = await conn.fetchval(
            "INSERT INTO workflows (key, name) VALUES ('w', 'W') RETURNING id"
        )
        vid = await conn.fetchval(
            "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest, published_at)"
            " VALUES ($1, 1, $2, true, now()) RETURNING id",
            wid,
            {"nodes": [{"id": "a", "type": "noop"}], "edges": []},
        )
        with pytest.raises(asyncpg.IntegrityConstraintViolationError) as info:
            await conn.execute(
                "UPDATE workflow_versions SET graph = '{}'::jsonb WHERE id = $1", vid
            )
        assert "published and immutable" in str(info.value)
        for column, value in (
            ("parameter_schema", '\'{"type": "object"}\''),
            ("env_config", "'{\"env\": {}}'"),
        ):
            with pytest.raises(asyncpg.IntegrityConstraintViolationError):
                await conn.execute(
                    f"UPDATE workflow_versions SET {column} = {value}::jsonb WHERE id = $1", vid
                )
        # Flipping is_latest is allowed (publishing the next version does it).
        await conn.execute("UPDATE workflow_versions SET is_latest = false WHERE id = $1", vid)
        graph = await conn.fetchval("SELECT graph FROM workflow_versions WHERE id = $1", vid)
    assert graph == {"nodes": [{"id": "a", "type": "noop"}], "edges": []}


@contextlib.asynccontextmanager
async def trigger_notices(dsn: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads of the triggers channel, as they arrive, while the block runs."""
    listener = await db.connect(dsn)
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("triggerd_triggers", lambda *args: received.put_nowait(args[3]))
    try:
        yield received
    finally:
        await listener.close()


async def test_trigger_change_sends_notify(pool: asyncpg.Pool, dsn: str) -> None:
    async with trigger_notices(dsn) as received:
        async with pool.acquire() as conn:
            wid = await conn.fetchval(
                "INSERT INTO workflows (key, name) VALUES ('w', 'W') RETURNING id"
            )
            tid = await conn.fetchval(
                "INSERT INTO workflow_triggers (workflow_id, name, type) VALUES ($1, 'm', 'manual')"
                " RETURNING id",
                wid,
            )
            await conn.execute("UPDATE workflow_triggers SET enabled = false WHERE id = $1", tid)
            await conn.execute("DELETE FROM workflow_triggers WHERE id = $1", tid)
        payloads = [await asyncio.wait_for(received.get(), 5) for _ in range(3)]
    docs = [json.loads(p) for p in payloads]
    assert docs == [{"op": op, "id": str(tid)} for op in ("INSERT", "UPDATE", "DELETE")]


async def test_a_statement_changing_many_triggers_announces_each(
    pool: asyncpg.Pool, dsn: str
) -> None:
    """One notification per changed row, from whichever statement changed them (migration
    0027 sends them from one statement-level trigger per event, not a call per row)."""
    async with trigger_notices(dsn) as received, pool.acquire() as conn:
        wid = await conn.fetchval(
            "INSERT INTO workflows (key, name) VALUES ('w', 'W') RETURNING id"
        )
        ids = {str(r["id"]) for r in await conn.fetch(
            "INSERT INTO workflow_triggers (workflow_id, name, type)"
            " SELECT $1, 'm' || i, 'manual' FROM generate_series(1, 3) i RETURNING id", wid)}
        await conn.execute("UPDATE workflow_triggers SET enabled = false")
        await conn.execute("UPDATE workflow_triggers SET enabled = true WHERE false")
        await conn.execute("DELETE FROM workflow_triggers")
        docs = [json.loads(await asyncio.wait_for(received.get(), 5)) for _ in range(9)]
        await asyncio.sleep(0.2)
        assert received.empty()  # the statement that changed nothing said nothing
        # Deleting the workflow deletes its triggers by cascade: each is announced.
        cascaded = {str(r["id"]) for r in await conn.fetch(
            "INSERT INTO workflow_triggers (workflow_id, name, type)"
            " SELECT $1, 'c' || i, 'manual' FROM generate_series(1, 2) i RETURNING id", wid)}
        await conn.execute("DELETE FROM workflows WHERE id = $1", wid)
        docs += [json.loads(await asyncio.wait_for(received.get(), 5)) for _ in range(4)]
    for number, op in enumerate(("INSERT", "UPDATE", "DELETE")):
        batch = docs[3 * number : 3 * number + 3]
        assert {d["op"] for d in batch} == {op}
        assert {d["id"] for d in batch} == ids
    assert [(d["op"], d["id"] in cascaded) for d in docs[9:]] == [
        ("INSERT", True), ("INSERT", True), ("DELETE", True), ("DELETE", True)]


async def test_unreachable_database_url_is_a_clear_error() -> None:
    from triggerd.errors import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable) as info:
        await db.migrate("postgresql://u:hunter2@127.0.0.1:1/x")
    message = str(info.value)
    assert message.startswith("cannot connect to the database at postgresql://u:***@127.0.0.1:1/x")
    assert "hunter2" not in message


REPO_ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python scripts/dump_schema.py > migrations/schema.sql"


async def test_migrated_schema_equals_the_committed_snapshot(empty_dsn: str) -> None:
    """The schema the migrations build, as pg_dump prints it, is migrations/schema.sql:
    a migration's effect is reviewed as a diff of that file."""
    await db.migrate(empty_dsn)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(REPO_ROOT / "scripts" / "dump_schema.py"), "--dsn", empty_dsn],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    committed = REPO_ROOT / "migrations" / "schema.sql"
    expected = committed.read_text(encoding="utf-8") if committed.exists() else "<missing>"
    assert done.stdout == expected, (
        f"the migrated schema differs from {committed.relative_to(REPO_ROOT)};"
        f" if the change is intended, regenerate it: {REGENERATE}"
    )


def test_migration_files_are_the_top_level_folder() -> None:
    names = sorted(p.name for p in (REPO_ROOT / "migrations").glob("[0-9]*.sql"))
    assert [m.name for m in db.known_migrations()] == names
    assert names[:1] == ["0001_initial.sql"]
    assert not (REPO_ROOT / "triggerd" / "migrations").exists()


def test_migration_files_are_numbered_in_order() -> None:
    """The files are 0001_... with unique, increasing numbers (gaps allowed: numbers are
    handed out to work in progress), and the first ones are the released ones."""
    known = db.known_migrations()
    names = [m.name for m in known]
    assert names[:8] == [
        "0001_initial.sql", "0002_hot_path_references.sql", "0003_webhook_inbox_row.sql",
        "0004_node_outputs_resume.sql", "0005_history_lists.sql", "0006_api_tokens.sql",
        "0007_zone_rules.sql", "0008_operations.sql",
    ]
    versions = [m.version for m in known]
    assert versions == sorted(set(versions))
    assert all(m.name.startswith(f"{m.version:04d}_") for m in known)


async def test_working_time_migration_keeps_the_parks_of_runs_in_flight(empty_dsn: str) -> None:
    """0040: the runner no longer reads parks from node rows, so runs in flight carry theirs
    over: closed parks as idle time, an open park from its start, a retry's backoff park
    from its end; a run with no known park gets nothing."""
    known = db.known_migrations()
    assert known[-1].name == "0040_working_time.sql"
    await db.migrate(empty_dsn, known[:-1])
    conn = await asyncpg.connect(empty_dsn)
    try:
        workflow = await conn.fetchval(
            "INSERT INTO workflows (key, name) VALUES ('w', 'w') RETURNING id")
        runs = {}
        for name, status in (("parked", "WAITING"), ("backoff", "WAITING"),
                             ("running", "RUNNING"), ("ended", "SUCCESS")):
            runs[name] = await conn.fetchval(
                "INSERT INTO workflow_executions (workflow_id, trigger_type, status, start_time,"
                " resume_at) VALUES ($1, 'manual', $2, now() - interval '3 hours',"
                " CASE WHEN $2 = 'WAITING' THEN now() + interval '1 hour' END) RETURNING id",
                workflow, status)
        rows = [  # (run, node, type, status, attempt, started hours ago, ended hours ago)
            ("parked", "w1", "wait", "SUCCESS", 1, 3.0, 2.0),
            ("parked", "h", "http", "SUCCESS", 1, 2.0, 1.5),
            ("parked", "w2", "wait", "WAITING", 1, 0.5, None),
            ("running", "ask", "approval", "SUCCESS", 1, 2.5, 1.0),
            ("ended", "w1", "wait", "SUCCESS", 1, 3.0, 2.0),
        ]
        for run, node, node_type, status, attempt, started, ended in rows:
            await conn.execute(
                "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
                " start_time, end_time) VALUES ($1, $2, $3, $4, $5,"
                " now() - $6::float8 * interval '1 hour',"
                " now() - $7::float8 * interval '1 hour')",
                runs[run], node, node_type, status, attempt, started, ended)
        await db.migrate(empty_dsn)
        got = {r["name"]: r for r in await conn.fetch(
            "SELECT x.name, e.idle_ms, e.worked_at, e.resume_at, now() AS now"
            " FROM workflow_executions e JOIN unnest($1::uuid[], $2::text[]) AS x (id, name)"
            " ON x.id = e.id", list(runs.values()), list(runs))}
    finally:
        await conn.close()
    hour = 3600 * 1000
    assert {n: r["idle_ms"] for n, r in got.items()} == {
        "parked": hour, "backoff": 0, "running": hour * 3 // 2, "ended": 0}
    # The migration's transaction started after the rows were written: its now() is later.
    assert got["parked"]["worked_at"] < got["parked"]["now"] - timedelta(minutes=29)
    assert got["backoff"]["worked_at"] == got["backoff"]["resume_at"]
    assert got["running"]["worked_at"] is None
    assert got["ended"]["worked_at"] is None
