"""The notifications hub against a real PostgreSQL: one LISTEN connection for every
subscriber, reconnects after its connection is killed or cut, and a reconcile of every
subscriber after each gap, so nothing sent during the gap is lost for good."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from tests.helpers import apply_doc, final_status, fire, wait_for
from tests.integration.test_executor import slow_workflow
from tests.integration.test_scheduler_support import scheduler_settings
from tests.integration.test_webhooks_outage import PgProxy
from triggerd.config import Settings, load_settings
from triggerd.daemon import create_app
from triggerd.executor.service import Executor
from triggerd.notifications.channels import CANCEL, FINISHED, TRIGGERS
from triggerd.notifications.hub import NotificationHub
from triggerd.scheduler import CronScheduler
from triggerd.store.executions import request_cancel
from triggerd.store.notifications import APPLICATION_NAME
from triggerd.webhooks.ingress import setup_webhooks


async def hub_backends(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1",
        APPLICATION_NAME,
    )
    return [r["pid"] for r in rows]


class Recorder:
    """A subscriber that writes down what it was told."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, str]] = []
        self.gaps = 0

    def on(self, channel: str) -> Callable[[str], None]:
        return lambda payload: self.payloads.append((channel, payload))

    def on_gap(self) -> None:
        self.gaps += 1


async def notify(pool: asyncpg.Pool, wire: str, payload: str) -> None:
    await pool.execute("SELECT pg_notify($1, $2)", wire, payload)


@pytest.fixture
async def proxy(dsn: str) -> AsyncIterator[PgProxy]:
    proxy = PgProxy(dsn)
    await proxy.start()
    yield proxy
    if proxy._server is not None:
        await proxy.stop()


async def test_a_killed_connection_comes_back_and_every_subscriber_reconciles(
    pool: asyncpg.Pool, dsn: str
) -> None:
    hub = NotificationHub(dsn=dsn)
    cancels, finishes = Recorder(), Recorder()
    await hub.subscribe("cancels", {CANCEL: cancels.on("cancel")}, on_gap=cancels.on_gap)
    await hub.start()
    try:
        # Subscribed after the connection is up: the LISTEN is in effect on return.
        await hub.subscribe("finishes", {FINISHED: finishes.on("finished")},
                            on_gap=finishes.on_gap)
        (first,) = await hub_backends(pool)
        await notify(pool, CANCEL.wire, "a")
        await notify(pool, FINISHED.wire, "b")
        await wait_for(lambda: _true(cancels.payloads and finishes.payloads), timeout=5.0)
        assert (cancels.gaps, finishes.gaps) == (0, 0)

        assert await pool.fetchval("SELECT pg_terminate_backend($1)", first)
        await wait_for(lambda: _true(hub.reconnects == 1 and hub.connected), timeout=10.0)
        assert (cancels.gaps, finishes.gaps) == (1, 1)
        (second,) = await hub_backends(pool)
        assert second != first

        await notify(pool, CANCEL.wire, "c")
        await notify(pool, FINISHED.wire, "d")
        await wait_for(lambda: _true(len(cancels.payloads) == len(finishes.payloads) == 2),
                       timeout=5.0)
        assert cancels.payloads == [("cancel", "a"), ("cancel", "c")]
        assert finishes.payloads == [("finished", "b"), ("finished", "d")]
    finally:
        await hub.stop()
    assert await hub_backends(pool) == []


async def test_a_first_connection_that_failed_is_a_gap(
    pool: asyncpg.Pool, proxy: PgProxy
) -> None:
    await proxy.stop()  # the database cannot be reached when the hub starts
    hub = NotificationHub(dsn=proxy.dsn)
    triggers = Recorder()
    await hub.subscribe("triggers", {TRIGGERS: triggers.on("triggers")}, on_gap=triggers.on_gap)
    await hub.start()
    try:
        assert not hub.connected
        await proxy.start()
        await wait_for(lambda: _true(hub.connected), timeout=10.0)
        assert triggers.gaps == 1
        await notify(pool, TRIGGERS.wire, "{}")
        await wait_for(lambda: _true(triggers.payloads), timeout=5.0)
        assert triggers.payloads == [("triggers", "{}")]
    finally:
        await hub.stop()


