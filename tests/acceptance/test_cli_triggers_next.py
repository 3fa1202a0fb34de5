"""``triggerd triggers next``: the next fires of any schedule kind, with DST notes, shifted
instants and calendar-excluded days marked; 409/exit 4 for a trigger without a schedule."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import asyncpg

from tests.acceptance.test_cli import one_line_error, triggerd


def await_trigger_id(dsn: str, workflow: str, trigger: str) -> str:
    async def find() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return str(await conn.fetchval(
                "SELECT t.id FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
                " WHERE w.key = $1 AND t.name = $2 AND w.tenant_id = 'default'",
                workflow, trigger))
        finally:
            await conn.close()
    return asyncio.run(find())


def record_fired(dsn: str, trigger_id: str, at: str) -> None:
    async def insert() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
                               " VALUES ($1, $2, 'fired')", trigger_id,
                               datetime.fromisoformat(at.replace("Z", "+00:00")))
        finally:
            await conn.close()
    asyncio.run(insert())


DEFINITIONS = """\
calendars:
  - name: madrid
    timezone: Europe/Madrid
    holidays: {country: ES, subdivision: MD}
workflows:
  - key: payroll
    graph: {nodes: [{id: a, type: noop}]}
    triggers:
      - {name: daily, type: cron, cron: "0 9 * * *", timezone: Europe/Madrid,
         calendar: {only: madrid}}
      - {name: monthly, type: cron, cron: ["0 9 6 12 *"], timezone: Europe/Madrid,
         calendar: {only: madrid, shift: previous}}
      - {name: sync, type: interval, every: 6h, offset: 5m, timezone: Europe/Madrid}
      - {name: hook, type: webhook, path: payroll/hook}
