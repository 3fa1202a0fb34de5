"""max_runs and pause_after_failures with two real daemons on one database, racing every
slot of an every-second trigger: the limit is made exactly (never one run too many), and
a failing schedule is paused once, by the scheduler, naming the failed runs."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg

from tests.acceptance.conftest import Daemons, TomlValue
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: ticker
    graph:
      nodes:
        - {id: a, type: noop}
    triggers:
      - {name: limited, type: cron, cron: "* * * * * *", overlap: allow, max_runs: 5}
  - key: broken
    graph:
      nodes:
        - {id: boom, type: fail, params: {message: "upstream is down"}}
    triggers:
      - {name: every-second, type: cron, cron: "* * * * * *", overlap: allow,
         pause_after_failures: 3}
"""


async def test_two_replicas_make_max_runs_exactly_and_pause_a_failing_schedule_once(
    daemons: Daemons, dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    definitions = tmp_path / "limits.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {"daemon": {"definitions": [str(definitions)]}}
    replicas = [await daemons.start(database_url=dsn, sections=sections) for _ in range(2)]

    async def limited_done() -> bool:
        return bool(await pool.fetchval(
            "SELECT st.completed_at IS NOT NULL FROM trigger_state st"
            " JOIN workflow_triggers t ON t.id = st.trigger_id WHERE t.name = 'limited'"))

    async def broken_paused() -> bool:
        return bool(await pool.fetchval(
            "SELECT st.paused FROM trigger_state st"
            " JOIN workflow_triggers t ON t.id = st.trigger_id WHERE t.name = 'every-second'"))

    await wait_for(limited_done, timeout=30)
    await wait_for(broken_paused, timeout=30)
    await asyncio.sleep(3)  # three more seconds: nothing more may start
    for replica in replicas:
        assert await replica.stop(signal.SIGTERM) == 0

    runs = await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE trigger_name = 'limited'")
    assert runs == 5
    assert await pool.fetchval(
        "SELECT st.scheduled_runs FROM trigger_state st JOIN workflow_triggers t"
        " ON t.id = st.trigger_id WHERE t.name = 'limited'") == 5
    state = await pool.fetchrow(
        "SELECT st.note, st.changed_by, st.failed_executions::text[] AS failed"
        " FROM trigger_state st JOIN workflow_triggers t ON t.id = st.trigger_id"
        " WHERE t.name = 'every-second'")
    assert state["changed_by"] == "scheduler" and len(state["failed"]) >= 3
    assert state["note"].startswith("paused after 3 consecutive failed scheduled runs: ")
    failed = await pool.fetch(
        "SELECT id::text AS id FROM workflow_executions WHERE trigger_name = 'every-second'"
        " AND status = 'ERROR'")
    assert set(state["failed"][:3]) <= {r["id"] for r in failed}
    pauses = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'pause' AND actor = 'scheduler'")
    assert pauses == 1
    # After the pause, the slots are recorded skipped_paused and start nothing.
    paused_at = await pool.fetchval(
        "SELECT st.changed_at FROM trigger_state st JOIN workflow_triggers t"
        " ON t.id = st.trigger_id WHERE t.name = 'every-second'")
    assert await pool.fetchval(
        "SELECT count(*) FROM workflow_executions WHERE trigger_name = 'every-second'"
        " AND scheduled_for > $1::timestamptz + interval '1 second'", paused_at) == 0
    assert await pool.fetchval(
        "SELECT count(*) FROM trigger_slots s JOIN workflow_triggers t ON t.id = s.trigger_id"
        " WHERE t.name = 'every-second' AND s.outcome = 'skipped_paused'") >= 1
