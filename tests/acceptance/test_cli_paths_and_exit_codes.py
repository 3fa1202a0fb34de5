"""The command line from any working directory, execution ids and prefixes, and the exit
codes of DESIGN §5b: 0 ok, 1 a waited-for run failed, 2 bad input, 3 not found, 4 conflict,
5 unavailable, 70 internal error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.acceptance.conftest import Daemons, _stop_orphaned_postgres, daemon_environment
from tests.acceptance.test_daemon import write_definitions
from tests.helpers import free_port
from triggerd import db
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import get_trigger

LATEST = db.known_migrations()[-1].version


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``triggerd ARGS...`` run in ``cwd`` with none of the test's TRIGGERD_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "triggerd", *args],
        capture_output=True, text=True, env=daemon_environment(env), timeout=120, cwd=cwd,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory outside pytest's 0700 tree, so the embedded PostgreSQL's own
    user can reach a state dir inside it."""
    with tempfile.TemporaryDirectory(prefix="triggerd-acc-") as name:
        root = Path(name)
        try:
            yield root
        finally:
            for pgdata in root.rglob("postgres"):
                _stop_orphaned_postgres(pgdata)


# --- item 9: relative paths ----------------------------------------------------------------


def test_relative_state_dir_follows_the_config_file(open_tmp: Path) -> None:
    # root/a/proj/config/triggerd.toml says state_dir = "../state": root/a/proj/state,
    # whichever directory the command runs in and however the file is named.
    conf = open_tmp / "a" / "proj" / "config"
    conf.mkdir(parents=True)
    (conf / "triggerd.toml").write_text('[daemon]\nstate_dir = "../state"\n')
    write_definitions(conf / "wf.json", "rel")
    below = open_tmp / "a" / "b"
    below.mkdir()

    # Only `migrate` (and the daemon) creates the schema; other commands refuse a fresh one.
    migrated = cli(below, "--config", "../proj/config/triggerd.toml", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    applied = cli(below, "--config", "../proj/config/triggerd.toml", "apply",
                  "../proj/config/wf.json")
    assert applied.returncode == 0, applied.stderr
    listed = cli(open_tmp / "a", "--config", "proj/config/triggerd.toml", "triggers", "list",
                 "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["rel/manual"]
    assert (open_tmp / "a" / "proj" / "state" / "postgres").is_dir()
    assert sorted(p.name for p in open_tmp.iterdir()) == ["a"]
    assert sorted(p.name for p in (open_tmp / "a").iterdir()) == ["b", "proj"]
    assert list(below.iterdir()) == []


async def test_daemon_applies_relative_definitions_from_another_directory(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    conf = tmp_path / "conf"
    (conf / "defs").mkdir(parents=True)
    write_definitions(conf / "defs" / "wf.json", "reldefs")
    config, port = daemons.write_config(
        database_url=dsn, name="conf/d", sections={"daemon": {"definitions": ["defs/wf.json"]}}
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    daemon = daemons.spawn(config, port, cwd=elsewhere)
    await daemon.wait_ready(60)
    applied = await daemon.wait_for_event("definitions_applied")
    assert applied["files"] == [str(conf / "defs" / "wf.json")]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT key FROM workflows") == "reldefs"
    finally:
        await conn.close()


def test_port_from_the_environment_is_blamed_on_the_variable(tmp_path: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text("[http]\nport = 8080\n")
    result = cli(tmp_path, "--config", "my.toml", "migrate", TRIGGERD_HTTP_PORT="70000")
    assert result.returncode == 2
    assert one_line(result) == (
        "triggerd: error: TRIGGERD_HTTP_PORT: http.port: 70000 is not a valid port (1-65535)"
    )


# --- item 11: ids, prefixes and exit codes -------------------------------------------------

AMBIGUOUS_1 = "abcdef01-0000-4000-8000-000000000001"
AMBIGUOUS_2 = "abcdef01-0000-4000-8000-000000000002"
UNIQUE = "12345678-9abc-4def-8000-000000000003"


async def _seed(dsn: str, tmp_path: Path) -> None:
    """The workflow ``ids`` and three NEW executions with chosen ids."""
    applied = cli(tmp_path, "apply", str(write_definitions(tmp_path / "ids.json", "ids")),
                  TRIGGERD_DATABASE_URL=dsn)
    assert applied.returncode == 0, applied.stderr
    conn = await db.connect(dsn)
    try:
        trigger = await get_trigger(conn, "ids/manual")
        await insert_executions(conn, [
            NewExecution(id=i, workflow_id=trigger.workflow_id, trigger_id=trigger.id,
                         trigger_name=trigger.name, trigger_type="manual")
            for i in (AMBIGUOUS_1, AMBIGUOUS_2, UNIQUE)
        ])
    finally:
        await conn.close()


async def test_execution_ids_prefixes_and_their_exit_codes(dsn: str, tmp_path: Path) -> None:
    await _seed(dsn, tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(tmp_path, *args, TRIGGERD_DATABASE_URL=dsn)

    # A unique prefix of 8 or more hex digits (any case, with or without its dashes).
    for prefix in ("12345678", "123456789ABC", "12345678-9abc-4d", UNIQUE):
        shown = run("executions", "show", prefix, "--json")
        assert shown.returncode == 0, (prefix, shown.stderr)
        assert json.loads(shown.stdout)["id"] == UNIQUE
    shown = run("executions", "show", "abcdef01-0000-4000-8000-00000000000")
    assert shown.returncode == 2  # a prefix of both
    shown = run("executions", "show", AMBIGUOUS_2, "--json")
    assert json.loads(shown.stdout)["id"] == AMBIGUOUS_2

    malformed = "triggerd: error: {!r} is not an execution id (a UUID, or 8 or more of its" \
                " leading hex digits)"
    for action in ("show", "retry", "cancel"):
        for bad in ("not-a-uuid", "1234567", "1234-5678", "g2345678", "12345678--", ""):
            result = run("executions", action, bad)
            assert result.returncode == 2, (action, bad, result.stderr)
            assert one_line(result) == malformed.format(bad), (action, bad)
        result = run("executions", action, "abcdef01")
        assert result.returncode == 2, (action, result.stderr)
        assert one_line(result) == (
            "triggerd: error: execution id prefix 'abcdef01' is ambiguous: it matches more"
            " than one execution; give more digits"
        )
        result = run("executions", action, "99999999")
        assert result.returncode == 3, (action, result.stderr)
        assert one_line(result) == "triggerd: error: no execution whose id starts with '99999999'"
        unknown = str(uuid.UUID(int=7))
        result = run("executions", action, unknown)
        assert result.returncode == 3, (action, result.stderr)
        assert one_line(result) == f"triggerd: error: no execution {unknown}"

    retried = run("executions", "retry", "12345678")  # it has not ended: refused
    assert retried.returncode == 4
    assert one_line(retried) == (
        f"triggerd: error: execution {UNIQUE} has not ended (NEW); cancel it or wait for it"
        " to end before retrying it")
    canceled = run("executions", "cancel", "1234567")  # 7 digits: refused, nothing changed
    assert canceled.returncode == 2
    canceled = run("executions", "cancel", "12345678")
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.strip() == f"{UNIQUE}: CANCELED"
    again = run("executions", "cancel", "12345678")
    assert again.returncode == 4
    assert one_line(again) == (
        f"triggerd: error: execution {UNIQUE} already finished with status CANCELED;"
        " nothing was changed"
    )
    retried = run("executions", "retry", "12345678")  # ended: a new run
    assert retried.returncode == 0, retried.stderr
    new_id = retried.stdout.strip()
    assert str(uuid.UUID(new_id)) == new_id != UNIQUE


def test_unreachable_database_is_exit_5_for_every_database_command(tmp_path: Path) -> None:
    url = f"postgresql://u:pw@127.0.0.1:{free_port()}/nope"
    definitions = write_definitions(tmp_path / "wf.json", "wf")
    for args in (["migrate"], ["apply", str(definitions)], ["triggers", "list"],
                 ["triggers", "show", "wf/manual"], ["executions", "list"],
                 ["executions", "show", "12345678"]):
        result = cli(tmp_path, *args, TRIGGERD_DATABASE_URL=url)
        assert result.returncode == 5, (args, result.stderr)
        line = one_line(result)
        assert line.startswith("triggerd: error: cannot connect to the database at"
                               " postgresql://u:***@127.0.0.1:"), (args, line)
        assert "pw" not in line.replace("postgresql", "")


def test_a_database_url_that_cannot_be_read_is_exit_2_not_5(tmp_path: Path) -> None:
    # Retrying cannot help a URL asyncpg cannot read: bad configuration, not unavailable;
    # named by its variable like every other configuration error, the URL never quoted.
    named = "TRIGGERD_DATABASE_URL: database.url: not a valid URL"
    cases = [
        ("postgresql://u:pw@[::1/db", f"{named} (Invalid IPv6 URL)"),
        ("postgresql://u:pw@127.0.0.1:abc/db", f"{named} (Port could not be cast to integer"
                                               " value)"),
        ("postgresql://u:pw@127.0.0.1:99999/db", f"{named} (Port out of range 0-65535)"),
    ]
    for url, message in cases:
        for args in (["migrate"], ["triggers", "list"]):
            result = cli(tmp_path, *args, TRIGGERD_DATABASE_URL=url)
            assert result.returncode == 2, (url, args, result.stderr)
            assert one_line(result) == f"triggerd: error: {message}"


async def test_unexpected_error_is_one_line_and_exit_70(dsn: str, tmp_path: Path) -> None:
    await _seed(dsn, tmp_path)
    conn = await asyncpg.connect(dsn)
    try:
        # A schema broken by hand: the command cannot have expected this.
        await conn.execute("ALTER TABLE workflow_triggers RENAME COLUMN config TO config_gone")
    finally:
        await conn.close()
    result = cli(tmp_path, "triggers", "list", TRIGGERD_DATABASE_URL=dsn)
    assert result.returncode == 70, result.stderr
    line = one_line(result)
    assert line.startswith("triggerd: internal error: UndefinedColumnError: column"), line
    assert line.endswith("(set TRIGGERD_DEBUG=1 to see the traceback)"), line
    debug = cli(tmp_path, "triggers", "list", TRIGGERD_DATABASE_URL=dsn, TRIGGERD_DEBUG="1")
    assert debug.returncode == 70
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("triggerd: internal error:")


async def test_schema_newer_than_the_code_works_with_a_warning(dsn: str, tmp_path: Path) -> None:
    # A newer triggerd migrated first (a rolling upgrade, DESIGN §5b): this one keeps working.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name, checksum)"
                           " VALUES (9999, '9999_future.sql', 'x')")
    finally:
        await conn.close()
    warning = (
        "triggerd: warning: the database has migration(s) 9999_future.sql which this triggerd"
        " does not know (a newer triggerd applied them); continuing"
    )
    # The database's own version (it said this triggerd's newest beside the warning).
    for args, out in ((["migrate"], "schema is up to date (migration 9999)\n"),
                      (["triggers", "list", "--json"], "[]\n")):
        result = cli(tmp_path, *args, TRIGGERD_DATABASE_URL=dsn)
        assert result.returncode == 0, (args, result.stderr)
        assert one_line(result) == warning
        assert result.stdout == out


async def test_edited_migration_is_exit_4(dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    for args in (["migrate"], ["triggers", "list"]):
        result = cli(tmp_path, *args, TRIGGERD_DATABASE_URL=dsn)
        assert result.returncode == 4, (args, result.stderr)
        assert one_line(result).startswith(
            "triggerd: error: migration 0001_initial.sql was changed after it was applied"
            " (checksum edited in the database,"
        )


def _cli_into_a_closed_pipe(cwd: Path, *args: str, **env: str) -> tuple[int, str]:
    """``triggerd ARGS... | head -0``: stdout is a pipe whose reader is already gone, so
    the first write fails with EPIPE (Python ignores SIGPIPE), as a real ``| head`` does
    once it has read its lines."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "triggerd", *args], stdout=write_end,
            stderr=subprocess.PIPE, text=True, env=daemon_environment(env), timeout=120,
            cwd=cwd, check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr


async def test_a_closed_stdout_stops_quietly_not_as_a_database_failure(
    dsn: str, tmp_path: Path,
) -> None:
    await _seed(dsn, tmp_path)
    for args in (["triggers", "list"], ["executions", "list", "--json"]):
        returncode, stderr = _cli_into_a_closed_pipe(tmp_path, *args,
                                                     TRIGGERD_DATABASE_URL=dsn)
        # Before: "triggerd: error: the database connection failed: [Errno 32] Broken
        # pipe", exit 5, which sends an operator after a healthy database.
        assert (returncode, stderr) == (141, ""), args
    # The same command into a pipe someone reads still prints everything, exit 0.
    listed = cli(tmp_path, "triggers", "list", TRIGGERD_DATABASE_URL=dsn)
    assert listed.returncode == 0, listed.stderr
    assert "ids/manual" in listed.stdout


def test_a_broken_pipe_that_is_not_stdout_is_still_the_database() -> None:
    # A database socket can fail with EPIPE too: while stdout is healthy, that is exit 5.
    from triggerd.cli import EXIT_UNAVAILABLE, _stdout_reader_gone, _unexpected

    assert not _stdout_reader_gone()
    assert _unexpected(BrokenPipeError(32, "Broken pipe")) == EXIT_UNAVAILABLE


def _cli_with_closed(fd: int, cwd: Path, *args: str, **env: str
                     ) -> subprocess.CompletedProcess[str]:
    """``triggerd ARGS... N>&-``: started with descriptor ``fd`` closed (cron setups and
    some supervisors do that); the others are captured."""
    return subprocess.run(
        [sys.executable, "-m", "triggerd", *args], preexec_fn=lambda: os.close(fd),
        stdin=subprocess.DEVNULL if fd != 0 else None,
        stdout=subprocess.PIPE if fd != 1 else None,
        stderr=subprocess.PIPE if fd != 2 else None,
        text=True, env=daemon_environment(env), timeout=120, cwd=cwd, check=False,
    )


async def test_a_closed_standard_descriptor_does_not_abort_a_command(
    dsn: str, tmp_path: Path,
) -> None:
    # uvloop took the free descriptor for itself and aborted the process (SIGABRT, 134)
    # when it closed it: after `apply` had already written.
    for fd in (0, 1, 2):
        done = _cli_with_closed(fd, tmp_path, "cron", "next", "0 0 * * *")
        assert done.returncode == 0, (fd, done.stderr)
    applied = _cli_with_closed(1, tmp_path, "apply",
                               str(write_definitions(tmp_path / "wf.json", "closed")),
                               TRIGGERD_DATABASE_URL=dsn)
    assert applied.returncode == 0, applied.stderr
    listed = cli(tmp_path, "triggers", "list", "--json", TRIGGERD_DATABASE_URL=dsn)
    assert "closed/manual" in {t["name"] for t in json.loads(listed.stdout)}
    # With stderr closed, the error is lost, not written into stdout's output.
    refused = _cli_with_closed(2, tmp_path, "cron", "next", "x")
    assert (refused.returncode, refused.stdout) == (2, "")


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs Linux's /dev/full")
def test_output_that_cannot_be_written_is_one_line_exit_74(tmp_path: Path) -> None:
    # Was "triggerd: internal error: OSError: [Errno 28] ..." and exit 70.
    for count in ("3", "10000"):  # flushed at the end, and while printing
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "triggerd", "cron", "next", "* * * * *",
                 "--count", count],
                stdout=full, stderr=subprocess.PIPE, text=True, env=daemon_environment(),
                timeout=120, cwd=tmp_path, check=False,
            )
        assert done.returncode == 74, done.stderr
        assert done.stderr.splitlines() == [
            "triggerd: error: cannot write the output: No space left on device (errno 28)"
        ]


async def test_executions_list_pages_by_cursor_lose_no_run_sharing_an_instant(
    dsn: str, tmp_path: Path
) -> None:
    """One cron instant starts a batch of runs with one created_at: paging by --until
    skipped the rest of the batch; the cursor names a row exactly."""
    await _seed(dsn, tmp_path)
    conn = await db.connect(dsn)
    try:
        trigger = await get_trigger(conn, "ids/manual")
        await insert_executions(conn, [
            NewExecution(workflow_id=trigger.workflow_id, trigger_id=trigger.id,
                         trigger_name=trigger.name, trigger_type="manual")
            for _ in range(4)])
        await conn.execute("UPDATE workflow_executions SET created_at = '2026-12-01T00:00Z'")
        everyone = {str(r["id"]) for r in await conn.fetch("SELECT id FROM workflow_executions")}
    finally:
        await conn.close()

    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(10):
        page = cli(tmp_path, "executions", "list", "--limit", "3", "--json", *cursor,
                   TRIGGERD_DATABASE_URL=dsn)
        assert page.returncode == 0, page.stderr
        seen += [e["id"] for e in json.loads(page.stdout)]
        if not page.stderr:
            break
        more = page.stderr.strip().split()
        assert more[:3] == ["more:", "add", "--cursor"], page.stderr
        cursor = ["--cursor", more[3]]
    assert sorted(seen) == sorted(everyone) and len(seen) == 7
    assert seen == sorted(seen, reverse=True)  # newest first: ids in order within the instant

    bad = cli(tmp_path, "executions", "list", "--cursor", "yesterday",
              TRIGGERD_DATABASE_URL=dsn)
    assert (bad.returncode, one_line(bad)) == (
        2, "triggerd: error: --cursor: 'yesterday' is not a cursor this command printed")
