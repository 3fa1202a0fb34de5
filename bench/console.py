"""The console's server time per page with realistic data (issue 20.5). Not a test: it
prints figures next to the target.

    .venv/bin/python -m bench.console [--executions 10000000] [--triggers 100000]
                                      [--state DIR] [--repeat 20]

bench/history.py's generator builds (or, with ``--state``, reuses) a database of N finished
executions over 60 days with their node, inbox and ledger rows; a copy then gets
``--triggers`` more cron triggers with a realistic mix of schedules and zones. The daemon's
own aiohttp application (the console and the admin API, no scheduler or executor) serves
that copy on loopback; the bench logs in like a browser and asks for every page
``--repeat`` times, reading the server's own time from the ``Server-Timing`` header the
console sets on each page (client time is printed beside it). Target: every page's median
and p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from bench.cron import percentile, with_database
from bench.history import copy_database, history_name, part_gen
from triggerd import db
from triggerd.config import load_settings
from triggerd.daemon import create_app

TOKEN = "console-bench-token"
TARGET_MS = 100.0
_TIMING = re.compile(r"app;dur=([0-9.]+)")

# 100k triggers over the generator's 1,000 workflows: minutes and hours at random, every
# 5/10/15/30 minutes, weekdays every 2/3/6 hours, monthly; four zones (DST included).
_MORE_TRIGGERS = """
INSERT INTO workflow_triggers (workflow_id, name, type, config)
SELECT w.id, 'extra' || g, 'cron',
       jsonb_build_object(
         'cron', CASE g % 4
           WHEN 0 THEN (g * 7 % 60) || ' ' || (g * 11 % 24) || ' * * *'
           WHEN 1 THEN '*/' || (ARRAY[5, 10, 15, 30])[1 + g % 4] || ' * * * *'
           WHEN 2 THEN (g * 13 % 60) || ' */' || (ARRAY[2, 3, 6])[1 + g % 3] || ' * * 1-5'
           ELSE '0 ' || (g * 5 % 24) || ' 1 * *' END,
         'timezone', (ARRAY['UTC', 'Europe/Madrid', 'America/New_York', 'Asia/Tokyo'])[1 + g % 4])
FROM generate_series(1, $1) g
JOIN (SELECT id, row_number() OVER (ORDER BY key) AS n FROM workflows) w
  ON w.n = 1 + g % (SELECT count(*) FROM workflows)
