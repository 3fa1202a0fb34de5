"""Cron scheduler benchmark (issue 6). Not a test: it prints figures next to their targets.

    .venv/bin/python bench/cron.py [--duration 60] [--triggers 100000] [--burst 10000]
                                   [--no-reference] [--only a,b,c]

(a) N enabled cron triggers (a mix of ~50 distinct schedules): time from process start to
    "everything scheduled" and RSS, in a fresh child process; the same-run reference is
    APScheduler 3.11 with one CronTrigger job per trigger, also in a fresh child process.
(b) M triggers due at the same second: executions recorded and lateness (the commit of the
    statement that wrote each row minus scheduled_for); reference: APScheduler, one job per
    trigger, each inserting its row.
(c) One every-second trigger for --duration seconds: lateness, missed and doubled slots.

Each part uses its own fresh database on one embedded PostgreSQL
(:func:`triggerd.db.start_embedded` in a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import resource
import shutil
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triggerd import db
from triggerd.config import Settings
from triggerd.scheduler import CronScheduler
from triggerd.scheduler.service import utc_now

EXPRESSIONS = [
    "* * * * *", "*/2 * * * *", "*/5 * * * *", "*/10 * * * *", "*/15 * * * *",
    "*/30 * * * *", "0 * * * *", "15 * * * *", "30 * * * *", "45 * * * *",
    "0 */2 * * *", "30 */3 * * *", "0 */6 * * *", "5 4 * * *", "0 2 * * *",
    "30 6 * * *", "0 9 * * 1-5", "30 17 * * 1-5", "0 12 * * 0", "0 0 * * 6",
    "0 0 1 * *", "0 6 1,15 * *", "0 0 L * *", "0 9 * * 1#1", "0 3 * * 0,3",
    "10 10 10 * *", "0 8-18 * * 1-5", "*/20 9-17 * * 1-5", "0 22 * * 5", "59 23 * * *",
    "0 0 1 1 *", "0 0 1 */3 *", "7 7 * * 2", "0 1 * * *", "0 13 * * *",
]
ZONES = ["UTC", "Europe/Madrid", "America/New_York", "Asia/Tokyo"]
TARGETS = {
    "ready_s": 5.0,
    "rss_mb": 250.0,
    "burst_p99_ms": 250.0,
    "second_p99_ms": 5.0,
}


# --- helpers ----------------------------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def rss_mb() -> tuple[float, float]:
    """(current VmRSS, peak VmHWM) of this process in MB."""
    current = peak = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def verdict(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


async def fresh_database(admin_dsn: str, name: str) -> str:
    conn = await db.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    dsn = with_database(admin_dsn, name)
    await db.migrate(dsn)
    return dsn


async def insert_triggers(dsn: str, configs: list[dict[str, Any]], per_workflow: int) -> None:
    """``configs[i]`` becomes trigger i; triggers are spread over workflows."""
    conn = await db.connect(dsn)
    try:
        workflows = math.ceil(len(configs) / per_workflow)
        ids = await conn.fetch(
            "INSERT INTO workflows (key, name) SELECT 'wf' || i, 'wf' || i"
            " FROM generate_series(0, $1 - 1) i ORDER BY i RETURNING id",
            workflows,
        )
        workflow_ids = [r["id"] for r in ids]
        await conn.execute(
            "INSERT INTO workflow_versions (workflow_id, version, graph, is_latest, published_at)"
            " SELECT id, 1, '{}', true, now() FROM workflows"
        )
        texts = [json.dumps(c) for c in configs]
        for start in range(0, len(configs), 20_000):
            chunk = texts[start : start + 20_000]
            await conn.execute(
                "INSERT INTO workflow_triggers (workflow_id, name, type, config)"
                " SELECT ($1::uuid[])[(n - 1) / $3 + 1], 't' || n, 'cron', c::jsonb"
                " FROM unnest($2::text[]) WITH ORDINALITY AS x(c, k),"
                " LATERAL (SELECT k + $4 AS n) AS m",
                workflow_ids,
                chunk,
                per_workflow,
                start,
            )
        # As autovacuum would soon: without statistics the planner nests loops over 100k rows.
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run_child(*args: str) -> tuple[dict[str, Any], float]:
    """Run this file as a child; returns its JSON reports (merged) and the seconds from
    spawning it to its first output line (the child prints once it is ready)."""
    spawned = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", *args,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    elapsed = time.perf_counter() - spawned
    if not line:
        await proc.wait()
        raise RuntimeError(f"child {args[0]} failed (exit {proc.returncode})")
    report: dict[str, Any] = json.loads(line)
    for more in (await proc.stdout.read()).splitlines():
        report.update(json.loads(more))
    await proc.wait()
    return report, elapsed


# --- children -----------------------------------------------------------------------------


async def child_ours(dsn: str) -> None:
    started = time.perf_counter()
    pool = await db.create_pool(dsn, min_size=2, max_size=10)
    scheduler = CronScheduler(pool=pool, dsn=dsn, settings=Settings())
    await scheduler.start()
    ready = time.perf_counter() - started
    current, peak = rss_mb()
    stats = scheduler.stats
    report: dict[str, Any] = {
        "start_s": round(ready, 3),
        "rss_mb": round(current, 1),
        "peak_rss_mb": round(peak, 1),
        "triggers": stats.triggers,
        "schedules": stats.schedules,
        "timers": stats.timers,
        "catchup_fired": stats.fires,
    }
    print(json.dumps(report), flush=True)
    checked = time.perf_counter()
    problem = await scheduler.readiness()
    probe_ms = (time.perf_counter() - checked) * 1000
    # What a probe used to run: the background overdue check, done once here.
    checked = time.perf_counter()
    await scheduler._find_overdue_problem(utc_now())
    print(json.dumps({"readiness_ms": round(probe_ms, 2), "readiness": problem,
                      "overdue_check_ms": round((time.perf_counter() - checked) * 1000, 1)}),
          flush=True)
    await scheduler.stop()
    await pool.close()


async def _noop() -> None:
    return None


def _reference_trigger(expression: str, zone: str) -> Any:
    """APScheduler's CronTrigger for one of EXPRESSIONS (it spells ``L`` and ``1#1`` as
    ``last`` and ``1st mon``)."""
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, dow = expression.split()
    if day == "L":
        day = "last"
    if dow == "1#1":
        day, dow = "1st mon", "*"
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                       timezone=zone)


async def child_apscheduler(dsn: str) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    started = time.perf_counter()
    conn = await db.connect(dsn)
    rows = await conn.fetch(
        "SELECT id::text, config->>'cron', COALESCE(config->>'timezone', 'UTC')"
        " FROM workflow_triggers WHERE type = 'cron' AND enabled"
    )
    await conn.close()
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.start()
    for trigger_id, expression, zone in rows:
        scheduler.add_job(_noop, _reference_trigger(expression, zone), id=trigger_id)
    await asyncio.sleep(0)  # let the scheduler process its wake-ups
    ready = time.perf_counter() - started
    current, peak = rss_mb()
    print(json.dumps({"start_s": round(ready, 3), "rss_mb": round(current, 1),
                      "peak_rss_mb": round(peak, 1), "jobs": len(scheduler.get_jobs())}),
          flush=True)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)


async def child_apscheduler_burst(dsn: str, lead: str) -> None:
    """One APScheduler job per trigger, all due at one second ``lead`` seconds after the
    jobs are added; each job inserts its execution."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)
    pool = await db.create_pool(dsn, min_size=2, max_size=10)
    rows = await pool.fetch("SELECT id, workflow_id FROM workflow_triggers")
    target = (datetime.now(UTC) + timedelta(seconds=float(lead))).replace(microsecond=0)
    key = f"cron:{target.isoformat()}"

    async def fire(trigger_id: Any, workflow_id: Any) -> None:
        await pool.execute(
            "INSERT INTO workflow_executions (workflow_id, trigger_id, trigger_type, dedupe_key,"
            " scheduled_for) VALUES ($1, $2, 'cron', $3, $4) ON CONFLICT DO NOTHING",
            workflow_id, trigger_id, key, target,
        )

    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    missed: list[float] = []

    def on_missed(event: JobExecutionEvent) -> None:
        missed.append((datetime.now(UTC) - event.scheduled_run_time).total_seconds())

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    scheduler.start()
    for trigger_id, workflow_id in rows:
        scheduler.add_job(
            fire,
            CronTrigger(second=target.second, minute=target.minute, hour=target.hour,
                        timezone=UTC),
            args=(trigger_id, workflow_id),
        )
    added = datetime.now(UTC)
    await asyncio.sleep(max(0.0, (target - datetime.now(UTC)).total_seconds()) + 8)
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0.1)
    await pool.close()
    print(json.dumps({"target": target.isoformat(), "jobs": len(rows),
                      "added_before_target_s": (target - added).total_seconds(),
                      "missed": len(missed), "missed_late_s": min(missed, default=None)}),
          flush=True)


