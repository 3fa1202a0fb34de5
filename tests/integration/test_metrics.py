"""``GET /metrics`` over real HTTP: the exposition format, every metric other parts record,
queue depth read from PostgreSQL (cached), pool usage and bounded labels."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import apply_doc, free_port
from triggerd.api.metrics import METRICS, Metrics, add_metrics_routes
from triggerd.config import Settings
from triggerd.daemon import create_app
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import get_trigger

Client = TestClient[Any, Any]

DOC: dict[str, Any] = {
    "workflows": [
        {
            "key": "report",
            "graph": {"nodes": [{"id": "start", "type": "noop"}]},
            "triggers": [{"name": "manual", "type": "manual"}],
        }
    ]
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_client(aiohttp_client: Any) -> Callable[..., Awaitable[Client]]:
    async def make(pool: Any, metrics: Metrics | None = None) -> Client:
        app = create_app(Settings(), pool)
        add_metrics_routes(app, metrics)
        client: Client = await aiohttp_client(app)
        return client

    return make


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by name and sorted labels."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    return samples(await response.text())


async def add_new(pool: asyncpg.Pool, count: int) -> list[str]:
    trigger = await get_trigger(pool, "report/manual")
    items = [NewExecution(workflow_id=trigger.workflow_id, trigger_id=trigger.id,
                          trigger_name=trigger.name, trigger_type="manual")
             for _ in range(count)]
    await insert_executions(pool, items)
    return [item.id for item in items]


async def test_recorded_events_show_up(
    make_client: Callable[..., Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    client = await make_client(pool)
    assert client.app is not None
    metrics = client.app[METRICS]
    metrics.cron_fired("report/nightly", "fired", 0.2)
    metrics.cron_fired("report/nightly", "fired", 3.0)
    metrics.cron_fired("report/nightly", "skipped_overlap", None)
    metrics.webhook_request("report/push", 202, 0.004)
    metrics.webhook_request("report/push", 202, 0.002)
    metrics.webhook_request("report/push", 422, 0.002)
    metrics.webhook_request(None, 404, 0.001)
    metrics.webhook_request("-", 404, 0.001)
    metrics.webhook_request("-", 404, 0.001)
    metrics.execution_finished("report", "SUCCESS", 1.5)
    metrics.execution_finished("report", "ERROR", None)
    metrics.node_finished("http", 0.3)
    metrics.node_finished("noop", 0.0001)
    metrics.set_clock_skew(-0.25)
    metrics.backpressure()
    metrics.backpressure()

    found = await scrape(client)
    assert found[("triggerd_cron_fires_total",
                  (("outcome", "fired"), ("trigger", "report/nightly")))] == 2
    assert found[("triggerd_cron_fires_total",
                  (("outcome", "skipped_overlap"), ("trigger", "report/nightly")))] == 1
    assert found[("triggerd_schedule_slots_total", (("outcome", "fired"),))] == 2
    assert found[("triggerd_schedule_slots_total", (("outcome", "skipped_overlap"),))] == 1
    # Lateness is observed only when known: two observations, 0.2 and 3.0.
    assert found[("triggerd_cron_fire_lateness_seconds_count", ())] == 2
    assert found[("triggerd_cron_fire_lateness_seconds_sum", ())] == pytest.approx(3.2)
    assert found[("triggerd_cron_fire_lateness_seconds_bucket", (("le", "0.25"),))] == 1
    assert found[("triggerd_webhook_requests_total",
                  (("status", "202"), ("trigger", "report/push")))] == 2
    assert found[("triggerd_webhook_requests_total",
                  (("status", "422"), ("trigger", "report/push")))] == 1
    # Paths that match no trigger share one label value.
    assert found[("triggerd_webhook_requests_total",
                  (("status", "404"), ("trigger", "_unknown")))] == 3
    assert found[("triggerd_webhook_request_seconds_count", ())] == 6
    assert found[("triggerd_executions_total",
                  (("status", "SUCCESS"), ("workflow", "report")))] == 1
    assert found[("triggerd_executions_total",
                  (("status", "ERROR"), ("workflow", "report")))] == 1
    assert found[("triggerd_execution_seconds_count", (("workflow", "report"),))] == 1
    assert found[("triggerd_execution_seconds_sum", (("workflow", "report"),))] == 1.5
    assert found[("triggerd_node_seconds_count", (("node_type", "http"),))] == 1
    assert found[("triggerd_node_seconds_bucket", (("le", "0.001"), ("node_type", "noop")))] == 1
    assert found[("triggerd_clock_skew_seconds", ())] == -0.25
    assert found[("triggerd_webhook_backpressure_total", ())] == 2
    assert ("process_cpu_seconds_total", ()) in found


async def test_head_answers_as_get_without_the_body(
    make_client: Callable[..., Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    client = await make_client(pool)
    get = await client.get("/metrics")
    head = await client.head("/metrics")
    assert (head.status, await head.read()) == (200, b"")
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert int(head.headers["Content-Length"]) > 0


async def test_text_format_and_openmetrics(
    make_client: Callable[..., Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    client = await make_client(pool)
    response = await client.get("/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await response.text()
    assert "# TYPE triggerd_cron_fires_total counter" in text
    assert "# HELP triggerd_queue_depth Executions not finished yet" in text
    assert 'triggerd_queue_depth{status="NEW"} 0.0' in text

    response = await client.get("/metrics",
                                headers={"Accept": "application/openmetrics-text"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_queue_depth_and_pool_usage_are_read_at_scrape_time_with_a_cache(
    make_client: Callable[..., Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    await apply_doc(pool, DOC)
    ids = await add_new(pool, 3)
    await pool.execute("UPDATE workflow_executions SET status = 'RUNNING' WHERE id = $1", ids[0])
    clock = FakeClock()
    client = await make_client(pool, Metrics(monotonic=clock, queue_depth_ttl=5.0,
                                             process_metrics=False))
    # The pool has other users (readiness checks the database in the background), so its
    # size may change between the scrape and the look at it here: a few scrapes find a
    # moment when nothing else opened a connection.
    for _ in range(5):
        found = await scrape(client)
        idle = found[("triggerd_pool_connections", (("state", "idle"),))]
        in_use = found[("triggerd_pool_connections", (("state", "in_use"),))]
        if idle + in_use == pool.get_size():
            break
    else:
        raise AssertionError(f"pool connections {idle} + {in_use} != {pool.get_size()}")
    depth = {s: found[("triggerd_queue_depth", (("status", s),))]
             for s in ("NEW", "RUNNING", "WAITING")}
    assert depth == {"NEW": 2, "RUNNING": 1, "WAITING": 0}
    assert found[("triggerd_pool_max_connections", ())] == 5
    assert ("process_cpu_seconds_total", ()) not in found

    await add_new(pool, 4)
    clock.now += 4.9  # within the TTL: the cached depth is served
    assert (await scrape(client))[("triggerd_queue_depth", (("status", "NEW"),))] == 2
    clock.now += 0.2
    assert (await scrape(client))[("triggerd_queue_depth", (("status", "NEW"),))] == 6


async def test_unreachable_database_keeps_the_last_depth_and_counts_the_failure(
    make_client: Callable[..., Awaitable[Client]],
) -> None:
    unreachable = await asyncpg.create_pool(
        f"postgresql://triggerd@127.0.0.1:{free_port()}/triggerd", min_size=0, max_size=2
    )
    client = await make_client(unreachable, Metrics(process_metrics=False))
    found = await scrape(client)
    assert found[("triggerd_queue_depth_refresh_errors_total", ())] == 1
    assert found[("triggerd_queue_depth", (("status", "NEW"),))] == 0
    await unreachable.close()


async def test_each_app_has_its_own_registry(
    make_client: Callable[..., Awaitable[Client]], pool: asyncpg.Pool
) -> None:
    first = await make_client(pool)
    second = await make_client(pool)
    assert first.app is not None and second.app is not None
    first.app[METRICS].backpressure()
    assert (await scrape(first))[("triggerd_webhook_backpressure_total", ())] == 1
    assert (await scrape(second))[("triggerd_webhook_backpressure_total", ())] == 0


async def test_event_loop_lag_shows_a_held_loop(
    pool: Any, make_client: Callable[..., Awaitable[Client]]
) -> None:
    import asyncio
    import time

    from triggerd.api.metrics import LoopLagMonitor

    metrics = Metrics(process_metrics=False)
    client = await make_client(pool, metrics)
    monitor = LoopLagMonitor(metrics, interval=0.01)
    await monitor.start()
    try:
        while len(monitor.samples) < 3:
            await asyncio.sleep(0.01)
        time.sleep(0.3)  # holds the loop, as a long computation would
        seen = len(monitor.samples)
        while len(monitor.samples) == seen:
            await asyncio.sleep(0.01)
    finally:
        await monitor.stop()
    found = await scrape(client)
    name = "triggerd_event_loop_lag_seconds"
    count = found[(f"{name}_count", ())]
    assert count == len(monitor.samples)
    # Exactly the measurement that spanned the hold is above 0.25 s.
    assert count - found[(f"{name}_bucket", (("le", "0.25"),))] == 1
    assert max(monitor.samples) >= 0.25


async def test_the_exposition_is_rendered_off_the_event_loop(
    pool: Any, make_client: Callable[..., Awaitable[Client]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering grows with the series (one per trigger and outcome): it runs in a worker
    thread, so the loop keeps firing and answering meanwhile."""
    import threading

    metrics = Metrics(process_metrics=False)
    for i in range(1000):
        metrics.cron_fired(f"wf/t{i}", "fired", 0.001)
    threads: list[int] = []
    render = metrics.render

    def recording(accept: str = "") -> tuple[bytes, str]:
        threads.append(threading.get_ident())
        return render(accept)

    monkeypatch.setattr(metrics, "render", recording)
    client = await make_client(pool, metrics)
    found = await scrape(client)
    assert found[("triggerd_cron_fires_total", (("outcome", "fired"), ("trigger", "wf/t999")))] == 1
    assert len(threads) == 1 and threads[0] != threading.get_ident()


