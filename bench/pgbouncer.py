"""Webhooks through PgBouncer vs. straight to PostgreSQL (loopback only; prints figures,
asserts nothing but storage).

    .venv/bin/python -m bench.pgbouncer [--duration 10] [--connections 32] [--rounds 2]

An external PostgreSQL (Debian's binaries, default durability settings) and a PgBouncer in
transaction pooling mode in front of it are started by the script (tests/external_pg.py;
pgbouncer is installed with apt-get when missing). Each scenario runs the real daemon
(``triggerd run``: executor, scheduler and webhooks) as subprocesses on a fresh database:

1. ``direct``: one replica, ``[database] url`` straight to the server;
2. ``pgbouncer``: one replica, ``url`` through PgBouncer, ``direct_url`` to the server's
   socket (LISTEN and migrations);
3. ``direct-2r`` and ``pgbouncer-2r``: two replicas, direct or through PgBouncer (the
   load is split between them).

The load is a closed loop of ``--connections`` aiohttp clients posting unique deliveries;
each run counts the 202s, the latency percentiles, and the server's backends by kind
during the load (TCP: the pool or PgBouncer's server connections; socket: direct
connections, i.e. LISTEN). Afterwards every 202 must have its rows. Scenarios are
interleaved over ``--rounds`` so a noisy machine affects them alike; medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.acceptance.conftest import daemon_environment, toml_document  # noqa: E402
from tests.external_pg import Endpoint, missing_reason, pgbouncer, postgres_server  # noqa: E402
from tests.helpers import free_port  # noqa: E402
from triggerd import db  # noqa: E402

DEFINITIONS = """\
workflows:
  - key: inbox
    name: Inbox
    graph:
      nodes:
        - {id: done, type: noop}
    triggers:
      - {name: hook, type: webhook, path: bench, dedupe: {header: X-Delivery}}