"""


async def prepare(admin: str, executions: int, triggers: int, in_place: bool) -> str:
    await part_gen(admin, executions, rebuild=False)
    if in_place:  # 10M executions take ~26 GB: a copy may not fit on the disk
        dsn = with_database(admin, history_name(executions))
    else:
        dsn = await copy_database(admin, history_name(executions), "console_bench")
    await db.migrate(dsn)  # a template kept from an older checkout lacks newer indexes
    conn = await db.connect(dsn)
    try:
        started = time.perf_counter()
        if not await conn.fetchval("SELECT count(*) FROM workflow_triggers"
                                   " WHERE name = 'extra1'"):
            await conn.execute(_MORE_TRIGGERS, triggers)
        await conn.execute("ANALYZE workflow_triggers")
        total = await conn.fetchval("SELECT count(*) FROM workflow_triggers")
        runs = await conn.fetchval("SELECT reltuples::bigint FROM pg_class"
                                   " WHERE relname = 'workflow_executions'")
    finally:
        await conn.close()
    where = "the history database" if in_place else "console_bench"
    print(f"  {where}: {total:,} triggers ({triggers:,} added in"
          f" {time.perf_counter() - started:.1f} s), about {runs:,} executions")
    return dsn


async def login(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(f"{base}/ui/login") as page:
        text = await page.text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', text)
    assert csrf is not None
    async with session.post(f"{base}/ui/login", data={"csrf": csrf.group(1), "token": TOKEN,
                                                       "next": "/ui/"},
                            allow_redirects=False) as answer:
        assert answer.status == 303, answer.status


async def pages(session: aiohttp.ClientSession, base: str, dsn: str) -> list[tuple[str, str]]:
    conn = await db.connect(dsn)
    try:
        recent = await conn.fetchval(
            "SELECT id FROM workflow_executions ORDER BY created_at DESC, id DESC LIMIT 1")
        failed = await conn.fetchval(
            "SELECT id FROM workflow_executions WHERE status = 'ERROR'"
            " ORDER BY created_at DESC, id DESC LIMIT 1")
        request = await conn.fetchval("SELECT id FROM webhook_requests ORDER BY id DESC LIMIT 1")
    finally:
        await conn.close()
    listed = [
        ("overview", "/ui/"),
        ("triggers (first page)", "/ui/triggers"),
        ("triggers of a workflow", "/ui/triggers?workflow=wf0500"),
        ("triggers by type", "/ui/triggers?type=webhook"),
        ("trigger detail", "/ui/triggers/wf0001/nightly"),
        ("workflows", "/ui/workflows"),
        ("workflow + versions", "/ui/workflows/wf0001"),
        ("executions (newest)", "/ui/executions"),
        ("executions ERROR", "/ui/executions?status=ERROR"),
        ("executions of a trigger", "/ui/executions?trigger=wf0001/nightly"),
        ("execution detail", f"/ui/executions/{recent}"),
        ("failed execution detail", f"/ui/executions/{failed}"),
        ("webhook inbox (newest)", "/ui/webhooks"),
        ("webhook inbox, filtered", "/ui/webhooks?outcome=filtered"),
        ("webhook inbox of a trigger", "/ui/webhooks?trigger=wf0001/hook"),
        *([("webhook request", f"/ui/webhooks/{request}")] if request else []),
    ]
    # A deep page: follow "Next page" links 20 times from the start.
    path = "/ui/triggers"
    for _ in range(20):
        async with session.get(base + path) as page:
            found = re.search(r'rel="next" href="([^"]+)"', await page.text())
        if found is None:
            break
        path = found.group(1).replace("&amp;", "&")
    listed.append(("triggers (page 21)", path))
    return listed


async def measure(session: aiohttp.ClientSession, base: str, path: str, repeat: int
                  ) -> tuple[list[float], list[float]]:
    server: list[float] = []
    client: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        async with session.get(base + path) as page:
            await page.read()
            assert page.status == 200, (path, page.status)
            timing = _TIMING.search(page.headers.get("Server-Timing", ""))
        client.append((time.perf_counter() - started) * 1000)
        assert timing is not None
        server.append(float(timing.group(1)))
    return server, client


async def run(dsn: str, repeat: int) -> None:
    os.environ["TRIGGERD_API_TOKEN"] = TOKEN
    settings = load_settings(None)
    pool = await db.create_pool(dsn, min_size=2, max_size=10)
    app = create_app(settings, pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    worst = 0.0
    try:
        # unsafe: keep cookies from an IP address host (127.0.0.1).
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            await login(session, base)
            print(f"\n{'page':<28} {'server p50':>10} {'p95':>8} {'client p50':>11}"
                  f"  (ms, {repeat} requests each; target <= {TARGET_MS:.0f} ms)")
            for name, path in await pages(session, base, dsn):
                await measure(session, base, path, 2)  # warm plans and caches
                server, client = await measure(session, base, path, repeat)
                p95 = percentile(server, 95)
                worst = max(worst, p95)
                mark = "ok" if p95 <= TARGET_MS else "OVER"
                print(f"{name:<28} {statistics.median(server):>10.1f} {p95:>8.1f}"
                      f" {statistics.median(client):>11.1f}  {mark}")
    finally:
        await runner.cleanup()
        await pool.close()
    print(f"\nworst page p95: {worst:.1f} ms (target {TARGET_MS:.0f} ms):"
          f" {'met' if worst <= TARGET_MS else 'MISSED'}")


async def main(args: argparse.Namespace) -> None:
    keep = args.state is not None
    state = Path(args.state) if keep else Path(tempfile.mkdtemp(prefix="triggerd-console-"))
    try:
        dsn = await asyncio.to_thread(db.start_embedded, state)
        admin = with_database(dsn, "postgres")
        print(f"embedded PostgreSQL under {state}; {args.executions:,} executions;"
              f" +{args.triggers:,} triggers; load {os.getloadavg()[0]:.1f}")
        bench_dsn = await prepare(admin, args.executions, args.triggers, args.in_place)
        await run(bench_dsn, args.repeat)
    finally:
        if not keep:
            from bench.webhook import stop_embedded

            stop_embedded(state)
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--executions", type=int, default=10_000_000)
    parser.add_argument("--triggers", type=int, default=100_000,
                        help="cron triggers added to the generator's 2,000")
    parser.add_argument("--state", help="keep the embedded server and templates here, reuse them")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--in-place", action="store_true",
                        help="add the triggers to the kept history database itself (no copy:"
                             " for a disk too small for two)")
    asyncio.run(main(parser.parse_args()))
