"""Prometheus metrics: one :class:`Metrics` per application (its own registry, never the
process-global one, so tests and several apps in one process do not share counters) and the
``GET /metrics`` route.

Other parts record events through the methods of :class:`Metrics` (found under
``app[METRICS]``); queue depth and pool usage are read when Prometheus scrapes. Every label
is bounded: webhook requests that match no trigger share the label value ``_unknown``, and
at most ``label_limit`` distinct triggers (and workflows) get series of their own; later
ones are counted under ``_overflow``, the way OpenTelemetry's cardinality limit works. A
daemon with 100,000 triggers would otherwise expose 100,000 series per counter, which costs
every scrape seconds of CPU and Prometheus far more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from triggerd.appkeys import POOL, SETTINGS
from triggerd.component import BaseComponent
from triggerd.model import DEFAULT_TENANT
from triggerd.schedules import Schedule, schedule_of
from triggerd.store.admin import ACTIVE_STATUSES, Conn, monitored_triggers, queue_depth
from triggerd.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

UNKNOWN_TRIGGER = "_unknown"
OVERFLOW_LABEL = "_overflow"
DEFAULT_LABEL_LIMIT = 2000
# Queue depth is read from the database at most this often (seconds): scrapes from several
# Prometheus servers then cost one query.
QUEUE_DEPTH_TTL = 1.0
# A scrape never waits longer than this for the database; the last known depth is served.
QUEUE_DEPTH_TIMEOUT = 2.0

# Lateness of a cron fire: scheduler wake-ups are milliseconds late, catch-up fires after a
# restart are minutes to hours late.
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
NODE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300)
# How late the event loop wakes a sleeping task: a millisecond is normal, tens of
# milliseconds delay every fire and request, seconds are a stall.
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Triggers marked `monitor: true` are read from the database at most this often (seconds).
MONITOR_TTL = 10.0
LOOP_LAG_INTERVAL = 0.1  # seconds between two measurements
LOOP_LAG_SAMPLES = 4096


class PoolStats(Protocol):
    """The part of an asyncpg pool the metrics read."""

    def get_size(self) -> int: ...

    def get_idle_size(self) -> int: ...

    def get_max_size(self) -> int: ...


class LabelBudget:
    """Admits the first ``limit`` distinct values of a label; any later value becomes
    ``_overflow``. Admitted values stay admitted, so a series never changes its name."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._admitted: set[str] = set()

    def admit(self, value: str) -> str:
        admitted = self._admitted
        if value in admitted:
            return value
        if len(admitted) < self.limit:
            admitted.add(value)
            return value
        return OVERFLOW_LABEL

    def __len__(self) -> int:
        return len(self._admitted)


