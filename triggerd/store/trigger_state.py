"""A trigger's runtime state (migration 0008's ``trigger_state``): what operators and the
scheduler decided, never what a definition says, so ``apply`` and reloads leave it alone.

Pausing needs no word to the schedulers: the slot statement reads ``paused`` when it
decides each slot (``skipped_paused``), exactly once across replicas. Resuming moves the
trigger's catch-up floor (``floor_at``), which the schedulers load as part of the trigger,
so each one is told through the triggers channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from triggerd.notifications.channels import TRIGGERS

Conn = Any  # a connection (inside the operation's transaction)


@dataclass(frozen=True, kw_only=True)
class TriggerState:
    paused: bool = False
    note: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None
    floor_at: datetime | None = None
    scheduled_runs: int = 0
    consecutive_failures: int = 0
    completed_at: datetime | None = None
    # The consecutive failed scheduled runs (newest last), and the last successful run's end.
    failed_executions: tuple[str, ...] = ()
    last_success_at: datetime | None = None


_COLUMNS = ("paused, note, changed_by, changed_at, floor_at, scheduled_runs,"
            " consecutive_failures, completed_at, failed_executions::text[] AS failed_executions,"
            " last_success_at")


def _state(row: Any) -> TriggerState:
    values = dict(row)
    values.pop("id", None)
    values["failed_executions"] = tuple(values["failed_executions"])
    return TriggerState(**values)


async def get_state(conn: Conn, trigger_id: str, *, lock: bool = False) -> TriggerState:
    """The trigger's state (the defaults when it has no row); ``lock`` holds its row (made
    if missing) until the transaction ends, so two operations on one trigger queue."""
    if lock:
        await conn.execute(
            "INSERT INTO trigger_state (trigger_id) VALUES ($1) ON CONFLICT DO NOTHING",
            trigger_id)
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM trigger_state WHERE trigger_id = $1"
        + (" FOR UPDATE" if lock else ""), trigger_id)
    return TriggerState() if row is None else _state(row)


async def states_of(conn: Conn, trigger_ids: list[str]) -> dict[str, TriggerState]:
    """The states of the triggers that have one (the others are at the defaults)."""
    rows = await conn.fetch(
        f"SELECT trigger_id::text AS id, {_COLUMNS} FROM trigger_state"
        " WHERE trigger_id = ANY($1::uuid[])", trigger_ids)
    return {r["id"]: _state(r) for r in rows}


async def pause(conn: Conn, trigger_id: str, *, note: str | None, actor: str) -> None:
    await conn.execute(
        "UPDATE trigger_state SET paused = true, note = $2, changed_by = $3,"
        " changed_at = now(), updated_at = now() WHERE trigger_id = $1",
        trigger_id, note, actor)


async def resume(
    conn: Conn, trigger_id: str, *, note: str | None, actor: str, catch_up: bool,
    paused_at: datetime | None,
) -> int:
    """Clear the pause. Without ``catch_up`` the floor moves to now: no slot from before
    the resume runs. With it, the slots recorded ``skipped_paused`` since ``paused_at`` (of
    its time, or recorded during it) are forgotten and the floor moves to ``paused_at``, or
    to the oldest of them, so the schedulers catch them up under
    the trigger's misfire policy; never below a later floor (an activation or an enable
    while paused catches nothing up from before it: the slots of an archived time were
    run). Returns how many recorded slots were forgotten."""
    forgotten = 0
    floor = paused_at
    if catch_up and paused_at is not None:
        # The slots of the pause, and the older ones it held back: a catch-up spread
        # (catchup_rate) writes missed slots later than their instants, so a pause during
        # it recorded slots from before the pause skipped_paused too. The floor goes back
        # to the oldest forgotten one.
        row = await conn.fetchrow(
            "WITH gone AS (DELETE FROM trigger_slots s USING trigger_state st,"
            " workflow_triggers t"
            " WHERE st.trigger_id = $1 AND t.id = $1 AND s.trigger_id = $1"
            " AND s.outcome = 'skipped_paused'"
            " AND (s.scheduled_for >= $2 OR s.decided_at >= $2)"
            " AND s.scheduled_for >= GREATEST(st.floor_at, t.enabled_at)"
            " RETURNING s.scheduled_for)"
            " SELECT count(*) AS forgotten, min(scheduled_for) AS oldest FROM gone",
            trigger_id, paused_at)
        forgotten = int(row["forgotten"])
        if row["oldest"] is not None:
            floor = min(paused_at, row["oldest"])
    await conn.execute(
        "UPDATE trigger_state SET paused = false, note = $2, changed_by = $3,"
        " changed_at = now(), updated_at = now(), consecutive_failures = 0,"
        " failed_executions = '{}',"
        " floor_at = CASE WHEN $4::timestamptz IS NULL THEN now()"
        " ELSE GREATEST($4, floor_at) END"
        " WHERE trigger_id = $1",
        trigger_id, note, actor, floor if catch_up else None)
    await conn.execute(
        f"SELECT pg_notify('{TRIGGERS.wire}', json_build_object('op', 'UPDATE',"
        " 'id', $1::text)::text)", trigger_id)
    return forgotten


async def skipped_ahead(conn: Conn) -> dict[str, set[datetime]]:
    """The slots skipped by hand that are still ahead, by trigger id (few: an operator's
    choice; read through the ledger's index on the instant)."""
    rows = await conn.fetch(
        "SELECT trigger_id::text AS id, scheduled_for FROM trigger_slots"
        " WHERE scheduled_for > now() AND outcome = 'skipped_manual'")
    found: dict[str, set[datetime]] = {}
    for row in rows:
        found.setdefault(row["id"], set()).add(row["scheduled_for"])
    return found


# A trigger that made its max_runs scheduled fires (its schedule has ended).
_COMPLETED = ("st.completed_at IS NOT NULL AND t.config ? 'max_runs'"
              " AND st.scheduled_runs >= (t.config->>'max_runs')::bigint")
_PAUSED_AND_COMPLETED = (
    "SELECT st.trigger_id::text AS id, st.paused, " + _COMPLETED + " AS completed"
    " FROM trigger_state st JOIN workflow_triggers t ON t.id = st.trigger_id WHERE ")


async def paused_and_completed(conn: Conn, ids: Sequence[str] | None = None
                               ) -> tuple[set[str], set[str]]:
    """Which triggers are paused, and which completed: of ``ids`` (a page of a list), or
    of every trigger (few: an operator's switch, a schedule that ended)."""
    if ids is None:
        rows = await conn.fetch(_PAUSED_AND_COMPLETED + "(st.paused OR " + _COMPLETED + ")")
    else:
        rows = await conn.fetch(_PAUSED_AND_COMPLETED + "st.trigger_id = ANY($1::uuid[])",
                                list(ids))
    return ({r["id"] for r in rows if r["paused"]}, {r["id"] for r in rows if r["completed"]})


async def decided_after(conn: Conn, trigger_id: str, after: datetime) -> set[datetime]:
    """The trigger's slots after ``after`` that the ledger already holds (skipped by hand
    ahead of time: few, an operator's choice)."""
    rows = await conn.fetch(
        "SELECT scheduled_for FROM trigger_slots WHERE trigger_id = $1 AND scheduled_for > $2",
        trigger_id, after)
    return {r["scheduled_for"] for r in rows}


async def record_manual_skips(
    conn: Conn, trigger_id: str, instants: list[datetime], *, detail: str
) -> list[tuple[datetime, str]]:
    """Write ``skipped_manual`` ledger rows for ``instants``; returns the instants that
    already had a row, with their outcome (the caller then rolls back: nothing is kept).
    The ledger's primary key decides a race with the live schedule or another skip."""
    written = await conn.fetch(
        "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, detail)"
        " SELECT $1, unnest($2::timestamptz[]), 'skipped_manual', $3"
        " ON CONFLICT (trigger_id, scheduled_for) DO NOTHING RETURNING scheduled_for",
        trigger_id, instants, detail)
    if len(written) == len(instants):
        return []
    kept = {r["scheduled_for"] for r in written}
    rows = await conn.fetch(
        "SELECT scheduled_for, outcome FROM trigger_slots WHERE trigger_id = $1"
        " AND scheduled_for = ANY($2::timestamptz[]) ORDER BY scheduled_for",
        trigger_id, [i for i in instants if i not in kept])
    return [(r["scheduled_for"], r["outcome"]) for r in rows]


# slot_counts reads at most this many of a trigger's newest slots: counting all of them
# took 230-300 ms for an every-second trigger (2.6 million rows in 30 days of ledger).
COUNTED_SLOTS = 10_000


async def slot_counts(conn: Conn, trigger_id: str) -> dict[str, int]:
    """How many ledger rows of each outcome the trigger's newest :data:`COUNTED_SLOTS`
    slots have (of what retention kept)."""
    rows = await conn.fetch(
        "SELECT outcome, count(*) AS n FROM (SELECT outcome FROM trigger_slots"
        " WHERE trigger_id = $1 ORDER BY scheduled_for DESC LIMIT $2) s"
        " GROUP BY outcome ORDER BY outcome", trigger_id, COUNTED_SLOTS)
    return {r["outcome"]: r["n"] for r in rows}


async def recorded_slots(conn: Conn, trigger_id: str, instants: list[datetime]
                         ) -> dict[datetime, str]:
    """The outcome the ledger already holds for each of ``instants`` that has one (a slot
    skipped by hand ahead of its time)."""
    if not instants:
        return {}
    rows = await conn.fetch(
        "SELECT scheduled_for, outcome FROM trigger_slots WHERE trigger_id = $1"
        " AND scheduled_for = ANY($2::timestamptz[])", trigger_id, instants)
    return {r["scheduled_for"]: r["outcome"] for r in rows}


async def count_skipped_by_hand(conn: Conn, trigger_id: str, start: datetime,
                                end: datetime) -> int:
    """How many slots with ``start < scheduled_for <= end`` were skipped by hand."""
    found: int = await conn.fetchval(
        "SELECT count(*) FROM trigger_slots WHERE trigger_id = $1 AND scheduled_for > $2"
        " AND scheduled_for <= $3 AND outcome = 'skipped_manual'", trigger_id, start, end)
    return found


async def running_executions(conn: Conn, trigger_id: str, limit: int = 20
                             ) -> list[dict[str, Any]]:
    """The trigger's runs in flight (NEW, RUNNING, WAITING), oldest first."""
    rows = await conn.fetch(
        "SELECT id::text AS id, status, scheduled_for, created_at FROM workflow_executions"
        " WHERE trigger_id = $1 AND status IN ('NEW', 'RUNNING', 'WAITING')"
        " ORDER BY created_at LIMIT $2", trigger_id, limit)
    return [dict(r) for r in rows]
