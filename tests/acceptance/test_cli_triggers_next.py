"""``triggerd triggers next``: the next fires of any schedule kind, with DST notes, shifted
instants and calendar-excluded days marked; 409/exit 4 for a trigger without a schedule."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.test_cli import one_line_error, triggerd

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