# --- parts -----------------------------------------------------------------------------------


async def part_a(admin_dsn: str, count: int, reference: bool) -> None:
    print(f"\n(a) {count:,} enabled cron triggers: start to ready, memory")
    dsn = await fresh_database(admin_dsn, "bench_a")
    schedules = [(e, z) for z in ZONES for e in EXPRESSIONS][:50]
    configs = [{"cron": schedules[i % len(schedules)][0],
                "timezone": schedules[i % len(schedules)][1]} for i in range(count)]
    began = time.perf_counter()
    await insert_triggers(dsn, configs, per_workflow=1000)
    print(f"    inserted {count:,} triggers ({len(schedules)} distinct schedules)"
          f" in {time.perf_counter() - began:.1f}s")

    ours, process_s = await run_child("ours", dsn)
    print(f"    triggerd CronScheduler: process start to ready {process_s:.2f}s"
          f" (start() {ours['start_s']:.2f}s)  target <= {TARGETS['ready_s']:.0f}s"
          f"  [{verdict(process_s, TARGETS['ready_s'])}]")
    rss_ok = verdict(ours["peak_rss_mb"], TARGETS["rss_mb"])
    print(f"        RSS {ours['rss_mb']:.0f} MB (peak {ours['peak_rss_mb']:.0f} MB)"
          f"  target <= {TARGETS['rss_mb']:.0f} MB  [{rss_ok}]")
    print(f"        {ours['triggers']:,} triggers in {ours['schedules']} schedules,"
          f" {ours['timers']} APScheduler jobs, {ours['catchup_fired']} catch-up fires;"
          f" /readyz probe {ours['readiness_ms']:.2f} ms ({ours['readiness'] or 'ready'}),"
          f" background overdue check {ours['overdue_check_ms']:.0f} ms")
    if reference:
        ref, ref_process_s = await run_child("apscheduler", dsn)
        print(f"    APScheduler 3.11, one CronTrigger job per trigger: process start to ready"
              f" {ref_process_s:.2f}s (loading + add_job {ref['start_s']:.2f}s),"
              f" RSS {ref['rss_mb']:.0f} MB (peak {ref['peak_rss_mb']:.0f} MB),"
              f" {ref['jobs']:,} jobs")


