"""The cron scheduler against a real PostgreSQL: fires, replicas, overlap and catch-up."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_scheduler_support import (
    executions_of,
    make_trigger,
    make_workflow,
    running,
    slots_of,
)
from triggerd import db
from triggerd.cron import fires_between, parse_cron, utc_iso
from triggerd.model import OverlapPolicy
from triggerd.planning import jitter_offset
from triggerd.store.keyed import claim_held
from triggerd.store.slots import SlotRequest, record_slots

Pool = Any
EVERY_SECOND = "* * * * * *"


async def test_every_second_slot_has_one_execution_across_two_replicas(
    pool: Pool, dsn: str
) -> None:
    workflow_id = await make_workflow(pool)
    every = await make_trigger(pool, workflow_id, "every", {"cron": EVERY_SECOND,
                                                            "overlap": "allow"})
    later_at = datetime.now(UTC) + timedelta(seconds=1.5)
    later = await make_trigger(
        pool, workflow_id, "later", {"cron": EVERY_SECOND, "overlap": "allow"},
        enabled_at=later_at,
    )
    other_pool = await db.create_pool(dsn, min_size=1, max_size=3)
    try:
        async with running(pool, dsn) as first, running(other_pool, dsn) as second:
            await asyncio.sleep(3.2)
            stopped_at = datetime.now(UTC)
        fires = first.stats.fires + second.stats.fires
    finally:
        await other_pool.close()

    runs = await executions_of(pool, every)
    instants = [r["scheduled_for"] for r in runs]
    assert len(instants) >= 3
    assert len(set(instants)) == len(instants), "a slot fired twice"
    # Every second between the first and the last slot is there: none missing.
    span = int((instants[-1] - instants[0]).total_seconds())
    assert instants == [instants[0] + timedelta(seconds=i) for i in range(span + 1)]
    assert instants[-1] >= stopped_at - timedelta(seconds=1.5)
    for run in runs:
        slot = run["scheduled_for"]
        assert slot.microsecond == 0
        assert run["dedupe_key"] == f"cron:{utc_iso(slot)}"
        assert run["trigger_type"] == "cron"
        assert run["trigger_name"] == "every"
        assert run["status"] == "NEW"
        assert run["input"] == {"static": "every"}
        trigger = run["context"]["trigger"]
        assert set(trigger) == {"type", "name", "scheduled_for", "fired_at"}
        assert (trigger["type"], trigger["name"]) == ("cron", "every")
        assert trigger["scheduled_for"] == utc_iso(slot)
        fired_at = datetime.fromisoformat(trigger["fired_at"].replace("Z", "+00:00"))
        assert slot <= fired_at < slot + timedelta(seconds=1)
    slots = await slots_of(pool, every)
    assert [(s["scheduled_for"], s["outcome"], s["execution_id"]) for s in slots] == [
        (r["scheduled_for"], "fired", r["id"]) for r in runs
    ]
    late_runs = await executions_of(pool, later)
    assert late_runs, "the trigger enabled later never fired"
    assert min(r["scheduled_for"] for r in late_runs) >= later_at
    # Each slot was decided by exactly one of the two replicas.
    assert fires == len(runs) + len(late_runs)


async def test_overlap_policies_are_decided_in_the_database(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    ids = {
        policy: await make_trigger(pool, workflow_id, policy, {"cron": EVERY_SECOND,
                                                               "overlap": policy})
        for policy in ("allow", "skip", "buffer_one", "cancel_previous")
    }
    # A run of buffer_one and of cancel_previous is in progress before any fire.
    running_ids = {}
    for policy in ("buffer_one", "cancel_previous"):
        running_ids[policy] = await pool.fetchval(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status)"
            " VALUES ($1, $2, 'manual', 'RUNNING') RETURNING id::text",
            workflow_id,
            ids[policy],
        )
    async with running(pool, dsn):
        await asyncio.sleep(2.6)

    outcomes = {p: [s["outcome"] for s in await slots_of(pool, t)] for p, t in ids.items()}
    count = len(outcomes["allow"])
    assert count >= 2
    assert outcomes["allow"] == ["fired"] * count

    skip_slots = await slots_of(pool, ids["skip"])
    assert [s["outcome"] for s in skip_slots] == ["fired"] + ["skipped_overlap"] * (
        len(skip_slots) - 1
    )
    assert {s["execution_id"] for s in skip_slots[1:]} == {None}
    assert skip_slots[1]["detail"] == "overlap policy skip: 1 run(s) still active"
    assert len(await executions_of(pool, ids["skip"])) == 1

    buffer_slots = await slots_of(pool, ids["buffer_one"])
    assert [s["outcome"] for s in buffer_slots] == ["buffered"] + ["skipped_overlap"] * (
        len(buffer_slots) - 1
    )
    buffer_runs = await executions_of(pool, ids["buffer_one"])
    buffered = [r for r in buffer_runs if r["trigger_type"] == "cron"]
    assert [(r["id"], r["status"]) for r in buffered] == [(buffer_slots[0]["execution_id"], "NEW")]

    cancel_slots = await slots_of(pool, ids["cancel_previous"])
    assert [s["outcome"] for s in cancel_slots] == ["canceled_previous"] * len(cancel_slots)
    cancel_runs = {r["id"]: r for r in await executions_of(pool, ids["cancel_previous"])}
    previous = cancel_runs.pop(running_ids["cancel_previous"])
    # A running run is asked to stop (its executor cancels it); queued ones end at once.
    assert (previous["status"], previous["cancel_requested"]) == ("RUNNING", True)
    fired = [cancel_runs[s["execution_id"]] for s in cancel_slots]
    assert [(r["status"], r["error_code"]) for r in fired] == [("CANCELED", "CANCELED")] * (
        len(fired) - 1
    ) + [("NEW", None)]


async def test_a_catch_ups_slots_go_through_the_overlap_policy_one_after_another(
    pool: Pool,
) -> None:
    """Three missed slots written together, no run active before: each is decided as if it
    had come on time while the earlier ones still ran (a `skip` job never runs twice side
    by side because a restart found several missed slots)."""
    workflow_id = await make_workflow(pool)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    missed = [start + timedelta(minutes=m) for m in (1, 2, 3)]
    ids: dict[str, str] = {}
    requests = []
    for policy in ("allow", "skip", "buffer_one", "cancel_previous"):
        ids[policy] = await make_trigger(pool, workflow_id, policy,
                                         {"cron": "* * * * *", "overlap": policy},
                                         enabled_at=start)
        config = await pool.fetchval(
            "SELECT config::text FROM workflow_triggers WHERE id = $1", ids[policy])
        requests += [SlotRequest(trigger_id=ids[policy], scheduled_for=at, slot_iso=utc_iso(at),
                                 config_text=config, overlap=OverlapPolicy(policy))
                     for at in missed]
    written = await record_slots(pool, requests, fired_at=utc_iso(start))
    assert written.stale == () and written.lost == 0

    async def decided(policy: str) -> list[tuple[str, str | None]]:
        return [(s["outcome"], s["detail"]) for s in await slots_of(pool, ids[policy])]

    assert await decided("allow") == [("fired", None)] * 3
    assert await decided("skip") == [("fired", None)] + [
        ("skipped_overlap", "overlap policy skip: an earlier slot of the same catch-up runs")
    ] * 2
    assert await decided("buffer_one") == [
        ("fired", None), ("buffered", "overlap policy buffer_one: queued behind 1 active run"),
        ("skipped_overlap",
         "overlap policy buffer_one: an earlier slot of the same catch-up runs")]
    assert [o for o, _ in await decided("cancel_previous")] == ["skipped_overlap"] * 2 + [
        "fired"]
    # Only the slots that ran have executions; buffer_one's two share its concurrency key,
    # so the second starts only after the first ended.
    runs = {p: await executions_of(pool, t) for p, t in ids.items()}
    assert {p: [r["scheduled_for"] for r in rs] for p, rs in runs.items()} == {
        "allow": missed, "skip": missed[:1], "buffer_one": missed[:2],
        "cancel_previous": missed[2:]}
    keys = await pool.fetch(
        "SELECT concurrency_key, concurrency_limit FROM workflow_executions"
        " WHERE trigger_id = $1", ids["buffer_one"])
    assert [tuple(k) for k in keys] == [("overlap:buffer_one", 1)] * 2
    # Written by one statement, both have one created_at: the first slot starts first
    # (by random ids, the second did in about 4 cases out of 10).
    async with pool.acquire() as conn:
        held = await claim_held(conn, "owner", timedelta(minutes=5), 10)
    started = {c.id for c in held.claimed}
    first_run = {r["id"] for r in runs["buffer_one"] if r["scheduled_for"] == missed[0]}
    assert first_run <= started
    assert not {r["id"] for r in runs["buffer_one"] if r["scheduled_for"] == missed[1]} & started


async def test_catch_up_follows_each_misfire_policy_after_downtime(
    pool: Pool, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The scheduler's clock reads hh:mm:30 of the current minute T: the missed minutely
    # slots since a last slot at T-10min are exactly T-9min ... T.
    real = datetime.now(UTC)
    minute = real.replace(second=0, microsecond=0)
    shift = minute + timedelta(seconds=30) - real

    def clock() -> datetime:
        return datetime.now(UTC) + shift

    workflow_id = await make_workflow(pool)
    hour_ago = minute - timedelta(hours=1)
    configs: dict[str, tuple[dict[str, Any], datetime]] = {
        "skip": ({"misfire": "skip"}, hour_ago),
        "latest": ({"misfire": "latest"}, hour_ago),
        # overlap allow: under the default skip a catch-up's slots do not run side by side
        # (the test above).
        "all": ({"misfire": "all", "overlap": "allow"}, hour_ago),
        "window": ({"misfire": "all", "catchup_window": "3m", "overlap": "allow"}, hour_ago),
        # Re-enabled 2m50s ago, after its last slot: nothing before that fires.
        "reenabled": ({"misfire": "all", "overlap": "allow"},
                      minute - timedelta(minutes=2, seconds=50)),
    }
    ids = {}
    for name, (extra, enabled_at) in configs.items():
        ids[name] = await make_trigger(
            pool, workflow_id, name, {"cron": "* * * * *", **extra}, enabled_at=enabled_at
        )
        await pool.execute(
            "INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome)"
            " VALUES ($1, $2, 'fired')",
            ids[name],
            minute - timedelta(minutes=10),
        )
    missed = [minute - timedelta(minutes=m) for m in range(9, -1, -1)]
    assert [f.at for f in fires_between(parse_cron("* * * * *"), missed[0] - timedelta(minutes=1),
                                        minute)] == missed

    caplog.set_level(logging.INFO, logger="triggerd.scheduler.service")
    async with running(pool, dsn, clock=clock):
        pass

    async def decided(name: str) -> list[tuple[datetime, str]]:
        rows = await slots_of(pool, ids[name])
        return [(r["scheduled_for"], r["outcome"]) for r in rows[1:]]  # after the seeded one

    assert await decided("skip") == [(m, "skipped_misfire") for m in missed]
    assert await decided("latest") == [(m, "skipped_misfire") for m in missed[:-1]] + [
        (minute, "fired")
    ]
    assert await decided("all") == [(m, "fired") for m in missed]
    assert await decided("window") == [(m, "skipped_misfire") for m in missed[:7]] + [
        (m, "fired") for m in missed[7:]
    ]
    assert await decided("reenabled") == [(m, "fired") for m in missed[7:]]
    window_details = {r["detail"] for r in (await slots_of(pool, ids["window"]))[1:8]}
    assert window_details == {"older than the catch-up window of 3m"}
    latest_runs = await executions_of(pool, ids["latest"])
    assert [r["scheduled_for"] for r in latest_runs] == [minute]
    assert len(await executions_of(pool, ids["all"])) == 10

    summary = [r for r in caplog.records if getattr(r, "event", None) == "cron_catchup"]
    assert len(summary) == 1
    assert summary[0].__dict__["reason"] == "start"
    outcomes = summary[0].__dict__["outcomes"]
    assert (outcomes["fired"], outcomes["skipped_misfire"]) == (1 + 10 + 3 + 3, 10 + 9 + 7)

    # A restart finds every slot decided: nothing more is written.
    before = await pool.fetchval("SELECT count(*) FROM trigger_slots")
    async with running(pool, dsn, clock=clock) as again:
        pass
    assert await pool.fetchval("SELECT count(*) FROM trigger_slots") == before
    assert again.stats.outcomes == {}


async def test_jitter_delays_the_fire_but_not_the_slot(pool: Pool, dsn: str) -> None:
    workflow_id = await make_workflow(pool)
    jitter = timedelta(milliseconds=700)
    trigger = await make_trigger(
        pool, workflow_id, "jittered", {"cron": EVERY_SECOND, "overlap": "allow", "jitter": "700ms"}
    )
    async with running(pool, dsn):
        # Two slots fire within about 2.7 s of the start (offsets up to 0.7 s); a loaded
        # machine may need longer to start, so wait for them rather than a fixed time.
        for _ in range(80):
            await asyncio.sleep(0.1)
            if len(await executions_of(pool, trigger)) >= 2:
                break
    runs = await executions_of(pool, trigger)
    assert len(runs) >= 2
    offsets = set()
    for run in runs:
        slot = run["scheduled_for"]
        offset = jitter_offset(trigger, slot, jitter)
        offsets.add(offset)
        assert slot.microsecond == 0
        assert run["dedupe_key"] == f"cron:{utc_iso(slot)}"
        fired_at = datetime.fromisoformat(
            run["context"]["trigger"]["fired_at"].replace("Z", "+00:00")
        )
        # Fires are grouped per millisecond, so one may start up to 1 ms before its offset.
        assert fired_at >= slot + offset - timedelta(milliseconds=1)
        assert run["created_at"] >= slot + offset - timedelta(milliseconds=1)
    assert len(offsets) == len(runs), "every slot gets its own offset"


async def test_cancel_previous_cancels_like_a_cancel_by_request(pool: Pool, dsn: str) -> None:
    """A newer slot under cancel_previous ended a waiting run but left its parked node row
    WAITING and its child runs waiting (a child on an approval with no expiry waited for
    ever, and retention kept the tree); a running run's children were left too."""
    from tests.helpers import wait_for

    workflow_id = await make_workflow(pool)
    waiting_trigger = await make_trigger(pool, workflow_id, "cp-waiting",
                                         {"cron": EVERY_SECOND, "overlap": "cancel_previous"})
    running_trigger = await make_trigger(pool, workflow_id, "cp-running",
                                         {"cron": EVERY_SECOND, "overlap": "cancel_previous"})

    async def run(status: str, parent: str | None, trigger: str | None = None) -> str:
        return str(await pool.fetchval(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status,"
            " parent_execution_id) VALUES ($1, $2, $3, $4, $5) RETURNING id::text",
            workflow_id, trigger, "workflow" if parent else "manual", status, parent))

    waiting = await run("WAITING", None, waiting_trigger)
    child = await run("WAITING", waiting)
    grandchild = await run("NEW", child)
    running_previous = await run("RUNNING", None, running_trigger)
    running_child = await run("WAITING", running_previous)
    for execution_id in (waiting, child):
        await pool.execute(
            "INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt)"
            " VALUES ($1, 'hold', 'wait', 'WAITING', 1)", execution_id)
    ids = [waiting, child, grandchild, running_previous, running_child]

    async def states() -> dict[str, tuple[str, str | None]] | None:
        rows = await pool.fetch("SELECT id::text, status, error_message FROM workflow_executions"
                                " WHERE id = ANY($1::uuid[])", ids)
        found = {r["id"]: (r["status"], r["error_message"]) for r in rows}
        return found if found[running_child][0] == "CANCELED" else None

    async with running(pool, dsn):
        ended = await wait_for(states)
    assert ended == {
        waiting: ("CANCELED", "canceled by a newer run (overlap policy cancel_previous)"),
        child: ("CANCELED", "canceled with its parent run"),
        grandchild: ("CANCELED", "canceled with its parent run"),
        # Flagged: its executor cancels it.
        running_previous: ("RUNNING", None),
        running_child: ("CANCELED", "canceled with its parent run"),
    }
    nodes = await pool.fetch("SELECT execution_id::text, status, error_message"
                             " FROM node_executions ORDER BY execution_id = $1 DESC", waiting)
    assert [tuple(n) for n in nodes] == [
        (waiting, "CANCELED", "canceled by a newer run (overlap policy cancel_previous)"),
        (child, "CANCELED", "canceled with its parent run"),
    ]


