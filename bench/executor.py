"""Executor throughput: 20,000 executions of set -> if -> noop, from creation to SUCCESS with
every node row written, against the embedded PostgreSQL. In the same run: raw asyncpg batched
inserts of the same rows (20,000 executions + 60,000 node rows) as the reference.

    .venv/bin/python -m bench.executor [--count 20000] [--concurrency 256]

Target on a 2-core machine: >= 2,000 executions/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.webhook import postgres_cpu
from triggerd import db
from triggerd.config import load_settings
from triggerd.definitions import load_documents
from triggerd.executor.service import Executor
from triggerd.store.executions import NewExecution, insert_executions
from triggerd.store.workflows import apply_workflows, get_trigger

WORKFLOW = {
    "workflows": [
        {
            "key": "bench",
            "name": "bench",
            "graph": {
                "nodes": [
                    {
                        "id": "compute",
                        "type": "set",
                        "params": {"value": {"n": "{{ input.n + 1 }}"}},
                    },
                    {
                        "id": "check",
                        "type": "if",
                        "params": {"condition": "{{ nodes.compute.output.n > 0 }}"},
                    },
                    {"id": "done", "type": "noop"},
                ],
                "edges": [
                    {"from": "compute", "to": "check"},
                    {"from": "check", "to": "done", "when": "true"},
                ],
            },
            "triggers": [{"name": "manual", "type": "manual"}],
        }
    ]
}


async def fresh_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return admin_dsn.replace("/postgres?", f"/{name}?")


async def raw_inserts(dsn: str, count: int) -> float:
    """The same rows with plain batched asyncpg inserts: the floor the executor can't beat."""
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE e (id uuid PRIMARY KEY, status text, input jsonb,"
        " created_at timestamptz DEFAULT now(), end_time timestamptz)"
    )
    await conn.execute(
        "CREATE TABLE n (execution_id uuid, node_id text, status text,"
        " output jsonb, start_time timestamptz, end_time timestamptz)"
    )
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    started = time.perf_counter()
    batch = 500
    for i in range(0, count, batch):
        chunk = ids[i : i + batch]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO e (id, status, input) SELECT x, 'SUCCESS', '{\"n\": 1}'::jsonb"
                " FROM unnest($1::uuid[]) AS x",
                chunk,
            )
            await conn.execute(
                "INSERT INTO n SELECT x, node, 'SUCCESS', '{\"n\": 2}'::jsonb, $2, $2"
                " FROM unnest($1::uuid[]) AS x, unnest(ARRAY['compute','check','done']) AS node",
                chunk,
                now,
            )
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="triggerd-bench-"))
    base = await asyncio.to_thread(db.start_embedded, state)
    admin = base.replace("/triggerd?", "/postgres?")
    dsn = await fresh_database(admin, "bench_executor")
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=4, max_size=12)
    async with pool.acquire() as conn:
        await apply_workflows(conn, load_documents([("bench", WORKFLOW)]))
    trigger = await get_trigger(pool, "bench/manual")

    settings = load_settings(
        environ={
            "TRIGGERD_EXECUTOR_CONCURRENCY": str(args.concurrency),
            "TRIGGERD_DATABASE_POOL_MAX": "12",
        }
    )
    executor = Executor(pool=pool, dsn=dsn, settings=settings)
    await executor.start()
    started = time.perf_counter()
    # CPU of this process (the executor, and the inserts above) and of PostgreSQL: figures
    # that a busy shared machine moves less than the wall clock.
    cpu_started, pg_started = time.process_time(), postgres_cpu(state)
    for i in range(0, args.count, 1000):
        items = [
            NewExecution(
                workflow_id=trigger.workflow_id,
                trigger_id=trigger.id,
                trigger_name=trigger.name,
                trigger_type="manual",
                input={"n": i + j},
            )
            for j in range(min(1000, args.count - i))
        ]
        await insert_executions(pool, items)
        executor.notify_new()
    while True:
        done = await pool.fetchval(
            "SELECT count(*) FROM workflow_executions WHERE status IN ('SUCCESS', 'ERROR')"
        )
        if done >= args.count:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    pg_cpu = postgres_cpu(state) - pg_started
    await executor.stop()
    nodes = await pool.fetchval("SELECT count(*) FROM node_executions WHERE status <> 'RUNNING'")
    errors = await pool.fetchval("SELECT count(*) FROM workflow_executions WHERE status='ERROR'")
    await pool.close()

    raw_dsn = await fresh_database(admin, "bench_raw")
    raw = await raw_inserts(raw_dsn, args.count)

    rate = args.count / elapsed
    raw_rate = args.count / raw
    print(
        f"executions:            {args.count} ({errors} ERROR), node rows: {nodes}"
        f" (expected {3 * args.count})"
    )
    print(
        f"executor:              {elapsed:.2f} s  -> {rate:,.0f} executions/s   (target >= 2,000/s)"
    )
    print(
        f"CPU per execution:     {cpu * 1e6 / args.count:,.0f} us in this process,"
        f" {pg_cpu * 1e6 / args.count:,.0f} us in PostgreSQL"
    )
    print(f"raw batched inserts:   {raw:.2f} s  -> {raw_rate:,.0f} execution-equivalents/s")
    print(f"ratio executor/raw:    {rate / raw_rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
