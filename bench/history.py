"""Costs as history grows (issue 14.3). Not a test: it prints figures next to their targets.

    .venv/bin/python bench/history.py [--executions 2000000] [--state DIR] [--repeat 20]
                                      [--only lists,claim,retention] [--rebuild]

One shared generator fills a TEMPLATE database with N finished executions over the last 60
days (3 node rows each; half from webhooks, each with its inbox row; the cron half with its
slot ledger rows, plus some skipped slots), spread (skewed) over 1,000 workflows with one
cron and one webhook trigger each. It is built once, in SQL (``INSERT ... SELECT
generate_series``, one statement per chunk writes every table): each part then gets its own
copy with ``CREATE DATABASE x TEMPLATE y STRATEGY FILE_COPY`` (a file copy). A template
database with the same workflows and triggers but no history is the "empty" side of every
comparison. With ``--state DIR`` the embedded server and its templates are kept and reused
by later runs (``--rebuild`` forces a new build); without it everything goes in a temporary
directory.

Parts (``--only``):

gen        build (or reuse) the templates: seconds and sizes.
lists      every list the CLI and the admin API offer, through the store functions they
           call: median of 20 calls client side and the server's ``EXPLAIN (ANALYZE)``
           execution time of the same statement, empty vs N. Target: milliseconds
           (median <= 10 ms at any size).
retention  the retention loop's statements on a copy: how long deleting everything older
           than 30 days takes (about half the history), in batches, and what is left.
claim      the executor's claim statements (batches of 32) over 20,000 NEW executions
           added to a copy, each batch finished once claimed: p50/p99 of the NEW-only
           claim and of the one that also looks for overdue runs (every tenth), empty vs
           N. Target: p99 within 2x of empty.
ingest     bench/webhook.py's ``triggerd`` server (webhook component, one process) on a
           copy, after warming the WAL: stored requests per second, empty vs N. Target:
           N >= 90% of empty.
retention-held
           a retention of 1 day with the last 7 days' webhook runs held by live delivery
           ids: a pass from the previous pass's positions against one starting over.
retention-ingest
           the same server on a copy, loaded at a fixed rate (bench/sustained.py's open-loop
           generator, --ingest-rate, default 1,000 req/s) for --retention-seconds: once as
           the baseline, once while the executor's retention rounds (retention_round, its
           pause) delete everything older than 30 days (about half the history). Target:
           p99 during <= 2x baseline; prints the executions deleted per second meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.cron import percentile, with_database
from triggerd import db
from triggerd.config import load_settings
from triggerd.definitions import load_documents
from triggerd.executor.retention import RetentionCursor
from triggerd.executor.service import (
    LEDGER_RETENTION_BATCH,
    RETENTION_BATCH,
    retention_pause,
    retention_round,
)
from triggerd.store import admin as store_admin
from triggerd.store import executions as store_executions
from triggerd.store import slots as store_slots
from triggerd.store import workflows as store_workflows

WORKFLOWS = 1000
DAYS = 60
CHUNK = 100_000
EMPTY = "hist_empty"
TARGETS = {"list_median_ms": 10.0, "claim_p99_ratio": 2.0}

GRAPH = {
    "nodes": [
        {"id": "fetch", "type": "http",
         "params": {"method": "GET", "url": "https://api.example/items/{{ input.ref }}"}},
        {"id": "check", "type": "if",
         "params": {"condition": "{{ nodes.fetch.output.status == 200 }}"}},
        {"id": "notify", "type": "log", "params": {"message": "done {{ input.ref }}"}},
    ],
    "edges": [{"from": "fetch", "to": "check"}, {"from": "check", "to": "notify", "when": "true"}],
}


def history_name(executions: int) -> str:
    return f"hist_{executions}"


def definition_document() -> dict[str, Any]:
    workflows = []
    for n in range(WORKFLOWS):
        workflows.append({
            "key": f"wf{n:04d}",
            "name": f"Workflow {n}",
            "graph": GRAPH,
            "triggers": [
                {"name": "nightly", "type": "cron", "cron": f"{n % 60} {n % 24} * * *",
                 "timezone": "UTC"},
                {"name": "hook", "type": "webhook", "path": f"wf{n:04d}/hook"},
            ],
        })
    return {"workflows": workflows}


# --- the generator ------------------------------------------------------------------------

# The triggers numbered per type (k = 0, 1, ...), so a row number picks one by arithmetic.
_TRIGGERS = """
CREATE TEMP TABLE bench_triggers AS
SELECT t.id, t.workflow_id, t.name, t.type, t.config ->> 'path' AS path, v.id AS version_id,
       (row_number() OVER (PARTITION BY t.type ORDER BY w.key) - 1)::int AS k
