"""The group commit: batching, answers only after the commit, failure isolation, flush on
stop. Most tests use a stand-in store to control timing; one runs the real statement."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from tests.integration.test_webhooks import apply, hook, workflow
from triggerd.errors import DatabaseUnavailable
from triggerd.store.webhooks import GONE, InboxItem, InboxResult, InboxWriter
from triggerd.webhooks.group_commit import GroupCommit, QueueFull, ShuttingDown, TriggerGone

WHEN = datetime(2024, 5, 1, tzinfo=UTC)


def item(n: int, *, trigger_id: str = "t", workflow_id: str = "w", version_id: str = "v",
         key: str | None = None, trigger_name: str = "h") -> InboxItem:
    return InboxItem(
        id=str(uuid.uuid4()),
        workflow_id=workflow_id,
        version_id=version_id,
        trigger_id=trigger_id,
        trigger_name=trigger_name,
        dedupe_key=key,
        dedupe_ttl=None,
        input_json=json.dumps({"n": n}),
        method="POST",
        path="/hooks/x",
        query={},
        headers={},
        body=b"%d" % n,
        remote_addr=None,
        received_at=WHEN,
    )


class FakeStore:
    """Records batches; each write waits for ``release`` so tests see what is pending."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_with: BaseException | None = None
        self.poison: set[int] = set()
        self.gone: set[int] = set()  # items whose trigger was deleted meanwhile
        self.opened = 0
        self.closed = 0

    def open(self) -> FakeStore:
        self.opened += 1
        return self

    async def close(self) -> None:
        self.closed += 1

    async def store(self, items: Sequence[InboxItem]) -> list[InboxResult | None]:
        numbers = [json.loads(i.input_json)["n"] for i in items]
        self.batches.append(numbers)
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if self.poison & set(numbers):
            raise ValueError("bad row")
        return [
            GONE if n in self.gone else InboxResult(execution_id=i.id, created=True)
            for n, i in zip(numbers, items, strict=True)
        ]


async def test_concurrent_submissions_share_batches_and_wait_for_the_commit() -> None:
    store = FakeStore()
    store.release.clear()
    commit = GroupCommit(store.open, max_batch=4)
    commit.start()
    tasks = [asyncio.create_task(commit.submit(item(n))) for n in range(10)]
    await asyncio.sleep(0.01)
    assert store.batches == [[0, 1, 2, 3]]  # first batch in flight, the rest queued
    assert not any(t.done() for t in tasks)  # nobody is answered before the commit
    assert commit.queued == 6
    store.release.set()
    results = await asyncio.gather(*tasks)
    assert store.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(r.created for r in results)
    assert commit.stats.batches == 3
    assert commit.stats.rows == 10
    assert commit.stats.largest_batch == 4
    await commit.stop()


async def test_unavailable_database_fails_the_whole_batch_retryably() -> None:
    store = FakeStore()
    store.fail_with = DatabaseUnavailable("gone")
    commit = GroupCommit(store.open)
    commit.start()
    results = await asyncio.gather(*(commit.submit(item(n)) for n in range(3)),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [DatabaseUnavailable] * 3
    assert commit.stats.failures == 1
    store.fail_with = None
    assert (await commit.submit(item(9))).created  # and it recovers
    await commit.stop()


async def test_a_poisoned_item_does_not_fail_its_neighbours() -> None:
    store = FakeStore()
    store.poison = {1}
    store.release.clear()
    commit = GroupCommit(store.open)
    commit.start()
    tasks = [asyncio.create_task(commit.submit(item(n))) for n in range(3)]
    await asyncio.sleep(0.01)
    store.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], ValueError)
    assert isinstance(results[0], InboxResult)
    assert isinstance(results[2], InboxResult)
    assert store.batches == [[0, 1, 2], [0], [1], [2]]
    await commit.stop()


