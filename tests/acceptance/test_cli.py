"""The ``triggerd`` command as a real process: good paths and every kind of bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from tests.unit.test_definitions import TEN_MISTAKES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(str(p) for p in (ROOT / "config" / "examples").glob("*.yaml"))
# An instant as the lists print it.
SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def triggerd(*args: str, dsn: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    if dsn is not None:
        environ["TRIGGERD_DATABASE_URL"] = dsn
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "triggerd", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_check_reports_all_ten_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "ten.yaml"
    path.write_text(TEN_MISTAKES)
    result = triggerd("check", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 11
    assert all(line.startswith(f"{path}: $.workflows[0]") for line in lines[:10])
    assert lines[10] == "triggerd: 10 problem(s) found; nothing was changed"


def test_check_examples_ok() -> None:
    result = triggerd("check", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok: {len(EXAMPLES)} file(s) valid"


async def test_a_directory_means_the_definition_files_in_it(dsn: str, tmp_path: Path) -> None:
    # A directory was "unknown file type: definition files end in .yaml, .yml or .json".
    folder = tmp_path / "workflows.d"
    folder.mkdir()
    for example in EXAMPLES:
        (folder / Path(example).name).write_text(Path(example).read_text())
    (folder / ".editor-swap.yaml").write_text("not: [valid")  # hidden: not read
    (folder / "README.txt").write_text("not a definition file")
    (folder / "old").mkdir()  # subdirectories are not read
    (folder / "old" / "broken.yaml").write_text("not: [valid")
    # A link that leads nowhere is not skipped: reading it says so.
    (tmp_path / "gone.d").mkdir()
    (tmp_path / "gone.d" / "lost.yaml").symlink_to(tmp_path / "nowhere.yaml")
    lost = triggerd("check", str(tmp_path / "gone.d"))
    assert lost.returncode == 2 and lost.stderr.startswith(
        f"{tmp_path / 'gone.d' / 'lost.yaml'}: $: cannot read file: No such file"), lost
    checked = triggerd("check", str(folder))
    assert (checked.returncode, checked.stdout) == (0, f"ok: {len(EXAMPLES)} file(s) valid\n")
    # The same file named again, by itself or spelt another way, is read once.
    again = triggerd("check", str(folder), str(folder / Path(EXAMPLES[0]).name),
                     str(folder / "." / Path(EXAMPLES[0]).name))
    assert (again.returncode, again.stdout) == (0, f"ok: {len(EXAMPLES)} file(s) valid\n")
    applied = triggerd("apply", str(folder), dsn=dsn)
    assert applied.returncode == 0, applied.stderr
    assert "workflow nightly-report: created" in applied.stdout
    by_files = triggerd("apply", *EXAMPLES, dsn=dsn)
    assert by_files.stdout.strip().splitlines()[-1] == "no changes", by_files.stdout

    # An empty directory is a mistake (a deploy half done), not "no workflows": with
    # --prune it would delete every one.
    empty = tmp_path / "empty.d"
    empty.mkdir()
    for command in (["check"], ["apply", "--prune"]):
        refused = triggerd(*command, str(empty), dsn=dsn)
        assert refused.returncode == 2, refused
        assert refused.stderr.splitlines()[0] == (
            f"{empty}: $: a directory with no definition files (.yaml, .yml or .json) in it")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM workflows WHERE status = 'active'") == 2
    finally:
        await conn.close()


async def test_apply_twice_reports_no_changes_then_list(dsn: str) -> None:
    first = triggerd("apply", *EXAMPLES, dsn=dsn)
    assert first.returncode == 0, first.stderr
    assert "workflow nightly-report: created" in first.stdout
    second = triggerd("apply", *EXAMPLES, dsn=dsn)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "no changes"
    listed = triggerd("triggers", "list", "--json", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    names = {t["name"]: t for t in json.loads(listed.stdout)}
    assert names["nightly-report/every-minute"]["type"] == "cron"
    assert names["nightly-report/every-minute"]["enabled"] is True
    assert names["nightly-report/every-minute"]["version"] is None
    assert names["nightly-report/every-minute"]["status"] == "enabled"  # the STATE column
    table = triggerd("triggers", "list", dsn=dsn)
    assert table.stdout.splitlines()[0].split() == [
        "NAME",
        "TYPE",
        "STATE",  # enabled | disabled (was a yes/no ENABLED column)
        "WORKFLOW",
        "VERSION",
        "SCHEDULE/PATH",
        "NEXT",
        "FIRE",
        "(UTC)",
    ]
    # A manual trigger has no schedule, path or next fire: '-' each, never an empty cell.
    manual = next(line.split() for line in table.stdout.splitlines()
                  if line.startswith("nightly-report/by-hand "))
    assert manual[1] == "manual" and manual[-2:] == ["-", "-"], manual

    def next_fire() -> str:
        table = triggerd("triggers", "list", dsn=dsn)
        assert table.returncode == 0, table.stderr
        return next(line.split() for line in table.stdout.splitlines()
                    if line.startswith("nightly-report/every-minute "))[-1]

    # A slot skipped by hand is not the next fire; a paused trigger has none.
    upcoming = next_fire()
    after_it = (datetime.fromisoformat(upcoming.replace("Z", "+00:00"))
              + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    skipped = triggerd("triggers", "skip", "nightly-report/every-minute", "--at", upcoming,
                       dsn=dsn)
    if skipped.returncode == 0:  # else the minute turned meanwhile: the check means nothing
        assert next_fire() == after_it
    assert triggerd("triggers", "pause", "nightly-report/every-minute", dsn=dsn).returncode == 0
    assert next_fire() == "-"


async def test_apply_bad_file_writes_nothing(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "ten.yaml"
    path.write_text(TEN_MISTAKES)
    result = triggerd("apply", *EXAMPLES, str(path), dsn=dsn)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("triggerd: error:")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0
    finally:
        await conn.close()


def test_unreachable_database_is_one_clear_line() -> None:
    result = triggerd("triggers", "list", dsn="postgresql://u:pw@127.0.0.1:1/nope")
    assert result.returncode == 5
    line = one_line_error(result)
    assert line.startswith(
        "triggerd: error: cannot connect to the database at postgresql://u:***@127.0.0.1:1/nope"
    )


def test_bad_config_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("[http]\nport = 99999\n")
    result = triggerd("--config", str(config), "migrate")
    assert result.returncode == 2
    assert one_line_error(result) == (
        f"triggerd: error: {config}: http.port: 99999 is not a valid port (1-65535)"
    )


def test_bad_arguments_are_one_line_exit_2() -> None:
    cases = [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["triggers"], "the following arguments are required: ACTION"),
        (["cron", "next", "0 0 30 2 *"], "never fires"),
        (["cron", "next", "* * * *"], "expected 5 or 6 fields, got 4"),
        (["cron", "next", "@reboot"], "@reboot is not supported"),
        (["cron", "next", "* * * * *", "--tz", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["cron", "next", "* * * * *", "--count", "0"], "--count: 0 is out of range 1-10000"),
        (["cron", "next", "* * * * *", "--count", "x"], "invalid int value: 'x'"),
        (["cron", "next", "* * * * *", "--after", "2026-01-01T00:00:00"], "needs a UTC offset"),
        # Near the calendar's ends previews were wrong (from year 1 they began on Jan 3).
        (["cron", "next", "0 * * * *", "--after", "0001-01-01T00:00:00Z"],
         "--after: '0001-01-01T00:00:00Z' is out of range (1900-01-01 to 9000-01-01)"),
        (["cron", "next", "0 * * * *", "--after", "9999-12-31T20:00:00Z"], "is out of range"),
    ]
    for args, expected in cases:
        result = triggerd(*args)
        assert result.returncode == 2, (args, result.stderr)
        line = one_line_error(result)
        assert line.startswith("triggerd: error:"), line
        assert expected in line, (args, line)


async def test_bad_names_and_ids(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    result = triggerd("triggers", "show", "no-slash", dsn=dsn)
    assert result.returncode == 2
    assert "must be workflow_key/trigger_name" in one_line_error(result)
    result = triggerd("triggers", "show", "nightly-report/nope", dsn=dsn)
    assert result.returncode == 3
    assert one_line_error(result) == "triggerd: error: no trigger named 'nightly-report/nope'"
    result = triggerd("executions", "show", "not-a-uuid", dsn=dsn)
    assert result.returncode == 2
    assert "is not an execution id" in one_line_error(result)
    result = triggerd("triggers", "fire", "nightly-report/by-hand", "--input", "[1]", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == "triggerd: error: --input: must be a JSON object"
    result = triggerd("executions", "list", "--status", "DONE", dsn=dsn)
    assert result.returncode == 2
    assert "--status: 'DONE' is not one of" in one_line_error(result)
    # Exact, as the API's ?status= (a lower-case one was taken here and refused there).
    result = triggerd("executions", "list", "--status", "success", dsn=dsn)
    assert result.returncode == 2
    assert "--status: 'success' is not one of" in one_line_error(result)
    result = triggerd("executions", "list", "--limit", "0", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == "triggerd: error: --limit: 0 is out of range 1-10000"
    result = triggerd("triggers", "show", "nightly-report/every-minute", "--slots", "-1", dsn=dsn)
    assert result.returncode == 2
    assert one_line_error(result) == "triggerd: error: --slots: -1 is out of range 0-1000"


def test_cron_next_json_is_reproducible() -> None:
    result = triggerd(
        "cron",
        "next",
        "30 1 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-10-31T12:00:00Z",
        "--count",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"at": "2026-11-01T05:30:00Z", "local": "2026-11-01T01:30:00-04:00", "note": "dst-fold"},
        {"at": "2026-11-02T06:30:00Z", "local": "2026-11-02T01:30:00-05:00", "note": None},
    ]


async def test_fire_cancel_finished_is_refused(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    fired = triggerd("triggers", "fire", "nightly-report/by-hand", dsn=dsn)
    assert fired.returncode == 0, fired.stderr
    execution_id = fired.stdout.strip()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE workflow_executions SET status = 'SUCCESS', end_time = now() WHERE id = $1",
            execution_id,
        )
    finally:
        await conn.close()
    result = triggerd("executions", "cancel", execution_id, dsn=dsn)
    assert result.returncode == 4
    assert one_line_error(result) == (
        f"triggerd: error: execution {execution_id} already finished with status SUCCESS;"
        " nothing was changed"
    )
    shown = triggerd("executions", "show", execution_id, "--json", dsn=dsn)
    assert json.loads(shown.stdout)["status"] == "SUCCESS"


async def test_control_characters_of_a_run_reach_the_terminal_as_escapes(dsn: str) -> None:
    """A webhook sender's input put into a run's error (ESC sequences that clear the screen
    or set the terminal's title) was printed raw by executions show and list."""
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    fired = triggerd("triggers", "fire", "nightly-report/by-hand", dsn=dsn)
    assert fired.returncode == 0, fired.stderr
    execution_id = fired.stdout.strip()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE workflow_executions SET status = 'ERROR', end_time = now(),"
            " error_code = $2, error_message = $3 WHERE id = $1",
            execution_id, "E\x1b[31m", "bad x\x1b[2J\x1b]0;title\x07\rover\u202eit",
        )
    finally:
        await conn.close()
    shown = triggerd("executions", "show", execution_id, dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\r" not in shown.stdout, shown.stdout
    assert ("error_message:  bad x\\u001b[2J\\u001b]0;title\\u0007\\u000dover\\u202eit"
            in shown.stdout.splitlines()), shown.stdout
    listed = triggerd("executions", "list", dsn=dsn)
    assert listed.stdout.splitlines()[1].split()[-1] == "E\\u001b[31m", listed.stdout
    assert json.loads(triggerd("executions", "show", execution_id, "--json",
                               dsn=dsn).stdout)["error_code"] == "E\x1b[31m"


async def test_triggers_show_has_next_fires_and_slot_outcomes(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        trigger_id = await conn.fetchval(
            "SELECT id FROM workflow_triggers WHERE name = 'every-minute'")
        await conn.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, detail) VALUES"
            " ($1, '2026-01-01T00:00:00Z', 'skipped_overlap', 'previous run still RUNNING')",
            trigger_id)
    finally:
        await conn.close()
    shown = triggerd("triggers", "show", "nightly-report/every-minute", "--json", "--count", "3",
                     dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert len(doc["next_fires"]) == 3
    assert doc["config"]["misfire"] == "latest" and doc["config"]["overlap"] == "skip"
    assert [(s["outcome"], s["detail"]) for s in doc["slots"]] == [
        ("skipped_overlap", "previous run still RUNNING")]
    text = triggerd("triggers", "show", "nightly-report/every-minute", dsn=dsn)
    assert "latest slots:" in text.stdout and "skipped_overlap" in text.stdout
    bad = triggerd("triggers", "show", "nightly-report/every-minute", "--count", "0", dsn=dsn)
    assert bad.returncode == 2
    assert one_line_error(bad) == "triggerd: error: --count: 0 is out of range 1-1000"


NUL_AND_SURROGATE = (
    "workflows:\n"
    "  - key: bad-text\n"
    '    description: "a\\0b"\n'
    "    graph: {nodes: [{id: a, type: set, params: {value: \"\\ud800\"}}]}\n"
    "    triggers: [{name: m, type: manual}]\n"
)


async def test_check_refuses_what_apply_cannot_store(dsn: str, tmp_path: Path) -> None:
    # A NUL or a lone surrogate passed check, then apply failed with a traceback.
    path = tmp_path / "bad-text.yaml"
    path.write_text(NUL_AND_SURROGATE, encoding="utf-8")
    for command in ("check", "apply"):
        result = triggerd(command, str(path), dsn=dsn)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[:2] == [
            f"{path}: $.workflows[0].description: contains a NUL character (\\u0000),"
            " which cannot be stored",
            f"{path}: $.workflows[0].graph.nodes[0].params.value: contains a lone UTF-16"
            " surrogate, which is not valid Unicode",
        ]
        assert lines[2:] == (
            ["triggerd: 2 problem(s) found; nothing was changed"] if command == "check"
            else [f"triggerd: error: 2 problems in definitions: {lines[0]} (and 1 more)"]
        )
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0
    finally:
        await conn.close()


async def test_fire_input_that_cannot_be_stored_is_one_line_exit_2(dsn: str) -> None:
    assert triggerd("apply", *EXAMPLES, dsn=dsn).returncode == 0
    name = triggerd("triggers", "list", "--json", dsn=dsn)
    trigger = json.loads(name.stdout)[0]["name"]
    cases = [
        ('{"a": "\\u0000"}', "--input: $.a: contains a NUL character (\\u0000), which cannot"
         " be stored"),
        ('{"a": "\\ud800"}', "--input: $.a: contains a lone UTF-16 surrogate, which is not"
         " valid Unicode"),
        ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "--input: nested too deeply"),
        ('{"a": ' + "[" * 70 + "]" * 70 + "}", "--input: $.a" + "[0]" * 64
         + ": nested deeper than 64 levels"),
        # Python's JSON reader takes these, JSON (and the database) do not: exit 70 before.
        ('{"a": NaN}', "--input: NaN is not a JSON value"),
        ('{"a": [1, Infinity]}', "--input: Infinity is not a JSON value"),
        ('{"a": {"b": -Infinity}}', "--input: -Infinity is not a JSON value"),
        # The API's other rules (a 400 there): 1e999 reads as infinity (exit 70 before);
        # a key given twice kept the last value silently.
        ('{"a": 1e999}', "--input: the number 1e999 is too large"),
        ('{"a": 1, "a": 2}', "--input: duplicate key 'a'"),
        ('{"a": {"b": 1, "b": 1}}', "--input: duplicate key 'b'"),
    ]
    for text, message in cases:
        result = triggerd("triggers", "fire", trigger, "--input", text, dsn=dsn)
        assert result.returncode == 2, result.stderr
        assert one_line_error(result) == f"triggerd: error: {message}"
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 0
    finally:
        await conn.close()


