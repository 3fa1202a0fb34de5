"""Rolling upgrades with the real process (DESIGN §5b): a newer triggerd migrates first and
adds columns; the running (older) daemon keeps serving and can restart. Against a schema
older than the code, every command but `migrate` (and a daemon with `[database] migrate =
false`) refuses with exit 4 and writes nothing."""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue, run_cli
from tests.helpers import final_status, wait_for
from tests.integration.test_schema_upgrades import NEWER_MIGRATION
from triggerd import db

DEFINITIONS = """\
workflows:
  - key: up
    name: Upgrade
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: hook, type: webhook, path: up/in}
      - {name: manual, type: manual}
      - {name: tick, type: cron, cron: "* * * * * *", overlap: allow, misfire: skip,
         input: {n: 0}}
"""

AHEAD_WARNING = (
    "the database has migration(s) 9999_future.sql which this triggerd does not know"
    " (a newer triggerd applied them); continuing"
)


async def post(daemon: DaemonProcess, n: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(
        daemon.base_url + "/hooks/up/in", json={"n": n}, timeout=aiohttp.ClientTimeout(total=10)
    ) as response:
        return response.status, await response.json()


async def assert_webhook_runs(daemon: DaemonProcess, pool: asyncpg.Pool, n: int) -> None:
    status, body = await post(daemon, n)
    assert status == 202, body
    execution_id = body["execution_id"]
    inbox = await pool.fetchval(
        "SELECT count(*) FROM webhook_requests WHERE execution_id = $1", execution_id
    )
    assert inbox == 1
    row = await final_status(pool, execution_id)
    assert (row["status"], row["output"]) == ("SUCCESS", n), dict(row)
    nodes = await pool.fetch(
        "SELECT node_id, status FROM node_executions WHERE execution_id = $1 ORDER BY node_id",
        execution_id,
    )
    assert [(r["node_id"], r["status"]) for r in nodes] == [("keep", "SUCCESS")]


async def test_older_daemon_serves_and_restarts_on_a_newer_schema(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    definitions = tmp_path / "up.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    sections: dict[str, dict[str, TomlValue]] = {"daemon": {"definitions": [str(definitions)]}}
    daemon = await daemons.start(database_url=dsn, sections=sections)
    await assert_webhook_runs(daemon, pool, 1)

    # A newer triggerd migrates the shared database: new columns and a migration we do
    # not know.
    await pool.execute(NEWER_MIGRATION)
    migrated_at = datetime.now(UTC)

    await assert_webhook_runs(daemon, pool, 2)

    async def cron_run_after_upgrade() -> Any:
        return await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE trigger_type = 'cron'"
            " AND scheduled_for > $1 AND status = 'SUCCESS'",
            migrated_at,
        )

    await wait_for(cron_run_after_upgrade, timeout=20)

    fired = await run_cli(daemon.config, "triggers", "fire", "up/manual", "--input",
                          '{"n": 3}', "--wait")
    assert fired.returncode == 0, fired.stderr
    assert fired.stdout.splitlines()[1:] == ["SUCCESS", "3"]
    assert fired.stderr.splitlines() == [f"triggerd: warning: {AHEAD_WARNING}"]

    status, body = await daemon.get("/readyz")
    assert status == 200, body
    assert body["checks"]["migrations"] == "ok"

    # Restart: the older daemon starts again on the newer schema and serves.
    assert await daemon.stop(signal.SIGTERM) == 0
    restarted = daemons.spawn(daemon.config, daemon.port)
    await restarted.wait_ready()
    ahead = await restarted.wait_for_event("schema_ahead", timeout=5)
    assert ahead["level"] == "warning"
    assert ahead["unknown_migrations"] == ["9999_future.sql"]
    await assert_webhook_runs(restarted, pool, 4)
    assert await restarted.stop(signal.SIGTERM) == 0


async def test_cli_and_a_non_migrating_daemon_refuse_an_older_schema(
    daemons: Daemons, empty_dsn: str, tmp_path: Path
) -> None:
    known = db.known_migrations()
    await db.migrate(empty_dsn, known[:-1])
    definitions = tmp_path / "up.yaml"
    definitions.write_text(DEFINITIONS, encoding="utf-8")
    config, port = daemons.write_config(
        database_url=empty_dsn, sections={"database": {"migrate": False}}
    )
    refusal = (
        "triggerd: error: the database schema is older than this triggerd: 1 migration not"
        f" applied ({known[-1].name}); run 'triggerd migrate' first"
    )

    for args in (["apply", str(definitions)], ["triggers", "list"], ["executions", "list"]):
        result = await run_cli(config, *args)
        assert result.returncode == 4, (args, result.stderr)
        assert result.stderr.splitlines() == [refusal], args
        assert result.stdout == ""

    daemon = daemons.spawn(config, port)
    assert await daemon.wait_exit() == 4
    assert daemon.stderr_lines == [refusal]

    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(known) - 1
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0
        # Nothing of the missing migration was created (the first table it makes, if any).
        made = re.search(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", known[-1].sql)
        if made is not None:
            assert await conn.fetchval("SELECT to_regclass($1)", made[1]) is None
    finally:
        await conn.close()

    # The operator's step, then the same commands and daemon work.
    migrated = await run_cli(config, "migrate")
    assert (migrated.returncode, migrated.stdout) == (0, f"applied {known[-1].name}\n")
    applied = await run_cli(config, "apply", str(definitions))
    assert applied.returncode == 0, applied.stderr
    daemon = daemons.spawn(config, port)
    await daemon.wait_ready()
    assert await daemon.stop(signal.SIGTERM) == 0