async def test_triggers_beyond_the_label_limit_share_one_overflow_series(
    pool: Any, make_client: Callable[..., Awaitable[Client]]
) -> None:
    """100,000 triggers must not mean 100,000 series per counter: the first ``label_limit``
    triggers (and workflows) keep series of their own, later ones count under
    ``_overflow``, and no count is lost."""
    metrics = Metrics(process_metrics=False, label_limit=3)
    for i in range(5):
        metrics.cron_fired(f"wf/t{i}", "fired", 0.001)
    metrics.cron_fired("wf/t4", "fired", 0.001)
    metrics.cron_fired("wf/t0", "skipped_overlap")  # admitted before: keeps its own series
    metrics.webhook_request("wf/t1", 202, 0.001)  # admitted by the cron counter
    metrics.webhook_request("wf/hook", 202, 0.001)  # a fourth trigger
    metrics.webhook_request(None, 404, 0.001)  # unmatched paths are not triggers
    for i in range(5):
        metrics.execution_finished(f"wf{i}", "SUCCESS", 0.5)
    # Again, now from the series kept per workflow and status: the same series count.
    metrics.execution_finished("wf0", "SUCCESS", None)
    metrics.execution_finished("wf4", "SUCCESS", 0.5)
    found = await scrape(await make_client(pool, metrics))
    fires = {
        dict(labels)["trigger"]: value
        for (name, labels), value in found.items()
        if name == "triggerd_cron_fires_total" and dict(labels)["outcome"] == "fired"
    }
    assert fires == {"wf/t0": 1, "wf/t1": 1, "wf/t2": 1, "_overflow": 3}
    assert found[("triggerd_cron_fires_total",
                  (("outcome", "skipped_overlap"), ("trigger", "wf/t0")))] == 1
    requests = {
        dict(labels)["trigger"]: value
        for (name, labels), value in found.items()
        if name == "triggerd_webhook_requests_total"
    }
    assert requests == {"wf/t1": 1, "_overflow": 1, "_unknown": 1}
    runs = {
        dict(labels)["workflow"]: value
        for (name, labels), value in found.items()
        if name == "triggerd_executions_total"
    }
    assert runs == {"wf0": 2, "wf1": 1, "wf2": 1, "_overflow": 3}
    durations = {
        dict(labels)["workflow"]
        for (name, labels), _ in found.items()
        if name == "triggerd_execution_seconds_count"
    }
    assert durations == {"wf0", "wf1", "wf2", "_overflow"}


async def test_the_daemon_takes_the_label_limit_from_its_settings(pool: Any) -> None:
    from triggerd.config import MetricsSettings

    app = create_app(Settings(metrics=MetricsSettings(label_limit=7)), pool)
    assert app[METRICS].trigger_labels.limit == 7
    assert app[METRICS].workflow_labels.limit == 7


async def test_scrape_hooks_set_gauges_before_each_scrape(
    pool: Any, make_client: Callable[..., Awaitable[Client]]
) -> None:
    """The scheduler's oldest owed slot is read when Prometheus scrapes (one look at the
    top of its heap); a hook that fails leaves the rest of the scrape intact."""
    metrics = Metrics(process_metrics=False)
    ages = iter([12.5, 0.0])
    metrics.add_scrape_hook(lambda: metrics.oldest_owed_slot.set(next(ages)))

    def broken() -> None:
        raise RuntimeError("boom")

    metrics.add_scrape_hook(broken)
    client = await make_client(pool, metrics)
    assert (await scrape(client))[("triggerd_scheduler_oldest_owed_seconds", ())] == 12.5
    assert (await scrape(client))[("triggerd_scheduler_oldest_owed_seconds", ())] == 0.0