FROM workflow_triggers t
JOIN workflows w ON w.id = t.workflow_id
JOIN workflow_versions v ON v.workflow_id = t.workflow_id AND v.is_latest;
CREATE UNIQUE INDEX ON bench_triggers (type, k);
ANALYZE bench_triggers;
"""

# One statement per chunk of row numbers [$1, $2) writes the executions of those rows and
# everything that hangs off them. Row i was created at $4 + i * $5 seconds (so rows, ids
# and time go up together, as they do in production); even rows come from cron triggers,
# odd ones from webhooks; a trigger is drawn with a skew (r^2: low numbers are hot).
_FILL = """
WITH g AS (
    SELECT i, random() AS r1, random() AS r2, random() AS r3,
           $4::timestamptz + (i * $5::float8) * interval '1 second' AS at,
           CASE WHEN i % 2 = 0 THEN 'cron' ELSE 'webhook' END AS kind
    FROM generate_series($1::bigint, $2::bigint - 1) AS i
), rows AS (
    SELECT g.*, t.id AS trigger_id, t.workflow_id, t.version_id, t.name AS trigger_name,
           t.path, md5(g.i::text) AS h,
           date_trunc('second', g.at) AS slot,
           -- A UUIDv7 from the row's time, as triggerd.ids makes them.
           (lpad(to_hex((extract(epoch FROM g.at) * 1000)::bigint), 12, '0')
            || '7' || substr(md5(g.i::text), 1, 3) || '8' || substr(md5(g.i::text), 4, 15)
           )::uuid AS id,
           CASE WHEN g.r1 < 0.90 THEN 'SUCCESS' WHEN g.r1 < 0.98 THEN 'ERROR'
                ELSE 'CANCELED' END AS status
    FROM g
    JOIN bench_triggers t ON t.type = g.kind AND t.k = floor($3 * g.r3 * g.r3)::int
), e AS (
    INSERT INTO workflow_executions (id, workflow_id, workflow_version_id, trigger_id,
        trigger_name, trigger_type, dedupe_key, status, input, output, context, error_code,
        error_message, scheduled_for, created_at, start_time, end_time, attempt)
    SELECT r.id, r.workflow_id, r.version_id, r.trigger_id, r.trigger_name, r.kind,
           CASE WHEN r.kind = 'cron' THEN 'cron:' || to_char(r.slot AT TIME ZONE 'UTC',
                                                             'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE 'webhook:' || r.h END,
           r.status,
           CASE WHEN r.kind = 'cron' THEN jsonb_build_object('day', to_char(r.at, 'YYYY-MM-DD'))
                ELSE jsonb_build_object('ref', 'refs/heads/main', 'after', r.h,
                    'repository', jsonb_build_object('full_name', 'acme/repo-' || (r.i % 500)),
                    'sender', jsonb_build_object('login', 'user' || (r.i % 97)),
                    'commits', jsonb_build_array(jsonb_build_object(
                        'id', r.h, 'message', 'Fix the thing in module ' || (r.i % 1000))))
           END,
           CASE WHEN r.status = 'SUCCESS'
                THEN jsonb_build_object('status', 200, 'items', (r.i % 250), 'ok', true) END,
           CASE WHEN r.kind = 'cron'
                THEN jsonb_build_object('trigger', jsonb_build_object('type', 'cron',
                    'name', r.trigger_name, 'scheduled_for', r.slot, 'fired_at', r.at))
                ELSE jsonb_build_object('trigger', jsonb_build_object('type', 'webhook',
                    'name', r.trigger_name, 'request', jsonb_build_object(
                        'method', 'POST', 'path', r.path, 'query', '{}'::jsonb,
                        'headers', jsonb_build_object(
                            'Content-Type', 'application/json', 'User-Agent',
                            'GitHub-Hookshot/a1b2c3d', 'X-GitHub-Event', 'push',
                            'X-GitHub-Delivery', r.h, 'Content-Length', '412',
                            'Accept', '*/*', 'X-GitHub-Hook-ID', (r.i % 100000)::text))))
           END,
           CASE r.status WHEN 'ERROR' THEN 'HTTP_STATUS' WHEN 'CANCELED' THEN 'CANCELED' END,
           CASE r.status WHEN 'ERROR' THEN 'node fetch: GET https://api.example/items answered 503'
                         WHEN 'CANCELED' THEN 'canceled by request' END,
           CASE WHEN r.kind = 'cron' THEN r.slot END,
           r.at, r.at + interval '4 milliseconds',
           r.at + interval '4 milliseconds' + (r.r2 * 2000) * interval '1 millisecond',
           1
    FROM rows r
    RETURNING id, status, start_time, end_time
), n AS (
    INSERT INTO node_executions (execution_id, node_id, node_type, status, attempt, input,
        output, error_code, error_message, start_time, end_time, execution_time_ms,
        from_node_id, edge_condition)
    SELECT e.id, x.node_id, x.node_type,
           CASE WHEN e.status = 'ERROR' AND x.step = 1 THEN 'ERROR'
                WHEN e.status = 'ERROR' THEN 'SKIPPED'
                WHEN e.status = 'CANCELED' AND x.step = 3 THEN 'CANCELED'
                ELSE 'SUCCESS' END,
           1, x.input,
           CASE WHEN e.status = 'SUCCESS' THEN x.output END,
           CASE WHEN e.status = 'ERROR' AND x.step = 1 THEN 'HTTP_STATUS' END,
           CASE WHEN e.status = 'ERROR' AND x.step = 1
                THEN 'GET https://api.example/items answered 503' END,
           e.start_time + (x.step - 1) * (e.end_time - e.start_time) / 3,
           e.start_time + x.step * (e.end_time - e.start_time) / 3,
           extract(epoch FROM (e.end_time - e.start_time)) * 1000 / 3,
           x.from_node, x.edge
    FROM e CROSS JOIN (VALUES
        (1, 'fetch', 'http', '{"method": "GET", "url": "https://api.example/items/main"}'::jsonb,
         '{"status": 200, "headers": {"content-type": "application/json"},
           "body": {"total": 17, "items": [1, 2, 3]}}'::jsonb,
         NULL, NULL),
        (2, 'check', 'if', '{"condition": true}'::jsonb, '{"result": true}'::jsonb,
         'fetch', NULL),
        (3, 'notify', 'log', '{"message": "done main"}'::jsonb, '{"logged": true}'::jsonb,
         'check', 'true')
    ) AS x(step, node_id, node_type, input, output, from_node, edge)
), q AS (
    INSERT INTO webhook_requests (id, trigger_id, method, path, query, headers, body,
        remote_addr, received_at, execution_id)
    SELECT r.id, r.trigger_id, 'POST', r.path, '{}'::jsonb,
           jsonb_build_object('Content-Type', 'application/json',
               'User-Agent', 'GitHub-Hookshot/a1b2c3d', 'X-GitHub-Event', 'push',
               'X-GitHub-Delivery', r.h, 'Content-Length', '412', 'Accept', '*/*',
               'X-GitHub-Hook-ID', (r.i % 100000)::text),
           convert_to(json_build_object('ref', 'refs/heads/main', 'after', r.h,
               'repository', json_build_object('full_name', 'acme/repo-' || (r.i % 500)),
               'sender', json_build_object('login', 'user' || (r.i % 97)),
               'commits', json_build_array(json_build_object(
                   'id', r.h, 'message', 'Fix the thing in module ' || (r.i % 1000))))::text,
               'UTF8'),
           '10.0.' || (r.i % 250) || '.' || (r.i % 199), r.at, r.id
    FROM rows r WHERE r.kind = 'webhook'
)
-- The ledger: every cron row's fired slot; one in ten also left a skipped slot a minute
-- before (overlap), as busy schedules do.
INSERT INTO trigger_slots (trigger_id, scheduled_for, outcome, execution_id, decided_at, detail)
SELECT r.trigger_id, r.slot, 'fired', r.id, r.at, NULL FROM rows r WHERE r.kind = 'cron'
UNION ALL
SELECT r.trigger_id, r.slot - interval '1 minute', 'skipped_overlap', NULL,
       r.at - interval '1 minute', 'overlap policy skip: 1 run(s) still active'
