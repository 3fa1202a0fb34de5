"""Debounce and concurrency keys of webhook triggers, over real loopback HTTP against a
real PostgreSQL, with real executors: what is stored, which runs start, and in what order.
No wall-clock assertions: order is read from the database's own timestamps."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, final_status
from tests.integration.test_webhooks import make_client
from triggerd.config import load_settings
from triggerd.executor.service import Executor
from triggerd.ids import time_ordered_id
from triggerd.store import keyed
from triggerd.store.executions import release_executions
from triggerd.store.keyed import (
    DebounceKey,
    claim_held,
    drop_closed_windows,
    store_keyed_request,
)
from triggerd.store.webhooks import InboxItem
from triggerd.store.workflows import get_trigger

__all__ = ["make_client"]  # the fixture, shared with test_webhooks


def hook_doc(key: str, nodes: list[dict[str, Any]] | None = None, **trigger: Any) -> dict[str, Any]:
    return {
        "workflows": [
            {
                "key": key,
                "graph": {"nodes": nodes or [{"id": "start", "type": "noop"}]},
                "triggers": [{"name": "hook", "type": "webhook", "path": key, **trigger}],
            }
        ]
    }


@pytest.fixture
async def executors(pool: asyncpg.Pool, dsn: str) -> AsyncIterator[list[Executor]]:
    started: list[Executor] = []
    yield started
    for ex in started:
        await ex.stop()


async def start_executor(pool: asyncpg.Pool, dsn: str, started: list[Executor]) -> Executor:
    settings = load_settings(
        environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms", "TRIGGERD_EXECUTOR_DRAIN": "1s"}
    )
    ex = Executor(pool=pool, dsn=dsn, settings=settings)
    await ex.start()
    started.append(ex)
    return ex


async def requests_of(pool: asyncpg.Pool, trigger: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT r.id::text, r.execution_id::text, r.outcome FROM webhook_requests r"
            " JOIN workflow_triggers t ON t.id = r.trigger_id JOIN workflows w"
            " ON w.id = t.workflow_id WHERE w.key = $1 ORDER BY r.received_at, r.id",
            trigger,
        )
    )


async def test_a_burst_becomes_one_run_with_the_latest_payload(
    pool: asyncpg.Pool, dsn: str, make_client: Any, executors: list[Executor]
) -> None:
    await apply_doc(
        pool, hook_doc("push", debounce={"key": "{{ input.branch }}", "period": "2s"})
    )
    client, _ = await make_client()
    answers = []
    for n in range(5):
        response = await client.post("/hooks/push", json={"branch": "main", "n": n})
        answers.append((response.status, await response.json()))
    other = await client.post("/hooks/push", json={"branch": "dev", "n": 99})
    assert other.status == 202
    other_id = (await other.json())["execution_id"]

    first_status, first = answers[0]
    run_id = first["execution_id"]
    assert first_status == 202 and first == {
        "execution_id": run_id, "status_url": f"/hooks/_executions/{run_id}"
    }
    assert answers[1:] == [(202, {"execution_id": run_id, "debounced": True})] * 4
    assert other_id != run_id
    stored = await requests_of(pool, "push")
    assert [(r["execution_id"], r["outcome"]) for r in stored] == [
        (run_id, "accepted"), *[(run_id, "debounced")] * 4, (other_id, "accepted")
    ]
    assert stored[0]["id"] == run_id  # the request that opened the window shares its id
    pending = await pool.fetchrow(
        "SELECT status, input, not_before, created_at FROM workflow_executions WHERE id = $1",
        run_id,
    )
    assert pending["status"] == "NEW"
    assert pending["input"] == {"branch": "main", "n": 4}
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 2

    await start_executor(pool, dsn, executors)
    row = await final_status(pool, run_id)
    assert row["status"] == "SUCCESS"
    assert row["input"] == {"branch": "main", "n": 4}
    # Not started before the period after the last request had passed.
    assert row["start_time"] >= pending["not_before"]
    assert (await final_status(pool, other_id))["input"] == {"branch": "dev", "n": 99}

    # The window's run started: the next request opens a new window.
    again = await client.post("/hooks/push", json={"branch": "main", "n": 5})
    body = await again.json()
    assert again.status == 202 and "debounced" not in body
    assert body["execution_id"] not in (run_id, other_id)


async def test_max_wait_caps_a_never_ending_burst(pool: asyncpg.Pool) -> None:
    """A fake clock: a request every 0.8 periods for ever; the run's start is pushed back
    with each one until max_wait after the first, and never later."""
    await apply_doc(
        pool,
        hook_doc("noisy", debounce={"key": "all", "period": "10s", "max_wait": "30s"}),
    )
    trigger = await get_trigger(pool, "noisy/hook")
    version_id = await pool.fetchval(
        "SELECT id::text FROM workflow_versions WHERE workflow_id = $1", trigger.workflow_id
    )
    t0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    key = DebounceKey(key="all", period=timedelta(seconds=10), max_wait=timedelta(seconds=30))
    dues = []
    for step in range(8):
        now = t0 + timedelta(seconds=8 * step)
        item = InboxItem(
            id=time_ordered_id(), workflow_id=trigger.workflow_id, version_id=version_id,
            trigger_id=trigger.id, trigger_name="hook", dedupe_key=None, dedupe_ttl=None,
            input_json=f'{{"step": {step}}}', method="POST", path="/hooks/noisy", query={},
            headers={}, body=b"", remote_addr=None, received_at=now,
        )
        result = await store_keyed_request(pool, item, debounce=key, concurrency=None, now=now)
        assert result.debounced == (step > 0)
        dues.append(
            await pool.fetchval(
                "SELECT not_before FROM workflow_executions WHERE id = $1",
                result.result.execution_id,
            )
        )
    seconds = [(due - t0).total_seconds() for due in dues]
    assert seconds == [10, 18, 26, 30, 30, 30, 30, 30]
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    assert await pool.fetchval("SELECT input FROM workflow_executions") == {"step": 7}


async def test_two_replicas_debouncing_one_key_make_one_run(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    await apply_doc(
        pool, hook_doc("race", debounce={"key": "{{ input.k }}", "period": "1m"})
    )
    one, _ = await make_client()
    two, _ = await make_client()
    responses = await asyncio.gather(
        *[(one if n % 2 else two).post("/hooks/race", json={"k": "x", "n": n})
          for n in range(20)]
    )
    bodies = [await r.json() for r in responses]
    assert {r.status for r in responses} == {202}
    runs = {b["execution_id"] for b in bodies}
    assert len(runs) == 1
    assert sum(1 for b in bodies if b.get("debounced")) == 19
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    stored = await requests_of(pool, "race")
    assert sorted(r["outcome"] for r in stored) == ["accepted"] + ["debounced"] * 19
    assert {r["execution_id"] for r in stored} == runs


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end before a start)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda event: (event[0], event[1]))
    now = peak = 0
    for _, change in events:
        now += change
        peak = max(peak, now)
    return peak


WAIT_NODES = [{"id": "pause", "type": "wait", "params": {"duration": "300ms"}}]


async def test_concurrency_limit_one_runs_one_at_a_time_in_order(
    pool: asyncpg.Pool, dsn: str, make_client: Any, executors: list[Executor]
) -> None:
    await apply_doc(
        pool,
        hook_doc("deploy", WAIT_NODES, concurrency={"key": "{{ query.env }}", "limit": 1}),
    )
    client, _ = await make_client()
    ids = []
    for n in range(3):
        response = await client.post("/hooks/deploy?env=prod", json={"n": n})
        assert response.status == 202
        ids.append((await response.json())["execution_id"])
    other = await client.post("/hooks/deploy?env=staging", json={"n": 9})
    other_id = (await other.json())["execution_id"]
    await start_executor(pool, dsn, executors)
    rows = [await final_status(pool, i) for i in ids]
    await final_status(pool, other_id)
    assert [r["status"] for r in rows] == ["SUCCESS"] * 3
    assert [r["concurrency_key"] for r in rows] == ["prod"] * 3
    # One after the other, in the order they came: each started after the previous ended.
    for before, after in itertools.pairwise(rows):
        assert after["start_time"] >= before["end_time"]
    # Another key is not held back by this one.
    staging = await pool.fetchrow(
        "SELECT start_time FROM workflow_executions WHERE id = $1", other_id
    )
    assert staging["start_time"] < rows[2]["start_time"]


async def test_two_executors_never_exceed_the_limit(
    pool: asyncpg.Pool, dsn: str, make_client: Any, executors: list[Executor]
) -> None:
    await apply_doc(
        pool,
        hook_doc("shared", WAIT_NODES, concurrency={"key": "{{ input.env }}", "limit": 2}),
    )
    client, _ = await make_client()
    ids = []
    for n in range(16):
        response = await client.post("/hooks/shared", json={"env": f"e{n % 2}", "n": n})
        ids.append((await response.json())["execution_id"])
    for _ in range(2):
        await start_executor(pool, dsn, executors)
    for i in ids:
        assert (await final_status(pool, i, timeout=60))["status"] == "SUCCESS"
    for env in ("e0", "e1"):
        rows = await pool.fetch(
            "SELECT start_time, end_time FROM workflow_executions"
            " WHERE concurrency_key = $1",
            env,
        )
        assert len(rows) == 8
        assert most_at_once([(r["start_time"], r["end_time"]) for r in rows]) <= 2
    assert sum(ex.stats["started"] for ex in executors) >= 16


async def test_a_request_whose_key_cannot_be_computed_is_refused(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    await apply_doc(
        pool, hook_doc("strict", debounce={"key": "{{ input.branch }}", "period": "1s"})
    )
    client, _ = await make_client()
    response = await client.post("/hooks/strict", json={"ref": "main"})
    assert response.status == 422
    assert await response.json() == {
        "error": "key_invalid",
        "message": "the debounce key of this request could not be computed: expression"
        " '{{ input.branch }}': undefined: 'dict object' has no attribute 'branch'",
    }
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == 0


async def test_a_computed_number_too_long_to_write_is_no_internal_error(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A key or correlation value the sender's numbers make longer than JSON text may hold
    (Python's 4,300 digits) is a key that cannot be computed (422) and a correlation value
    left out: both were a ValueError past the expression's errors, answered 500."""
    square = "{{ input.n * input.n }}"
    await apply_doc(pool, hook_doc("sq", concurrency={"key": square, "limit": 1}))
    await apply_doc(pool, hook_doc("corr", correlation={"session_id": square}))
    client, _ = await make_client()
    number = int("9" * 3000)  # within the body's limit; its square is not
    response = await client.post("/hooks/sq", json={"n": number})
    assert response.status == 422, await response.text()
    assert await response.json() == {
        "error": "key_invalid",
        "message": "the concurrency key of this request could not be computed: expression"
        " '{{ input.n * input.n }}': a number with more than 4300 digits",
    }
    response = await client.post("/hooks/corr", json={"n": number})
    assert response.status == 202, await response.text()
    assert await pool.fetchval("SELECT session_id FROM workflow_executions") is None
    assert await pool.fetchval("SELECT count(*) FROM webhook_requests") == 1