async def _burst_database(
    admin_dsn: str, name: str, count: int, lead: float
) -> tuple[str, datetime]:
    dsn = await fresh_database(admin_dsn, name)
    target = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    expression = f"{target.second} {target.minute} {target.hour} * * *"
    await insert_triggers(dsn, [{"cron": expression}] * count, per_workflow=1000)
    return dsn, target


async def _burst_figures(dsn: str, target: datetime) -> tuple[int, list[float]]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM created_at - scheduled_for) * 1000 AS late"
            " FROM workflow_executions WHERE scheduled_for = $1",
            target,
        )
    finally:
        await conn.close()
    return len(rows), [float(r["late"]) for r in rows]


async def _watch_count(dsn: str, target: datetime, count: int, limit: float) -> float | None:
    """Milliseconds after ``target`` at which all ``count`` executions were visible."""
    conn = await db.connect(dsn)
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            seen = await conn.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE scheduled_for = $1", target
            )
            if seen >= count:
                return (datetime.now(UTC) - target).total_seconds() * 1000
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return None


async def part_b(admin_dsn: str, count: int, reference: bool) -> None:
    print(f"\n(b) {count:,} triggers due at the same second")
    dsn, target = await _burst_database(admin_dsn, "bench_b", count, lead=8.0)
    pool = await db.create_pool(dsn, min_size=2, max_size=10)
    scheduler = CronScheduler(pool=pool, dsn=dsn, settings=Settings())
    await scheduler.start()
    visible = await _watch_count(dsn, target, count,
                                 limit=(target - datetime.now(UTC)).total_seconds() + 10)
    await asyncio.sleep(0.5)
    # When each row was written: the commit of the statement that wrote it, as the
    # scheduler saw it return (one sample per statement, weighted by its rows).
    committed = [
        seconds * 1000 for seconds, rows in scheduler.stats.committed for _ in range(rows)
    ]
    statements = len(scheduler.stats.committed)
    await scheduler.stop()
    await pool.close()
    recorded, late = await _burst_figures(dsn, target)
    p99 = percentile(committed, 0.99)
    print(f"    triggerd: {recorded:,}/{count:,} executions recorded"
          f"  [{'ok' if recorded == count else 'MISSED'}]")
    print(f"        lateness (row committed - scheduled_for) p50"
          f" {percentile(committed, 0.5):.0f} ms, p99 {p99:.0f} ms,"
          f" max {max(committed, default=math.nan):.0f} ms"
          f"  target p99 <= {TARGETS['burst_p99_ms']:.0f} ms"
          f"  [{verdict(p99, TARGETS['burst_p99_ms'])}]")
    print(f"        written by {statements} concurrent statements; their start"
          f" (created_at - scheduled_for) p50 {percentile(late, 0.5):.1f} ms,"
          f" p99 {percentile(late, 0.99):.1f} ms; a reader polling count(*) saw all"
          f" {count:,} at +{visible or math.nan:.0f} ms")
    if reference:
        dsn, _ = await _burst_database(admin_dsn, "bench_b_ref", count, lead=3600)
        ref, _ = await run_child("apscheduler-burst", dsn, "10")
        if ref["added_before_target_s"] <= 0:
            print("    APScheduler reference: adding the jobs outlasted the 10 s lead; no figures")
            return
        target = datetime.fromisoformat(ref["target"])
        recorded, late = await _burst_figures(dsn, target)
        print(f"    APScheduler 3.11, one job per trigger (each inserting its row):"
              f" {recorded:,}/{count:,} recorded ({100 * (count - recorded) / count:.0f}% missed),"
              f" lateness p50 {percentile(late, 0.5):.0f} ms, p99 {percentile(late, 0.99):.0f} ms")
        if ref["missed"]:
            print(f"        {ref['missed']:,} jobs dropped as misfires (default grace 1 s): they"
                  f" started {ref['missed_late_s']:.2f}s or more after their instant")


