"""``[http] processes`` 1 against one per core, on the default configuration (prints figures).

    .venv/bin/python bench/processes.py [--runs 3] [--processes 1 2] [--duration 10]
                                        [--rate 1000]

Each run starts the real daemon (``python -m triggerd --config FILE run``) on the default
configuration: the embedded PostgreSQL under a temporary state directory, the executor, the
scheduler and every default setting; the file sets only the port, the state directory, the
definitions, and ``[http] processes``. One workflow (a ``noop`` node) has one ``async``
webhook trigger with bearer-token auth; every request carries a ~230-byte JSON order with
a unique id, and each accepted request becomes an execution the executor runs, as it would
for a user.

Per run, in this order:

1. start time: from the process start to the first ``200`` of ``/readyz`` (the embedded
   server is stopped between runs, so it is started each time, as on a restart);
2. memory at rest: VmRSS summed over the daemon's process tree (the main process and the
   extra HTTP processes; the embedded PostgreSQL is reported apart), and PSS from
   ``/proc/PID/smaps_rollup``;
3. p50 and p99 latency at a fixed moderate rate (``--rate``, sent by ``hey`` as
   ``--rate / 20`` requests/s on each of 20 connections; a connection waits for its answer,
   so when answers take longer than 20 / ``--rate`` s the rate reached, printed, is lower);
4. requests/s and p99 at saturation (``wrk``, 64 connections, closed loop);
5. memory again, right after the saturation run.

Between runs the daemon is stopped (SIGTERM) and the execution and inbox tables are
emptied, so each run starts from the same database. The settings are interleaved (run 1:
1 then 2; run 2: 2 then 1; ...), and the medians of the runs are printed. ``wrk`` and
``hey`` are installed from Debian's packages when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bytecode import compile_package  # noqa: E402 - after the path set-up above
from bench.webhook import (  # noqa: E402 - after the path set-up above
    PATH,
    SIGN_RATE,
    TOKEN,
    body_for,
    free_port,
    lua_script,
    postgres_cpu,
    run_wrk,
    stop_embedded,
    tree_cpu,
    warm_wal,
    write_requests,
)

FIXED_CONNECTIONS = 20
SATURATION_CONNECTIONS = 64
# WAL written and checkpointed once, so runs reuse recycled WAL files as a running server does.
WARM_WAL_MB = 256


def definitions() -> str:
    return textwrap.dedent("""\
        workflows:
          - key: bench
            name: Processes benchmark
            parameter_schema:
              type: object
              properties: {id: {type: string}, amount: {type: integer}}
              required: [id]
            graph:
              nodes:
                - {id: done, type: noop}
            triggers:
              - {name: hook, type: webhook, path: bench, response: async,
                 auth: {scheme: token, secret: {env: BENCH_TOKEN}}}
        """)


def ensure_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    print(f"{name} not found: installing it from Debian's packages (apt-get install {name})")
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", name], check=True, capture_output=True)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"cannot install {name}")
    return found


# --- process tree memory -------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo += _children(current)
    return pids


def _kb(path: Path, field: str) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, kw_only=True)
class Memory:
    processes: int
    rss_mb: float
    pss_mb: float  # 0 when smaps_rollup cannot be read


def memory(pid: int) -> Memory:
    pids = tree(pid)
    rss = sum(_kb(Path(f"/proc/{p}/status"), "VmRSS") for p in pids)
    pss = sum(_kb(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids)
    return Memory(processes=len(pids), rss_mb=rss / 1024, pss_mb=pss / 1024)


def postgres_memory(state: Path) -> Memory:
    try:
        postmaster = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return Memory(processes=0, rss_mb=0.0, pss_mb=0.0)
    return memory(postmaster)


# --- fixed-rate load -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FixedResult:
    rate: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def run_hey(hey: str, url: str, body: Path, *, rate: int, seconds: float) -> FixedResult:
    per_connection = max(1, round(rate / FIXED_CONNECTIONS))
    command = [
        hey, "-z", f"{max(1, round(seconds))}s", "-c", str(FIXED_CONNECTIONS),
        "-q", str(per_connection), "-m", "POST", "-T", "application/json",
        "-H", f"Authorization: Bearer {TOKEN}", "-D", str(body), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"hey failed ({done.returncode}): {done.stderr}{done.stdout}")
    out = done.stdout
    rate_seen = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50% in ([\d.]+) secs", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    if rate_seen is None or p50 is None or p99 is None:
        raise RuntimeError(f"cannot read hey's output:\n{out}")
    non_2xx = sum(int(n) for code, n in statuses.items() if not code.startswith("2"))
    return FixedResult(rate=float(rate_seen.group(1)), p50_ms=float(p50.group(1)) * 1000,
                       p99_ms=float(p99.group(1)) * 1000,
                       non_2xx=non_2xx)


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunResult:
    processes: int
    start_s: float
    rest: Memory
    loaded: Memory
    postgres: Memory
    fixed: FixedResult
    saturation_rate: float
    saturation_2xx_rate: float
    saturation_p99_ms: float
    saturation_non_2xx: int
    saturation_errors: int
    load_average: float
    daemon_us_per_request: float  # CPU of the daemon's processes per saturation request
    postgres_us_per_request: float


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the daemon exited with status {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status == 200:
                return
        time.sleep(0.02)
    raise RuntimeError("the daemon did not become ready")


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _reset(dsn: str, *, warm_mb: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename IN ('node_executions', 'workflow_executions', 'webhook_requests')"
        )
        if tables:
            names = ", ".join(str(t["tablename"]) for t in tables)
            await conn.execute(f"TRUNCATE {names} CASCADE")
        if warm_mb:
            await warm_wal(conn, warm_mb)
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def reset_database(state: Path, *, warm_mb: int = 0) -> None:
    """Empty the execution and inbox tables with the daemon stopped, then stop the server
    again, so the next run starts it as a daemon restart does. In a process of its own:
    the embedded server's handle must not outlive it in this one."""
    subprocess.run([sys.executable, __file__, "--reset", str(state), "--warm-mb", str(warm_mb)],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    stop_embedded(state)


def serve_reset(state: Path, warm_mb: int) -> None:
    from triggerd import db

    dsn = db.start_embedded(state)
    asyncio.run(db.migrate(dsn))
    asyncio.run(_reset(dsn, warm_mb=warm_mb))


def one_run(*, processes: int, run: int, folder: Path, state: Path, wrk: str, hey: str,
            script: Path, duration: float, rate: int) -> RunResult:
    port = free_port()
    config = folder / f"triggerd-{processes}.toml"
    config.write_text(textwrap.dedent(f"""\
        [http]
        port = {port}
        processes = {processes}

        [daemon]
        state_dir = "{state}"
        definitions = ["{folder / 'bench.yaml'}"]
        """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    env.update({"PYTHONPATH": str(ROOT), "BENCH_TOKEN": TOKEN})
    log = (folder / f"daemon-{processes}-{run}.log").open("wb")
    compile_package()  # as an installed daemon has it: its start is timed
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "triggerd", "--config", str(config), "run"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(port, daemon)
        start_s = time.monotonic() - started
        time.sleep(2.0)  # let the start settle (pools filled, first counts) before measuring
        rest = memory(daemon.pid)
        url = f"http://127.0.0.1:{port}{PATH}"
        body = folder / "body.json"
        body.write_text(body_for(f"fixed-{processes}-{run}"))
        run_hey(hey, url, body, rate=rate, seconds=2.0)  # warm-up
        fixed = run_hey(hey, url, body, rate=rate, seconds=duration)
        name = f"p{processes}r{run}"
        write_requests(folder, name, 1, int(duration * SIGN_RATE), "token")
        cpu_before = (tree_cpu(daemon.pid), postgres_cpu(state))
        saturated = run_wrk(wrk, url, script, folder, name, threads=1,
                            connections=SATURATION_CONNECTIONS, duration=duration)
        load_average = os.getloadavg()[0]
        cpu_daemon = tree_cpu(daemon.pid) - cpu_before[0]
        cpu_postgres = postgres_cpu(state) - cpu_before[1]
        loaded = memory(daemon.pid)
        postgres = postgres_memory(state)
    finally:
        stop_daemon(daemon)
        log.close()
    return RunResult(
        processes=processes, start_s=start_s, rest=rest, loaded=loaded, postgres=postgres,
        fixed=fixed, saturation_rate=saturated.rate, saturation_2xx_rate=saturated.ok_rate,
        saturation_p99_ms=saturated.p99_ms, saturation_non_2xx=saturated.non_2xx,
        saturation_errors=saturated.errors, load_average=load_average,
        daemon_us_per_request=cpu_daemon * 1e6 / max(saturated.requests, 1),
        postgres_us_per_request=cpu_postgres * 1e6 / max(saturated.requests, 1),
    )


def report(results: list[RunResult], settings: list[int], rate: int) -> None:
    print()
    print(f"{'processes':>9} {'run':>3} {'start s':>7} {'RSS MB':>7} {'PSS MB':>7}"
          f" {'RSS load':>8} {'PSS load':>8} {'PG RSS':>7} {'fixed/s':>8} {'p50 ms':>7}"
          f" {'p99 ms':>7}"
          f" {'sat req/s':>9} {'sat 2xx/s':>9} {'sat p99':>7} {'non-2xx':>7} {'us/req':>6}"
          f" {'pg us/req':>9} {'load':>5}")
    for n, r in enumerate(results):
        print(f"{r.processes:>9} {n // len(settings) + 1:>3} {r.start_s:>7.2f}"
              f" {r.rest.rss_mb:>7.0f} {r.rest.pss_mb:>7.0f} {r.loaded.rss_mb:>8.0f}"
              f" {r.loaded.pss_mb:>8.0f} {r.postgres.rss_mb:>7.0f} {r.fixed.rate:>8.0f}"
              f" {r.fixed.p50_ms:>7.2f}"
              f" {r.fixed.p99_ms:>7.2f} {r.saturation_rate:>9.0f} {r.saturation_2xx_rate:>9.0f}"
              f" {r.saturation_p99_ms:>7.2f}"
              f" {r.fixed.non_2xx + r.saturation_non_2xx + r.saturation_errors:>7}"
              f" {r.daemon_us_per_request:>6.0f} {r.postgres_us_per_request:>9.0f}"
              f" {r.load_average:>5.1f}")
    print()
    print(f"medians over {len(results) // len(settings)} runs"
          f" (fixed rate {rate}/s; saturation: wrk, {SATURATION_CONNECTIONS} connections):")
    print("| `[http] processes` | requests/s at saturation | p99 at saturation |"
          f" p50 / p99 at {rate:,}/s | RSS at rest (after load) | PSS at rest (after load) |"
          " start to `/readyz` |")
    print("|---|---|---|---|---|---|---|")
    for processes in settings:
        mine = [r for r in results if r.processes == processes]

        def med(values: list[float]) -> float:
            return statistics.median(values)

        print(f"| {processes} | {med([r.saturation_2xx_rate for r in mine]):,.0f}"
              f" | {med([r.saturation_p99_ms for r in mine]):.1f} ms"
              f" | {med([r.fixed.p50_ms for r in mine]):.1f} /"
              f" {med([r.fixed.p99_ms for r in mine]):.1f} ms"
              f" | {med([r.rest.rss_mb for r in mine]):.0f} MB"
              f" ({med([r.loaded.rss_mb for r in mine]):.0f} MB)"
              f" | {med([r.rest.pss_mb for r in mine]):.0f} MB"
              f" ({med([r.loaded.pss_mb for r in mine]):.0f} MB)"
              f" | {med([r.start_s for r in mine]):.2f} s |")
    print()
    print("RSS/PSS: the daemon's process tree (main + extra HTTP processes), without the"
          " embedded PostgreSQL (PG RSS: its postmaster and backends, after the load)."
          " us/req: CPU time of the daemon's processes (pg: of PostgreSQL) per request at"
          " saturation."
          f" load: 1-minute load average after the saturation run, on {os.cpu_count()} CPUs.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--rate", type=int, default=1000, help="the fixed moderate rate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--reset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warm-mb", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reset is not None:
        serve_reset(args.reset, args.warm_mb)
        return 0

    wrk, hey = ensure_tool("wrk"), ensure_tool("hey")
    folder = Path(tempfile.mkdtemp(prefix="triggerd-bench-processes-"))
    state = folder / "state"
    (folder / "bench.yaml").write_text(definitions())
    script = lua_script(folder)
    print(f"temp dir {folder}; {args.runs} runs of processes {args.processes},"
          f" {args.duration:g} s per load; {os.cpu_count()} CPUs,"
          f" {len(os.sched_getaffinity(0))} usable")
    results: list[RunResult] = []
    try:
        reset_database(state, warm_mb=WARM_WAL_MB)
        for run in range(1, args.runs + 1):
            order = args.processes if run % 2 else list(reversed(args.processes))
            for processes in order:
                result = one_run(processes=processes, run=run, folder=folder, state=state,
                                 wrk=wrk, hey=hey, script=script, duration=args.duration,
                                 rate=args.rate)
                results.append(result)
                print(json.dumps({"run": run, "processes": processes,
                                  "start_s": round(result.start_s, 2),
                                  "rss_mb": round(result.rest.rss_mb),
                                  "fixed_p99_ms": round(result.fixed.p99_ms, 2),
                                  "saturation_2xx_per_s": round(result.saturation_2xx_rate),
                                  "saturation_p99_ms": round(result.saturation_p99_ms, 2)}),
                      flush=True)
                reset_database(state)
    finally:
        stop_embedded(state)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report(results, args.processes, args.rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
