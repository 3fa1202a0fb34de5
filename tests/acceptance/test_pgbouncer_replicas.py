"""Beyond one machine: two replicas on an external PostgreSQL, their pools through PgBouncer
in transaction pooling mode, LISTEN and migrations on a direct connection.

Over a window of every-second slots, while both replicas answer webhooks: every slot fires
exactly once (one execution and one ``fired`` ledger row per second, none missing), every
``202`` has its execution and inbox rows, and every run ends in SUCCESS. The server's log
(``%h``: ``127.0.0.1`` is PgBouncer, ``[local]`` the Unix socket) shows that LISTEN and the
migration lock came over the direct URL and the queries through PgBouncer.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests import external_pg
from tests.acceptance.conftest import DaemonProcess, Daemons, TomlValue, run_cli
from tests.external_pg import Endpoint
from tests.helpers import wait_for

DEFINITIONS = """\
workflows:
  - key: ticker
    name: Ticker
    graph:
      nodes:
        - {id: a, type: set, params: {value: "{{ trigger.scheduled_for }}"}}
    triggers:
      - {name: tick, type: cron, cron: "* * * * * *", overlap: allow, misfire: all}
  - key: inbox
    name: Inbox
    graph:
      nodes:
        - {id: keep, type: set, params: {value: "{{ input.n }}"}}
    triggers:
      - {name: hook, type: webhook, path: inbox/in, dedupe: {header: X-Delivery}}
"""

WINDOW = 10.0  # seconds of every-second slots under webhook load


@dataclass(frozen=True, kw_only=True)
class Database:
    name: str
    pooled: str  # through PgBouncer
    direct: str  # the server's Unix socket


@pytest.fixture
async def bounced_database(
    external_postgres: Endpoint, external_pgbouncer: Endpoint
) -> AsyncIterator[Database]:
    """A fresh database on the external server that logs every statement it runs."""
    name = f"pgb_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(external_postgres.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        await admin.execute(f"ALTER DATABASE {name} SET log_statement = 'all'")
    finally:
        await admin.close()
    yield Database(name=name, pooled=external_pgbouncer.dsn(name),
                   direct=external_postgres.socket_dsn(name))


async def hammer(replicas: list[DaemonProcess], accepted: dict[str, str],
                 statuses: collections.Counter[int], stop: asyncio.Event) -> None:
    """Four clients per replica post unique deliveries until ``stop``; every 202's
    execution id is kept by delivery id."""
    counter = 0

    async def client(session: aiohttp.ClientSession, daemon: DaemonProcess) -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            delivery = f"d-{counter}"
            async with session.post(
                daemon.base_url + "/hooks/inbox/in", json={"n": counter},
                headers={"X-Delivery": delivery}, timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                body = await response.json(content_type=None)
                statuses[response.status] += 1
                if response.status == 202:
                    accepted[delivery] = body["execution_id"]

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session, d) for d in replicas for _ in range(4)))


async def test_two_replicas_through_pgbouncer_fire_each_slot_once_and_keep_every_202(
    daemons: Daemons, bounced_database: Database, external_postgres: Endpoint,
    tmp_path: Path,
) -> None:
    db = bounced_database
    definitions = tmp_path / "defs.yaml"
    definitions.write_text(DEFINITIONS)
    sections: dict[str, dict[str, TomlValue]] = {
        "database": {"direct_url": db.direct},
        "daemon": {"definitions": [str(definitions)]},
        "executor": {"lease": "2s"},
    }
    config, _ = daemons.write_config(database_url=db.pooled, sections=sections, name="migrate")
    migrated = await run_cli(config, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied 0001_")

    # The second replica also runs an HTTP worker process: its pool and LISTEN too.
    replicas = [
        await daemons.start(database_url=db.pooled, sections=sections),
        await daemons.start(database_url=db.pooled,
                            sections={**sections, "http": {"processes": 2}}),
    ]
    accepted: dict[str, str] = {}
    statuses: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()
    load = asyncio.create_task(hammer(replicas, accepted, statuses, stop))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    await asyncio.sleep(WINDOW)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    stop.set()
    await load
    assert set(statuses) == {202}, statuses
    assert len(accepted) >= 50, "too few webhooks to say anything"

    check = await asyncpg.connect(db.direct)
    try:
        async def all_finished() -> bool:
            unfinished = await check.fetchval(
                "SELECT count(*) FROM workflow_executions WHERE status <> 'SUCCESS'"
                " AND (trigger_type = 'webhook' OR scheduled_for <= $1)", end)
            return bool(unfinished == 0)

        await wait_for(all_finished, timeout=60)
        for replica in replicas:
            assert await replica.stop(signal.SIGTERM) == 0

        rows = await check.fetch(
            "SELECT scheduled_for, count(*) AS n FROM workflow_executions"
            " WHERE trigger_type = 'cron' AND scheduled_for BETWEEN $1 AND $2"
            " GROUP BY scheduled_for ORDER BY scheduled_for", start, end)
        expected = int((end - start).total_seconds()) + 1
        assert expected >= WINDOW - 3
        assert [r["scheduled_for"] for r in rows] == [
            start + timedelta(seconds=i) for i in range(expected)]
        assert {r["n"] for r in rows} == {1}
        fired = await check.fetchval(
            "SELECT count(*) FROM trigger_slots WHERE outcome = 'fired'"
            " AND scheduled_for BETWEEN $1 AND $2", start, end)
        assert fired == expected

        stored = await check.fetch(
            "SELECT e.id::text AS id, e.status, r.execution_id IS NOT NULL AS inbox"
            " FROM workflow_executions e LEFT JOIN webhook_requests r ON r.execution_id = e.id"
            " WHERE e.id = ANY($1::uuid[])", list(accepted.values()))
        assert len(stored) == len(accepted)
        assert {(r["status"], r["inbox"]) for r in stored} == {("SUCCESS", True)}
    finally:
        await check.close()

    # The command line through PgBouncer too (its pool, and the schema check direct).
    listed = await run_cli(config, "triggers", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(t["name"] for t in listed.json()) == ["inbox/hook", "ticker/tick"]

    # Who connected how, from the server's own log of this database's statements.
    assert external_postgres.log is not None
    entries = log_entries(external_postgres.log.read_text(errors="replace"), db.name)

    def hosts(pattern: str) -> set[str]:
        return {host for host, text in entries if pattern in text}

    assert hosts("pg_advisory_lock") == {"[local]"}
    assert hosts(": LISTEN \"") == {"[local]"}
    assert hosts("INSERT INTO webhook_requests") == {"127.0.0.1"}
    assert hosts("INSERT INTO trigger_slots") == {"127.0.0.1"}
    # No pool reset through PgBouncer: one more transaction per release, and for nothing.
    assert hosts("RESET ALL") == set()
    errors = [i for i, (_, text) in enumerate(entries) if "ERROR:" in text]
    # With the DETAIL, HINT, CONTEXT and STATEMENT lines that follow each, to diagnose.
    assert errors == [], "\n".join(text for i in errors for _, text in entries[i:i + 5])


_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \[\d+\] (\S+) (\S+) ")


def log_entries(log: str, database: str) -> list[tuple[str, str]]:
    """(client host, whole entry) for each entry of the server log about ``database``; a
    statement's later lines belong to the entry of its first."""
    entries: list[tuple[str, str, list[str]]] = []
    for line in log.splitlines():
        match = _ENTRY.match(line)
        if match:
            entries.append((match.group(1), match.group(2), [line]))
        elif entries:
            entries[-1][2].append(line)
    return [(host, "\n".join(text)) for host, name, text in entries if name == database]