async def test_closed_windows_are_dropped_pending_ones_kept(pool: asyncpg.Pool) -> None:
    await apply_doc(pool, hook_doc("old", debounce={"key": "{{ input.k }}", "period": "1s"}))
    trigger = await get_trigger(pool, "old/hook")
    version_id = await pool.fetchval(
        "SELECT id::text FROM workflow_versions WHERE workflow_id = $1", trigger.workflow_id
    )
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    key = DebounceKey(key="", period=timedelta(seconds=1), max_wait=timedelta(seconds=10))
    runs = {}
    for k in ("done", "pending"):
        item = InboxItem(
            id=time_ordered_id(), workflow_id=trigger.workflow_id, version_id=version_id,
            trigger_id=trigger.id, trigger_name="hook", dedupe_key=None, dedupe_ttl=None,
            input_json="{}", method="POST", path="/hooks/old", query={}, headers={},
            body=b"", remote_addr=None, received_at=long_ago,
        )
        stored = await store_keyed_request(
            pool, item, debounce=DebounceKey(key=k, period=key.period, max_wait=key.max_wait),
            concurrency=None, now=long_ago,
        )
        runs[k] = stored.result.execution_id
    await pool.execute(
        "UPDATE workflow_executions SET status = 'SUCCESS', end_time = now() WHERE id = $1",
        runs["done"],
    )
    async with pool.acquire() as conn:
        assert await drop_closed_windows(conn) == 1
        assert await drop_closed_windows(conn) == 0
    assert [r["key"] for r in await pool.fetch("SELECT key FROM debounce_windows")] == [
        "pending"
    ]


