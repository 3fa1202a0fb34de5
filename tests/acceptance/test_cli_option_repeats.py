"""The real command refuses an option given twice (argparse kept the last one silently),
a filter that cannot name anything and a number that is not ASCII digits, as bad input
(exit 2) that writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.acceptance.test_cli import one_line_error, triggerd

DEFINITION = """workflows:
  - key: billing
    graph: {nodes: [{id: a, type: noop}]}
    triggers: [{name: hourly, type: cron, cron: '0 * * * *'}, {name: by-hand, type: manual}]
"""

# Tables a command of these could write to.
WRITTEN = ("workflow_executions", "trigger_slots", "trigger_state", "audit_log", "backfills",
           "workflows", "workflow_triggers")

REPEATS = [
    (["executions", "list", "--status", "SUCCESS", "--status", "ERROR"], "--status",
     "executions list"),
    (["executions", "list", "--workflow", "billing", "--workflow", "other"], "--workflow",
     "executions list"),
    (["executions", "list", "--since", "2026-01-01T00:00:00Z", "--since",
      "2026-02-01T00:00:00Z"], "--since", "executions list"),
    (["triggers", "pause", "billing/hourly", "--note", "a", "--note", "b"], "--note",
     "triggers pause"),
    (["triggers", "skip", "billing/hourly", "--next", "1", "--next", "2"], "--next",
     "triggers skip"),
    (["triggers", "fire", "billing/by-hand", "--input", "{}", "--input", '{"a": 1}'],
     "--input", "triggers fire"),
    (["triggers", "backfill", "billing/hourly", "--from", "2026-01-01T00:00:00Z", "--from",
      "2026-01-01T01:00:00Z", "--to", "2026-01-01T02:00:00Z"], "--from", "triggers backfill"),
    (["webhooks", "list", "--trigger", "billing/hourly", "--trigger", "billing/by-hand"],
     "--trigger", "webhooks list"),
]

BAD_FILTERS = [
    (["executions", "list", "--workflow", "Bad!"],
     "--workflow: 'Bad!' is not a workflow key (1-100 lowercase letters, digits, '-' and '_')"),
    (["executions", "list", "--trigger", "billing"],
     "--trigger: 'billing' is not workflow_key/trigger_name"),
    (["--tenant", "acme", "executions", "list", "--trigger", "acme:Bad!/x"],
     "--trigger: 'Bad!/x' is not workflow_key/trigger_name"),
    (["backfills", "list", "--trigger", "Billing/hourly"],
     "--trigger: 'Billing/hourly' is not workflow_key/trigger_name"),
    (["webhooks", "list", "--trigger", "billing/hourly/x"],
     "--trigger: 'billing/hourly/x' is not workflow_key/trigger_name"),
    (["audit", "--target", "x" * 301], "--target: must be 1-300 characters"),
]


async def _counts(pool: Any) -> dict[str, int]:
    return {table: await pool.fetchval(f"SELECT count(*) FROM {table}") for table in WRITTEN}


async def _applied(pool: Any, dsn: str, tmp_path: Path) -> dict[str, int]:
    """The definition applied; the row counts after it."""
    path = tmp_path / "billing.yaml"
    path.write_text(DEFINITION)
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    return await _counts(pool)


async def test_an_option_given_twice_is_exit_2_naming_it_and_writes_nothing(
    pool: Any, dsn: str, tmp_path: Path
) -> None:
    before = await _applied(pool, dsn, tmp_path)
    for args, option, command in REPEATS:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
        assert one_line_error(result) == (f"triggerd: error: {option} given twice; it takes"
                                          f" one value (see 'triggerd {command} --help')")
    assert await _counts(pool) == before
    # Each once is fine: the refusal is of the repeat, not of the option.
    once = triggerd("executions", "list", "--status", "SUCCESS", "--workflow", "billing",
                    dsn=dsn)
    assert once.returncode == 0, once.stderr


async def test_a_filter_that_cannot_be_a_name_is_exit_2_as_the_api_answers_400(
    dsn: str,
) -> None:
    for args, message in BAD_FILTERS:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, one_line_error(result)) == (
            2, f"triggerd: error: {message}"), args
    # A well-formed name that names nothing is still not found (exit 3, the API's 404).
    missing = triggerd("executions", "list", "--workflow", "nope", dsn=dsn)
    assert (missing.returncode, one_line_error(missing)) == (
        3, "triggerd: error: no workflow with key 'nope'")


# What Python's int() and float() take but the API's integer parameters refuse (400).
NOT_ASCII_NUMBERS = [
    (["triggers", "skip", "billing/hourly", "--next", "\u0663"], "--next", "int", "\u0663",
     "triggers skip"),
    (["executions", "list", "--limit", "\u0665"], "--limit", "int", "\u0665",
     "executions list"),
    (["audit", "--limit", "\uff15"], "--limit", "int", "\uff15", "audit"),
    (["backfills", "list", "--limit", " 5"], "--limit", "int", " 5", "backfills list"),
    (["webhooks", "list", "--limit", "5\n"], "--limit", "int", "5\n", "webhooks list"),
    (["triggers", "next", "billing/hourly", "--count", "+5"], "--count", "int", "+5",
     "triggers next"),
    (["triggers", "show", "billing/hourly", "--slots", "1_0"], "--slots", "int", "1_0",
     "triggers show"),
    (["cron", "next", "* * * * *", "--count", "\u0665"], "--count", "int", "\u0665",
     "cron next"),
    (["executions", "watch", "01234567", "--interval", "\u0661"], "--interval", "float",
     "\u0661", "executions watch"),
]


async def test_a_number_option_takes_ascii_digits_as_the_api_does(
    pool: Any, dsn: str, tmp_path: Path
) -> None:
    before = await _applied(pool, dsn, tmp_path)
    for args, option, kind, value, command in NOT_ASCII_NUMBERS:
        result = triggerd(*args, dsn=dsn)
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stderr)
        assert one_line_error(result) == (
            f"triggerd: error: argument {option}: invalid {kind} value: {value!r}"
            f" (see 'triggerd {command} --help')"), args
    # The skip above would have skipped three slots (ledger rows and an audit row).
    assert await _counts(pool) == before
    skipped = triggerd("triggers", "skip", "billing/hourly", "--next", "3", dsn=dsn)
    assert skipped.returncode == 0, skipped.stderr
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == 3