async def test_a_name_that_is_not_utf8_is_one_line_exit_2(dsn: str) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates, which the database cannot
    # take: every command that looks a trigger up said "internal error" (exit 70).
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    environ["TRIGGERD_DATABASE_URL"] = dsn
    assert triggerd("migrate", dsn=dsn).returncode == 0
    commands = [
        ([b"triggers", b"show"], "show"),
        ([b"triggers", b"enable"], "enable"),
        ([b"triggers", b"disable"], "disable"),
        ([b"triggers", b"fire"], "fire"),
        ([b"executions", b"list", b"--trigger"], "list"),
    ]
    for words, command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "triggerd", *words, b"wf/bad\xff"],
            capture_output=True, env=environ, timeout=60, cwd=ROOT, check=False,
        )
        assert result.returncode == 2, result.stderr
        argument = "--trigger" if command == "list" else "NAME"
        group = "executions" if command == "list" else "triggers"
        assert result.stderr.decode().splitlines() == [
            f"triggerd: error: argument {argument}: 'wf/bad\\udcff' is not valid UTF-8 text"
            f" (see 'triggerd {group} {command} --help')"
        ]
    # Free text that is stored (notes, reasons) or looked up (audit targets): exit 70 before.
    free_text = [
        ([b"triggers", b"pause", b"wf/t", b"--note"], "--note", "triggers pause"),
        ([b"triggers", b"skip", b"wf/t", b"--next", b"1", b"--note"], "--note", "triggers skip"),
        ([b"triggers", b"fire", b"wf/t", b"--reason"], "--reason", "triggers fire"),
        ([b"workflows", b"archive", b"wf", b"--note"], "--note", "workflows archive"),
        ([b"audit", b"--target"], "--target", "audit"),
    ]
    for words, option, command in free_text:
        result = subprocess.run(
            [sys.executable, "-m", "triggerd", *words, b"n\xff"],
            capture_output=True, env=environ, timeout=60, cwd=ROOT, check=False,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.decode().splitlines() == [
            f"triggerd: error: argument {option}: 'n\\udcff' is not valid UTF-8 text"
            f" (see 'triggerd {command} --help')"
        ]
    assert await _audit_rows(dsn) == 0


async def _audit_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_log"))
    finally:
        await conn.close()


async def test_check_and_apply_refuse_an_alias_bomb_and_deep_json_in_one_line(
    dsn: str, tmp_path: Path
) -> None:
    # The "lol" bomb made both spin until killed; 600 levels of JSON ended in exit 70.
    from tests.unit.test_definitions import LOL_BOMB

    bomb = tmp_path / "lol.yaml"
    bomb.write_text(LOL_BOMB, encoding="utf-8")
    deep = tmp_path / "deep.json"
    deep.write_text('{"workflows": [],\n "x": ' + "[" * 600 + "]" * 600 + "}\n", encoding="utf-8")
    expected = {
        bomb: f"{bomb}: $: YAML aliases expand this file to more than 1,000,000 values (at line"
        " 7): write the repeated parts out, or use fewer aliases",
        deep: f"{deep}: $: nested deeper than 64 levels (at line 2)",
    }
    for path, problem in expected.items():
        checked = triggerd("check", str(path), dsn=dsn)
        assert checked.returncode == 2, checked.stderr
        assert checked.stderr.splitlines() == [
            problem, "triggerd: 1 problem(s) found; nothing was changed"
        ]
        applied = triggerd("apply", str(path), dsn=dsn)
        assert applied.returncode == 2, applied.stderr
        assert applied.stderr.splitlines() == [
            problem, f"triggerd: error: 1 problem in definitions: {problem}"
        ]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0
    finally:
        await conn.close()


async def test_fire_input_with_a_number_python_cannot_read_is_one_line_exit_2(dsn: str) -> None:
    # More than 4,300 digits: int() refuses them, and fire said "internal error" (exit 70).
    assert triggerd("migrate", dsn=dsn).returncode == 0
    result = triggerd("triggers", "fire", "wf/t", "--input", '{"a": 1' + "0" * 5000 + "}",
                      dsn=dsn)
    assert result.returncode == 2, result.stderr
    assert one_line_error(result) == "triggerd: error: --input: a number with more than 4300 digits"


async def test_apply_lists_changes_then_one_summary_line_json_and_plan(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "one.yaml"
    graph = "    graph: {nodes: [{id: a, type: noop}]}\n"
    path.write_text(
        "workflows:\n  - key: one\n" + graph + "    triggers:\n"
        "      - {name: m, type: manual}\n      - {name: n, type: manual}\n"
    )
    planned = triggerd("apply", str(path), "--plan", "--json", dsn=dsn)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout) == {
        "changes": [
            {"kind": "workflow", "name": "one", "action": "created", "detail": ""},
            {"kind": "workflow", "name": "one", "action": "published", "detail": "version 1"},
            {"kind": "trigger", "name": "one/m", "action": "created", "detail": ""},
            {"kind": "trigger", "name": "one/n", "action": "created", "detail": ""},
        ],
        "unchanged": 0,
    }
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflows") == 0  # --plan wrote nothing
    finally:
        await conn.close()
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    path.write_text(path.read_text().replace("{name: n, type: manual}", "{name: n, type: manual,"
                                             " input: {x: 1}}"))
    changed = triggerd("apply", str(path), dsn=dsn)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines() == [
        "trigger one/n: updated",
        "1 trigger and 1 workflow unchanged",
    ]
    again = triggerd("apply", str(path), "--json", dsn=dsn)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"changes": [], "unchanged": 3}
    assert triggerd("apply", str(path), dsn=dsn).stdout.splitlines() == ["no changes"]