async def test_the_schedule_is_read_through_pgbouncer_by_clients_taking_turns(
    bounced_database: Database, external_postgres: Endpoint,
) -> None:
    """The scheduler reads its triggers with a cursor. Through PgBouncer in transaction
    mode, asyncpg's own cursors left a named prepared statement on the server connection
    (asyncpg closes it later, in that client's next transaction, which PgBouncer may run
    elsewhere), and a replica given that connection could fail to start ("prepared
    statement __asyncpg_stmt_7__ already exists", seen once in the two-replica test); the
    cursor is declared in SQL through PgBouncer, and no client leaves a statement behind."""
    from contextlib import aclosing

    import yaml

    from triggerd import db
    from triggerd.definitions import load_documents
    from triggerd.store.slots import iter_cron_triggers
    from triggerd.store.workflows import apply_workflows

    await db.migrate(bounced_database.direct)
    conn = await asyncpg.connect(bounced_database.direct)
    try:
        await apply_workflows(conn, load_documents([("d", yaml.safe_load(DEFINITIONS))]))
    finally:
        await conn.close()
    # One server connection: every client's transaction runs on it, one after another.
    with external_pg.pgbouncer(external_postgres, pool_size=1) as bouncer:
        pools = [await db.create_pool(bouncer.dsn(bounced_database.name), min_size=1,
                                      max_size=1, pgbouncer=True) for _ in range(3)]
        observer = pools.pop()
        try:
            for _ in range(3):
                for pool in pools:  # one client after another
                    async with aclosing(iter_cron_triggers(pool, page=1, bounced=True)) as pages:
                        names = [row.name async for page in pages for row in page]
                    assert names == ["tick"]
                    # Another client, on the same server connection: nothing was left
                    # there for it to collide with.
                    left = await observer.fetch("SELECT name FROM pg_prepared_statements")
                    assert [r["name"] for r in left] == []
            # asyncpg's own cursor (bounced=False, as used on a direct connection) leaves
            # its statement there: what the other replica collided with.
            async with aclosing(iter_cron_triggers(pools[0], page=1)) as pages:
                assert [row.name async for page in pages for row in page] == ["tick"]
            left = await observer.fetch("SELECT name FROM pg_prepared_statements")
            assert [r["name"] for r in left] != []
        finally:
            for pool in [*pools, observer]:
                await pool.close()
