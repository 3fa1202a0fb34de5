"""``triggerd doctor``'s gathering against a real PostgreSQL and loopback HTTP servers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.helpers import apply_doc, free_port
from triggerd import db
from triggerd.config import Settings, load_settings
from triggerd.doctor import MAX_LISTED, Check, Status
from triggerd.doctor_gather import run_checks

DOC: dict[str, Any] = {
    "workflows": [{
        "key": "shop",
        "name": "Shop",
        "graph": {"nodes": [{"id": "n", "type": "noop"}], "edges": []},
        "triggers": [
            {"name": "orders", "type": "webhook", "path": "orders/new", "methods": ["POST"]},
            {"name": "off", "type": "webhook", "path": "orders/off", "enabled": False},
            {"name": "nightly", "type": "cron", "cron": "0 2 * * *",
             "timezone": "Europe/Madrid"},
        ],
    }],
}


def settings_for(dsn: str, port: int) -> Settings:
    return load_settings(environ={"TRIGGERD_DATABASE_URL": dsn,
                                  "TRIGGERD_HTTP_PORT": str(port)})


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@asynccontextmanager
async def answering(status: int) -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback stand-in for the daemon that answers every request with ``status`` and
    records the method and path of each."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"error": "x"}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_trigger_not_routed_is_a_failure_naming_it(pool: asyncpg.Pool, dsn: str) -> None:
    await apply_doc(pool, DOC)
    async with answering(404) as (port, seen):
        checks = by_name(await run_checks(settings_for(dsn, port)))
    routes = checks["routes"]
    assert (routes.status, routes.exit_code) == (Status.FAIL, 4)
    assert routes.detail == (f"1 of 1 enabled webhook trigger(s) not routed by the daemon at"
                             f" 127.0.0.1:{port}: shop/orders (/hooks/orders/new)")
    # Asked without a method a trigger accepts: nothing was started, nothing posted.
    assert seen == ["GET /healthz", "OPTIONS /hooks/orders/new"]


@pytest.mark.parametrize("status", [405, 403])
async def test_routed_trigger_answers_405(pool: asyncpg.Pool, dsn: str, status: int) -> None:
    # 403: the trigger's allow_from leaves doctor's address out (the README's GitHub
    # example): the path is served, and doctor said FAIL with a fix about the port.
    await apply_doc(pool, DOC)
    async with answering(status) as (port, _):
        checks = by_name(await run_checks(settings_for(dsn, port)))
    assert checks["routes"].status is Status.OK
    assert all(c.status is Status.OK for c in checks.values()), checks


async def test_daemon_not_running_is_a_warning(pool: asyncpg.Pool, dsn: str) -> None:
    await apply_doc(pool, DOC)
    port = free_port()
    routes = by_name(await run_checks(settings_for(dsn, port)))["routes"]
    assert (routes.status, routes.detail) == (
        Status.WARN, f"daemon not running at 127.0.0.1:{port}; routes not checked")


async def test_clock_skew_against_the_database(dsn: str) -> None:
    def slow_clock() -> datetime:
        return datetime.now(UTC) - timedelta(seconds=30)

    checks = await run_checks(settings_for(dsn, free_port()), clock=slow_clock)
    clock = by_name(checks)["clock"]
    assert (clock.status, clock.exit_code) == (Status.FAIL, 4)
    found = re.fullmatch(r"database clock (\S+)s ahead of this host's \(±(\S+)s\)",
                         clock.detail)
    assert found is not None, clock.detail
    # Same host, so the only skew is the clock's 30 s, within the measured uncertainty.
    assert abs(float(found[1]) - 30) <= float(found[2]) + 0.001


async def test_schema_behind_is_a_finding_and_nothing_is_migrated(empty_dsn: str) -> None:
    known = db.known_migrations()
    await db.migrate(empty_dsn, migrations=known[:3])
    checks = by_name(await run_checks(settings_for(empty_dsn, free_port())))
    migrations = checks["migrations"]
    assert (migrations.status, migrations.exit_code, migrations.fix) == (
        Status.FAIL, 4, "run 'triggerd migrate'")
    missing = known[3:]
    names = [m.name for m in missing]
    listed = ", ".join(names[:MAX_LISTED]) + (
        f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")
    assert migrations.detail == f"{len(missing)} migration(s) not applied: {listed}"
    # The other checks still answer on the older schema.
    assert checks["database"].status is Status.OK
    assert checks["tzdata"].status is Status.OK
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 3
    finally:
        await conn.close()


async def test_another_tools_schema_migrations_is_a_finding(empty_dsn: str) -> None:
    # Doctor crashed (exit 70, UndefinedColumnError) and reported nothing at all.
    conn = await asyncpg.connect(empty_dsn)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version bigint, dirty boolean)")
    finally:
        await conn.close()
    checks = by_name(await run_checks(settings_for(empty_dsn, free_port())))
    migrations = checks["migrations"]
    assert (migrations.status, migrations.exit_code, migrations.detail) == (
        Status.FAIL, 4, db.FOREIGN_MIGRATIONS)
    assert migrations.fix is not None and "a database that triggerd alone uses" in migrations.fix
    assert checks["database"].status is Status.OK


async def test_zone_missing_from_tzdata_fails(pool: asyncpg.Pool, dsn: str) -> None:
    await apply_doc(pool, DOC)
    # A zone the tz database no longer has (as after a rename), written behind apply's back.
    await pool.execute("UPDATE workflow_triggers SET config = config || "
                       """'{"timezone": "Europe/Atlantis"}' WHERE name = 'nightly'""")
    tz = by_name(await run_checks(settings_for(dsn, free_port())))["tzdata"]
    assert (tz.status, tz.exit_code) == (Status.FAIL, 4)
    assert tz.detail.endswith("zone(s) of enabled cron triggers not in it:"
                              " Europe/Atlantis (shop/nightly)")


async def test_database_unreachable() -> None:
    port = free_port()
    url = f"postgresql://someone:hunter2@127.0.0.1:{port}/nowhere"
    checks = await run_checks(settings_for(url, free_port()))
    database = by_name(checks)["database"]
    assert (database.status, database.exit_code) == (Status.FAIL, 5)
    assert database.detail.startswith(
        f"cannot connect to the database at postgresql://someone:***@127.0.0.1:{port}/nowhere:")
    assert "hunter2" not in repr(checks)
    assert [c.name for c in checks] == ["database", "migrations", "routes", "tzdata", "clock"]


async def test_zones_whose_rules_changed_since_apply_are_named(
    pool: asyncpg.Pool, dsn: str
) -> None:
    from triggerd.tzrules import zone_fingerprint

    await apply_doc(pool, DOC)
    # apply recorded the rules of the zones its cron triggers use, as they were.
    recorded = dict(await pool.fetch("SELECT zone, fingerprint FROM zone_rules"))
    assert recorded == {"Europe/Madrid": zone_fingerprint("Europe/Madrid")}
    tz = by_name(await run_checks(settings_for(dsn, free_port())))["tzdata"]
    assert tz.status is Status.OK, tz.detail
    # As after a tzdata update that moved Madrid's DST dates: the file differs from then.
    await pool.execute("UPDATE zone_rules SET fingerprint = 'sha256:older-rules'")
    tz = by_name(await run_checks(settings_for(dsn, free_port())))["tzdata"]
    assert (tz.status, tz.exit_code) == (Status.WARN, 0)
    assert tz.detail.endswith("the rules of zone(s) changed since the definitions were"
                              " applied: Europe/Madrid (shop/nightly)")
    assert tz.fix == ("check those triggers' next fires (triggerd triggers show NAME); then"
                      " apply the definitions again to record the new rules")
    # Applying again records the rules in force: nothing left to report.
    await apply_doc(pool, DOC)
    tz = by_name(await run_checks(settings_for(dsn, free_port())))["tzdata"]
    assert tz.status is Status.OK, tz.detail
