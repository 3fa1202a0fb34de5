"""The real ``triggerd run`` process: start, health, readiness, JSON logs, the command line
next to a running daemon, clean exits on SIGTERM/SIGINT, clear errors on bad start-up
conditions, and the embedded PostgreSQL keeping its data across restarts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import Daemons, TomlValue, run_cli, toml_document
from tests.helpers import free_port
from triggerd.db import known_migrations


def write_definitions(path: Path, key: str) -> Path:
    doc: dict[str, Any] = {"workflows": [{
        "key": key,
        "name": f"{key} workflow",
        "parameter_schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "graph": {"nodes": [
            {"id": "greet", "type": "set", "params": {"value": "hello {{ input.name }}"}},
        ], "edges": []},
        "triggers": [{"name": "manual", "type": "manual"}],
    }]}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def assert_clean_stop(events: list[dict[str, Any]]) -> None:
    names = [e["event"] for e in events]
    assert "daemon_stopping" in names
    assert names[-1] == "daemon_stopped"


async def test_daemon_serves_health_readiness_cli_and_stops_on_sigterm(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    definitions = write_definitions(tmp_path / "greet.json", "greet")
    daemon = await daemons.start(
        database_url=dsn, sections={"daemon": {"definitions": [str(definitions)]}}
    )

    status, body = await daemon.get("/healthz")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await daemon.get("/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert "failing" not in body
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["executor"] == "ok"
    assert all(value == "ok" for value in body["checks"].values()), body

    # Every stdout line is a JSON object with an event name.
    events = daemon.events()
    assert events, "the daemon logged nothing"
    assert all(isinstance(e.get("event"), str) and e["event"] for e in events), events
    ready = daemon.events_named("daemon_ready")
    assert len(ready) == 1
    assert ready[0]["listen"] == f"127.0.0.1:{daemon.port}"
    assert ready[0]["pid"] == daemon.pid
    assert ready[0]["level"] == "info"
    applied = daemon.events_named("definitions_applied")
    assert len(applied) == 1
    assert applied[0]["files"] == [str(definitions)]
    assert applied[0]["changed"] is True

    # The command line works next to the running daemon, on the same database.
    listed = await run_cli(daemon.config, "triggers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    triggers = {t["name"]: t for t in listed.json()}
    assert set(triggers) == {"greet/manual"}
    assert (triggers["greet/manual"]["type"], triggers["greet/manual"]["enabled"]) == (
        "manual", True)

    migrated = await run_cli(daemon.config, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    latest = known_migrations()[-1].version
    assert migrated.stdout == f"schema is up to date (migration {latest:04d})\n"

    fired = await run_cli(daemon.config, "triggers", "fire", "greet/manual",
                          "--input", '{"name": "ops"}', "--wait")
    assert fired.returncode == 0, fired.stderr
    execution_id, final, output = fired.stdout.splitlines()
    assert final == "SUCCESS"
    assert json.loads(output) == "hello ops"

    shown = await run_cli(daemon.config, "executions", "show", execution_id, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = shown.json()
    assert (doc["id"], doc["status"], doc["trigger_type"], doc["input"]) == (
        execution_id, "SUCCESS", "manual", {"name": "ops"})
    assert [(n["node_id"], n["status"], n["attempt"]) for n in doc["nodes"]] == [
        ("greet", "SUCCESS", 1)]

    # The daemon itself ran it: its log names the execution.
    finished = await daemon.wait_for_event("execution_finished")
    assert (finished["execution_id"], finished["status"]) == (execution_id, "SUCCESS")

    assert await daemon.stop(signal.SIGTERM, timeout=30) == 0
    assert_clean_stop(daemon.events())
    assert daemon.stderr_lines == []


async def test_sigint_exits_zero(daemons: Daemons, dsn: str) -> None:
    daemon = await daemons.start(database_url=dsn)
    assert await daemon.stop(signal.SIGINT, timeout=30) == 0
    assert_clean_stop(daemon.events())
    assert daemon.stderr_lines == []


async def test_unreachable_database_exits_5_with_one_clear_line(daemons: Daemons) -> None:
    # Nothing listens on a port we just released; the password must not be printed.
    port = free_port()
    url = f"postgresql://triggerd:s3cret@127.0.0.1:{port}/nothing"
    config, http_port = daemons.write_config(database_url=url)
    daemon = daemons.spawn(config, http_port)
    assert await daemon.wait_exit(timeout=60) == 5  # unavailable (DESIGN §5b)
    assert len(daemon.stderr_lines) == 1, daemon.stderr_lines
    line = daemon.stderr_lines[0]
    assert line.startswith(
        f"triggerd: error: cannot connect to the database at"
        f" postgresql://triggerd:***@127.0.0.1:{port}/nothing: "
    ), line
    assert "s3cret" not in line
    assert "Traceback" not in "\n".join(daemon.stdout_lines)
    assert daemon.events_named("daemon_ready") == []


async def test_bad_config_file_exits_2_naming_the_key(daemons: Daemons, tmp_path: Path) -> None:
    cases: dict[str, tuple[dict[str, dict[str, TomlValue]], str]] = {
        "typo.toml": ({"executor": {"concurency": 4}}, "unknown key executor.concurency"),
        "badlease.toml": ({"executor": {"lease": "fast"}}, "executor.lease: 'fast' is not a"
                                                           " duration"),
        "short.toml": ({"executor": {"lease": "1s"}}, "executor.lease: must be at least 2s"),
    }
    for name, (sections, expected) in cases.items():
        path = tmp_path / name
        path.write_text(toml_document(sections), encoding="utf-8")
        daemon = daemons.spawn(path, free_port())
        assert await daemon.wait_exit(timeout=30) == 2, name
        assert len(daemon.stderr_lines) == 1, (name, daemon.stderr_lines)
        line = daemon.stderr_lines[0]
        assert line.startswith(f"triggerd: error: {path}: "), line
        assert expected in line, line
        assert daemon.stdout_lines == []


async def test_port_in_use_exits_non_zero_with_clear_message(
    daemons: Daemons, dsn: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config, _ = daemons.write_config(database_url=dsn, port=port)
        daemon = daemons.spawn(config, port)
        code = await daemon.wait_exit(timeout=60)
    assert code == 5  # unavailable (DESIGN §5b)
    assert daemon.stderr_lines == [
        f"triggerd: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], daemon.stderr_lines
    assert daemon.events_named("daemon_ready") == []
    assert "Traceback" not in "\n".join(daemon.stdout_lines)


def _postmaster_pid(state_dir: Path) -> Path:
    return state_dir / "postgres" / "postmaster.pid"


async def _wait_gone(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} still exists after {timeout}s"
        await asyncio.sleep(0.1)


async def test_embedded_database_starts_and_keeps_data_across_restarts(
    daemons: Daemons, tmp_path: Path, embedded_state_dir: Path
) -> None:
    state_dir = embedded_state_dir
    definitions = write_definitions(tmp_path / "kept.json", "kept")

    first = await daemons.start(
        database_url=None, state_dir=state_dir, name="first", ready_timeout=120,
        sections={"daemon": {"definitions": [str(definitions)]}},
    )
    ready = first.events_named("daemon_ready")[0]
    assert ready["database"].startswith("postgresql://postgres@/triggerd?host=")
    assert ready["migrations_applied"] == [m.name for m in known_migrations()]
    assert _postmaster_pid(state_dir).exists()
    first_ready, first_startup_ms = first.ready_after, ready["startup_ms"]
    assert await first.stop(signal.SIGTERM, timeout=60) == 0
    assert_clean_stop(first.events())
    # The last process using the embedded server stops it.
    await _wait_gone(_postmaster_pid(state_dir))

    second = await daemons.start(database_url=None, state_dir=state_dir, name="second",
                                 ready_timeout=120)
    ready = second.events_named("daemon_ready")[0]
    assert ready["migrations_applied"] == []
    # The command line joins the daemon's embedded server and finds the first run's data.
    listed = await run_cli(second.config, "triggers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in listed.json()] == ["kept/manual"]
    # ... and leaving does not stop the server under the daemon.
    status, body = await second.get("/readyz")
    assert status == 200, body
    assert await second.stop(signal.SIGTERM, timeout=60) == 0
    assert_clean_stop(second.events())
    await _wait_gone(_postmaster_pid(state_dir))

    print(
        f"\n[startup] embedded PostgreSQL, first start (initdb):"
        f" spawn->/readyz 200 {first_ready:.2f}s, daemon startup_ms {first_startup_ms}"
        f"\n[startup] embedded PostgreSQL, restart:"
        f" spawn->/readyz 200 {second.ready_after:.2f}s, daemon startup_ms {ready['startup_ms']}"
    )


async def test_a_storm_of_sighups_makes_one_more_reload_not_one_each(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    """Each SIGHUP queued a reload behind the running one (and kept its task for ever):
    signals coming faster than a reload takes outran the reloads without bound. A file of
    20,000 triggers makes a reload take longer than the signals' spacing."""
    definitions = tmp_path / "many.yaml"
    definitions.write_text(json.dumps({"workflows": [{
        "key": f"w{i}", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
        "triggers": [{"name": f"t{j}", "type": "cron", "cron": f"{j % 60} {i % 24} * * *"}
                     for j in range(100)]} for i in range(200)]}), encoding="utf-8")
    daemon = await daemons.start(database_url=dsn,
                                 sections={"daemon": {"definitions": [str(definitions)]}})
    assert daemon.proc is not None
    for _ in range(60):  # 3 s of SIGHUPs, 20 a second (the kernel merges those pending)
        os.kill(daemon.proc.pid, signal.SIGHUP)
        await asyncio.sleep(0.05)
    sent_at = len(daemon.events_named("daemon_reloaded"))
    # Once the reloads went quiet: how many ran for the 60 signals.
    for _ in range(600):
        before = len(daemon.events_named("daemon_reloaded"))
        await asyncio.sleep(0.5)
        if len(daemon.events_named("daemon_reloaded")) == before:
            break
    storm = len(daemon.events_named("daemon_reloaded"))
    # One after another while the signals came; then the one running when they ended and
    # at most one more (not one a signal).
    assert storm <= sent_at + 2, (sent_at, storm)
    assert storm < 60
    assert await daemon.stop(signal.SIGTERM) == 0