FROM rows r WHERE r.kind = 'cron' AND r.i % 20 = 0
ON CONFLICT DO NOTHING
"""


async def _database_exists(admin: str, name: str, *, complete: bool) -> bool:
    conn = await db.connect(admin)
    try:
        row = await conn.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS note FROM pg_database"
            " WHERE datname = $1",
            name,
        )
    finally:
        await conn.close()
    return row is not None and (not complete or row["note"] == "complete")


async def _admin_execute(admin: str, *statements: str) -> None:
    conn = await db.connect(admin)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def copy_database(admin: str, template: str, name: str) -> str:
    """A new database ``name`` copied from ``template`` (files copied, not WAL-logged)."""
    await _admin_execute(
        admin,
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY",
    )
    return with_database(admin, name)


async def build_empty(admin: str) -> float:
    """The template with 1,000 workflows and their 2,000 triggers, no history."""
    started = time.perf_counter()
    await _admin_execute(admin, f"DROP DATABASE IF EXISTS {EMPTY} WITH (FORCE)",
                         f"CREATE DATABASE {EMPTY}")
    dsn = with_database(admin, EMPTY)
    await db.migrate(dsn)
    conn = await db.connect(dsn)
    try:
        specs = load_documents([("bench", definition_document())])
        await store_workflows.apply_workflows(conn, specs)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    await _admin_execute(admin, f"COMMENT ON DATABASE {EMPTY} IS 'complete'")
    return time.perf_counter() - started


async def build_history(admin: str, executions: int) -> float:
    """The empty template's copy filled with ``executions`` finished runs."""
    name = history_name(executions)
    started = time.perf_counter()
    dsn = await copy_database(admin, EMPTY, name)
    conn = await db.connect(dsn)
    try:
        # Bulk load: no need to wait for each chunk's WAL flush; the template is complete
        # only once the comment below is written.
        await conn.execute("SET synchronous_commit = off; SELECT setseed(0.14)")
        await conn.execute(_TRIGGERS)
        now = await conn.fetchval("SELECT date_trunc('second', now())")
        first = now - timedelta(days=DAYS)
        step = DAYS * 86400 / executions
        per_type = WORKFLOWS
        for start in range(0, executions, CHUNK):
            end = min(executions, start + CHUNK)
            await conn.execute(_FILL, start, end, per_type, first, step)
            done = time.perf_counter() - started
            print(f"  {end:>10,} executions  {done:7.1f} s  ({end / done:,.0f}/s)", flush=True)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    await _admin_execute(admin, f"COMMENT ON DATABASE {name} IS 'complete'")
    return time.perf_counter() - started


async def sizes(dsn: str) -> dict[str, Any]:
    conn = await db.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.reltuples::bigint AS n,"
            " pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
            " WHERE c.relname IN ('workflow_executions', 'node_executions', 'webhook_requests',"
            " 'trigger_slots') ORDER BY c.relname"
        )
        total = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {"tables": {r["relname"]: (int(r["n"]), int(r["bytes"])) for r in rows},
            "total": int(total)}


def _gb(value: int) -> str:
    return f"{value / 1024**3:.2f} GB"