"""

SCENARIOS = ("direct", "pgbouncer", "direct-2r", "pgbouncer-2r")


@dataclass(frozen=True, kw_only=True)
class RunResult:
    scenario: str
    accepted: int
    other: int
    seconds: float
    p50_ms: float
    p99_ms: float
    backends_tcp: int
    backends_socket: int
    stored: int
    commits: int  # the database's committed transactions over the whole run

    @property
    def commits_per_202(self) -> float:
        return self.commits / max(1, self.accepted)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


async def load(urls: list[str], connections: int, duration: float,
               sample: Any) -> tuple[int, int, float, list[float], tuple[int, int]]:
    """Closed-loop load over ``urls``; returns (202s, other answers, seconds, latencies,
    backends sampled half-way)."""
    latencies: list[float] = []
    counts = {"ok": 0, "other": 0}
    deadline = time.monotonic() + duration
    run = uuid.uuid4().hex[:8]
    counter = 0

    async def client(session: aiohttp.ClientSession, url: str) -> None:
        nonlocal counter
        while time.monotonic() < deadline:
            counter += 1
            started = time.monotonic()
            async with session.post(url, json={"n": counter},
                                    headers={"X-Delivery": f"{run}-{counter}"}) as response:
                await response.read()
                counts["ok" if response.status == 202 else "other"] += 1
            latencies.append(time.monotonic() - started)

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        sampler = asyncio.create_task(_sample_later(sample, duration / 2))
        await asyncio.gather(*(client(session, urls[i % len(urls)])
                               for i in range(connections)))
        backends = await sampler
    return counts["ok"], counts["other"], time.monotonic() - started, latencies, backends


async def _sample_later(sample: Any, delay: float) -> tuple[int, int]:
    await asyncio.sleep(delay)
    result: tuple[int, int] = await sample()
    return result


async def backends(server: Endpoint, database: str) -> tuple[int, int]:
    """(TCP, Unix socket) backends of ``database`` right now."""
    conn = await asyncpg.connect(server.dsn("postgres"))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE client_addr IS NOT NULL) AS tcp,"
            " count(*) FILTER (WHERE client_addr IS NULL) AS socket"
            " FROM pg_stat_activity WHERE datname = $1", database)
        assert row is not None
        return int(row["tcp"]), int(row["socket"])
    finally:
        await conn.close()


def start_daemon(folder: Path, name: str, url: str, direct: str) -> tuple[subprocess.Popen[bytes],
                                                                         int]:
    port = free_port()
    defs = folder / "defs.yaml"
    defs.write_text(DEFINITIONS)
    config = folder / f"{name}.toml"
    config.write_text(toml_document({
        "database": {"url": url, "direct_url": direct, "pool_min": 2, "pool_max": 10},
        "http": {"host": "127.0.0.1", "port": port},
        "daemon": {"state_dir": str(folder / f"{name}-state"), "definitions": [str(defs)]},
        "log": {"level": "warning", "format": "json"},
    }))
    proc = subprocess.Popen([sys.executable, "-m", "triggerd", "--config", str(config), "run"],
                            env=daemon_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # a line or two when it fails
    return proc, port


def _stderr(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace").strip()


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"triggerd exited with {proc.returncode}: {_stderr(proc)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("triggerd did not become ready")
            await asyncio.sleep(0.2)


async def run_scenario(scenario: str, server: Endpoint, bouncer: Endpoint, folder: Path,
                       connections: int, duration: float) -> RunResult:
    database = f"bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server.dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {database}")
    finally:
        await admin.close()
    direct = server.socket_dsn(database)
    await db.migrate(direct)
    bounced = scenario.startswith("pgbouncer")
    url = bouncer.dsn(database) if bounced else server.dsn(database)
    replicas = 2 if scenario.endswith("-2r") else 1
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        # One after the other: replicas applying the same definitions file at the same
        # moment on a fresh database race on its insert (see the README's topology notes).
        for i in range(replicas):
            procs.append(start_daemon(folder, f"{scenario}-{database}-{i}", url,
                                      direct if bounced else ""))
            await wait_ready(procs[-1][1], procs[-1][0])
        urls = [f"http://127.0.0.1:{port}/hooks/bench" for _, port in procs]
        ok, other, seconds, latencies, (tcp, socket) = await load(
            urls, connections, duration, lambda: backends(server, database))
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait(timeout=60)
    conn = await asyncpg.connect(direct)
    try:
        stored = int(await conn.fetchval("SELECT count(*) FROM webhook_requests"))
        await asyncio.sleep(1.5)  # the exited backends' statistics are flushed by now
        commits = int(await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database))
    finally:
        await conn.close()
    latencies.sort()
    return RunResult(
        scenario=scenario, accepted=ok, other=other, seconds=seconds,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        backends_tcp=tcp, backends_socket=socket, stored=stored, commits=commits,
    )


async def main_async(args: argparse.Namespace, server: Endpoint, bouncer: Endpoint,
                     folder: Path) -> int:
    results: dict[str, list[RunResult]] = {s: [] for s in args.only or SCENARIOS}
    for round_ in range(args.rounds):
        for scenario in results:
            result = await run_scenario(scenario, server, bouncer, folder,
                                        args.connections, args.duration)
            results[scenario].append(result)
            print(f"round {round_ + 1} {scenario:<13} {result.rate:7.0f} req/s"
                  f"  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                  f"  backends tcp {result.backends_tcp} socket {result.backends_socket}"
                  f"  202s {result.accepted} stored {result.stored} other {result.other}"
                  f"  commits/202 {result.commits_per_202:.2f}",
                  flush=True)
            if result.stored < result.accepted:
                print(f"LOST: {result.accepted - result.stored} answered 202 but not stored")
                return 1
    print(f"\nmedian of {args.rounds} round(s), {args.connections} connections,"
          f" {args.duration:.0f} s each:")
    for scenario, runs in results.items():
        print(f"  {scenario:<13} {statistics.median(r.rate for r in runs):7.0f} req/s"
              f"  p50 {statistics.median(r.p50_ms for r in runs):6.1f} ms"
              f"  p99 {statistics.median(r.p99_ms for r in runs):6.1f} ms"
              f"  backends tcp {runs[-1].backends_tcp} socket {runs[-1].backends_socket}"
              f"  commits/202 {statistics.median(r.commits_per_202 for r in runs):.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=10,
                        help="PgBouncer's server connections per database")
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    args = parser.parse_args()
    reason = missing_reason()
    if reason is not None:
        print(f"cannot run: {reason}")
        return 2
    with postgres_server() as server, \
            pgbouncer(server, pool_mode="transaction", pool_size=args.pool_size) as bouncer, \
            tempfile.TemporaryDirectory(prefix="triggerd-bench-pgb-") as folder:
        return asyncio.run(main_async(args, server, bouncer, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
