"""End to end, sustained: webhooks into three-node runs at fixed rates (prints figures).

    .venv/bin/python bench/sustained.py [--duration 60] [--rates 1000 1500 2000 2500 3000 3500]
                                        [--overload-max-pending 2000] [--no-executor-bench]

The real daemon (``python -m triggerd --config FILE run``) on the default configuration:
the embedded PostgreSQL under a temporary state directory, the executor, the scheduler and
every default setting; the file sets only the port, the state directory and the
definitions (and, for the last step only, ``[http] max_pending``). One workflow of three
nodes like ``bench/executor.py``'s (set -> if -> noop) has one ``async`` webhook trigger
with bearer-token auth; each accepted request becomes a run the executor walks.

Load is open loop: a generator process (plain asyncio, pre-built HTTP/1.1 requests,
pipelined over 64 keep-alive connections) sends request i at t0 + i / rate whatever the
answers do, and each answer's latency is counted from that intended instant (so a stall
shows in the latency instead of lowering the rate). Per step (``--duration`` seconds at
one rate) the backlog (``NEW`` + ``RUNNING`` executions) is sampled every second with SQL
and the bench reports the offered rate, 202s/s, 429s, p50/p99 answer latency, runs
finished/s (202s minus the backlog's growth; both rates per second from the first send to
the last answer, which an overloaded daemon gives well after the sending ended), the
backlog slope (least squares over the second half of the step) and the daemon's RSS at
the start and the end of the step.

A step is *flat* when the slope is below 1% of the offered rate, every request was
answered 202 and the p99 answer latency is under a second (requests queued in the sockets
are a backlog too); the highest flat rate is the **sustained ceiling**. Between steps the
backlog is left to drain and the execution tables are emptied (the daemon keeps running).
The stepping stops after the first step that is not flat; then one more step at 1.5 times
that rate runs with ``[http] max_pending`` lowered (SIGHUP) to ``--overload-max-pending``,
to show backpressure: 429s once the backlog of NEW runs passes max_pending, a backlog that
stops growing there, and RSS that stays bounded.

Before the steps, ``bench/executor.py`` runs once in the same session, for its
executor-alone figure.
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.processes import memory, postgres_memory, stop_daemon, wait_ready  # noqa: E402
from bench.webhook import TOKEN, free_port, postgres_cpu, stop_embedded, tree_cpu  # noqa: E402

PATH = "/hooks/sustained"
TARGET = 3000.0  # runs/s
FLAT_FRACTION = 0.01  # |slope| below 1% of the offered rate counts as flat
# Requests waiting in the sockets are a backlog too: a step whose answers fall this far
# behind is not sustained, whatever the table's backlog does.
MAX_P99_MS = 1000.0
CONNECTIONS = 64
# Requests in flight above which the generator stops sending (and counts what it skips):
# the daemon has stopped answering, and an unbounded queue would only measure the bench.
MAX_IN_FLIGHT = 50_000
DRAIN_LIMIT_S = 300.0


def definitions() -> str:
    return textwrap.dedent(f"""\
        workflows:
          - key: sustained
            name: Sustained benchmark
            parameter_schema:
              type: object
              properties: {{id: {{type: string}}, amount: {{type: integer}}}}
              required: [id]
            graph:
              nodes:
                - {{id: compute, type: set, params: {{value: {{n: "{{{{ input.amount + 1 }}}}"}}}}}}
                - {{id: check, type: if,
                   params: {{condition: "{{{{ nodes.compute.output.n > 0 }}}}"}}}}
                - {{id: done, type: noop}}
              edges:
                - {{from: compute, to: check}}
                - {{from: check, to: done, when: "true"}}
            triggers:
              - {{name: hook, type: webhook, path: {PATH.removeprefix("/hooks/")},
                 response: async, auth: {{scheme: token, secret: {{env: BENCH_TOKEN}}}}}}
        """)


# --- the open-loop generator (a process of its own) ------------------------------------------


def request_bytes(port: int, n: int) -> bytes:
    body = f'{{"id":"r{n:012d}","amount":{n % 1000}}}'.encode()
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are pipelined, answers come back in order."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.intended: deque[float] = deque()
        self.buffer = b""
        self.transport: Any = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport's

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats["errors"] += len(self.intended)
        self.intended.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        now = time.monotonic()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _LENGTH.search(self.buffer, 0, end + 2)
            length = int(match.group(1)) if match else 0
            if len(self.buffer) < end + 4 + length:
                return
            status = self.buffer[9:12].decode()
            self.buffer = self.buffer[end + 4 + length :]
            sent_at = self.intended.popleft()
            counts = self.stats["status"]
            counts[status] = counts.get(status, 0) + 1
            self.stats["latencies"].append(now - sent_at)
            self.stats["last_answer"] = now


async def _generate(port: int, rate: float, duration: float, first_id: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"status": {}, "latencies": [], "errors": 0, "skipped": 0,
                             "last_answer": 0.0}
    connections: list[_Connection] = []
    for _ in range(CONNECTIONS):
        _, protocol = await loop.create_connection(lambda: _Connection(stats), "127.0.0.1", port)
        connections.append(protocol)
    total = int(rate * duration)
    sent = 0
    turn = 0
    t0 = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - t0) * rate) + 1)
        while sent < due:
            intended = t0 + sent / rate
            in_flight = sum(len(c.intended) for c in connections) if sent % 256 == 0 else 0
            if in_flight > MAX_IN_FLIGHT:
                stats["skipped"] += 1
            else:
                for _ in range(CONNECTIONS):
                    conn = connections[turn % CONNECTIONS]
                    turn += 1
                    if not conn.closed:
                        break
                assert conn.transport is not None
                conn.intended.append(intended)
                conn.transport.write(request_bytes(port, first_id + sent))
            sent += 1
        await asyncio.sleep(0.001)
    sent_seconds = time.monotonic() - t0
    # Every answer to come back, within reason.
    deadline = time.monotonic() + 60
    while any(c.intended for c in connections) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    unanswered = sum(len(c.intended) for c in connections)
    for c in connections:
        if c.transport is not None:
            c.transport.close()
    latencies: list[float] = sorted(stats["latencies"])

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    # An overloaded daemon answers after the sending ended: rates of answers and of
    # finished runs are per second of this longer window, not of the sending.
    answered_seconds = max(sent_seconds, stats["last_answer"] - t0)
    return {
        "sent": total - stats["skipped"], "skipped": stats["skipped"], "seconds": sent_seconds,
        "answered_seconds": answered_seconds,
        "status": stats["status"], "errors": stats["errors"] + unanswered,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "cpu_s": time.process_time(),
    }


def serve_generator(port: int, rate: float, duration: float, first_id: int) -> None:
    import uvloop

    result = uvloop.run(_generate(port, rate, duration, first_id))
    print(json.dumps(result), flush=True)


# --- sampling ---------------------------------------------------------------------------------


def dsn_of(state: Path) -> str:
    """The embedded server's DSN, from its postmaster.pid (line 5: the socket directory)."""
    lines = (state / "postgres" / "postmaster.pid").read_text().splitlines()
    return f"postgresql://postgres@/triggerd?host={lines[4].strip()}"