async def test_stop_flushes_everything_queued_then_refuses() -> None:
    store = FakeStore()
    store.release.clear()
    commit = GroupCommit(store.open, max_batch=2)
    commit.start()
    tasks = [asyncio.create_task(commit.submit(item(n))) for n in range(5)]
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(commit.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()
    store.release.set()
    await stopping
    assert [t.result().created for t in tasks] == [True] * 5  # all written before stop returned
    assert (store.opened, store.closed) == (1, 1)
    with pytest.raises(ShuttingDown):
        await commit.submit(item(99))


async def test_a_full_queue_refuses_instead_of_growing() -> None:
    store = FakeStore()
    store.release.clear()
    commit = GroupCommit(store.open, max_batch=1, max_queue=2)
    commit.start()
    tasks = [asyncio.create_task(commit.submit(item(0)))]
    await asyncio.sleep(0.01)  # item 0 in flight
    tasks += [asyncio.create_task(commit.submit(item(n))) for n in (1, 2)]
    await asyncio.sleep(0.01)  # 1 and 2 queued
    assert commit.queued == 2
    with pytest.raises(QueueFull):
        await commit.submit(item(3))
    store.release.set()
    await asyncio.gather(*tasks)
    await commit.stop()


async def test_real_batches_store_rows_and_resolve_duplicates(pool: asyncpg.Pool) -> None:
    await apply(pool, workflow("w", hook("h", "gc")))
    ids = await pool.fetchrow(
        "SELECT t.id::text AS trigger, t.workflow_id::text AS workflow, v.id::text AS version"
        " FROM workflow_triggers t JOIN workflow_versions v ON v.workflow_id = t.workflow_id"
    )
    commit = GroupCommit(lambda: InboxWriter(pool), writers=2)
    commit.start()
    items = [item(n, trigger_id=ids["trigger"], workflow_id=ids["workflow"],
                  version_id=ids["version"], key=f"webhook:k{n % 5}") for n in range(40)]
    results = await asyncio.gather(*(commit.submit(i) for i in items))
    await commit.stop()
    assert sum(r.created for r in results) == 5
    winners = {r.execution_id for r in results}
    assert len(winners) == 5
    assert commit.stats.batches < 40  # requests really shared statements
    stored = await pool.fetch(
        "SELECT e.id::text AS id, e.dedupe_key, r.body FROM workflow_executions e"
        " JOIN webhook_requests r ON r.execution_id = e.id"
    )
    assert {r["id"] for r in stored} == winners
    by_key = {r["dedupe_key"]: r["id"] for r in stored}
    for i, result in zip(items, results, strict=True):
        assert result.execution_id == by_key[i.dedupe_key]


async def test_real_statement_refusing_one_item_stores_the_others(pool: asyncpg.Pool) -> None:
    await apply(pool, workflow("w", hook("h", "gc")))
    ids = await pool.fetchrow(
        "SELECT t.id::text AS trigger, t.workflow_id::text AS workflow, v.id::text AS version"
        " FROM workflow_triggers t JOIN workflow_versions v ON v.workflow_id = t.workflow_id"
    )
    writer = InboxWriter(pool)
    commit = GroupCommit(lambda: writer)
    commit.start()
    good = [item(n, trigger_id=ids["trigger"], workflow_id=ids["workflow"],
                 version_id=ids["version"]) for n in range(3)]
    bad = good[1]._replace(input_json="{not json")
    results = await asyncio.gather(*(commit.submit(i) for i in (good[0], bad, good[2])),
                                   return_exceptions=True)
    await commit.stop()
    assert isinstance(results[0], InboxResult)
    assert isinstance(results[1], asyncpg.InvalidTextRepresentationError)
    assert isinstance(results[2], InboxResult)
    # One statement for the three, refused; then one per item.
    assert (commit.stats.batches, commit.stats.failures) == (4, 2)
    stored = {r["id"] for r in await pool.fetch("SELECT id::text FROM workflow_executions")}
    assert stored == {good[0].id, good[2].id}


async def test_an_item_whose_trigger_is_gone_fails_alone_and_is_not_retried() -> None:
    store = FakeStore()
    store.gone = {1}
    commit = GroupCommit(store.open, max_batch=10)
    commit.start()
    try:
        results = await asyncio.gather(
            *(commit.submit(item(n)) for n in range(3)), return_exceptions=True
        )
    finally:
        await commit.stop()
    assert [type(r).__name__ for r in results] == ["InboxResult", "TriggerGone", "InboxResult"]
    assert isinstance(results[1], TriggerGone)
    assert str(results[1]) == "the trigger was changed while the request was being stored"
    assert store.batches == [[0, 1, 2]]  # written once, not retried


async def test_a_connection_lost_between_batches_is_replaced_not_in_doubt(
    pool: asyncpg.Pool,
) -> None:
    # The writer keeps its connection between batches. When the server dropped it (a
    # restart), asyncpg gave it back to the pool, and the next batch failed before sending
    # anything: answered 503 "may or may not have been stored" on a healthy database.
    from tests.helpers import wait_for
    from triggerd.store import webhooks as inbox

    await apply(pool, workflow("w", hook("h", "gc")))
    ids = await pool.fetchrow(
        "SELECT t.id::text AS trigger, t.workflow_id::text AS workflow, v.id::text AS version"
        " FROM workflow_triggers t JOIN workflow_versions v ON v.workflow_id = t.workflow_id"
    )
    first, second = (item(n, trigger_id=ids["trigger"], workflow_id=ids["workflow"],
                          version_id=ids["version"]) for n in range(2))
    writer = InboxWriter(pool)
    try:
        assert [r.created for r in await writer.store([first]) if r] == [True]
        held = writer._conn
        assert held is not None
        await pool.execute("SELECT pg_terminate_backend($1)", held.get_server_pid())

        async def noticed() -> bool:
            return not inbox._usable(held)

        await wait_for(noticed)
        assert [r.created for r in await writer.store([second]) if r] == [True]
    finally:
        await writer.close()
    stored = {r["id"] for r in await pool.fetch("SELECT id::text FROM workflow_executions")}
    assert stored == {first.id, second.id}


async def _deliveries(pool: asyncpg.Pool, *outcomes: str) -> list[InboxItem]:
    """Deliveries of one id, one per outcome, received in this order, as the ingress
    makes them for a trigger with a filter (``filtering``; the store reads no trigger
    settings): an accepted one passed the filter."""
    await apply(pool, workflow("w", hook("h", "gc")))
    ids = await pool.fetchrow(
        "SELECT t.id::text AS trigger, t.workflow_id::text AS workflow, v.id::text AS version"
        " FROM workflow_triggers t JOIN workflow_versions v ON v.workflow_id = t.workflow_id"
    )
    return [
        item(n, trigger_id=ids["trigger"], workflow_id=ids["workflow"],
             version_id=ids["version"], key="webhook:d-1")._replace(
                 outcome=outcome, filtering=True)
        for n, outcome in enumerate(outcomes)
    ]


async def _concurrently(pool: asyncpg.Pool, first: InboxItem, second: InboxItem,
                        ) -> list[list[InboxResult | None]]:
    """Two writers (two replicas behind one balancer) each storing one item; the first's
    statement starts first, and both start before either commits."""
    from tests.helpers import wait_for, wait_until_blocked

    writers = [InboxWriter(pool), InboxWriter(pool)]

    async def waiting(n: int) -> bool:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()")
        return count == n

    try:
        async with pool.acquire() as holder:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT 1 FROM workflow_triggers FOR UPDATE")
            storing = [asyncio.create_task(writers[0].store([first]))]
            await wait_until_blocked(pool, "WITH d AS")
            storing.append(asyncio.create_task(writers[1].store([second])))
            await wait_for(lambda: waiting(2))
            await transaction.commit()
            return [await task for task in storing]
    finally:
        for writer in writers:
            await writer.close()


async def test_filtered_deliveries_of_one_id_in_concurrent_statements_store_one_row(
    pool: asyncpg.Pool,
) -> None:
    """Two filtered deliveries of one id, by two writers: both statements found no
    earlier row (neither sees the other's before its commit), and both were stored. The
    delivery id's lock orders them: the second sees the first's row and is its
    duplicate."""
    first, second = await _deliveries(pool, "filtered", "filtered")
    results = await _concurrently(pool, first, second)
    assert results == [[InboxResult(execution_id="", created=True)],
                       [InboxResult(execution_id="", created=False)]]
    rows = await pool.fetch("SELECT id::text AS id, delivery_count FROM webhook_requests")
    assert [tuple(r) for r in rows] == [(first.id, 2)]


async def test_a_filtered_delivery_behind_an_accepted_ones_statement_is_its_duplicate(
    pool: asyncpg.Pool,
) -> None:
    """The accepted delivery's statement runs first, the filtered one's meanwhile: the
    filtered one found no run of its id (not committed yet) and was stored next to it.
    The id's lock, taken for an accepted request too when its trigger has a filter, makes
    the second statement wait for the first: it sees the run and is its duplicate."""
    accepted, filtered = await _deliveries(pool, "accepted", "filtered")
    results = await _concurrently(pool, accepted, filtered)
    assert results == [[InboxResult(execution_id=accepted.id, created=True)],
                       [InboxResult(execution_id=accepted.id, created=False)]]
    rows = await pool.fetch("SELECT id::text AS id, outcome, delivery_count"
                            " FROM webhook_requests")
    assert [tuple(r) for r in rows] == [(accepted.id, "accepted", 2)]


async def test_an_accepted_delivery_behind_a_filtered_ones_statement_runs(
    pool: asyncpg.Pool,
) -> None:
    """The filtered delivery's statement first: it is stored as filtered, and the
    accepted one after it runs (a filtered row does not stop a delivery the filter
    matches), as one after the other."""
    filtered, accepted = await _deliveries(pool, "filtered", "accepted")
    results = await _concurrently(pool, filtered, accepted)
    assert results == [[InboxResult(execution_id="", created=True)],
                       [InboxResult(execution_id=accepted.id, created=True)]]
    rows = await pool.fetch("SELECT id::text AS id, outcome, delivery_count"
                            " FROM webhook_requests")
    assert sorted(tuple(r) for r in rows) == sorted(
        [(filtered.id, "filtered", 1), (accepted.id, "accepted", 1)])


async def test_a_filtered_delivery_behind_a_keyed_accepted_one_is_its_duplicate(
    pool: asyncpg.Pool,
) -> None:
    """An accepted request of a trigger with a concurrency key (or a debounce) is stored
    in a transaction of its own (store/keyed.py), not by the group commit: it takes its
    delivery id's lock too, so a filtered delivery of the id stored meanwhile waits for it
    and is its run's duplicate instead of a filtered row next to the run."""
    from tests.helpers import wait_for
    from triggerd.store import keyed
    from triggerd.store.keyed import ConcurrencyKey

    accepted, filtered = await _deliveries(pool, "accepted", "filtered")
    writer = InboxWriter(pool)
    try:
        async with pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            kept = await keyed._store(conn, accepted, None, ConcurrencyKey(key="k", limit=1),
                                      None)
            storing = asyncio.create_task(writer.store([filtered]))

            async def waits_or_done() -> bool:
                waiting: int = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                    " AND datname = current_database()")
                return storing.done() or waiting == 1

            await wait_for(waits_or_done)
            await transaction.commit()
        results = await storing
    finally:
        await writer.close()
    run = kept.result.execution_id
    assert results == [InboxResult(execution_id=run, created=False)]
    rows = await pool.fetch("SELECT outcome FROM webhook_requests")
    assert [r["outcome"] for r in rows] == ["accepted"]