"""


def test_triggers_next_for_every_kind(dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "payroll.yaml"
    path.write_text(DEFINITIONS)
    applied = triggerd("apply", str(path), dsn=dsn)
    assert applied.returncode == 0, applied.stderr

    daily = triggerd("triggers", "next", "payroll/daily", "--count", "2", "--after",
                     "2027-12-05T12:00:00Z", "--json", dsn=dsn)
    assert daily.returncode == 0, daily.stderr
    assert json.loads(daily.stdout) == [
        {"at": "2027-12-06T08:00:00Z", "local": "2027-12-06T09:00:00+01:00", "note": "excluded",
         "reason": "holiday: Constitution Day"},
        {"at": "2027-12-07T08:00:00Z", "local": "2027-12-07T09:00:00+01:00", "note": None},
        {"at": "2027-12-08T08:00:00Z", "local": "2027-12-08T09:00:00+01:00", "note": "excluded",
         "reason": "holiday: Immaculate Conception"},
        {"at": "2027-12-09T08:00:00Z", "local": "2027-12-09T09:00:00+01:00", "note": None},
    ]

    monthly = triggerd("triggers", "next", "payroll/monthly", "--count", "1", "--after",
                       "2027-11-01T00:00:00Z", dsn=dsn)
    assert monthly.returncode == 0, monthly.stderr
    assert monthly.stdout == ("2027-12-03T08:00:00Z  2027-12-03T09:00:00+01:00"
                              "  (shifted; nominal 2027-12-06T08:00:00Z)\n")

    sync = triggerd("triggers", "next", "payroll/sync", "--count", "2", "--after",
                    "2027-03-27T23:00:00Z", dsn=dsn)
    assert sync.returncode == 0, sync.stderr
    assert sync.stdout == ("2027-03-28T00:05:00Z  2027-03-28T01:05:00+01:00\n"
                           "2027-03-28T06:05:00Z  2027-03-28T08:05:00+02:00\n")

    hook = triggerd("triggers", "next", "payroll/hook", dsn=dsn)
    assert hook.returncode == 4
    assert one_line_error(hook) == ("triggerd: error: trigger payroll/hook is a webhook"
                                    " trigger; only scheduled triggers (cron, interval) have"
                                    " fire times")


def test_previews_show_skipped_slots_archived_workflows_and_tenants(
    dsn: str, tmp_path: Path,
) -> None:
    path = tmp_path / "payroll.yaml"
    path.write_text(DEFINITIONS)
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    other = tmp_path / "acme.yaml"
    other.write_text("tenant: acme\n" + DEFINITIONS)
    assert triggerd("apply", str(other), dsn=dsn).returncode == 0

    # A slot skipped ahead of its time is still in the schedule, and says it will not run.
    sync = triggerd("triggers", "next", "payroll/sync", "--count", "3", "--json", dsn=dsn)
    upcoming = [f["at"] for f in json.loads(sync.stdout)]
    skipped = triggerd("triggers", "skip", "payroll/sync", "--at", upcoming[1], dsn=dsn)
    assert skipped.returncode == 0, skipped.stderr
    fires = json.loads(triggerd("triggers", "next", "payroll/sync", "--count", "3", "--json",
                                dsn=dsn).stdout)
    assert [(f["at"], f["note"], f.get("reason")) for f in fires] == [
        (upcoming[0], None, None), (upcoming[1], "skipped", "skipped by hand"),
        (upcoming[2], None, None)]
    shown = json.loads(triggerd("triggers", "show", "payroll/sync", "--json", dsn=dsn).stdout)
    assert [f.get("reason") for f in shown["next_fires"][:3]] == [None, "skipped by hand", None]
    text = triggerd("triggers", "next", "payroll/sync", "--count", "2", dsn=dsn).stdout
    assert text.splitlines()[1].endswith("(skipped; skipped by hand)")
    # A past fire (--after) that ran is shown as recorded, not as skipped.
    trigger_id = await_trigger_id(dsn, "payroll", "sync")
    past = "2026-01-01T00:05:00Z"
    record_fired(dsn, trigger_id, past)
    before = json.loads(triggerd("triggers", "next", "payroll/sync", "--count", "1",
                                 "--after", "2026-01-01T00:00:00Z", "--json", dsn=dsn).stdout)
    assert [(f["at"], f["note"], f.get("reason")) for f in before] == [
        (past, None, "recorded: fired")]

    # A paused trigger's next fires are skipped: `next` says so (it listed them silently
    # while `triggers list` showed no next fire).
    assert triggerd("triggers", "pause", "payroll/sync", dsn=dsn).returncode == 0
    paused = triggerd("triggers", "next", "payroll/sync", "--count", "1", dsn=dsn)
    assert paused.stderr == ("triggerd: note: payroll/sync does not fire while it is paused;"
                             " these are its schedule's times\n")
    assert triggerd("triggers", "resume", "payroll/sync", dsn=dsn).returncode == 0
    resumed = triggerd("triggers", "next", "payroll/sync", "--count", "1", dsn=dsn)
    assert (resumed.returncode, resumed.stderr) == (0, "")

    # Both tenants' payroll/sync are listed, told apart as apply names them.
    listed = triggerd("triggers", "list", dsn=dsn).stdout.splitlines()
    names = [line.split()[0] for line in listed[1:]]
    assert "payroll/sync" in names and "acme:payroll/sync" in names

    # An archived workflow's triggers do not fire: no next fire, and `next` says why.
    assert triggerd("workflows", "archive", "payroll", dsn=dsn).returncode == 0
    rows = {line.split()[0]: line.split() for line in
            triggerd("triggers", "list", dsn=dsn).stdout.splitlines()[1:]}
    assert rows["payroll/sync"][2] == "archived" and rows["payroll/sync"][-1] == "-"
    assert rows["acme:payroll/sync"][2] == "enabled" and rows["acme:payroll/sync"][-1] != "-"
    shown = json.loads(triggerd("triggers", "show", "payroll/sync", "--json", dsn=dsn).stdout)
    assert (shown["workflow_status"], shown["next_fires"]) == ("archived", [])
    archived = triggerd("triggers", "next", "payroll/sync", "--count", "1", dsn=dsn)
    assert archived.returncode == 0
    assert archived.stderr == ("triggerd: note: payroll/sync does not fire while its workflow"
                               " is archived; these are its schedule's times\n")


def test_a_schedule_past_its_end_says_it_has_no_fires(dsn: str, tmp_path: Path) -> None:
    # It printed nothing at all, as if the command had failed to answer.
    path = tmp_path / "ended.yaml"
    path.write_text("""\
workflows:
  - key: ended
    graph: {nodes: [{id: a, type: noop}]}
    triggers:
      - {name: daily, type: cron, cron: "0 9 * * *", end_at: "2027-01-01T00:00:00Z"}
""")
    assert triggerd("apply", str(path), dsn=dsn).returncode == 0
    for extra in ((), ("--json",)):
        ended = triggerd("triggers", "next", "ended/daily", "--after", "2027-06-01T00:00:00Z",
                         *extra, dsn=dsn)
        assert ended.returncode == 0, ended.stderr
        assert ended.stdout == ("[]\n" if extra else "")
        assert ended.stderr == ("triggerd: note: ended/daily has no fires after"
                                " 2027-06-01T00:00:00Z\n")