async def test_a_replay_waits_for_its_concurrency_key_like_any_run(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A replay carried no key: it started beside the live run of its key (two deploys of
    one environment at once)."""
    from datetime import timedelta

    from triggerd.operations.actor import cli_actor
    from triggerd.operations.webhooks import replay
    from triggerd.store.keyed import claim_held

    await apply_doc(
        pool,
        hook_doc("deploy", WAIT_NODES, concurrency={"key": "{{ query.env }}", "limit": 1}),
    )
    client, _ = await make_client()
    response = await client.post("/hooks/deploy?env=prod", json={"n": 1})
    live = (await response.json())["execution_id"]
    async with pool.acquire() as conn:
        assert [c.id for c in (await claim_held(conn, "ex", timedelta(minutes=1), 10)
                               ).claimed] == [live]
    replayed = await replay(pool, cli_actor(), live)
    row = await pool.fetchrow("SELECT concurrency_key, concurrency_limit, status FROM"
                              " workflow_executions WHERE id = $1", replayed.execution_id)
    assert tuple(row) == ("prod", 1, "NEW")
    async with pool.acquire() as conn:
        assert (await claim_held(conn, "ex", timedelta(minutes=1), 10)).claimed == []
        await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1",
                           live)
        assert [c.id for c in (await claim_held(conn, "ex", timedelta(minutes=1), 10)
                               ).claimed] == [replayed.execution_id]


async def test_a_held_claim_spends_the_wake_up_a_handed_back_run_carried(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """Every claim clears resume_at but the claim of held runs did not: a run woken while
    it ran, then handed back (a drain), kept the past wake-up, and its next park was
    woken at once for nothing."""
    from datetime import timedelta

    from triggerd.store.keyed import claim_held

    await apply_doc(
        pool,
        hook_doc("deploy", WAIT_NODES, concurrency={"key": "{{ query.env }}", "limit": 1}),
    )
    client, _ = await make_client()
    response = await client.post("/hooks/deploy?env=prod", json={"n": 1})
    run = (await response.json())["execution_id"]
    await pool.execute("UPDATE workflow_executions SET resume_at = now() - interval '1 minute'"
                       " WHERE id = $1", run)
    async with pool.acquire() as conn:
        assert [c.id for c in (await claim_held(conn, "ex", timedelta(minutes=1), 10)
                               ).claimed] == [run]
    assert await pool.fetchval("SELECT resume_at FROM workflow_executions WHERE id = $1",
                               run) is None

async def test_a_folded_requests_redelivery_is_a_duplicate_of_the_windows_run(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A's request opens the window, B's folds into its run. Once the run has started,
    B's redelivery opened a new window and a second run with B's payload: only the run's
    own delivery id (A's) was kept."""
    await apply_doc(pool, hook_doc("push", debounce={"key": "{{ input.ref }}",
                                                     "period": "1h"},
                                   dedupe={"header": "X-Delivery"}))
    client, _ = await make_client()

    async def post(delivery: str, n: int) -> tuple[int, dict[str, Any]]:
        response = await client.post("/hooks/push", json={"ref": "main", "n": n},
                                     headers={"X-Delivery": delivery})
        return response.status, await response.json()

    status, first = await post("A", 1)
    run = first["execution_id"]
    assert (await post("B", 2))[1] == {"execution_id": run, "debounced": True}
    # The window's run starts: later requests of the key open a new window...
    await pool.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1", run)
    # ... but B's redelivery (and A's) go to the run they went to.
    for delivery in ("B", "A"):
        status, again = await post(delivery, 2)
        assert (status, again["execution_id"], again.get("duplicate")) == (200, run, True)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    # Each redelivery is counted on its first delivery's row (they stayed at 1).
    counts = await pool.fetch("SELECT id::text AS id, delivery_count, last_seen_at"
                              " FROM webhook_requests ORDER BY received_at")
    assert [(r["id"] == run, r["delivery_count"], r["last_seen_at"] is not None)
            for r in counts] == [(True, 2, True), (False, 2, True)]
    fresh = await post("C", 3)
    assert fresh[0] == 202 and fresh[1]["execution_id"] != run


@pytest.mark.parametrize("after", [
    {},  # a plain trigger, through the group commit
    {"concurrency": {"key": "{{ input.ref }}", "limit": 1}},
])
async def test_a_folded_requests_redelivery_after_debounce_was_removed_is_a_duplicate(
    pool: asyncpg.Pool, make_client: Any, after: dict[str, Any]
) -> None:
    """B was folded into A's window; then the trigger lost its debounce. B's redelivery
    started a second run: without a debounce, only runs' delivery ids were looked up."""
    delivery: dict[str, Any] = {"dedupe": {"header": "X-Delivery"}}
    await apply_doc(pool, hook_doc("push", debounce={"key": "{{ input.ref }}",
                                                     "period": "1h"}, **delivery))
    client, ingress = await make_client()

    async def post(key: str, n: int) -> tuple[int, dict[str, Any]]:
        response = await client.post("/hooks/push", json={"ref": "main", "n": n},
                                     headers={"X-Delivery": key})
        return response.status, await response.json()

    run = (await post("A", 1))[1]["execution_id"]
    assert (await post("B", 2))[1] == {"execution_id": run, "debounced": True}
    await apply_doc(pool, hook_doc("push", **delivery, **after))
    await ingress.reload()

    status, again = await post("B", 2)
    assert (status, again["execution_id"], again.get("duplicate")) == (200, run, True)
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions") == 1
    counts = await pool.fetch("SELECT id::text AS id, delivery_count FROM webhook_requests"
                              " ORDER BY received_at")
    assert [(r["id"] == run, r["delivery_count"]) for r in counts] == [(True, 1), (False, 2)]
    # A new delivery id still starts a run of its own.
    fresh = await post("C", 3)
    assert fresh[0] == 202 and fresh[1]["execution_id"] != run


@pytest.mark.parametrize("keyed", [
    {"concurrency": {"key": "{{ input.ref }}", "limit": 1}},
    {},  # a plain trigger, through the group commit
])
async def test_a_delivery_id_past_its_ttl_is_a_new_delivery(
    pool: asyncpg.Pool, make_client: Any, keyed: dict[str, Any]
) -> None:
    """The key was only forgotten by the retention pass (every minute or so): until then a
    redelivery past the ttl was answered as a duplicate of the old run."""
    await apply_doc(pool, hook_doc("ttl", dedupe={"header": "X-Delivery", "ttl": "1h"},
                                   **keyed))
    client, _ = await make_client()

    async def post() -> tuple[int, dict[str, Any]]:
        response = await client.post("/hooks/ttl", json={"ref": "main"},
                                     headers={"X-Delivery": "D"})
        return response.status, await response.json()

    status, first = await post()
    assert status == 202
    again = await post()
    assert again == (200, {"execution_id": first["execution_id"], "duplicate": True,
                           "status_url": again[1]["status_url"]})
    await pool.execute("UPDATE workflow_executions SET dedupe_expires_at = now()"
                       " - interval '1 second'")
    status, later = await post()
    assert status == 202 and later["execution_id"] != first["execution_id"], later
    keys = await pool.fetch("SELECT id::text AS id, dedupe_key FROM workflow_executions"
                            " ORDER BY created_at")
    assert [(r["id"], r["dedupe_key"]) for r in keys] == [
        (first["execution_id"], None), (later["execution_id"], "webhook:D")]
    status, duplicate = await post()
    assert (status, duplicate["execution_id"]) == (200, later["execution_id"])


async def test_a_replay_whose_concurrency_key_cannot_be_computed_is_refused(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """The trigger's key now reads a field the stored request lacks: 409 with the reason,
    and no run (a replay without its key would start beside the key's runs)."""
    from triggerd.errors import Conflict
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.webhooks import replay

    await apply_doc(
        pool,
        hook_doc("deploy", WAIT_NODES, concurrency={"key": "{{ query.env }}", "limit": 1}),
    )
    client, _ = await make_client()
    response = await client.post("/hooks/deploy?env=prod", json={"n": 1})
    stored = (await response.json())["execution_id"]
    await apply_doc(
        pool,
        hook_doc("deploy", WAIT_NODES, concurrency={"key": "{{ input.env }}", "limit": 1}),
    )
    with pytest.raises(Conflict) as refused:
        await replay(pool, cli_actor(), stored)
    assert str(refused.value).startswith(
        f"webhook request {stored} cannot be replayed: its concurrency key could not be"
        " computed: ")
    assert await pool.fetchval("SELECT count(*) FROM workflow_executions"
                               " WHERE replay_of IS NOT NULL") == 0


async def test_a_folded_request_moves_the_run_to_its_own_concurrency_key(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """Debounce and concurrency together: the run takes the latest request's payload, so
    it waits for that request's key (it kept the first one's: a staging deploy held, and
    counted, as prod, beside another staging deploy)."""
    await apply_doc(pool, hook_doc(
        "deploy", WAIT_NODES, debounce={"key": "{{ input.branch }}", "period": "1h"},
        concurrency={"key": "{{ input.env }}", "limit": 1}))
    client, _ = await make_client()
    first = await client.post("/hooks/deploy", json={"branch": "main", "env": "prod"})
    run = (await first.json())["execution_id"]
    folded = await client.post("/hooks/deploy", json={"branch": "main", "env": "staging"})
    assert await folded.json() == {"execution_id": run, "debounced": True}
    row = await pool.fetchrow("SELECT input, concurrency_key, concurrency_limit"
                              " FROM workflow_executions WHERE id = $1", run)
    assert (row["input"]["env"], row["concurrency_key"], row["concurrency_limit"]) == (
        "staging", "staging", 1)

    # Due now, with another staging run started: it waits for staging, not for prod.
    other = await client.post("/hooks/deploy", json={"branch": "dev", "env": "staging"})
    other_id = (await other.json())["execution_id"]
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING', not_before = NULL"
                       " WHERE id = $1", other_id)
    await pool.execute("UPDATE workflow_executions SET not_before = now() WHERE id = $1", run)
    async with pool.acquire() as conn:
        held = await claim_held(conn, "test", timedelta(minutes=1), 10)
    assert held.claimed == []


async def test_a_held_claim_skips_a_run_whose_key_changed_after_it_was_read(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """The claim locks the keys it read, then claims: a run moved to another key in
    between (a folded request) is left for a claim under that key's lock."""
    await apply_doc(pool, hook_doc("deploy", WAIT_NODES,
                                   concurrency={"key": "{{ input.env }}", "limit": 1}))
    client, _ = await make_client()
    response = await client.post("/hooks/deploy", json={"env": "prod"})
    run = (await response.json())["execution_id"]
    async with pool.acquire() as conn:
        stale = await conn.fetch(keyed._CLAIM_HELD, "test", 60_000, [run], ["staging"])
        current = await conn.fetch(keyed._CLAIM_HELD, "test", 60_000, [run], ["prod"])
    assert stale == []
    assert [str(r["id"]) for r in current] == [run]


async def test_a_retry_waits_for_its_concurrency_key_like_the_run_it_retries(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A retried deploy of prod started at once beside the prod deploy running (the retry
    had no key, and the executor's plain claim took it)."""
    from triggerd.operations.actor import cli_actor
    from triggerd.operations.executions import retry

    await apply_doc(pool, hook_doc("deploy", WAIT_NODES,
                                   concurrency={"key": "{{ query.env }}", "limit": 1}))
    client, _ = await make_client()
    failed, running = [
        (await (await client.post("/hooks/deploy?env=prod", json={"n": n})).json())[
            "execution_id"]
        for n in range(2)
    ]
    await pool.execute("UPDATE workflow_executions SET status = 'ERROR' WHERE id = $1", failed)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING' WHERE id = $1",
                       running)
    again = await retry(pool, cli_actor(), failed)
    row = await pool.fetchrow("SELECT status, concurrency_key, concurrency_limit"
                              " FROM workflow_executions WHERE id = $1", again)
    assert (row["status"], row["concurrency_key"], row["concurrency_limit"]) == (
        "NEW", "prod", 1)
    async with pool.acquire() as conn:
        assert (await claim_held(conn, "test", timedelta(minutes=1), 10)).claimed == []
        await conn.execute("UPDATE workflow_executions SET status = 'SUCCESS' WHERE id = $1",
                           running)
        claimed = (await claim_held(conn, "test", timedelta(minutes=1), 10)).claimed
    assert [c.id for c in claimed] == [again]


async def test_a_folded_request_moves_the_run_to_the_version_it_was_checked_against(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A request folded after an apply was checked against the new version's schema, but
    the pending run kept the old version: the old graph with input its schema never saw."""
    debounce = {"key": "{{ input.branch }}", "period": "1h"}
    await apply_doc(pool, hook_doc("push", debounce=debounce))
    client, ingress = await make_client()
    first = await client.post("/hooks/push", json={"branch": "main"})
    run = (await first.json())["execution_id"]
    second = hook_doc("push", [{"id": "start", "type": "noop"}, {"id": "next", "type": "noop"}],
                      debounce=debounce)
    second["workflows"][0]["graph"]["edges"] = [{"from": "start", "to": "next"}]
    await apply_doc(pool, second)
    await ingress.reload()
    folded = await client.post("/hooks/push", json={"branch": "main", "n": 2})
    assert await folded.json() == {"execution_id": run, "debounced": True}
    row = await pool.fetchrow(
        "SELECT v.version, e.input FROM workflow_executions e"
        " JOIN workflow_versions v ON v.id = e.workflow_version_id WHERE e.id = $1", run)
    assert row is not None and (row["version"], row["input"]["n"]) == (2, 2)


async def test_a_request_does_not_fold_into_a_run_started_and_handed_back(
    pool: asyncpg.Pool, make_client: Any
) -> None:
    """A graceful stop hands a started run back (NEW again): a request of its key then
    opens a new window. It was folded into the started run, replacing the input that
    run had begun to work on (its node rows read the first request's), and the request
    never had a run of its own."""
    await apply_doc(pool, hook_doc("push", debounce={"key": "{{ input.branch }}",
                                                     "period": "1h"}))
    client, _ = await make_client()
    first = await client.post("/hooks/push", json={"branch": "main", "n": 1})
    run = (await first.json())["execution_id"]
    await pool.execute("UPDATE workflow_executions SET not_before = now() WHERE id = $1", run)
    async with pool.acquire() as conn:
        assert [c.id for c in (await claim_held(conn, "ex", timedelta(minutes=1), 10)
                               ).claimed] == [run]
    assert await release_executions(pool, "ex", [run]) == 1
    handed = await pool.fetchrow(
        "SELECT status, attempt, input FROM workflow_executions WHERE id = $1", run)
    assert (handed["status"], handed["attempt"]) == ("NEW", 1)

    second = await client.post("/hooks/push", json={"branch": "main", "n": 2})
    body = await second.json()
    assert second.status == 202 and "debounced" not in body
    assert body["execution_id"] != run
    runs = await pool.fetch("SELECT id::text, input, attempt FROM workflow_executions"
                            " ORDER BY created_at, id")
    assert [(r["id"], r["input"], r["attempt"]) for r in runs] == [
        (run, {"branch": "main", "n": 1}, 1), (body["execution_id"], {"branch": "main", "n": 2}, 0)]
    stored = await requests_of(pool, "push")
    assert [(r["execution_id"], r["outcome"]) for r in stored] == [
        (run, "accepted"), (body["execution_id"], "accepted")]