async def part_gen(admin: str, executions: int, rebuild: bool) -> None:
    print("\n(gen) history templates")
    if rebuild or not await _database_exists(admin, EMPTY, complete=True):
        seconds = await build_empty(admin)
        print(f"  {EMPTY}: built in {seconds:.1f} s ({WORKFLOWS} workflows,"
              f" {2 * WORKFLOWS} triggers)")
    else:
        print(f"  {EMPTY}: reused")
    name = history_name(executions)
    if rebuild or not await _database_exists(admin, name, complete=True):
        seconds = await build_history(admin, executions)
        print(f"  {name}: built in {seconds:.1f} s ({executions / seconds:,.0f} executions/s"
              " with their node, inbox and ledger rows)")
    else:
        print(f"  {name}: reused")
    report = await sizes(with_database(admin, name))
    for table, (rows, size) in report["tables"].items():
        print(f"  {table:<22} {rows:>12,} rows  {_gb(size):>9}")
    print(f"  database {name}: {_gb(report['total'])}")


# --- lists --------------------------------------------------------------------------------


class Recorder:
    """Passes calls to a connection and remembers the last statement and its arguments, so
    the bench can ask the server to EXPLAIN exactly what a store function sent."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.last: tuple[str, tuple[Any, ...]] | None = None

    async def fetch(self, query: str, *args: Any, **kw: Any) -> Any:
        self.last = (query, args)
        return await self.conn.fetch(query, *args, **kw)

    async def fetchrow(self, query: str, *args: Any, **kw: Any) -> Any:
        self.last = (query, args)
        return await self.conn.fetchrow(query, *args, **kw)

    async def fetchval(self, query: str, *args: Any, **kw: Any) -> Any:
        self.last = (query, args)
        return await self.conn.fetchval(query, *args, **kw)


Call = Callable[[Any], Awaitable[Any]]


async def _list_calls(conn: asyncpg.Connection) -> list[tuple[str, Call]]:
    """(label, call) for every list the CLI and the admin API offer, with the arguments
    they pass (the API asks for limit + 1 rows to know whether a next page follows)."""
    # The hottest trigger (the generator's skew favours the first ones) and the coldest.
    hot = await conn.fetchrow(
        "SELECT t.id::text AS id, t.workflow_id::text AS workflow_id, w.key"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.type = 'cron' ORDER BY w.key LIMIT 1"
    )
    assert hot is not None
    cold = await conn.fetchrow(
        "SELECT t.id::text AS id, t.workflow_id::text AS workflow_id, w.key"
        " FROM workflow_triggers t JOIN workflows w ON w.id = t.workflow_id"
        " WHERE t.type = 'webhook' ORDER BY w.key DESC LIMIT 1"
    )
    assert cold is not None
    some = await conn.fetchval(
        "SELECT id::text FROM workflow_executions ORDER BY id DESC LIMIT 1"
    )
    ex = store_executions
    ad = store_admin
    wf = store_workflows
    hot_wf, cold_wf = hot["workflow_id"], cold["workflow_id"]
    calls: list[tuple[str, Call]] = [
        ("API executions (all)", lambda c: ad.page_executions(c, limit=51)),
        ("API executions ?status=ERROR",
         lambda c: ad.page_executions(c, status="ERROR", limit=51)),
        ("API executions ?status=NEW", lambda c: ad.page_executions(c, status="NEW", limit=51)),
        ("API executions ?trigger=hot",
         lambda c: ad.page_executions(c, trigger_id=hot["id"], limit=51)),
        ("API executions ?trigger=cold",
         lambda c: ad.page_executions(c, trigger_id=cold["id"], limit=51)),
        ("API executions ?workflow=hot",
         lambda c: ad.page_executions(c, workflow_id=hot_wf, limit=51)),
        ("API executions ?workflow=cold",
         lambda c: ad.page_executions(c, workflow_id=cold_wf, limit=51)),
        ("API executions ?workflow&status=ERROR", lambda c: ad.page_executions(
            c, workflow_id=hot["workflow_id"], status="ERROR", limit=51)),
        ("CLI executions list", lambda c: ex.list_executions(c, limit=50)),
        ("CLI executions list --status ERROR",
         lambda c: ex.list_executions(c, status="ERROR", limit=50)),
        ("CLI executions list --status NEW",
         lambda c: ex.list_executions(c, status="NEW", limit=50)),
        ("CLI executions list --trigger hot",
         lambda c: ex.list_executions(c, trigger_id=hot["id"], limit=50)),
        ("API workflows (a page)", lambda c: wf.list_workflows(c, limit=51)),
        ("API triggers (a page)", lambda c: wf.list_triggers(c, limit=51)),
        # The command line prints every workflow and trigger: O(their number), not history.
        (f"CLI workflows list (all {WORKFLOWS:,})", lambda c: wf.list_workflows(c)),
        (f"CLI triggers list (all {2 * WORKFLOWS:,})", lambda c: wf.list_triggers(c)),
        ("API triggers ?workflow=", lambda c: wf.list_triggers(c, workflow_key=hot["key"])),
        ("API/CLI trigger slots (50)", lambda c: ad.slot_history(c, hot["id"], limit=51)),
        ("API workflow versions", lambda c: wf.list_versions(c, hot["workflow_id"])),
    ]
    if some is not None:
        calls.append(("API/CLI execution nodes", lambda c: ex.node_timeline(c, some)))
    return calls


async def _explain_ms(conn: asyncpg.Connection, query: str, args: tuple[Any, ...]) -> float:
    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", *args)
    doc = json.loads(plan) if isinstance(plan, str) else plan
    return float(doc[0]["Execution Time"])


async def measure_lists(dsn: str, repeat: int) -> dict[str, tuple[float, float]]:
    """label -> (client median ms, server EXPLAIN ANALYZE median ms)."""
    conn = await db.connect(dsn)
    try:
        recorder = Recorder(conn)
        results: dict[str, tuple[float, float]] = {}
        for label, call in await _list_calls(conn):
            client: list[float] = []
            for _ in range(repeat):
                started = time.perf_counter()
                await call(recorder)
                client.append((time.perf_counter() - started) * 1000)
            assert recorder.last is not None
            query, args = recorder.last
            server = [await _explain_ms(conn, query, args) for _ in range(5)]
            results[label] = (statistics.median(client), statistics.median(server))
    finally:
        await conn.close()
    return results


async def part_lists(admin: str, executions: int, repeat: int) -> None:
    print(f"\n(lists) median of {repeat} calls (client) and of 5 EXPLAIN ANALYZE (server), ms;"
          f" target: median <= {TARGETS['list_median_ms']:g} ms at {executions:,}")
    figures = {}
    for side, template in (("empty", EMPTY), ("full", history_name(executions))):
        dsn = await copy_database(admin, template, f"lists_{side}")
        await db.migrate(dsn)  # migrations newer than the template (their indexes included)
        conn = await db.connect(dsn)
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        figures[side] = await measure_lists(dsn, repeat)
        await _admin_execute(admin, f"DROP DATABASE lists_{side} WITH (FORCE)")
    print(f"  {'list':<40} {'empty client/server':>20} {f'{executions:,} client/server':>24}")
    for label, (client, server) in figures["full"].items():
        e_client, e_server = figures["empty"].get(label, (float("nan"), float("nan")))
        verdict = "ok" if client <= TARGETS["list_median_ms"] else "MISSED"
        if verdict == "MISSED" and client <= 2 * e_client:
            verdict = "MISSED (as empty: not the history)"
        print(f"  {label:<40} {e_client:8.2f} / {e_server:8.2f}   {client:9.2f} / {server:9.2f}"
              f"   {verdict}")


# --- retention ----------------------------------------------------------------------------


async def part_retention(admin: str, executions: int) -> None:
    print("\n(retention) delete everything older than 30 days, in the retention loop's batches")
    dsn = await copy_database(admin, history_name(executions), "retention_full")
    await db.migrate(dsn)
    conn = await db.connect(dsn)
    try:
        before = await conn.fetchval("SELECT count(*) FROM workflow_executions")
        retention = timedelta(days=30)
        started = time.perf_counter()
        batches: list[float] = []
        deleted = 0
        positions: dict[str, Any] = {}  # one pass, as the daemon's loop keeps it
        while True:
            t0 = time.perf_counter()
            try:
                n = await store_executions.retention_batch(conn, retention, RETENTION_BATCH,
                                                           None, positions)
            except TypeError:  # a build from before passes kept positions
                n = await store_executions.retention_batch(conn, retention, RETENTION_BATCH)
            batches.append((time.perf_counter() - t0) * 1000)
            deleted += n
            if n < RETENTION_BATCH:
                break
        seconds = time.perf_counter() - started
        slot_seconds = 0.0
        slots_deleted = 0
        # The ledger's retention (the same loop, after the executions).
        prune = getattr(store_slots, "delete_old_slots", None)
        if prune is not None:
            t0 = time.perf_counter()
            while True:
                n = await prune(conn, retention, LEDGER_RETENTION_BATCH)
                slots_deleted += n
                if n < LEDGER_RETENTION_BATCH:
                    break
            slot_seconds = time.perf_counter() - t0
        left = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM workflow_executions) AS e,"
            " (SELECT count(*) FROM node_executions) AS n,"
            " (SELECT count(*) FROM webhook_requests) AS r,"
            " (SELECT count(*) FROM trigger_slots) AS s"
        )
    finally:
        await conn.close()
        await _admin_execute(admin, "DROP DATABASE retention_full WITH (FORCE)")
    print(f"  executions: {before:,} -> {left['e']:,} ({deleted:,} deleted in {seconds:.1f} s,"
          f" {deleted / max(seconds, 1e-9):,.0f}/s; batch of {RETENTION_BATCH}: p50"
          f" {percentile(batches, 0.5):.1f} ms, p99 {percentile(batches, 0.99):.1f} ms)")
    print(f"  left: node rows {left['n']:,}, inbox rows {left['r']:,}, ledger rows {left['s']:,}")
    if prune is not None:
        print(f"  ledger: {slots_deleted:,} slots deleted in {slot_seconds:.1f} s")


async def _one_pass(conn: asyncpg.Connection, retention: timedelta,
                    positions: dict[str, Any]) -> tuple[int, float]:
    """One retention pass over the executions (batches until one is not full)."""
    deleted = 0
    t0 = time.perf_counter()
    while True:
        n = await store_executions.retention_batch(conn, retention, RETENTION_BATCH,
                                                   None, positions)
        deleted += n
        if n < RETENTION_BATCH:
            return deleted, (time.perf_counter() - t0) * 1000


async def part_retention_held(admin: str, executions: int) -> None:
    print("\n(retention-held) a retention of 1 day, the webhook runs of the last 7 days held"
          " by live delivery ids (dedupe.ttl 7 days)")
    dsn = await copy_database(admin, history_name(executions), "retention_held")
    await db.migrate(dsn)
    conn = await db.connect(dsn)
    try:
        held = await conn.fetchval(
            "WITH h AS (UPDATE workflow_executions SET dedupe_key = 'webhook:' || id,"
            " dedupe_expires_at = created_at + interval '7 days'"
            " WHERE trigger_type = 'webhook' AND created_at > now() - interval '7 days'"
            " RETURNING 1) SELECT count(*) FROM h")
        await conn.execute("VACUUM ANALYZE workflow_executions")
        retention = timedelta(days=1)
        positions: dict[str, Any] = {}
        first, first_ms = await _one_pass(conn, retention, positions)
        carried = []
        fresh = []
        for _ in range(5):
            carried.append((await _one_pass(conn, retention, positions))[1])
            fresh.append((await _one_pass(conn, retention, {}))[1])
    finally:
        await conn.close()
        await _admin_execute(admin, "DROP DATABASE retention_held WITH (FORCE)")
    print(f"  {held:,} runs held; the first pass deleted {first:,} in {first_ms:,.0f} ms")
    print(f"  a later pass (nothing left to delete), median of 5: from the last pass's"
          f" positions {statistics.median(carried):.1f} ms; starting over (as every pass did"
          f" before, and as one does hourly now) {statistics.median(fresh):.1f} ms")


# --- claim --------------------------------------------------------------------------------


async def measure_claims(dsn: str, new: int = 20_000, batch: int = 32) -> dict[str, list[float]]:
    """Claim ``new`` NEW runs in batches as the executor does under load: the NEW-only
    statement for every claim, the one that also looks for overdue runs (expired leases,
    parked runs whose time came) every tenth claim (the executor: at most once a second).
    Claimed runs are finished straight away, so RUNNING stays as small as an executor keeps
    it (its concurrency) rather than piling up 20,000 leases no executor would hold."""
    conn = await db.connect(dsn)
    try:
        trigger = await conn.fetchrow(
            "SELECT t.id, t.workflow_id, t.name FROM workflow_triggers t WHERE t.type = 'webhook'"
            " ORDER BY t.id LIMIT 1"
        )
        assert trigger is not None
        await conn.execute(
            "INSERT INTO workflow_executions (id, workflow_id, trigger_id, trigger_name,"
            " trigger_type, input) SELECT gen_random_uuid(), $1, $2, $3, 'webhook', '{}'"
            " FROM generate_series(1, $4)",
            trigger["workflow_id"], trigger["id"], trigger["name"], new,
        )
        await conn.execute("ANALYZE workflow_executions")
        owner = f"bench-{uuid.uuid4().hex[:8]}"
        times: dict[str, list[float]] = {"new": [], "overdue": []}
        for n in itertools.count():
            kind = "overdue" if n % 10 == 9 else "new"
            t0 = time.perf_counter()
            claimed = await store_executions.claim_executions(
                conn, owner, timedelta(minutes=5), batch, overdue=kind == "overdue"
            )
            times[kind].append((time.perf_counter() - t0) * 1000)
            if not claimed:
                break
            await conn.execute(
                "UPDATE workflow_executions SET status = 'SUCCESS', end_time = now(),"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ANY($1::uuid[])",
                [c.id for c in claimed],
            )
    finally:
        await conn.close()
    return times


async def part_claim(admin: str, executions: int) -> None:
    print("\n(claim) the executor's claim statements, batches of 32 over 20,000 NEW rows"
          " (every tenth also looks for overdue runs)")
    figures = {}
    for side, template in (("empty", EMPTY), ("full", history_name(executions))):
        dsn = await copy_database(admin, template, f"claim_{side}")
        await db.migrate(dsn)
        figures[side] = await measure_claims(dsn)
        await _admin_execute(admin, f"DROP DATABASE claim_{side} WITH (FORCE)")
    for kind, label in (("new", "NEW only"), ("overdue", "with overdue look")):
        p99 = {side: percentile(t[kind], 0.99) for side, t in figures.items()}
        for side, times in figures.items():
            print(f"  {label:<18} {side:<6} p50 {percentile(times[kind], 0.5):6.2f} ms"
                  f"  p99 {p99[side]:6.2f} ms  ({len(times[kind])} claims)")
        ratio = p99["full"] / p99["empty"]
        verdict = "ok" if ratio <= TARGETS["claim_p99_ratio"] else "MISSED"
        print(f"  {label:<18} p99 full/empty {ratio:.2f}"
              f"  (target <= {TARGETS['claim_p99_ratio']:g})  {verdict}")


# --- webhook ingest -------------------------------------------------------------------------


async def _warm(dsn: str) -> None:
    from bench.webhook import WARM_WAL_MB, warm_wal

    conn = await db.connect(dsn)
    try:
        await warm_wal(conn, WARM_WAL_MB)
    finally:
        await conn.close()


def measure_ingest(dsn: str, folder: Path, run: str, seconds: float) -> Any:
    """bench/webhook.py's ``triggerd`` server (webhook component only, one process) on
    ``dsn``, loaded by its load generator with signed requests: its LoadResult."""

    from bench import webhook as wb

    wrk = wb.ensure_wrk()
    script = wb.lua_script(folder)
    server, port = _webhook_server(dsn, folder, "bench.yaml", wb.definitions("standard"),
                                   {"BENCH_STANDARD_SECRET": wb.STANDARD_SECRET})

    def load(name: str, duration: float) -> Any:
        wb.write_requests(folder, name, 1, int(duration * wb.SIGN_RATE), "standard")
        url = f"http://127.0.0.1:{port}{wb.PATH}"
        if wrk:
            return wb.run_wrk(wrk, url, script, folder, name, threads=1, connections=64,
                              duration=duration)
        return wb.run_python_load(url, folder, name, "standard", threads=1, connections=64,
                                  duration=duration)

    try:
        wb.wait_healthy(port, server, "triggerd")
        load(f"warm{run}", 2.0)
        time.sleep(0.5)
        return load(f"main{run}", seconds)
    finally:
        wb.stop_server(server)


async def part_ingest(admin: str, executions: int, seconds: float, rounds: int) -> None:
    print(f"\n(ingest) webhook requests stored per second, {seconds:g} s per run, WAL warmed"
          f" first in both, {rounds} alternating rounds (the best of each side counts on a"
          " shared machine); target: full >= 90% of empty")
    folder = Path(tempfile.mkdtemp(prefix="triggerd-history-ingest-"))
    results: dict[str, list[Any]] = {"empty": [], "full": []}
    sides = (("empty", EMPTY), ("full", history_name(executions)))
    try:
        dsns = {}
        for side, template in sides:
            dsns[side] = await copy_database(admin, template, f"ingest_{side}")
            await db.migrate(dsns[side])
        for number in range(rounds):
            for side, _ in sides if number % 2 == 0 else reversed(sides):
                await _warm(dsns[side])
                r = await asyncio.to_thread(
                    measure_ingest, dsns[side], folder, f"{side}{number}", seconds
                )
                results[side].append(r)
                print(f"  {side:<6} {r.ok_rate:8,.0f} req/s 2xx  p50 {r.p50_ms:6.2f} ms"
                      f"  p99 {r.p99_ms:6.2f} ms  ({r.non_2xx} non-2xx, {r.errors} errors;"
                      f" load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for side, _ in sides:
            await _admin_execute(admin, f"DROP DATABASE IF EXISTS ingest_{side} WITH (FORCE)")
    best = {side: max(r.ok_rate for r in runs) for side, runs in results.items()}
    ratio = best["full"] / best["empty"]
    verdict = "ok" if ratio >= 0.9 else "MISSED"
    print(f"  best full/empty {best['full']:,.0f}/{best['empty']:,.0f} = {ratio:.2f}"
          f"  (target >= 0.90)  {verdict}")


# --- retention while webhooks arrive at a fixed rate ----------------------------------------


def _webhook_server(dsn: str, folder: Path, name: str, definitions: str,
                    extra_env: dict[str, str]) -> tuple[Any, int]:
    """bench/webhook.py's ``triggerd`` server (webhook component, one process, no 429) on
    ``dsn`` with ``definitions`` (written to ``folder/name``): the process and its port."""
    import subprocess

    from bench import webhook as wb

    (folder / name).write_text(definitions)
    port = wb.free_port()
    env = {
        **os.environ,
        **extra_env,
        "PYTHONPATH": str(wb.ROOT),
        "TRIGGERD_DAEMON_STATE_DIR": str(folder / "state"),
        "TRIGGERD_DAEMON_DEFINITIONS": str(folder / name),
        "TRIGGERD_DATABASE_URL": dsn,
        "TRIGGERD_HTTP_PORT": str(port),
        "TRIGGERD_HTTP_MAX_PENDING": str(10**9),
        "TRIGGERD_HTTP_PROCESSES": "1",
        "TRIGGERD_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [sys.executable, wb.__file__, "--serve", "triggerd", "--port", str(port)], env=env
    )
    return server, port


def _start_ingest_server(dsn: str, folder: Path) -> tuple[Any, int]:
    """The same server with bench/sustained.py's workflow (bearer token, async answer),
    once it answers."""
    from bench import sustained as su
    from bench import webhook as wb

    server, port = _webhook_server(dsn, folder, "sustained.yaml", su.definitions(),
                                   {"BENCH_TOKEN": wb.TOKEN})
    wb.wait_healthy(port, server, "triggerd")
    return server, port


async def _fixed_rate(port: int, rate: float, seconds: float, first_id: int) -> dict[str, Any]:
    """bench/sustained.py's open-loop generator (its own process): request i is sent at
    t0 + i / rate whatever the answers do, latency counted from that intended instant."""
    from bench import sustained as su

    generator = await asyncio.create_subprocess_exec(
        sys.executable, su.__file__, "--generate", str(port), str(rate), str(seconds),
        str(first_id), stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(su.ROOT)},
    )
    out, _ = await generator.communicate()
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed ({generator.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


async def _retention_until_done(dsn: str, stop: asyncio.Event) -> dict[str, Any]:
    """The executor's retention loop (its round of statements, batch sizes and pause between
    rounds, executions older than 30 days) until a round is not full or ``stop``: runs
    deleted, seconds, whether it finished, and each round's milliseconds."""
    conn = await db.connect(dsn)
    started = time.perf_counter()
    deleted = 0
    finished = False
    rounds: list[float] = []
    settings = load_settings(environ={"TRIGGERD_EXECUTOR_RETENTION": "30d"})
    cursor = RetentionCursor()
    cursor.for_pass(time.monotonic())
    try:
        while not stop.is_set():
            round_started = time.monotonic()
            done = await retention_round(conn, settings, cursor)
            rounds.append((time.monotonic() - round_started) * 1000)
            deleted += done.runs
            if not done.full:
                finished = True
                break
            await asyncio.sleep(retention_pause(time.monotonic() - round_started))
    finally:
        await conn.close()
    return {"deleted": deleted, "seconds": time.perf_counter() - started,
            "finished": finished, "rounds": rounds}