FIRE_CHECKED = """\
workflows:
  - key: checked
    parameter_schema:
      type: object
      required: [count]
      properties: {count: {type: integer, minimum: 1}}
    graph:
      nodes: [{id: a, type: noop}]
    triggers:
      - {name: by-hand, type: manual}
"""


async def test_fire_validates_input_like_the_api_and_records_the_reason(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "checked.yaml"
    path.write_text(FIRE_CHECKED)
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    result = triggerd("triggers", "fire", "checked/by-hand", "--input", '{"count": 0}', dsn=dsn)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "$.count: 0 is less than the minimum of 1",
        "triggerd: error: the input does not match the workflow's parameter_schema (1 problem)",
    ]
    result = triggerd("triggers", "fire", "checked/by-hand", "--input", '{"count": 2}',
                      "--reason", "catch up after the outage", "--json", dsn=dsn)
    assert result.returncode == 0, result.stderr
    execution_id = json.loads(result.stdout)["execution_id"]
    conn = await asyncpg.connect(dsn)
    try:
        # The refused fire started nothing and left no audit row.
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 1
        context = json.loads(await conn.fetchval(
            "SELECT context::text FROM workflow_executions WHERE id = $1", execution_id))
        audit = await conn.fetch("SELECT actor, action, target, note FROM audit_log"
                                 " WHERE action <> 'apply'")
    finally:
        await conn.close()
    assert context["trigger"]["reason"] == "catch up after the outage"
    assert context["trigger"]["fired_by"] == "cli"
    assert [tuple(r) for r in audit] == [
        (context["trigger"]["actor"], "fire", "checked/by-hand", "catch up after the outage")]
    assert context["trigger"]["actor"].startswith("cli:")