async def part_c(admin_dsn: str, duration: float) -> None:
    print(f"\n(c) one every-second trigger for {duration:.0f}s")
    dsn = await fresh_database(admin_dsn, "bench_c")
    await insert_triggers(dsn, [{"cron": "* * * * * *", "overlap": "allow"}], per_workflow=1)
    pool = await db.create_pool(dsn, min_size=2, max_size=10)
    scheduler = CronScheduler(pool=pool, dsn=dsn, settings=Settings())
    await scheduler.start()
    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep(duration + 0.5)
    last = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    await scheduler.stop()
    await pool.close()
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT scheduled_for, count(*) AS n,"
            " max(extract(epoch FROM created_at - scheduled_for) * 1000) AS late"
            " FROM workflow_executions WHERE scheduled_for BETWEEN $1 AND $2"
            " GROUP BY scheduled_for",
            first, last,
        )
    finally:
        await conn.close()
    expected = int((last - first).total_seconds()) + 1
    doubled = sum(1 for r in rows if r["n"] > 1)
    missed = expected - len(rows)
    late = [float(r["late"]) for r in rows]
    p99 = percentile(late, 0.99)
    print(f"    {len(rows)}/{expected} slots fired, missed {missed}, doubled {doubled}"
          f"  [{'ok' if missed == 0 and doubled == 0 else 'MISSED'}]")
    print(f"    lateness (created_at - scheduled_for) p50 {percentile(late, 0.5):.2f} ms,"
          f" p99 {p99:.2f} ms, max {max(late, default=math.nan):.2f} ms"
          f"  target p99 <= {TARGETS['second_p99_ms']:.0f} ms"
          f"  [{verdict(p99, TARGETS['second_p99_ms'])}]")


async def main(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="triggerd-bench-"))
    try:
        dsn = await asyncio.to_thread(db.start_embedded, state)
        admin = with_database(dsn, "postgres")
        print(f"embedded PostgreSQL under {state}; python {sys.version.split()[0]}")
        parts = set(args.only.split(","))
        if "a" in parts:
            await part_a(admin, args.triggers, not args.no_reference)
        if "b" in parts:
            await part_b(admin, args.burst, not args.no_reference)
        if "c" in parts:
            await part_c(admin, args.duration)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def child_main(argv: list[str]) -> None:
    kind, dsn, *rest = argv
    if kind == "ours":
        asyncio.run(child_ours(dsn))
    elif kind == "apscheduler":
        asyncio.run(child_apscheduler(dsn))
    elif kind == "apscheduler-burst":
        asyncio.run(child_apscheduler_burst(dsn, rest[0]))
    else:
        raise SystemExit(f"unknown child {kind!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of the every-second run (c); default 60")
    parser.add_argument("--triggers", type=int, default=100_000, help="triggers in (a)")
    parser.add_argument("--burst", type=int, default=10_000, help="triggers due together in (b)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the APScheduler one-job-per-trigger references")
    parser.add_argument("--only", default="a,b,c", help="parts to run, e.g. 'a,c'")
    asyncio.run(main(parser.parse_args()))