async def part_retention_ingest(admin: str, executions: int, rate: float,
                                seconds: float) -> None:
    print(f"\n(retention-ingest) webhooks at a fixed {rate:,.0f} req/s (open loop) for"
          f" {seconds:g} s, then again while the retention loop deletes everything older than"
          " 30 days; target: p99 during retention <= 2x the baseline's")
    folder = Path(tempfile.mkdtemp(prefix="triggerd-history-retention-"))
    dsn = await copy_database(admin, history_name(executions), "retention_ingest")
    server = None
    try:
        await db.migrate(dsn)
        server, port = await asyncio.to_thread(_start_ingest_server, dsn, folder)
        await _warm(dsn)
        await _fixed_rate(port, rate, 3.0, 0)  # warm the server
        base = await _fixed_rate(port, rate, seconds, 10**7)
        stop = asyncio.Event()
        retention = asyncio.create_task(_retention_until_done(dsn, stop))
        during = await _fixed_rate(port, rate, seconds, 2 * 10**7)
        stop.set()
        removal = await retention
        rows = []
        for label, r in (("baseline", base), ("retention", during)):
            accepted = r["status"].get("202", 0)
            rows.append(accepted)
            print(f"  {label:<10} {accepted / r['seconds']:8,.0f} 202/s of {r['sent']:,} sent"
                  f"  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                  f"  (other {sum(n for c, n in r['status'].items() if c != '202')},"
                  f" errors {r['errors']}; load {os.getloadavg()[0]:.1f})")
        deleted, spent, rounds = removal["deleted"], removal["seconds"], removal["rounds"]
        cut = (" (all old runs gone)" if removal["finished"]
               else " (stopped with the load: more was left)")
        print(f"  retention deleted {deleted:,} executions (with node rows and requests) in"
              f" {spent:.1f} s = {deleted / max(spent, 1e-9):,.0f}/s{cut}; {len(rounds)} rounds,"
              f" round p50 {percentile(rounds, 0.5):.1f} ms, p99 {percentile(rounds, 0.99):.1f} ms")
        ratio = during["p99_ms"] / max(base["p99_ms"], 1e-9)
        verdict = "ok" if ratio <= 2.0 else "MISSED"
        print(f"  p99 during/baseline {ratio:.2f}  (target <= 2)  {verdict}")
    finally:
        if server is not None:
            from bench import webhook as wb

            wb.stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)
        await _admin_execute(admin, "DROP DATABASE IF EXISTS retention_ingest WITH (FORCE)")