def test_bad_tenant_and_correlation_options_are_one_line_exit_2() -> None:
    # Refused while parsing: no database is needed, none is touched.
    cases = [
        (["--tenant", "Bad!", "workflows", "list"],
         "triggerd: error: argument --tenant: tenant 'Bad!' is invalid: use 1-64 characters"
         " of a-z, 0-9, '_' and '-', starting with a letter or digit (see 'triggerd --help')"),
        (["workflows", "list", "--tenant", "x" * 65],
         f"triggerd: error: argument --tenant: tenant {'x' * 65!r} is invalid: use 1-64"
         " characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
         " (see 'triggerd workflows list --help')"),
        (["executions", "list", "--session-id", ""],
         "triggerd: error: argument --session-id: --session-id must be 1-200 characters"
         " (see 'triggerd executions list --help')"),
        (["executions", "list", "--agent-id", "a" * 201],
         "triggerd: error: argument --agent-id: --agent-id must be 1-200 characters"
         " (see 'triggerd executions list --help')"),
    ]
    for args, message in cases:
        result = triggerd(*args)
        assert (result.returncode, result.stderr.splitlines()) == (2, [message]), args


async def test_backfills_show_stays_in_its_tenant(pool: Any, dsn: str, tmp_path: Path) -> None:
    """`--tenant globex backfills show ID` printed acme's backfill, where the API and every
    other command answer 404 / exit 3."""
    backfill = await _acme_backfill(pool, dsn, tmp_path)
    shown = triggerd("--tenant", "acme", "backfills", "show", backfill, dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert "tenant:           acme" in shown.stdout.splitlines()  # an all-tenant view names it
    other = triggerd("--tenant", "globex", "backfills", "show", backfill, dsn=dsn)
    assert other.returncode == 3, other.stdout
    assert one_line_error(other) == f"triggerd: error: no backfill {backfill}"


async def test_backfills_list(pool: Any, dsn: str, tmp_path: Path) -> None:
    backfill = await _acme_backfill(pool, dsn, tmp_path)
    listed = triggerd("backfills", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    header, line = listed.stdout.splitlines()
    assert header.split()[:6] == ["ID", "TRIGGER", "STATE", "DONE", "STARTED", "SKIPPED"]
    assert line.split()[:6] == [backfill, "acme:billing/hourly", "running", "0/2", "0", "0"]
    # To the second, as every list prints times (CREATED was printed with microseconds).
    range_from, dots, range_to, created = line.split()[6:]
    assert (range_from, dots, range_to) == (
        "2026-01-01T00:00:00+00:00", "..", "2026-01-01T02:00:00+00:00")
    assert SECONDS.fullmatch(created), line
    scoped = triggerd("--tenant", "acme", "backfills", "list", "--trigger", "billing/hourly",
                      "--json", dsn=dsn)
    assert scoped.returncode == 0, scoped.stderr
    assert [(b["backfill_id"], b["tenant"], b["total"]) for b in json.loads(scoped.stdout)] == [
        (backfill, "acme", 2)]
    other = triggerd("--tenant", "globex", "backfills", "list", "--json", dsn=dsn)
    assert (other.returncode, json.loads(other.stdout)) == (0, [])
    for args, code, message in [
        (["--state", "paused"], 2,
         "triggerd: error: --state: 'paused' is not one of running, done, canceled"),
        (["--limit", "0"], 2, "triggerd: error: --limit: 0 is out of range 1-10000"),
        (["--trigger", "billing/hourly"], 3,
         "triggerd: error: no trigger named 'billing/hourly'"),
    ]:
        result = triggerd("backfills", "list", *args, dsn=dsn)
        assert result.returncode == code, (args, result.stderr)
        assert one_line_error(result) == message, args


async def test_the_all_tenant_audit_names_other_tenants_objects_as_lists_do(
    dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\nworkflows:\n  - key: billing\n"
                    "    graph: {nodes: [{id: a, type: noop}]}\n"
                    "    triggers: [{name: hourly, type: cron, cron: '0 * * * *'}]\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    paused = triggerd("--tenant", "acme", "triggers", "pause", "billing/hourly", dsn=dsn)
    assert paused.returncode == 0, paused.stderr
    every = triggerd("audit", dsn=dsn)
    assert every.returncode == 0, every.stderr
    assert "acme:billing/hourly" in every.stdout.splitlines()[1], every.stdout
    assert SECONDS.fullmatch(every.stdout.splitlines()[1].split()[0]), every.stdout
    own = triggerd("--tenant", "acme", "audit", dsn=dsn)
    assert own.stdout.splitlines()[1].split()[3] == "acme:billing/hourly", own.stdout
    # A bare name is the default tenant's, as the lists print it: acme's is not it.
    bare = triggerd("audit", "--target", "billing/hourly", "--json", dsn=dsn)
    assert json.loads(bare.stdout) == []
    found = triggerd("audit", "--target", "acme:billing/hourly", "--json", dsn=dsn)
    assert [(r["action"], r["target"], r["tenant"]) for r in json.loads(found.stdout)] == [
        ("pause", "billing/hourly", "acme")]


async def test_audit_pages_by_cursor(dsn: str) -> None:
    """A full page prints the next cursor on stderr (as executions list does) and
    --cursor reads the page after it; a cursor no page printed is exit 2."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO audit_log (actor, action, target_kind, target) VALUES ($1, 'pause',"
            " 'trigger', 'billing/hourly')", [(f"cli:u{n}",) for n in range(5)])
    finally:
        await conn.close()
    seen: list[str] = []
    pages = 0
    cursor: list[str] = []
    while True:
        page = triggerd("audit", "--limit", "2", "--json", *cursor, dsn=dsn)
        assert page.returncode == 0, page.stderr
        seen += [row["actor"] for row in json.loads(page.stdout)]
        pages += 1
        if not page.stderr:
            break
        more = page.stderr.strip().split()
        assert (more[:3], more[4:]) == (["more:", "add", "--cursor"],
                                        ["for", "the", "next", "page"]), page.stderr
        cursor = ["--cursor", more[3]]
    assert (pages, seen) == (3, [f"cli:u{n}" for n in range(4, -1, -1)])  # newest first
    whole = triggerd("audit", "--limit", "5", dsn=dsn)
    assert (whole.returncode, whole.stderr) == (0, "")  # the last page says no more
    for bad in ("yesterday", "-1", "1.5", "99999999999999999999", ""):
        result = triggerd("audit", "--cursor", bad, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (
            2, f"triggerd: error: --cursor: {bad!r} is not a cursor this command printed"), bad


async def test_another_tenants_names_work_as_the_lists_print_them(
    dsn: str, tmp_path: Path
) -> None:
    """`triggers list` printed acme:billing/hourly, and `triggers show acme:billing/hourly`
    answered 'no trigger named ...'; `workflows list` printed acme's key bare."""
    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\nworkflows:\n  - key: billing\n"
                    "    graph: {nodes: [{id: a, type: noop}]}\n"
                    "    triggers: [{name: hourly, type: cron, cron: '0 * * * *'},"
                    " {name: by-hand, type: manual}]\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    listed = triggerd("workflows", "list", dsn=dsn)
    assert listed.stdout.splitlines()[1].split()[0] == "acme:billing", listed.stdout
    shown = triggerd("triggers", "show", "acme:billing/hourly", "--json", dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert (json.loads(shown.stdout)["tenant"], json.loads(shown.stdout)["name"]) == (
        "acme", "billing/hourly")
    assert triggerd("workflows", "show", "acme:billing", dsn=dsn).returncode == 0
    fired = triggerd("triggers", "fire", "acme:billing/by-hand", "--json", dsn=dsn)
    assert fired.returncode == 0, fired.stderr
    runs = triggerd("executions", "list", "--trigger", "acme:billing/by-hand", "--json",
                    dsn=dsn)
    assert [r["tenant"] for r in json.loads(runs.stdout)] == ["acme"]
    for args, message in [
        (["--tenant", "globex", "triggers", "show", "acme:billing/hourly"],
         "triggerd: error: 'acme:billing/hourly' names tenant 'acme', and --tenant"
         " 'globex' another"),
        (["triggers", "show", "Acme:billing/hourly"],
         "triggerd: error: tenant 'Acme' is invalid: use 1-64 characters of a-z, 0-9, '_'"
         " and '-', starting with a letter or digit"),
    ]:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (2, message), args


async def test_executions_list_names_another_tenants_workflow_as_the_lists_print_it(
    dsn: str, tmp_path: Path
) -> None:
    """The list of every tenant's runs printed acme's workflow key bare, as if it were the
    default tenant's billing."""
    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\nworkflows:\n  - key: billing\n"
                    "    graph: {nodes: [{id: a, type: noop}]}\n"
                    "    triggers: [{name: by-hand, type: manual}]\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    assert triggerd("triggers", "fire", "acme:billing/by-hand", dsn=dsn).returncode == 0
    every = triggerd("executions", "list", dsn=dsn)
    assert every.returncode == 0, every.stderr
    assert every.stdout.splitlines()[1].split()[1:3] == ["acme:billing", "by-hand"], every.stdout


def test_a_name_not_found_in_another_tenant_says_which_tenant(dsn: str) -> None:
    """`--tenant acme triggers show billing/nope` answered "no trigger named
    'billing/nope'", as if it had looked in the default tenant."""
    for args, message in [
        (["--tenant", "acme", "triggers", "show", "billing/nope"],
         "triggerd: error: no trigger named 'acme:billing/nope'"),
        (["workflows", "show", "acme:billing"],
         "triggerd: error: no workflow with key 'acme:billing'"),
        (["--tenant", "acme", "executions", "list", "--workflow", "billing"],
         "triggerd: error: no workflow with key 'acme:billing'"),
        (["--tenant", "default", "triggers", "show", "billing/nope"],
         "triggerd: error: no trigger named 'billing/nope'"),
    ]:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (3, message), args


async def _acme_backfill(pool: Any, dsn: str, tmp_path: Path) -> str:
    """Tenant acme's workflow billing with an hourly trigger, and a backfill of two of its
    slots (no daemon starts it): the backfill's id."""
    from datetime import UTC, datetime

    from triggerd.operations import Actor
    from triggerd.operations.backfills import BackfillRequest, create

    path = tmp_path / "acme.yaml"
    path.write_text("tenant: acme\nworkflows:\n  - key: billing\n"
                    "    graph: {nodes: [{id: a, type: noop}]}\n"
                    "    triggers: [{name: hourly, type: cron, cron: '0 * * * *'}]\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    plan = await create(pool, Actor(name="token:ops", via="api", tenant="acme"), BackfillRequest(
        trigger="billing/hourly", range_from=datetime(2026, 1, 1, tzinfo=UTC),
        range_to=datetime(2026, 1, 1, 2, tzinfo=UTC)))
    return plan.backfill_id or ""


async def test_check_and_apply_count_the_configured_workflow_depth(
    dsn: str, tmp_path: Path
) -> None:
    """Both used the default 8 whatever [executor] max_workflow_depth said: a daemon
    allowed 20 levels refused to start on an 11-level chain."""
    chain = [{"key": f"z{i}", "graph": {"nodes": [
        {"id": "c", "type": "workflow", "params": {"workflow": f"z{i + 1}"}}]}}
        for i in range(10)] + [{"key": "z10", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]
    path = tmp_path / "chain.json"
    path.write_text(json.dumps({"workflows": chain}), encoding="utf-8")
    deep = {"TRIGGERD_EXECUTOR_MAX_WORKFLOW_DEPTH": "20"}
    assert triggerd("check", str(path), **deep).returncode == 0
    refused = triggerd("check", str(path))
    assert refused.returncode == 2
    assert "nests runs deeper than 8 levels ([executor] max_workflow_depth)" in refused.stderr
    applied = triggerd("apply", str(path), dsn=dsn, **deep)
    assert applied.returncode == 0, applied.stderr


async def test_an_operations_refusal_names_the_option_as_typed(dsn: str, tmp_path: Path) -> None:
    """`triggers skip --next 0` said `next: ...` where `--count 0` says `--count: ...`: an
    operation names the request's field, the CLI the option it was given as."""
    path = tmp_path / "orders.yaml"
    path.write_text("workflows:\n  - key: orders\n    graph: {nodes: [{id: a, type: noop}]}\n"
                    "    triggers: [{name: nightly, type: cron, cron: '0 2 * * *'}]\n")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    backfill = ["triggers", "backfill", "orders/nightly", "--from", "2026-01-01T00:00:00Z",
                "--to", "2026-01-02T00:00:00Z"]
    for args, message in [
        (["triggers", "skip", "orders/nightly", "--next", "0"], "--next: 0 is out of range 1-1000"),
        (["triggers", "skip", "orders/nightly", "--at", "2099-01-01T03:00:00Z"],
         "--at: 2099-01-01T03:00:00Z is not a fire of this schedule (nearest:"
         " 2099-01-01T02:00:00Z, 2099-01-02T02:00:00Z)"),
        (["triggers", "skip", "orders/nightly", "--at", "2020-01-01T02:00:00Z"],
         "--at: 2020-01-01T02:00:00Z is not in the future"),
        ([*backfill, "--rate", "fast"], "--rate: 'fast' is not N/s, N/m or N/h (e.g. 10/s)"),
        ([*backfill, "--rate", "5000/s"],
         "--rate: 5000/s is out of range (more than 0, at most 1000/s)"),
        ([*backfill, "--overlap", "queue"],
         "--overlap: 'queue' is not one of allow, skip, buffer_one, cancel_previous"),
        ([*backfill[:-1], "2099-01-01T00:00:00Z"],
         "--to: 2099-01-01T00:00:00Z is in the future; a backfill runs past slots (skip or"
         " wait for future ones)"),
        (["triggers", "backfill", "orders/nightly", "--from", "1800-01-01T00:00:00Z", "--to",
          "2026-01-02T00:00:00Z"],
         "--from: 1800-01-01T00:00:00Z is before 1900-01-01T00:00:00Z, the earliest instant a"
         " backfill plans"),
        (["webhooks", "list", "--outcome", "lost"],
         "--outcome: 'lost' is not one of accepted, filtered, debounced"),
        (["token", "create", "--name", "ci", "--role", "owner"],
         "--role: 'owner' is not one of admin, viewer"),
        # Problems that name an input in their own words name the option typed (the API
        # says "to", "from" and "the note").
        (["triggers", "backfill", "orders/nightly", "--from", "2026-01-02T00:00:00Z", "--to",
          "2026-01-01T00:00:00Z"],
         "the range is empty: --to (2026-01-01T00:00:00Z) must be after --from"
         " (2026-01-02T00:00:00Z)"),
        ([*backfill, "--note", "x" * 501], "the --note is longer than 500 characters"),
        (["triggers", "pause", "orders/nightly", "--note", "x" * 501],
         "the --note is longer than 500 characters"),
        (["triggers", "fire", "orders/nightly", "--reason", "x" * 501],
         "the --reason is longer than 500 characters"),
    ]:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (
            2, f"triggerd: error: {message}"), args
