"""The CLI's text output has no Python reprs, lists show state and next fire, a run's node
errors are shown, fire takes --json, and executions watch follows a run to its end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncpg

from tests.acceptance.test_cli import EXAMPLES, one_line_error, triggerd

REPRS = re.compile(r"\b(None|True|False)\b|datetime\.")


async def _finished_run(dsn: str, status: str) -> str:
    """A run of nightly-report/every-minute that ended ``status``, with two node rows (the
    second failed when the run failed), as the executor writes them."""
    conn = await asyncpg.connect(dsn)
    try:
        trigger = await conn.fetchrow(
            "SELECT t.id, t.workflow_id FROM workflow_triggers t WHERE t.name = 'every-minute'")
        failed = status == "ERROR"
        execution_id = str(await conn.fetchval(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status,"
            " input, output, error_code, error_message, start_time, end_time)"
            " VALUES ($1, $2, 'cron', $3, '{}', $4, $5, $6, now(), now()) RETURNING id",
            trigger["workflow_id"], trigger["id"], status,
            None if failed else '{"ok": true}',
            "HTTP_STATUS" if failed else None,
            "GET https://example.com/report: 503 Service Unavailable" if failed else None))
        await conn.execute(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt,"
            " start_time, end_time, execution_time_ms, error_code, error_message) VALUES"
            " ($1, 'start', 'set', 'SUCCESS', 1, now() - interval '1 second', now(), 0.4,"
            " NULL, NULL),"
            " ($1, 'fetch', 'http', $2, 1, now(), now(), 12.5, $3, $4)",
            execution_id, "ERROR" if failed else "SUCCESS",
            "HTTP_STATUS" if failed else None,
            "GET https://example.com/report: 503 Service Unavailable" if failed else None)
    finally:
        await conn.close()
    return execution_id


async def test_text_output_shows_values_not_python_reprs(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    listed = triggerd("triggers", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert (header[:3] == ["NAME", "TYPE", "STATE"] and header[-3:] == ["FIRE", "(UTC)"][-3:]) or (
        "NEXT" in header)
    row = next(line for line in listed.stdout.splitlines()
               if line.startswith("nightly-report/every-minute"))
    assert " enabled " in row
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$", row), row
    assert not REPRS.search(listed.stdout), listed.stdout

    shown = triggerd("triggers", "show", "nightly-report/every-minute", dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^version:\s+latest$", shown.stdout, re.M), shown.stdout
    assert re.search(r"^enabled:\s+yes$", shown.stdout, re.M), shown.stdout
    assert not REPRS.search(shown.stdout), shown.stdout

    execution_id = await _finished_run(dsn, "ERROR")
    shown = triggerd("executions", "show", execution_id, dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert not REPRS.search(shown.stdout), shown.stdout
    assert "node errors:\n  fetch (attempt 1): HTTP_STATUS: GET https://example.com/report:" \
           " 503 Service Unavailable" in shown.stdout
    assert re.search(r"^retry_of:\s+-$", shown.stdout, re.M), shown.stdout


async def test_fire_json_prints_the_execution(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    fired = triggerd("triggers", "fire", "nightly-report/every-minute", "--json", dsn=dsn)
    assert fired.returncode == 0, fired.stderr
    doc = json.loads(fired.stdout)
    assert doc["status"] == "NEW" and len(doc["execution_id"]) == 36
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT status FROM workflow_executions WHERE id = $1",
                                   doc["execution_id"]) == "NEW"
    finally:
        await conn.close()


async def test_watch_follows_a_run_to_its_end_with_the_exit_code_of_its_status(
    dsn: str,
) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    succeeded = await _finished_run(dsn, "SUCCESS")
    watched = triggerd("executions", "watch", succeeded[:8], dsn=dsn)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.splitlines() == [
        "start (set, attempt 1): SUCCESS",
        "fetch (http, attempt 1): SUCCESS",
        f"execution {succeeded}: SUCCESS",
    ]
    failed = await _finished_run(dsn, "ERROR")
    watched = triggerd("executions", "watch", failed, "--json", dsn=dsn)
    assert watched.returncode == 1
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [(e.get("node"), e["status"]) for e in events] == [
        ("start", "SUCCESS"), ("fetch", "ERROR"), (None, "ERROR")]
    assert events[-1]["error_code"] == "HTTP_STATUS"

    bad = triggerd("executions", "watch", failed, "--interval", "0", dsn=dsn)
    assert bad.returncode == 2
    assert one_line_error(bad) == (
        "triggerd: error: --interval: 0.0 is out of range 0.05-60 (seconds)")
    missing = triggerd("executions", "watch", "abcdef01-0000-4000-8000-000000000000", dsn=dsn)
    assert missing.returncode == 3


async def test_executions_list_by_time_window_and_workflow(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    old = await _finished_run(dsn, "SUCCESS")
    new = await _finished_run(dsn, "ERROR")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE workflow_executions SET created_at = '2026-01-01T10:00:00Z'"
                           " WHERE id = $1", old)
        await conn.execute("UPDATE workflow_executions SET created_at = '2026-01-02T10:00:00Z'"
                           " WHERE id = $1", new)
    finally:
        await conn.close()

    def ids(*args: str) -> list[str]:
        listed = triggerd("executions", "list", *args, "--json", dsn=dsn)
        assert listed.returncode == 0, listed.stderr
        return [e["id"] for e in json.loads(listed.stdout)]

    assert ids("--since", "2026-01-02T00:00:00Z") == [new]
    assert ids("--until", "2026-01-02T00:00:00Z") == [old]
    assert ids("--since", "2026-01-01T10:00:00+00:00", "--until", "2026-01-02T10:00:00Z") == [old]
    # An empty window is no runs, as the API's (it was exit 2, the API's no items).
    assert ids("--since", "2026-01-02T10:00:00Z", "--until", "2026-01-02T11:00:00+01:00") == []
    assert ids("--workflow", "nightly-report") == [new, old]
    assert ids("--workflow", "github-push") == []
    for args, code, message in (
        (("--since", "yesterday"), 2,
         "--since: 'yesterday' is not an ISO-8601 instant (e.g. 2026-03-08T00:00:00Z)"),
        (("--until", "2026-01-01T00:00:00"), 2,
         "--until: '2026-01-01T00:00:00' needs a UTC offset or Z (e.g. 2026-03-08T00:00:00Z)"),
        # Before the first instant in UTC: an internal error (exit 70) before.
        (("--since", "0001-01-01T00:00:00+05:00"), 2,
         "--since: '0001-01-01T00:00:00+05:00' is out of range (years 1-9999 in UTC)"),
        (("--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"), 2,
         "--since 2026-01-02T00:00:00Z is after --until 2026-01-01T00:00:00Z (swapped?)"),
        (("--workflow", "nope"), 3, "no workflow with key 'nope'"),
    ):
        result = triggerd("executions", "list", *args, dsn=dsn)
        assert result.returncode == code, result.stderr
        assert one_line_error(result) == f"triggerd: error: {message}"


def test_check_refuses_a_control_character_with_its_line(tmp_path: Path) -> None:
    """It used to be an internal error (exit 70) with a ReaderError."""
    path = tmp_path / "bell.yaml"
    path.write_text("workflows:\n  - key: a\x07b\n", encoding="utf-8")
    result = triggerd("check", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"{path}: $: YAML syntax error at line 2, column 11: the character U+0007 is not"
        ' allowed in YAML (write it as an escape in a double-quoted string, e.g. "\\x07")'
    )


def test_check_and_apply_print_problems_as_json(tmp_path: Path) -> None:
    from tests.unit.test_definitions import TEN_MISTAKES

    path = tmp_path / "ten.yaml"
    path.write_text(TEN_MISTAKES)
    checked = triggerd("check", str(path), "--json")
    assert checked.returncode == 2
    problems = json.loads(checked.stdout)
    assert len(problems) == 10
    assert all(set(p) == {"file", "path", "message"} and p["file"] == str(path)
               for p in problems)
    assert problems[0]["path"].startswith("$.workflows[0]")
    fine = triggerd("check", *EXAMPLES, "--json")
    assert fine.returncode == 0 and json.loads(fine.stdout) == []
    applied = triggerd("apply", str(path), "--json")
    assert applied.returncode == 2
    assert json.loads(applied.stdout)["problems"] == problems


async def test_state_changing_commands_take_json(dsn: str) -> None:
    migrated = triggerd("migrate", "--json", dsn=dsn)
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["applied"] == []  # the test database is migrated
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    disabled = triggerd("triggers", "disable", "nightly-report/by-hand", "--json", dsn=dsn)
    assert disabled.returncode == 0, disabled.stderr
    doc = json.loads(disabled.stdout)
    assert doc["changed"] is True and doc["trigger"]["enabled"] is False
    again = json.loads(
        triggerd("triggers", "disable", "nightly-report/by-hand", "--json", dsn=dsn).stdout)
    assert again["changed"] is False
    enabled = json.loads(
        triggerd("triggers", "enable", "nightly-report/by-hand", "--json", dsn=dsn).stdout)
    assert enabled["trigger"]["enabled"] is True

    finished = await _finished_run(dsn, "ERROR")
    retried = triggerd("executions", "retry", finished, "--json", dsn=dsn)
    assert retried.returncode == 0, retried.stderr
    new = json.loads(retried.stdout)
    assert new["status"] == "NEW" and new["execution_id"] != finished
    canceled = triggerd("executions", "cancel", new["execution_id"], "--json", dsn=dsn)
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)["status"] == "CANCELED"