async def test_components_share_one_connection_and_each_reconciles_what_it_missed(
    pool: asyncpg.Pool, dsn: str, proxy: PgProxy
) -> None:
    """The hub's connection is cut (a proxy in front of PostgreSQL stops); meanwhile a run is
    canceled, a cron trigger and a webhook trigger are added: their notifications are lost.
    When the connection is back each component finds them in its tables."""
    hub = NotificationHub(dsn=proxy.dsn)
    executor = Executor(
        pool=pool, dsn=dsn, hub=hub,
        settings=load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                        "TRIGGERD_EXECUTOR_DRAIN": "1s"}),
    )
    scheduler = CronScheduler(pool=pool, dsn=dsn, settings=scheduler_settings(), hub=hub)
    settings = Settings()
    app = create_app(settings, pool)
    # No periodic route reload during the test: only the hub's reconcile can find the route.
    ingress = setup_webhooks(app, pool=pool, dsn=dsn, settings=settings, hub=hub,
                             reload_interval=3600.0, pending_interval=3600.0)
    await hub.start()
    started: list[Any] = []
    try:
        for component in (executor, scheduler, ingress):
            await component.start()
            started.append(component)
        assert len(await hub_backends(pool)) == 1  # one LISTEN connection for all three

        async with slow_workflow(pool, "slowpoke"):
            execution_id = await fire(pool, "slowpoke/manual")
            await wait_for(lambda: _node_running(pool, execution_id))

            await proxy.stop()
            await wait_for(lambda: _true(not hub.connected), timeout=10.0)
            await request_cancel(pool, execution_id)
            await apply_doc(pool, _late_triggers())
            await asyncio.sleep(0.5)  # what a notification would have done by now
            assert scheduler.trigger_count == 0
            assert ingress.routes.table.get("late/hook") is None
            assert (await _status(pool, execution_id)) == "RUNNING"

            await proxy.start()
            await wait_for(lambda: _true(hub.reconnects == 1), timeout=10.0)
            row = await final_status(pool, execution_id, timeout=10.0)
            assert row["status"] == "CANCELED"
        await wait_for(lambda: _true(scheduler.trigger_count == 1), timeout=10.0)
        assert scheduler.stats.recoveries == Counter({"reconnect": 1})
        await wait_for(lambda: _true(ingress.routes.table.get("late/hook") is not None),
                       timeout=10.0)
        assert len(await hub_backends(pool)) == 1
    finally:
        for component in reversed(started):
            await component.stop()
        await hub.stop()


async def test_a_listen_connection_that_stays_down_fails_readiness_and_cancels_still_arrive(
    pool: asyncpg.Pool, dsn: str, proxy: PgProxy
) -> None:
    """The LISTEN connection down while the pool works (a direct_url whose role may not
    log in): /readyz said "notifications: ok" throughout, and a cancel sent meanwhile was
    never noticed (the run ended SUCCESS). The lease heartbeat reads each run's cancel
    flag now, and readiness fails after the grace."""
    await proxy.stop()
    hub = NotificationHub(dsn=proxy.dsn, readiness_grace=0.5)
    executor = Executor(
        pool=pool, dsn=dsn, hub=hub,
        settings=load_settings(environ={"TRIGGERD_EXECUTOR_POLL_INTERVAL": "200ms",
                                        "TRIGGERD_EXECUTOR_LEASE": "3s",
                                        "TRIGGERD_EXECUTOR_DRAIN": "1s"}),
    )
    await hub.start()
    await executor.start()
    try:
        assert await hub.readiness() is None  # a short gap is no reason yet

        async def unready() -> bool:
            return await hub.readiness() is not None

        await wait_for(unready, timeout=5.0)
        said = await hub.readiness()
        assert said is not None and said.startswith("no LISTEN connection for"), said
        async with slow_workflow(pool, "slowpoke"):
            execution_id = await fire(pool, "slowpoke/manual")
            await wait_for(lambda: _node_running(pool, execution_id))
            await request_cancel(pool, execution_id)
            # Within a heartbeat (a third of the lease), no notification needed.
            row = await final_status(pool, execution_id, timeout=5.0)
            assert row["status"] == "CANCELED"
        assert not hub.connected
        await proxy.start()
        await wait_for(lambda: _true(hub.connected), timeout=10.0)
        assert await hub.readiness() is None
    finally:
        await executor.stop()
        await hub.stop()


def _late_triggers() -> dict[str, Any]:
    return {"workflows": [{
        "key": "late",
        "name": "late",
        "graph": {"nodes": [{"id": "keep", "type": "set", "params": {"value": 1}}],
                  "edges": []},
        "triggers": [
            {"name": "tick", "type": "cron", "cron": "0 0 1 1 *"},
            {"name": "hook", "type": "webhook", "path": "late/hook"},
        ],
    }]}


async def _true(value: Any) -> bool:
    return bool(value)


async def _node_running(pool: asyncpg.Pool, execution_id: str) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM node_executions WHERE execution_id = $1 AND status = 'RUNNING'",
        execution_id,
    )
    return bool(count)


async def _status(pool: asyncpg.Pool, execution_id: str) -> str:
    status: str = await pool.fetchval(
        "SELECT status FROM workflow_executions WHERE id = $1", execution_id
    )
    return status