async def test_a_locked_batch_the_database_stops_answering_ends_in_doubt(
    dsn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch written in a transaction (a filtered delivery with an id takes its lock
    first) to a database that stops answering (no answer, no reset) ends in doubt after
    the store timeout, which bounds the whole transaction: the writer is not held up
    (one writer stores every webhook of the process)."""
    from tests.integration.test_webhooks_outage import PgProxy
    from triggerd import db
    from triggerd.store import webhooks as webhook_store
    from triggerd.store.webhooks import StoreInDoubt

    monkeypatch.setattr(webhook_store, "STORE_TIMEOUT", 0.5)
    proxy = PgProxy(dsn)
    await proxy.start()
    pool = await db.create_pool(proxy.dsn, min_size=1, max_size=2)
    writer = InboxWriter(pool)
    try:
        accepted, filtered = await _deliveries(pool, "accepted", "filtered")
        assert await writer.store([accepted]) == [
            InboxResult(execution_id=accepted.id, created=True)]  # its connection is open
        proxy.silent = True
        with pytest.raises(StoreInDoubt):
            # A bound on waiting, not a speed.
            await asyncio.wait_for(writer.store([filtered]), 20)
    finally:
        proxy.silent = False
        await writer.close()
        await pool.close()
        await proxy.stop()