async def backlog(conn: Any) -> int:
    # NEW and RUNNING each have a partial index (the claim's); both counts stay cheap.
    value: int = await conn.fetchval(
        "SELECT (SELECT count(*) FROM workflow_executions WHERE status = 'NEW')"
        " + (SELECT count(*) FROM workflow_executions WHERE status = 'RUNNING')"
    )
    return value


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope (per second) of (t, value) points."""
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


@dataclass(frozen=True, kw_only=True)
class Step:
    rate: float
    max_pending: int | None
    offered: float
    accepted_per_s: float
    rejected_429: int
    other: int  # neither 202 nor 429, or no answer at all
    skipped: int
    p50_ms: float
    p99_ms: float
    finished_per_s: float
    slope: float
    backlog_end: int
    backlog_max: int
    rss_start_mb: float
    rss_end_mb: float
    # CPU per accepted request, in microseconds: the daemon's process tree, the embedded
    # PostgreSQL and the load generator (all three share the machine's cores).
    daemon_us: float
    postgres_us: float
    generator_us: float
    sent_s: float  # the sending's length
    answered_s: float  # from the first send to the last answer

    @property
    def flat(self) -> bool:
        return (
            abs(self.slope) < FLAT_FRACTION * self.rate
            and self.p99_ms < MAX_P99_MS
            and self.rejected_429 == 0
            and self.other == 0
            and self.skipped == 0
        )


async def run_step(*, daemon: subprocess.Popen[bytes], port: int, dsn: str, state: Path,
                   rate: float, duration: float, first_id: int,
                   max_pending: int | None) -> Step:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rss_start = memory(daemon.pid).rss_mb
        start_backlog = await backlog(conn)
        cpu_start = (tree_cpu(daemon.pid), postgres_cpu(state))
        generator = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--generate", str(port), str(rate), str(duration),
            str(first_id), stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        while generator.returncode is None and time.monotonic() - t0 < duration + 0.5:
            samples.append((time.monotonic() - t0, await backlog(conn)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(generator.wait(), 1.0)
        out, _ = await generator.communicate()
        end_backlog = await backlog(conn)
        rss_end = memory(daemon.pid).rss_mb
        # The backlog left at the end is finished before the CPU is read again, so the
        # per-request figures cover whole runs.
        while await backlog(conn) > 0 and time.monotonic() - t0 < duration + DRAIN_LIMIT_S:
            await asyncio.sleep(0.2)
        cpu_end = (tree_cpu(daemon.pid), postgres_cpu(state))
    finally:
        await conn.close()
    if generator.returncode != 0:
        raise RuntimeError(f"the load generator failed ({generator.returncode})")
    result = json.loads(out)
    status: dict[str, int] = result["status"]
    accepted = status.get("202", 0)
    rejected = status.get("429", 0)
    other = sum(n for code, n in status.items() if code not in ("202", "429")) + result["errors"]
    seconds = result["seconds"]
    answered = result["answered_seconds"]
    second_half = [p for p in samples if p[0] >= duration / 2]
    per_request = 1e6 / max(1, accepted)
    return Step(
        daemon_us=(cpu_end[0] - cpu_start[0]) * per_request,
        postgres_us=(cpu_end[1] - cpu_start[1]) * per_request,
        generator_us=result["cpu_s"] * per_request,
        rate=rate, max_pending=max_pending, offered=(result["sent"]) / seconds,
        accepted_per_s=accepted / answered, rejected_429=rejected, other=other,
        skipped=result["skipped"], p50_ms=result["p50_ms"], p99_ms=result["p99_ms"],
        # Every 202 is a run: what did not stay in the backlog finished (by the time the
        # last answer came back).
        finished_per_s=(start_backlog + accepted - end_backlog) / answered,
        answered_s=answered, sent_s=seconds,
        slope=slope(second_half), backlog_end=end_backlog,
        backlog_max=max([b for _, b in samples] + [end_backlog]),
        rss_start_mb=rss_start, rss_end_mb=rss_end,
    )


async def drain_and_empty(dsn: str) -> float:
    """Wait for the backlog to drain, then empty the execution tables; returns the wait."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        started = time.monotonic()
        while await backlog(conn) > 0 and time.monotonic() - started < DRAIN_LIMIT_S:
            await asyncio.sleep(0.5)
        waited = time.monotonic() - started
        await conn.execute("TRUNCATE node_executions, workflow_executions, webhook_requests"
                           " CASCADE")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
        return waited
    finally:
        await conn.close()


