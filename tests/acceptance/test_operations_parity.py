"""The CLI and the admin API are thin transports over one operations layer: the same bad
input through either gets the same answer class (DESIGN §5b: exit 2 = 400/422, 3 = 404,
4 = 409), and neither leaves a row behind."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.acceptance.conftest import DaemonProcess, Daemons, run_cli

TOKEN = "parity-admin-s3cret"
DEFINITIONS = {"workflows": [{
    "key": "orders",
    "parameter_schema": {"type": "object", "properties": {"count": {"type": "integer"}}},
    "graph": {"nodes": [{"id": "a", "type": "noop"}]},
    # February 29th only: it never fires while the test runs (the test counts rows).
    "triggers": [{"name": "nightly", "type": "cron", "cron": "0 2 29 2 *"},
                 {"name": "by-hand", "type": "manual"},
                 {"name": "off", "type": "manual", "enabled": False}],
}]}
EXIT_OF_STATUS = {400: 2, 404: 3, 409: 4, 422: 2}
MISSING = str(uuid.UUID(int=7))
LONG = "x" * 501

# (what, CLI arguments, HTTP method, path, JSON body or None)
CASES: list[tuple[str, list[str], str, str, Any]] = [
    ("fire: unknown trigger", ["triggers", "fire", "orders/nope"],
     "POST", "/api/v1/triggers/orders/nope/fire", None),
    ("fire: input against the schema", ["triggers", "fire", "orders/by-hand", "--input",
                                        '{"count": "many"}'],
     "POST", "/api/v1/triggers/orders/by-hand/fire", {"input": {"count": "many"}}),
    ("fire: disabled trigger", ["triggers", "fire", "orders/off"],
     "POST", "/api/v1/triggers/orders/off/fire", None),
    ("fire: reason too long", ["triggers", "fire", "orders/by-hand", "--reason", LONG],
     "POST", "/api/v1/triggers/orders/by-hand/fire", {"reason": LONG}),
    ("pause: unknown trigger", ["triggers", "pause", "orders/nope"],
     "POST", "/api/v1/triggers/orders/nope/pause", None),
    ("pause: not a scheduled trigger", ["triggers", "pause", "orders/by-hand"],
     "POST", "/api/v1/triggers/orders/by-hand/pause", None),
    ("pause: note too long", ["triggers", "pause", "orders/nightly", "--note", LONG],
     "POST", "/api/v1/triggers/orders/nightly/pause", {"note": LONG}),
    ("resume: unknown trigger", ["triggers", "resume", "orders/nope"],
     "POST", "/api/v1/triggers/orders/nope/resume", None),
    ("resume: not a scheduled trigger", ["triggers", "resume", "orders/by-hand"],
     "POST", "/api/v1/triggers/orders/by-hand/resume", None),
    ("skip: unknown trigger", ["triggers", "skip", "orders/nope", "--next", "1"],
     "POST", "/api/v1/triggers/orders/nope/skip", {"next": 1}),
    ("skip: not a scheduled trigger", ["triggers", "skip", "orders/by-hand", "--next", "1"],
     "POST", "/api/v1/triggers/orders/by-hand/skip", {"next": 1}),
    ("skip: next out of range", ["triggers", "skip", "orders/nightly", "--next", "0"],
     "POST", "/api/v1/triggers/orders/nightly/skip", {"next": 0}),
    ("skip: not an instant of the schedule",
     ["triggers", "skip", "orders/nightly", "--at", "2099-01-01T03:00:00Z"],
     "POST", "/api/v1/triggers/orders/nightly/skip", {"at": "2099-01-01T03:00:00Z"}),
    ("backfill: unknown trigger",
     ["triggers", "backfill", "orders/nope", "--from", "2026-01-01T00:00:00Z", "--to",
      "2026-01-02T00:00:00Z"],
     "POST", "/api/v1/triggers/orders/nope/backfills",
     {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
    ("backfill: empty range",
     ["triggers", "backfill", "orders/nightly", "--from", "2026-01-02T00:00:00Z", "--to",
      "2026-01-01T00:00:00Z"],
     "POST", "/api/v1/triggers/orders/nightly/backfills",
     {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("backfill: bad rate",
     ["triggers", "backfill", "orders/nightly", "--from", "2026-01-01T00:00:00Z", "--to",
      "2026-01-02T00:00:00Z", "--rate", "fast"],
     "POST", "/api/v1/triggers/orders/nightly/backfills",
     {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "rate": "fast"}),
    ("backfill: not a scheduled trigger",
     ["triggers", "backfill", "orders/by-hand", "--from", "2026-01-01T00:00:00Z", "--to",
      "2026-01-02T00:00:00Z"],
     "POST", "/api/v1/triggers/orders/by-hand/backfills",
     {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
    ("backfills cancel: unknown backfill", ["backfills", "cancel", MISSING],
     "POST", f"/api/v1/backfills/{MISSING}/cancel", None),
    ("backfills show: unknown backfill", ["backfills", "show", MISSING],
     "GET", f"/api/v1/backfills/{MISSING}", None),
    ("backfills show: not an id", ["backfills", "show", "nope"],
     "GET", "/api/v1/backfills/nope", None),
    ("enable: unknown trigger", ["triggers", "enable", "orders/nope"],
     "POST", "/api/v1/triggers/orders/nope/enable", None),
    ("disable: unknown trigger", ["triggers", "disable", "orders/nope"],
     "POST", "/api/v1/triggers/orders/nope/disable", None),
    ("cancel: unknown execution", ["executions", "cancel", MISSING],
     "POST", f"/api/v1/executions/{MISSING}/cancel", None),
    ("retry: unknown execution", ["executions", "retry", MISSING],
     "POST", f"/api/v1/executions/{MISSING}/retry", None),
    ("archive: unknown workflow", ["workflows", "archive", "nope"],
     "POST", "/api/v1/workflows/nope/archive", None),
    ("archive: note too long", ["workflows", "archive", "orders", "--note", LONG],
     "POST", "/api/v1/workflows/orders/archive", {"note": LONG}),
    ("activate: unknown workflow", ["workflows", "activate", "nope"],
     "POST", "/api/v1/workflows/nope/activate", None),
    ("activate: note too long", ["workflows", "activate", "orders", "--note", LONG],
     "POST", "/api/v1/workflows/orders/activate", {"note": LONG}),
    ("delete: unknown workflow", ["workflows", "delete", "nope", "--yes"],
     "DELETE", "/api/v1/workflows/nope", None),
]


# Inputs a message names in its own words, as the API and the CLI write them.
NAMED_INPUTS = [("--note", "the note is", "the --note is"),
                ("--reason", "the reason is", "the --reason is"),
                ("--to", "empty: to (", "empty: --to ("),
                ("--from", "after from (", "after --from (")]


def _as_typed(message: str, args: list[str]) -> str:
    """The API's message as the CLI words it: a field the command has an option for is
    named as that option (the API's ``next: ...`` is the CLI's ``--next: ...``), and so
    is an input the message names (the API's ``the note is ...``, ``the --note is ...``)."""
    for option, api, cli in NAMED_INPUTS:
        if option in args:
            message = message.replace(api, cli)
    field, colon, problem = message.partition(": ")
    return f"--{field}: {problem}" if colon and f"--{field}" in args else message


async def _api(daemon: DaemonProcess, method: str, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(
        method, daemon.base_url + path, headers={"Authorization": f"Bearer {TOKEN}"},
        json=body, timeout=aiohttp.ClientTimeout(total=10),
    ) as response:
        return response.status, await response.json()


async def test_the_same_bad_input_gets_the_same_answer_through_cli_and_api(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": TOKEN}})
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(DEFINITIONS))
    assert (await run_cli(daemon.config, "apply", str(path))).returncode == 0
    mismatches = []
    for what, args, method, url, body in CASES:
        cli = await run_cli(daemon.config, *args)
        status, answer = await _api(daemon, method, url, body)
        cli_message = cli.stderr.strip().splitlines()[-1] if cli.stderr.strip() else ""
        if EXIT_OF_STATUS.get(status) != cli.returncode or \
                cli_message != f"triggerd: error: {_as_typed(answer.get('message'), args)}":
            mismatches.append((what, cli.returncode, cli_message, status, answer))
    assert mismatches == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM workflow_executions") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action <> 'apply'") == 0
        assert await conn.fetchval("SELECT count(*) FROM trigger_state WHERE paused") == 0
        assert await conn.fetchval("SELECT count(*) FROM trigger_slots") == 0
        assert await conn.fetchval("SELECT count(*) FROM backfills") == 0
    finally:
        await conn.close()


async def test_pause_in_the_api_shows_in_the_cli_and_survives_apply(
    daemons: Daemons, dsn: str, tmp_path: Path
) -> None:
    daemon = await daemons.start(database_url=dsn, sections={"api": {"token": TOKEN}})
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(DEFINITIONS))
    assert (await run_cli(daemon.config, "apply", str(path))).returncode == 0
    status, answer = await _api(daemon, "POST", "/api/v1/triggers/orders/nightly/pause",
                                {"note": "vendor outage"})
    assert status == 200 and answer["changed"] and answer["state"]["paused"]
    assert (await run_cli(daemon.config, "apply", str(path))).returncode == 0
    listed = await run_cli(daemon.config, "triggers", "list")
    line = next(x for x in listed.stdout.splitlines() if x.startswith("orders/nightly"))
    assert line.split()[2] == "paused"
    shown = await run_cli(daemon.config, "triggers", "show", "orders/nightly")
    assert "paused:      yes, by token:[api] token (config) at" in shown.stdout
    # The pause line, and the pause among the recent actions.
    assert shown.stdout.rstrip().count("vendor outage") == 2
    assert "  token:[api] token (config)  pause  (vendor outage)" in shown.stdout
    status, detail = await _api(daemon, "GET", "/api/v1/triggers/orders/nightly?count=2", None)
    assert status == 200 and detail["state"]["paused"] and len(detail["next_fires"]) == 2
    assert [a["action"] for a in detail["recent_actions"]] == ["pause"]
    assert detail["running"] == [] and detail["slot_counts"] == {}
    resumed = await run_cli(daemon.config, "triggers", "resume", "orders/nightly",
                            "--note", "back", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.json()["changed"] and not resumed.json()["state"]["paused"]
    audit = await run_cli(daemon.config, "audit", "--target", "orders/nightly", "--json")
    rows = audit.json()
    assert [(r["action"], r["note"]) for r in rows] == [("resume", "back"),
                                                        ("pause", "vendor outage")]
    assert rows[0]["actor"].startswith("cli:")
    status, page = await _api(daemon, "GET", "/api/v1/audit?target=orders/nightly&limit=1",
                              None)
    assert status == 200 and [r["action"] for r in page["items"]] == ["resume"]
    status, older = await _api(daemon, "GET", "/api/v1/audit?target=orders/nightly&limit=1"
                               f"&cursor={page['next_cursor']}", None)
    assert [r["action"] for r in older["items"]] == ["pause"] and older["next_cursor"] is None