async def test_a_cancel_of_children_held_by_a_lock_is_bounded_and_logged(
    pool: Pool, dsn: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instant's write waits for the cancel of the canceled runs' children: a lock on a
    child must not hold it past the bound, and the slot is written all the same."""
    from tests.helpers import wait_for
    from triggerd.scheduler import service

    monkeypatch.setattr(service, "CANCEL_CHILDREN_TIMEOUT", 0.3)
    workflow_id = await make_workflow(pool)
    trigger = await make_trigger(pool, workflow_id, "cp", {"cron": EVERY_SECOND,
                                                           "overlap": "cancel_previous"})
    previous = await pool.fetchval(
        "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, status)"
        " VALUES ($1, $2, 'manual', 'RUNNING') RETURNING id::text", workflow_id, trigger)
    child = await pool.fetchval(
        "INSERT INTO workflow_executions (workflow_id, trigger_type, status,"
        " parent_execution_id) VALUES ($1, 'workflow', 'WAITING', $2) RETURNING id::text",
        workflow_id, previous)
    locker = await pool.acquire()
    transaction = locker.transaction()
    await transaction.start()
    try:
        await locker.execute("SELECT 1 FROM workflow_executions WHERE id = $1 FOR UPDATE",
                             child)
        with caplog.at_level(logging.WARNING, logger="triggerd.scheduler.service"):
            async with running(pool, dsn):

                async def logged() -> bool:
                    return any(getattr(r, "event", None) == "cron_cancel_children_failed"
                               for r in caplog.records)

                await wait_for(logged)
        record = next(r for r in caplog.records
                      if getattr(r, "event", None) == "cron_cancel_children_failed")
        assert record.__dict__["executions"] == [previous]
        assert "canceling statement due to statement timeout" in record.__dict__["error"]
    finally:
        await transaction.rollback()
        await pool.release(locker)
    outcomes = [s["outcome"] for s in await slots_of(pool, trigger)]
    assert outcomes and set(outcomes) == {"canceled_previous"}
    assert await pool.fetchval("SELECT status FROM workflow_executions WHERE id = $1",
                               child) == "WAITING"
