"""``triggerd doctor`` as a real process against a real daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from tests.acceptance.conftest import REPO_ROOT, Daemons, run_cli
from tests.helpers import free_port
from triggerd.db import embedded_dir_problem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (ROOT / "config" / "examples").glob("*.yaml"))
CHECKS = ["database", "migrations", "routes", "tzdata", "clock"]


async def test_all_ok_on_a_running_daemon_with_the_examples(daemons: Daemons, dsn: str) -> None:
    daemon = await daemons.start(database_url=dsn,
                                 sections={"daemon": {"definitions": EXAMPLES}})
    result = await run_cli(daemon.config, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["OK", name] for name in CHECKS]
    assert f"1 enabled webhook trigger(s) routed by the daemon at 127.0.0.1:{daemon.port}" \
        in lines[2]
    assert "Europe/Madrid next change" in lines[3]
    assert lines[-1] == "ok: all 5 checks passed"
    assert result.stderr == ""

    doc = (await run_cli(daemon.config, "doctor", "--json")).json()
    assert doc["ok"] is True
    assert [c["name"] for c in doc["checks"]] == CHECKS
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in doc["checks"])
    assert {c["status"] for c in doc["checks"]} == {"ok"}


async def test_enabled_trigger_the_daemon_cannot_serve_is_reported(
    daemons: Daemons, dsn: str
) -> None:
    daemon = await daemons.start(database_url=dsn,
                                 sections={"daemon": {"definitions": EXAMPLES}})
    # Enabled with a config written behind apply's back that the daemon refuses to route
    # (a method no trigger may have): it stays out of the route table, and senders get 404.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE workflow_triggers SET enabled = true,"
            """ config = config || '{"methods": ["BREW"]}' WHERE name = 'github'"""
        )
    finally:
        await conn.close()
    await daemon.wait_for_event("webhook_trigger_unusable")
    result = await run_cli(daemon.config, "doctor", "--json")
    assert result.returncode == 4, result.stdout + result.stderr
    doc = result.json()
    assert doc["ok"] is False
    routes = next(c for c in doc["checks"] if c["name"] == "routes")
    assert routes["status"] == "fail"
    assert routes["detail"] == (
        f"1 of 2 enabled webhook trigger(s) not routed by the daemon at 127.0.0.1:{daemon.port}:"
        " github-push/github (/hooks/examples/github/push)"
    )
    assert routes["fix"].startswith("reload the daemon (systemctl reload triggerd")
    # The probe started no run.
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM webhook_requests") == 0
    finally:
        await conn.close()


async def test_database_unreachable_exits_5_with_the_fix(daemons: Daemons) -> None:
    port = free_port()
    url = f"postgresql://triggerd:secret-pw@127.0.0.1:{port}/triggerd"
    config, _ = daemons.write_config(database_url=url)
    result = await run_cli(config, "doctor")
    assert result.returncode == 5, result.stdout + result.stderr
    first, fix = result.stdout.splitlines()[:2]
    assert first == ("FAIL  database    cannot connect to the database at"
                     f" postgresql://triggerd:***@127.0.0.1:{port}/triggerd: [Errno 111]"
                     " Connection refused")
    assert fix.strip() == "fix: start PostgreSQL, or check [database] url (TRIGGERD_DATABASE_URL)"
    assert result.stdout.splitlines()[-1] == "1 problem(s), 4 warning(s): see the fix lines above"
    assert "secret-pw" not in result.stdout + result.stderr


async def test_embedded_server_state(daemons: Daemons, embedded_state_dir: Path) -> None:
    daemon = await daemons.start(database_url=None, state_dir=embedded_state_dir,
                                 ready_timeout=120)
    doc = (await run_cli(daemon.config, "doctor", "--json")).json()
    assert [c["name"] for c in doc["checks"]] == [*CHECKS, "embedded"]
    embedded = doc["checks"][-1]
    assert embedded["status"] in ("ok", "warn"), embedded  # warn only on a nearly full disk
    pgdata = embedded_state_dir.resolve() / "postgres"
    assert embedded["detail"].startswith("PostgreSQL ")
    assert f" in {pgdata}" in embedded["detail"]
    if embedded["status"] == "ok":
        assert f"running in {pgdata}; " in embedded["detail"]
    database = doc["checks"][0]
    # The server's connections against what a daemon of this configuration may open
    # (pool_max 5 + its LISTEN connection).
    assert re.fullmatch(
        rf"PostgreSQL [0-9.]+ at the embedded server in {re.escape(str(pgdata))};"
        r" [0-9]+ of [0-9]+ connections in use; a daemon may open 6", database["detail"]
    ), database["detail"]


async def test_a_file_in_the_place_of_the_state_dir_is_named_by_doctor_and_run(
    daemons: Daemons, tmp_path: Path
) -> None:
    """A file where [daemon] state_dir (or its postgres folder) should be: `run` said
    "File exists", doctor that there was "no embedded database ... yet" (start the daemon,
    which fails) and that it had started the embedded server for its checks (it had not)."""
    for name, state, blocker in (
        ("file", tmp_path / "state-file", tmp_path / "state-file"),
        ("under-a-file", tmp_path / "state-file" / "below", tmp_path / "state-file"),
        ("postgres-file", tmp_path / "state-dir", tmp_path / "state-dir" / "postgres"),
    ):
        blocker.parent.mkdir(exist_ok=True)
        blocker.write_text("not a directory\n")
        config, port = daemons.write_config(database_url=None, name=name, state_dir=state)
        problem = (f"cannot use the state directory {state} ([daemon] state_dir) for the"
                   f" embedded PostgreSQL: {blocker} is not a directory")
        doctor = await run_cli(config, "doctor")
        assert doctor.returncode == 5, doctor
        lines = doctor.stdout.splitlines()
        assert lines[:2] == [
            f"FAIL  database    {problem}",
            "                  fix: make [daemon] state_dir (TRIGGERD_DAEMON_STATE_DIR) a"
            " directory the daemon's user can write, or move what is in its place",
        ], lines
        [embedded] = [line for line in lines if line.startswith("WARN  embedded")]
        assert re.fullmatch(
            rf"WARN  embedded    version unknown in {re.escape(str(state / 'postgres'))} was"
            r" not running \(no daemon holds it\); [0-9.]+ GiB free", embedded), embedded
        daemon = daemons.spawn(config, port)
        assert await daemon.wait_exit(timeout=60) == 5
        assert daemon.stderr_lines == [f"triggerd: error: {problem}"], daemon.stderr_lines
        assert daemon.events_named("daemon_ready") == []
        # Nothing was moved or written over.
        assert blocker.read_text() == "not a directory\n"
    # A symbolic link to nothing: mkdir said "File exists" too.
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    assert embedded_dir_problem(dangling) == (
        f"cannot use the state directory {dangling} ([daemon] state_dir) for the embedded"
        f" PostgreSQL: {dangling} is a symbolic link to nothing")


def test_a_state_dir_under_a_folder_this_user_may_not_enter_is_named() -> None:
    """Path.exists() raises for a folder on the way that the user may not enter (EACCES):
    the check of what is in the state directory's place turned a clear refusal into an
    internal error. As root (which enters everything) the check runs in a process that
    gave up root after its imports; else below a folder this user took its rights from."""
    folder = Path(tempfile.mkdtemp(prefix="td-locked-"))  # 0700, this user's
    state = folder / "sub" / ".triggerd"
    drop = "import os; os.setgid(65534); os.setuid(65534);" if os.geteuid() == 0 else ""
    if not drop:
        folder.chmod(0)
    try:
        program = ("import sys; from pathlib import Path;"
                   " from triggerd.db import embedded_dir_problem;"
                   f" {drop} print(embedded_dir_problem(Path(sys.argv[1])))")
        done = subprocess.run([sys.executable, "-c", program, str(state)],
                              capture_output=True, text=True, cwd=REPO_ROOT, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            f"cannot use the state directory {state} ([daemon] state_dir) for the embedded"
            " PostgreSQL: Permission denied\n")
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder)