# --- main ---------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    keep = args.state is not None
    state = Path(args.state) if keep else Path(tempfile.mkdtemp(prefix="triggerd-history-"))
    try:
        dsn = await asyncio.to_thread(db.start_embedded, state)
        admin = with_database(dsn, "postgres")
        print(f"embedded PostgreSQL under {state}; {args.executions:,} executions;"
              f" python {sys.version.split()[0]}; load {os.getloadavg()[0]:.1f}")
        parts = args.only.split(",")
        await part_gen(admin, args.executions, args.rebuild)
        if "lists" in parts:
            await part_lists(admin, args.executions, args.repeat)
        if "claim" in parts:
            await part_claim(admin, args.executions)
        if "ingest" in parts:
            await part_ingest(admin, args.executions, args.ingest_seconds, args.ingest_rounds)
        if "retention" in parts:
            await part_retention(admin, args.executions)
        if "retention-held" in parts:
            await part_retention_held(admin, args.executions)
        if "retention-ingest" in parts:
            await part_retention_ingest(admin, args.executions, args.ingest_rate,
                                        args.retention_seconds)
    finally:
        if not keep:
            from bench.webhook import stop_embedded

            stop_embedded(state)
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=2_000_000,
                        help="finished executions in the history (200000 for a quick run)")
    parser.add_argument("--state", help="keep the embedded server and templates here, reuse them")
    parser.add_argument("--ingest-seconds", type=float, default=15.0,
                        help="seconds of load per side in (ingest)")
    parser.add_argument("--ingest-rounds", type=int, default=2,
                        help="alternating runs per side in (ingest)")
    parser.add_argument("--ingest-rate", type=float, default=1000.0,
                        help="fixed request rate of (retention-ingest)")
    parser.add_argument("--retention-seconds", type=float, default=60.0,
                        help="seconds of load per side in (retention-ingest)")
    parser.add_argument("--repeat", type=int, default=20, help="calls per list (median)")
    parser.add_argument("--rebuild", action="store_true", help="build the templates again")
    parser.add_argument("--only", default="lists,claim,ingest,retention,retention-ingest",
                        help="parts to run after gen, e.g. 'lists,ingest'")
    asyncio.run(main(parser.parse_args()))