def write_config(folder: Path, port: int, state: Path, max_pending: int | None,
                 concurrency: int | None, processes: int | None) -> Path:
    config = folder / "triggerd.toml"
    extra = "" if max_pending is None else f"max_pending = {max_pending}\n"
    extra += "" if processes is None else f"processes = {processes}\n"
    executor = "" if concurrency is None else f"[executor]\nconcurrency = {concurrency}\n\n"
    config.write_text(
        f"[http]\nport = {port}\n{extra}\n{executor}[daemon]\nstate_dir = \"{state}\"\n"
        f"definitions = [\"{folder / 'sustained.yaml'}\"]\n"
    )
    return config


def executor_alone() -> float | None:
    """bench/executor.py's figure in this same session (executions/s)."""
    done = subprocess.run([sys.executable, "-m", "bench.executor"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    match = re.search(r"executor:.*->\s*([\d,]+) executions/s", done.stdout)
    print(done.stdout.strip())
    return float(match.group(1).replace(",", "")) if match else None


def print_step(s: Step) -> None:
    mp = "" if s.max_pending is None else f" (max_pending {s.max_pending})"
    print(f"{s.rate:>7,.0f}{mp}: offered {s.offered:,.0f}/s, 202 {s.accepted_per_s:,.0f}/s,"
          f" 429 {s.rejected_429}, other {s.other}, skipped {s.skipped},"
          f" p50 {s.p50_ms:.1f} ms, p99 {s.p99_ms:.1f} ms,"
          f" finished {s.finished_per_s:,.0f}/s, backlog slope {s.slope:+,.1f}/s"
          f" (max {s.backlog_max}, end {s.backlog_end}),"
          f" RSS {s.rss_start_mb:.0f} -> {s.rss_end_mb:.0f} MB,"
          f" last answer {s.answered_s - s.sent_s:.1f} s after the last send,"
          f" CPU per run: daemon {s.daemon_us:.0f} us, PostgreSQL {s.postgres_us:.0f} us,"
          f" generator {s.generator_us:.0f} us"
          f" -> {'flat' if s.flat else 'NOT flat'}", flush=True)


def report(steps: list[Step], executor_rate: float | None, duration: float) -> None:
    print()
    print(f"| offered runs/s | 202/s | 429s | p50 / p99 | runs finished/s | backlog slope"
          f" (second half of {duration:g} s) | backlog max (end) | daemon RSS start -> end |"
          f" flat |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        mp = "" if s.max_pending is None else f" (max_pending {s.max_pending:,})"
        print(f"| {s.offered:,.0f}{mp} | {s.accepted_per_s:,.0f} | {s.rejected_429:,}"
              f" | {s.p50_ms:.1f} / {s.p99_ms:.1f} ms | {s.finished_per_s:,.0f}"
              f" | {s.slope:+,.1f}/s | {s.backlog_max:,} ({s.backlog_end:,})"
              f" | {s.rss_start_mb:.0f} -> {s.rss_end_mb:.0f} MB | {'yes' if s.flat else 'no'} |")
    flat = [s.rate for s in steps if s.flat and s.max_pending is None]
    ceiling = max(flat) if flat else 0.0
    print()
    print(f"sustained ceiling: {ceiling:,.0f} runs/s (highest step with a backlog slope under"
          f" {FLAT_FRACTION:.0%} of the rate, every request answered 202 and a p99 under"
          f" {MAX_P99_MS:,.0f} ms); target"
          f" >= {TARGET:,.0f} runs/s")
    if executor_rate is not None:
        print(f"bench/executor.py in the same session: {executor_rate:,.0f} executions/s"
              f" (executor alone)")
    print(f"{os.cpu_count()} CPUs; 1-minute load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per step")
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[1000, 1500, 2000, 2500, 3000, 3500, 4000])
    parser.add_argument("--overload-max-pending", type=int, default=2000,
                        help="[http] max_pending of the last step, above the ceiling")
    parser.add_argument("--no-executor-bench", action="store_true")
    parser.add_argument("--executor-concurrency", type=int,
                        help="[executor] concurrency (default: the daemon's default)")
    parser.add_argument("--http-processes", type=int,
                        help="[http] processes (default: the daemon's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--profile", type=Path,
                        help="run the daemon under cProfile and write its stats to this file")
    parser.add_argument("--generate", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        port, rate, duration, first_id = args.generate
        serve_generator(int(port), float(rate), float(duration), int(first_id))
        return 0

    executor_rate = None if args.no_executor_bench else executor_alone()
    folder = Path(tempfile.mkdtemp(prefix="triggerd-bench-sustained-"))
    state = folder / "state"
    (folder / "sustained.yaml").write_text(definitions())
    port = free_port()
    config = write_config(folder, port, state, None, args.executor_concurrency,
                          args.http_processes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    env.update({"PYTHONPATH": str(ROOT), "BENCH_TOKEN": TOKEN})
    log = (folder / "daemon.log").open("wb")
    print(f"temp dir {folder}; {args.duration:g} s per step; [executor] concurrency"
          f" {args.executor_concurrency or 'default'}; [http] processes"
          f" {args.http_processes or 'default'}; {os.cpu_count()} CPUs", flush=True)
    profile = [] if args.profile is None else ["-m", "cProfile", "-o", str(args.profile)]
    daemon = subprocess.Popen(
        [sys.executable, *profile, "-m", "triggerd", "--config", str(config), "run"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    steps: list[Step] = []
    first_id = 0
    try:
        wait_ready(port, daemon)
        dsn = dsn_of(state)
        time.sleep(2.0)
        rates = list(args.rates)
        overload: float | None = None
        for rate in rates:
            step = asyncio.run(run_step(daemon=daemon, port=port, dsn=dsn, state=state, rate=rate,
                                        duration=args.duration, first_id=first_id,
                                        max_pending=None))
            first_id += int(rate * args.duration) + 1
            steps.append(step)
            print_step(step)
            waited = asyncio.run(drain_and_empty(dsn))
            print(f"         drained in {waited:.1f} s", flush=True)
            if not step.flat:
                overload = rate * 1.5
                break
        if overload is None:
            overload = rates[-1] * 1.5
        # Backpressure: the same daemon, max_pending lowered by a reload (SIGHUP).
        write_config(folder, port, state, args.overload_max_pending, args.executor_concurrency,
                     args.http_processes)
        daemon.send_signal(signal.SIGHUP)
        time.sleep(3.0)
        step = asyncio.run(run_step(daemon=daemon, port=port, dsn=dsn, state=state, rate=overload,
                                    duration=args.duration, first_id=first_id,
                                    max_pending=args.overload_max_pending))
        steps.append(step)
        print_step(step)
        pg = postgres_memory(state)
        print(f"embedded PostgreSQL RSS at the end: {pg.rss_mb:.0f} MB ({pg.processes} processes)")
    finally:
        stop_daemon(daemon)
        log.close()
        stop_embedded(state)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report(steps, executor_rate, args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