class Metrics:
    """Every triggerd metric, registered on ``registry`` (a new one by default)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        process_metrics: bool = True,
        queue_depth_ttl: float = QUEUE_DEPTH_TTL,
        monotonic: Callable[[], float] = time.monotonic,
        label_limit: int = DEFAULT_LABEL_LIMIT,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # One budget per kind of label, shared by the metrics that carry it, so a trigger
        # that has its own cron series has its own webhook series too.
        self.trigger_labels = LabelBudget(label_limit)
        self.workflow_labels = LabelBudget(label_limit)
        self.tenant_labels = LabelBudget(label_limit)
        reg = self.registry
        if process_metrics:
            ProcessCollector(registry=reg)
            GCCollector(registry=reg)
        self.cron_fires = Counter(
            "triggerd_cron_fires", "Cron slots decided, by trigger and outcome",
            ["trigger", "outcome"], registry=reg,
        )
        # Bounded by the outcomes alone (nine values), whatever the number of triggers: the
        # alert on skipped slots (skipped_paused, skipped_misfire, ...) starts here, and
        # triggerd_cron_fires_total names the trigger.
        self.schedule_slots = Counter(
            "triggerd_schedule_slots", "Slots of scheduled triggers decided, by ledger outcome",
            ["outcome"], registry=reg,
        )
        self.cron_fire_lateness = Histogram(
            "triggerd_cron_fire_lateness_seconds",
            "How long after its scheduled instant a cron slot was decided",
            buckets=LATENESS_BUCKETS, registry=reg,
        )
        self.webhook_requests = Counter(
            "triggerd_webhook_requests", "Webhook requests answered, by trigger and HTTP status",
            ["trigger", "status"], registry=reg,
        )
        self.webhook_request_seconds = Histogram(
            "triggerd_webhook_request_seconds", "Time to answer a webhook request",
            buckets=REQUEST_BUCKETS, registry=reg,
        )
        self.webhook_worker_requests = Counter(
            "triggerd_webhook_worker_requests",
            "Webhook requests answered by extra HTTP process N ([http] processes > 1); they"
            " are counted in triggerd_webhook_requests too",
            ["worker"], registry=reg,
        )
        self.webhook_backpressure = Counter(
            "triggerd_webhook_backpressure",
            "Webhook requests refused with 429 because too many runs are waiting, or because"
            " requests waited too long on their connection",
            registry=reg,
        )
        self.webhook_filtered = Counter(
            "triggerd_webhook_filtered",
            "Webhook requests the trigger's filter did not match (stored, answered 200, no run)",
            ["trigger"], registry=reg,
        )
        self.webhook_secret_used = Counter(
            "triggerd_webhook_secret_used",
            "Webhook requests verified, by trigger and which of its listed secrets matched"
            " (its index, \"0\" first); only triggers with a list of secrets (rotation)",
            ["trigger", "secret"], registry=reg,
        )
        self.executions = Counter(
            "triggerd_executions", "Executions finished, by workflow and final status",
            ["workflow", "status"], registry=reg,
        )
        self.execution_seconds = Histogram(
            "triggerd_execution_seconds", "Duration of finished executions (start to end)",
            ["workflow"], buckets=EXECUTION_BUCKETS, registry=reg,
        )
        self.node_seconds = Histogram(
            "triggerd_node_seconds", "Duration of node executions, by node type",
            ["node_type"], buckets=NODE_BUCKETS, registry=reg,
        )
        self._node_seconds_by_type: dict[str, Any] = {}
        self._execution_children: dict[tuple[str, str, str], tuple[Any, Any, str]] = {}
        self._duration_children: dict[str, Any] = {}
        self.queue_depth = Gauge(
            "triggerd_queue_depth", "Executions not finished yet, by status (from the database)",
            ["status"], registry=reg,
        )
        self.tenant_queue_depth = Gauge(
            "triggerd_tenant_queue_depth",
            "Executions not finished yet, by tenant and status (from the database)",
            ["tenant", "status"], registry=reg,
        )
        self.tenant_executions = Counter(
            "triggerd_tenant_executions", "Executions finished, by tenant and final status",
            ["tenant", "status"], registry=reg,
        )
        self.queue_depth_errors = Counter(
            "triggerd_queue_depth_refresh_errors",
            "Scrapes that could not read the queue depth from the database",
            registry=reg,
        )
        self.pool_connections = Gauge(
            "triggerd_pool_connections", "Database pool connections by state (idle, in_use)",
            ["state"], registry=reg,
        )
        self.pool_max_connections = Gauge(
            "triggerd_pool_max_connections", "Largest size the database pool may grow to",
            registry=reg,
        )
        self.clock_skew = Gauge(
            "triggerd_clock_skew_seconds",
            "Local clock minus the database clock (positive: this host runs ahead)",
            registry=reg,
        )
        self.oldest_owed_slot = Gauge(
            "triggerd_scheduler_oldest_owed_seconds",
            "How long ago the oldest cron slot this replica still owes was due (0: none"
            " owed); above [scheduler] lag_threshold, /readyz checks for overdue triggers",
            registry=reg,
        )
        self.notifications_connected = Gauge(
            "triggerd_notifications_connected",
            "1 while this replica's LISTEN connection is up, 0 while it is down (trigger"
            " changes and cancels from other replicas are then noticed late)",
            registry=reg,
        )
        self.event_loop_lag = Histogram(
            "triggerd_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a task sleeping"
            f" {LOOP_LAG_INTERVAL:g} s (a stall shows here first)",
            buckets=LOOP_LAG_BUCKETS, registry=reg,
        )
        # Per trigger, only for the triggers marked `monitor: true` (at most label_limit of
        # them, by name): a schedule's freshness without a series per trigger of 100,000.
        self.monitor_last_success = Gauge(
            "triggerd_trigger_last_success_timestamp_seconds",
            "When the last successful scheduled run of a monitored trigger ended (Unix time; no"
            " series until one succeeded)", ["trigger"], registry=reg,
        )
        self.monitor_next_fire = Gauge(
            "triggerd_trigger_next_fire_timestamp_seconds",
            "The next scheduled fire of a monitored trigger (Unix time; no series while it"
            " is paused or its schedule has ended)", ["trigger"], registry=reg,
        )
        self._monitor_limit = label_limit
        self._tenant_depth_keys: set[tuple[str, str]] = set()
        self._monitor_read_at: float | None = None
        self._monitor_schedules: MonitorCache = {}
        # The request counter's child per (trigger, status), found once: labels() validates
        # and locks on every call, and this is counted for every webhook request. Bounded
        # by the defined triggers x statuses.
        self._webhook_children: dict[tuple[str | None, int], Counter] = {}
        self._observe_webhook_seconds = self.webhook_request_seconds.observe
        # Called on the event loop before each scrape: values kept by other parts.
        self._scrape_hooks: list[Callable[[], None]] = []
        self._ttl = queue_depth_ttl
        self._monotonic = monotonic
        self._depth_read_at: float | None = None
        self._depth_lock = asyncio.Lock()
        for status in ACTIVE_STATUSES:
            self.queue_depth.labels(status=status).set(0)

    # --- events other parts record ------------------------------------------------------

    def cron_fired(self, trigger: str, outcome: str, lateness_s: float | None = None) -> None:
        """A cron slot of ``trigger`` (``workflow/name``) was decided with ``outcome``
        (a :class:`~triggerd.model.SlotOutcome` value), ``lateness_s`` after its instant."""
        label = self.trigger_labels.admit(trigger)
        self.cron_fires.labels(trigger=label, outcome=outcome).inc()
        self.schedule_slots.labels(outcome=outcome).inc()
        if lateness_s is not None:
            self.cron_fire_lateness.observe(max(0.0, lateness_s))

    def webhook_request(self, trigger: str | None, status: int, seconds: float) -> None:
        """A webhook request was answered. ``trigger`` is ``None`` (or ``"-"``) when the
        path matched no trigger: those share one label value, so random paths cannot
        create series."""
        child = self._webhook_children.get((trigger, status))
        if child is None:
            label = (
                UNKNOWN_TRIGGER
                if not trigger or trigger == "-"
                else self.trigger_labels.admit(trigger)
            )
            child = self.webhook_requests.labels(trigger=label, status=str(status))
            self._webhook_children[(trigger, status)] = child
        child.inc()
        self._observe_webhook_seconds(max(0.0, seconds))

    def webhook_secret(self, trigger: str, index: int, count: int = 1) -> None:
        """``count`` requests of ``trigger`` were verified with its secret number ``index``."""
        label = self.trigger_labels.admit(trigger)
        self.webhook_secret_used.labels(trigger=label, secret=str(index)).inc(count)

    def webhook_requests_answered(
        self, worker: int, trigger: str | None, status: int, seconds: list[float]
    ) -> None:
        """What extra HTTP process ``worker`` reported: ``len(seconds)`` answers."""
        for value in seconds:
            self.webhook_request(trigger, status, value)
        self.webhook_worker_requests.labels(worker=str(worker)).inc(len(seconds))

    def webhook_filtered_requests(self, trigger: str, count: int = 1) -> None:
        """``count`` requests of ``trigger`` were stored as filtered."""
        self.webhook_filtered.labels(trigger=self.trigger_labels.admit(trigger)).inc(count)

    def execution_finished(self, workflow: str, status: str, seconds: float | None,
                           tenant: str = DEFAULT_TENANT) -> None:
        """An execution of ``workflow`` (its key, ``tenant:key`` outside the default
        tenant) of ``tenant`` ended with ``status``."""
        # A run's end looks its three series up here: kept per (workflow, status, tenant),
        # as the webhook answers' are, since labels() costs microseconds each, and a label
        # once admitted (or refused) stays so.
        key = (workflow, status, tenant)
        children = self._execution_children.get(key)
        if children is None:
            label = self.workflow_labels.admit(workflow)
            children = self._execution_children[key] = (
                self.executions.labels(workflow=label, status=status),
                self.tenant_executions.labels(tenant=self.tenant_labels.admit(tenant),
                                              status=status),
                label,
            )
        runs, tenant_runs, label = children
        runs.inc()
        tenant_runs.inc()
        if seconds is not None:
            durations = self._duration_children.get(label)
            if durations is None:
                durations = self._duration_children[label] = self.execution_seconds.labels(
                    workflow=label)
            durations.observe(max(0.0, seconds))

    def node_finished(self, node_type: str, seconds: float | None) -> None:
        if seconds is not None:
            # Three or more a run: the labelled child is looked up once per node type (the
            # types are a small fixed set: the registry's).
            child = self._node_seconds_by_type.get(node_type)
            if child is None:
                child = self._node_seconds_by_type[node_type] = self.node_seconds.labels(
                    node_type=node_type)
            child.observe(max(0.0, seconds))

    def set_clock_skew(self, seconds: float) -> None:
        self.clock_skew.set(seconds)

    def backpressure(self) -> None:
        self.webhook_backpressure.inc()

    # --- scrape-time values ---------------------------------------------------------------

    def add_scrape_hook(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` (cheap, on the event loop) before every scrape, to set a gauge from
        state another part keeps."""
        self._scrape_hooks.append(hook)

    async def refresh(self, conn: Conn, pool: PoolStats | None = None) -> None:
        """Read the queue depth (at most once per TTL) and the pool usage. A database that
        does not answer leaves the last known depth and counts an error: the scrape still
        succeeds, so the other metrics keep flowing while the database is down."""
        for hook in self._scrape_hooks:
            try:
                hook()
            except Exception:  # a scrape still answers with everything else
                logger.exception("metrics: a scrape hook failed",
                                 extra={"event": "metrics_hook_failed"})
        if pool is not None:
            size, idle = pool.get_size(), pool.get_idle_size()
            self.pool_connections.labels(state="idle").set(idle)
            self.pool_connections.labels(state="in_use").set(max(0, size - idle))
            self.pool_max_connections.set(pool.get_max_size())
        async with self._depth_lock:
            await self._refresh_monitored(conn)
            now = self._monotonic()
            if self._depth_read_at is not None and now - self._depth_read_at < self._ttl:
                return
            try:
                async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
                    counts = await queue_depth(conn)
            except Exception as exc:  # any failure: serve the last values, count it
                self.queue_depth_errors.inc()
                logger.warning(
                    "metrics: cannot read the queue depth",
                    extra={"event": "metrics_queue_depth_failed",
                           "error": f"{type(exc).__name__}: {exc}"},
                )
                return
            totals = dict.fromkeys(ACTIVE_STATUSES, 0)
            # Tenants past the label budget add up under _overflow.
            by_label: dict[tuple[str, str], int] = {}
            for (tenant, status), count in counts.items():
                totals[status] = totals.get(status, 0) + count
                key = (self.tenant_labels.admit(tenant), status)
                by_label[key] = by_label.get(key, 0) + count
            # A tenant whose queue emptied reads 0, not its last count.
            for key in self._tenant_depth_keys - set(by_label):
                by_label[key] = 0
            for (tenant, status), count in by_label.items():
                self.tenant_queue_depth.labels(tenant=tenant, status=status).set(count)
            self._tenant_depth_keys |= set(by_label)
            for status, count in totals.items():
                self.queue_depth.labels(status=status).set(count)
            self._depth_read_at = self._monotonic()

    async def _refresh_monitored(self, conn: Conn) -> None:
        """The monitored triggers' gauges, read at most every MONITOR_TTL seconds; their
        next fires are computed in a thread (one schedule per distinct config)."""
        now = self._monotonic()
        if self._monitor_read_at is not None and now - self._monitor_read_at < MONITOR_TTL:
            return
        self._monitor_read_at = now
        try:
            async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT):
                rows = await monitored_triggers(conn, self._monitor_limit)
        except Exception as exc:  # the scrape still answers with the last values
            logger.warning("metrics: cannot read the monitored triggers",
                           extra={"event": "metrics_monitor_failed",
                                  "error": f"{type(exc).__name__}: {exc}"})
            return
        try:
            values = await asyncio.to_thread(
                monitor_values, rows, datetime.now(UTC), self._monitor_schedules)
        except Exception as exc:  # a bug past the rows' own (monitor_values): as above
            logger.warning("metrics: cannot compute the monitored triggers' next fires",
                           extra={"event": "metrics_monitor_failed",
                                  "error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        self.monitor_last_success.clear()
        self.monitor_next_fire.clear()
        for name, last_success, next_fire in values:
            if last_success is not None:
                self.monitor_last_success.labels(trigger=name).set(last_success)
            if next_fire is not None:
                self.monitor_next_fire.labels(trigger=name).set(next_fire)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (text format, or OpenMetrics when ``accept`` asks for it) and its
        content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


# A monitored config's schedule and max_runs, by (trigger type, config text).
MonitorCache = dict[tuple[str, str], tuple[Schedule, int | None]]


def monitor_values(
    rows: list[dict[str, Any]], now: datetime, schedules: MonitorCache
) -> list[tuple[str, float | None, float | None]]:
    """``(trigger, last success, next fire)`` as Unix times for the monitored triggers'
    rows (see :func:`~triggerd.store.admin.monitored_triggers`). No next fire while a
    trigger is paused or its schedule has ended (max_runs made, end_at passed).
    ``schedules`` caches the schedule of each (type, config) between calls."""
    values: list[tuple[str, float | None, float | None]] = []
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (row["type"], row["config"])
        seen.add(key)
        known = schedules.get(key)
        if known is None:
            try:
                config = json.loads(row["config"])
                known = (schedule_of(row["type"], config), config.get("max_runs"))
            except Exception as exc:  # one stored config no schedule is made of
                # Its gauges are left out; the other monitored triggers' are kept current
                # (one bad row froze them all).
                logger.warning(
                    "metrics: cannot make the schedule of a monitored trigger",
                    extra={"event": "metrics_monitor_failed", "trigger": row["name"],
                           "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            schedules[key] = known
        schedule, max_runs = known
        ended = max_runs is not None and row["scheduled_runs"] >= max_runs
        fire = None if row["paused"] or ended else schedule.next_fire(now)
        last = row["last_success_at"]
        values.append((row["name"], None if last is None else last.timestamp(),
                       None if fire is None else fire.at.timestamp()))
    for key in set(schedules) - seen:  # configs no longer monitored
        del schedules[key]
    return values


class LoopLagMonitor(BaseComponent):
    """A daemon component: a task that sleeps ``interval`` seconds again and again and
    records how much later than asked it woke in ``triggerd_event_loop_lag_seconds``.
    Anything that holds the loop (a long computation, a blocking call) shows up here."""

    name = "loop_lag"

    def __init__(self, metrics: Metrics, *, interval: float = LOOP_LAG_INTERVAL) -> None:
        self._observe = metrics.event_loop_lag.observe
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # The newest measurements, seconds (for benchmarks; Prometheus reads the histogram).
        self.samples: deque[float] = deque(maxlen=LOOP_LAG_SAMPLES)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="triggerd-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            lag = max(0.0, loop.time() - asked)
            self.samples.append(lag)
            self._observe(lag)


METRICS = web.AppKey("metrics", Metrics)


async def metrics_handler(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    pool = request.app[POOL]
    await metrics.refresh(pool, pool)
    # The exposition grows with the series (up to label_limit triggers x outcomes); a
    # worker thread renders it while the loop keeps turning.
    body, content_type = await asyncio.to_thread(
        metrics.render, request.headers.get("Accept", "")
    )
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_metrics_routes(app: web.Application, metrics: Metrics | None = None) -> Metrics:
    """Store a :class:`Metrics` under ``app[METRICS]`` (a new one unless given) and add
    ``GET /metrics`` (and HEAD: the same status and headers, no body, as monitors probe a
    target); returns the metrics so the caller can hand them to components."""
    if metrics is None:
        metrics = Metrics(label_limit=app[SETTINGS].current.metrics.label_limit)
    found = metrics
    app[METRICS] = found
    app.router.add_get("/metrics", metrics_handler)
    return found
