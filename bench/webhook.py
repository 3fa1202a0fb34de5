"""Webhook ingress benchmark (loopback only; prints figures, asserts nothing but storage).

    .venv/bin/python bench/webhook.py [--duration 15] [--connections 64] [--auth standard]
                                      [--processes 2]

These servers are measured in the same run with the same load generator and the same
requests (a ~200-byte JSON body with a unique id):

1. ``bare``: aiohttp answering 202 without touching a database (the ceiling);
2. ``insert``: aiohttp doing one asyncpg ``INSERT`` per request (the naive design);
3. ``triggerd``: the real daemon (``Daemon`` with migrations, definitions, the aiohttp app,
   ``setup_webhooks``) in a subprocess, on an embedded PostgreSQL in a temporary state
   directory. Only the webhook component runs: no executor consumes the executions, and
   ``[http] max_pending`` is raised so that backpressure does not refuse the backlog.
   It runs with ``[http] processes = --processes`` (default 2: one per core here);
4. ``triggerd-1p``: the same with one process (when ``--processes`` is above 1), to show
   what the extra process adds. The targets are checked on ``triggerd``;
5. ``triggerd-debounce``: the daemon again, its trigger with ``debounce`` over
   ``DEBOUNCE_KEYS`` keys (the id's number modulo that): every request is stored, in one
   transaction of its own, and folds into its key's pending run. Its stored requests/s is
   printed against the plain path's of the same run.
6. ``filter-match`` and ``filter-out``: ``triggerd`` whose trigger has a ``filter`` that
   every request matches (each still runs) or that none matches (each is stored as
   filtered and answered 200), reported as a ratio to ``triggerd``.

The trigger uses ``standard`` (Standard Webhooks) auth and dedupe by ``webhook-id``:
LuaJIT in wrk has no HMAC, so the harness signs every request ahead of the run (each with
its own id and a current timestamp) and the server verifies each one in full. ``--auth
token`` uses a bearer token and dedupe by the body's ``/id`` instead.

The load generator is ``wrk`` (installed from Debian's packages when missing); when it
cannot be had, or with ``--tool python``, a small aiohttp load generator is used instead.

Before the runs, 512 MB of WAL is written and checkpointed (``warm_wal``), so that the runs
reuse recycled WAL files as a server that has been running does; ``--fresh-wal`` measures a
fresh cluster instead, which zero-fills a new 16 MB WAL file every ~0.7 s of load while a
commit waits (the p99 tail of a fresh cluster).

After the triggerd run the daemon is stopped (SIGTERM: the group commit is flushed) and
the stored rows are compared with the 2xx answers: every 2xx must have its rows. wrk stops
with up to ``connections`` requests in flight; those may be stored without having been
answered, so stored - 2xx is between 0 and ``connections``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STANDARD_SECRET = "whsec_" + base64.b64encode(b"triggerd-bench-standard-key-0001").decode()
TOKEN = "bench-token-0123456789abcdef"
PATH = "/hooks/bench"
# Upper bound of the request rate the harness signs requests for (per second of run).
SIGN_RATE = 40_000
# WAL written and checkpointed before the runs (see warm_wal): more than one run writes.
WARM_WAL_MB = 512
BODY_PREFIX = '{"id":"'
BODY_SUFFIX = (
    '","event":"order.created","amount":4200,"currency":"EUR",'
    '"customer":{"name":"Ada Lovelace","email":"ada@example.com"},'
    '"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"bench"}'
)

# Keys of the debounce run: every request of a key folds into that key's one pending run.
DEBOUNCE_KEYS = 300

TARGETS = {
    "min_stored_per_s": 10_000.0,
    "max_p99_ms": 20.0,
    "min_ratio_to_bare": 0.5,
}


# --- servers (run as subprocesses of this script) -----------------------------------------


def use_bench_loop() -> None:
    """Every server of the comparison runs on the same loop as the daemon (uvloop when
    installed; BENCH_LOOP=asyncio for the standard one)."""
    if os.environ.get("BENCH_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:
            return
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve_bare(port: int) -> None:
    from aiohttp import web

    use_bench_loop()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        execution_id = str(uuid.uuid4())
        return web.json_response(
            {"execution_id": execution_id, "status_url": f"/hooks/_executions/{execution_id}"},
            status=202,
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/hooks/{path:.*}", handle)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_insert(port: int, dsn: str, pool_max: int) -> None:
    from aiohttp import web

    use_bench_loop()

    from triggerd import db

    async def make_app() -> web.Application:
        pool = await db.create_pool(dsn, min_size=pool_max, max_size=pool_max)

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            execution_id = str(uuid.uuid4())
            await pool.execute(
                "INSERT INTO bench_single_insert (id, body) VALUES ($1, $2)", execution_id, body
            )
            return web.json_response(
                {"execution_id": execution_id,
                 "status_url": f"/hooks/_executions/{execution_id}"},
                status=202,
            )

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def close(app: web.Application) -> None:
            await pool.close()

        app = web.Application()
        app.router.add_post("/hooks/{path:.*}", handle)
        app.router.add_get("/healthz", healthz)
        app.on_cleanup.append(close)
        return app

    web.run_app(make_app(), host="127.0.0.1", port=port, access_log=None, print=None)


def serve_triggerd() -> None:
    """The daemon as ``triggerd run`` builds it, with only the webhook component."""
    from triggerd.config import load_settings
    from triggerd.daemon import Daemon
    from triggerd.logs import setup_logging
    from triggerd.webhooks.ingress import setup_webhooks

    class WebhookOnlyDaemon(Daemon):
        def build_components(self, dsn: str) -> None:
            assert self.pool is not None and self.app is not None
            self.ingress = setup_webhooks(
                self.app, pool=self.pool, dsn=dsn, settings=self.settings,
                writers=int(os.environ.get("BENCH_WRITERS", "1")),
            )
            self.components = [self.ingress]

        async def stop(self) -> None:
            await super().stop()
            stats = self.ingress.stats.group_commit
            if stats.batches:
                print(
                    f"triggerd group commit: {stats.rows} rows in {stats.batches} statements"
                    f" (mean {stats.rows / stats.batches:.1f}, largest {stats.largest_batch})",
                    file=sys.stderr,
                )

    use_bench_loop()
    settings = load_settings()
    setup_logging(settings.log.level, settings.log.format, stream=sys.stderr)
    profile_to = os.environ.get("BENCH_PROFILE")
    if not profile_to:
        asyncio.run(WebhookOnlyDaemon(settings=settings).serve())
        return
    import cProfile

    with cProfile.Profile() as profile:
        asyncio.run(WebhookOnlyDaemon(settings=settings).serve())
    profile.dump_stats(profile_to)


# --- requests ------------------------------------------------------------------------------------


def body_for(request_id: str) -> str:
    return BODY_PREFIX + request_id + BODY_SUFFIX


def write_requests(folder: Path, run: str, threads: int, count: int, auth: str) -> None:
    """One file per wrk thread; a line per request: ``id`` (token) or ``id ts signature``
    (standard, signed now: valid for the next 5 minutes)."""
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    now = str(int(time.time()))
    per_thread = count // threads + 1
    for thread in range(threads):
        lines = []
        for n in range(per_thread):
            request_id = f"{run}-{thread}-{n}"
            if auth == "standard":
                signed = f"{request_id}.{now}.{body_for(request_id)}".encode()
                digest = hmac.new(key, signed, hashlib.sha256).digest()
                signature = "v1," + base64.b64encode(digest).decode()
                lines.append(f"{request_id} {now} {signature}")
            else:
                lines.append(request_id)
        (folder / f"{run}_{thread}.txt").write_text("\n".join(lines) + "\n")


LUA = """
local prefix = %(prefix)s
local suffix = %(suffix)s
local path = %(path)s
local token = %(token)s
local next_thread = 0
local requests = {}
local counter = 0
wrapped = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  local file = args[1] .. "/" .. args[2] .. "_" .. tid .. ".txt"
  for line in io.lines(file) do
    local id, ts, sig = line:match("^(%%S+) (%%S+) (.+)$")
    local headers = {["Content-Type"] = "application/json"}
    if id then
      headers["webhook-id"] = id
      headers["webhook-timestamp"] = ts
      headers["webhook-signature"] = sig
    else
      id = line
      headers["Authorization"] = "Bearer " .. token
    end
    requests[#requests + 1] = wrk.format("POST", path, headers, prefix .. id .. suffix)
  end
end

function request()
  counter = counter + 1
  if counter > #requests then
    counter = 1
    wrapped = wrapped + 1
  end
  return requests[counter]
end
"""


def lua_script(folder: Path) -> Path:
    def quoted(text: str) -> str:
        return json.dumps(text)  # a JSON string is a valid Lua string here (ASCII only)

    script = folder / "bench.lua"
    script.write_text(
        LUA
        % {
            "prefix": quoted(BODY_PREFIX),
            "suffix": quoted(BODY_SUFFIX),
            "path": quoted(PATH),
            "token": quoted(TOKEN),
        }
    )
    return script


# --- load generators -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    requests: int
    non_2xx: int
    errors: int  # connect/read/write/timeout errors
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def ok_rate(self) -> float:
        return self.ok / self.seconds


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it from Debian's packages (apt-get install wrk)")
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cannot install wrk ({exc}); using the Python aiohttp load generator")
        return None
    return shutil.which("wrk")


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def run_wrk(wrk: str, url: str, script: Path, folder: Path, run: str, *, threads: int,
            connections: int, duration: float) -> LoadResult:
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        "--timeout", "10s", "-s", str(script), url, "--", str(folder), run,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    if total is None or p50 is None or p99 is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return LoadResult(
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        errors=sum(int(g) for g in errors.groups()) if errors else 0,
        seconds=_ms(total.group(2) + total.group(3)) / 1000.0,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
    )


def run_python_load(url: str, folder: Path, run: str, auth: str, *, threads: int,
                    connections: int, duration: float) -> LoadResult:
    """The fallback load generator: ``connections`` aiohttp workers on one keep-alive
    connection each, closed-loop like wrk; in-flight requests finish before it returns."""
    import aiohttp

    lines: list[str] = []
    for thread in range(threads):
        lines += (folder / f"{run}_{thread}.txt").read_text().split()
    entries: list[tuple[str, dict[str, str]]] = []
    if auth == "standard":
        for i in range(0, len(lines) - 2, 3):
            request_id, ts, signature = lines[i], lines[i + 1], lines[i + 2]
            entries.append((request_id, {"Content-Type": "application/json",
                                         "webhook-id": request_id, "webhook-timestamp": ts,
                                         "webhook-signature": signature}))
    else:
        entries = [(i, {"Content-Type": "application/json",
                        "Authorization": f"Bearer {TOKEN}"}) for i in lines]

    async def main() -> LoadResult:
        latencies: list[float] = []
        counts = {"ok": 0, "bad": 0, "errors": 0}
        index = iter(range(10**12))
        deadline = time.monotonic() + duration

        async def worker(session: aiohttp.ClientSession) -> None:
            while time.monotonic() < deadline:
                request_id, headers = entries[next(index) % len(entries)]
                started = time.monotonic()
                try:
                    async with session.post(url, data=body_for(request_id).encode(),
                                            headers=headers) as resp:
                        await resp.read()
                        counts["ok" if resp.status < 400 else "bad"] += 1
                except aiohttp.ClientError:
                    counts["errors"] += 1
                    continue
                latencies.append(time.monotonic() - started)

        started = time.monotonic()
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(worker(session) for _ in range(connections)))
        seconds = time.monotonic() - started
        latencies.sort()
        return LoadResult(
            requests=counts["ok"] + counts["bad"],
            non_2xx=counts["bad"],
            errors=counts["errors"],
            seconds=seconds,
            p50_ms=latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
            p99_ms=latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        )

    return asyncio.run(main())


# --- orchestration ---------------------------------------------------------------------------


def _proc_cpu(pid: int, *, with_children: bool = False) -> float:
    """CPU seconds (user + system) of a process, from /proc; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if with_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (reaped children)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live children and the children it already reaped."""
    total = _proc_cpu(pid, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == pid:
            total += _proc_cpu(int(entry.name))
    return total


def postgres_cpu(state: Path) -> float:
    """CPU seconds of the embedded PostgreSQL: the postmaster and its children."""
    try:
        postmaster = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return tree_cpu(postmaster)


def stop_embedded(state: Path) -> None:
    """Fast shutdown (SIGINT) of the embedded PostgreSQL this run started."""
    try:
        pid = int((state / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} server exited with status {process.returncode}")
        url = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the {what} server did not become healthy")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def count_rows(dsn: str) -> tuple[int, int, int]:
    """(webhook requests, bench executions, requests whose execution exists)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM webhook_requests) AS requests,"
            " (SELECT count(*) FROM workflow_executions WHERE trigger_name = 'hook') AS execs,"
            " (SELECT count(*) FROM webhook_requests r JOIN workflow_executions e"
            "   ON e.id = r.execution_id) AS joined"
        )
        assert row is not None
        return int(row["requests"]), int(row["execs"]), int(row["joined"])
    finally:
        await conn.close()


async def prepare_database(dsn: str, *, warm_wal_mb: int) -> None:
    import asyncpg

    from triggerd import db

    await db.migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_single_insert (id uuid PRIMARY KEY,"
            " body bytea NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
        )
        if warm_wal_mb:
            await warm_wal(conn, warm_wal_mb)
    finally:
        await conn.close()


async def warm_wal(conn: Any, megabytes: int) -> None:
    """Leave a pool of recycled WAL files, as a server that has been running has.

    A fresh cluster creates and zero-fills a new 16 MB WAL file whenever it runs out, while
    a commit waits: about 20 times per 15 s run here, which is the p99 tail of a fresh
    cluster (p99 35-46 ms; 14-15 ms with wal_init_zero off). A server that has been running
    recycles old files at checkpoints instead. Writing that much WAL once and checkpointing
    twice makes the runs below meet recycled files, not new ones."""
    await conn.execute("CREATE TABLE bench_wal_filler (pad text)")
    for _ in range(megabytes // 64):
        await conn.execute(
            "INSERT INTO bench_wal_filler SELECT repeat('x', 1000)"
            " FROM generate_series(1, 64 * 1000)"
        )
        await conn.execute("TRUNCATE bench_wal_filler")
    await conn.execute("DROP TABLE bench_wal_filler")
    await conn.execute("CHECKPOINT")
    await conn.execute("SELECT pg_switch_wal()")
    await conn.execute("CHECKPOINT")


# The bench body's event is order.created: the first filter matches every request, the
# second none.
FILTERS = {
    "filter-match": "{{ input.event == 'order.created' and input.amount > 0 }}",
    "filter-out": "{{ input.event == 'order.deleted' and input.amount > 0 }}",
}


def definitions(auth: str, filter: str | None = None, *, debounce: bool = False) -> str:
    if auth == "standard":
        trigger = ("{name: hook, type: webhook, path: bench,"
                   " auth: {scheme: standard, secret: {env: BENCH_STANDARD_SECRET}},"
                   " dedupe: {header: webhook-id}")
    else:
        trigger = ("{name: hook, type: webhook, path: bench,"
                   " auth: {scheme: token, secret: {env: BENCH_TOKEN}},"
                   " dedupe: {json: /id}")
    if filter is not None:
        trigger += f', filter: "{filter}"'
    if debounce:
        # The id ends in a running number: a few hundred keys, each hit again and again.
        key = "{{ (input.id.split('-')[-1] | int) % " + str(DEBOUNCE_KEYS) + " }}"
        trigger += f', debounce: {{key: "{key}", period: 1h}}'
    trigger += "}"
    return textwrap.dedent(f"""\
        workflows:
          - key: bench
            name: Webhook benchmark
            parameter_schema:
              type: object
              properties: {{id: {{type: string}}, amount: {{type: integer}}}}
              required: [id]
            graph:
              nodes:
                - {{id: done, type: noop}}
            triggers:
              - {trigger}
        """)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--auth", choices=("standard", "token"), default="standard")
    parser.add_argument("--tool", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--only", choices=("bare", "insert", "triggerd", "triggerd-1p",
                                           "triggerd-debounce", *FILTERS),
                        action="append")
    parser.add_argument("--pool-max", type=int, default=10, help="database pool size")
    parser.add_argument("--processes", type=int, default=2,
                        help="[http] processes of the daemon (the extra ones answer webhooks)")
    parser.add_argument("--writers", type=int, default=1,
                        help="triggerd group-commit writers (statements in flight)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--fresh-wal", action="store_true",
                        help="skip writing and checkpointing WAL first (see warm_wal)")
    parser.add_argument("--serve", choices=("bare", "insert", "triggerd"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve == "bare":
        serve_bare(args.port)
        return 0
    if args.serve == "insert":
        serve_insert(args.port, args.dsn, args.pool_max)
        return 0
    if args.serve == "triggerd":
        serve_triggerd()
        return 0

    from triggerd import db

    wrk = ensure_wrk() if args.tool == "wrk" else None
    tool = "wrk" if wrk else "python aiohttp load generator"
    folder = Path(tempfile.mkdtemp(prefix="triggerd-bench-"))
    state = folder / "state"
    print(f"load generator: {tool}; {args.connections} connections, {args.duration:g} s per"
          f" run; auth: {args.auth}; temp dir {folder}")
    dsn = db.start_embedded(state)
    asyncio.run(prepare_database(dsn, warm_wal_mb=0 if args.fresh_wal else WARM_WAL_MB))
    print("PostgreSQL: " + ("a fresh cluster: new WAL files are created during the runs"
                            if args.fresh_wal else
                            f"{WARM_WAL_MB} MB of WAL written and checkpointed first, so the"
                            " runs reuse recycled WAL files as a running server does"
                            " (--fresh-wal: measure a fresh cluster)"))
    (folder / "bench.yaml").write_text(definitions(args.auth))
    (folder / "debounce.yaml").write_text(definitions(args.auth, debounce=True))
    for name, source in FILTERS.items():
        (folder / f"{name}.yaml").write_text(definitions(args.auth, source))
    script = lua_script(folder)
    threads = args.threads if wrk else 1
    targets = args.only or ["bare", "insert", "triggerd", "triggerd-debounce", *FILTERS] + (
        ["triggerd-1p"] if args.processes > 1 else [])
    results: dict[str, LoadResult] = {}
    storage: dict[str, Any] = {}
    storage_debounce: dict[str, Any] = {}
    cpu: dict[str, tuple[float, float]] = {}
    loads: dict[str, float] = {}

    def load(port: int, run: str, seconds: float) -> LoadResult:
        write_requests(folder, run, threads, int(seconds * SIGN_RATE), args.auth)
        url = f"http://127.0.0.1:{port}{PATH}"
        if wrk:
            return run_wrk(wrk, url, script, folder, run, threads=threads,
                           connections=args.connections, duration=seconds)
        return run_python_load(url, folder, run, args.auth, threads=threads,
                               connections=args.connections, duration=seconds)

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_STANDARD_SECRET": STANDARD_SECRET,
        "BENCH_TOKEN": TOKEN,
        "TRIGGERD_DAEMON_STATE_DIR": str(state),
        "TRIGGERD_DAEMON_DEFINITIONS": str(folder / "bench.yaml"),
        "TRIGGERD_DATABASE_URL": "",
        "TRIGGERD_DATABASE_POOL_MAX": str(args.pool_max),
        "TRIGGERD_HTTP_MAX_PENDING": str(10**9),
        "TRIGGERD_LOG_LEVEL": "warning",
        "BENCH_WRITERS": str(args.writers),
        "TRIGGERD_HTTP_PROCESSES": str(args.processes),
    }
    try:
        for target in targets:
            port = free_port()
            serve = "triggerd" if target.startswith("triggerd") or target in FILTERS else target
            command = [sys.executable, __file__, "--serve", serve, "--port", str(port),
                       "--dsn", dsn, "--pool-max", str(args.pool_max)]
            env_target = {**env, "TRIGGERD_HTTP_PORT": str(port)}
            if target == "triggerd-1p":
                env_target["TRIGGERD_HTTP_PROCESSES"] = "1"
            if target == "triggerd-debounce":
                env_target["TRIGGERD_DAEMON_DEFINITIONS"] = str(folder / "debounce.yaml")
            if target in FILTERS:
                env_target["TRIGGERD_DAEMON_DEFINITIONS"] = str(folder / f"{target}.yaml")
            server = subprocess.Popen(command, env=env_target)
            try:
                wait_healthy(port, server, target)
                if args.warmup > 0:
                    load(port, f"warm{target}", args.warmup)
                time.sleep(0.5)
                before = asyncio.run(count_rows(dsn))
                cpu_server, cpu_pg = tree_cpu(server.pid), postgres_cpu(state)
                results[target] = load(port, f"main{target}", args.duration)
                loads[target] = os.getloadavg()[0]
                cpu[target] = (tree_cpu(server.pid) - cpu_server, postgres_cpu(state) - cpu_pg)
            finally:
                stop_server(server)
            after = asyncio.run(count_rows(dsn))
            counted = {
                "requests": after[0] - before[0],
                "executions": after[1] - before[1],
                "joined": after[2] - before[2],
            }
            if target == "triggerd":
                storage = counted
            elif target == "triggerd-debounce":
                storage_debounce = counted
    finally:
        if not args.keep:
            # Stop the embedded server before its data directory goes away (its own
            # at-exit stop would come too late and leave it running on a deleted dir).
            stop_embedded(state)
            shutil.rmtree(folder, ignore_errors=True)

    report(results, storage, cpu, loads, args.connections)
    report_debounce(results, storage, storage_debounce)
    return 0


def report_debounce(results: dict[str, LoadResult], plain: dict[str, Any],
                    debounced: dict[str, Any]) -> None:
    mine, other = results.get("triggerd"), results.get("triggerd-debounce")
    if other is None or not debounced:
        return
    rate = min(debounced["requests"], other.ok) / other.seconds
    print()
    print(f"triggerd-debounce: stored {rate:.0f} requests/s into {debounced['executions']} runs"
          f" ({DEBOUNCE_KEYS} keys), p50 {other.p50_ms:.2f} ms, p99 {other.p99_ms:.2f} ms")
    if mine is not None and plain:
        plain_rate = min(plain["requests"], mine.ok) / mine.seconds
        print(f"ratio debounce / plain stored requests/s (same run): {rate / plain_rate:.2f}")


def report(results: dict[str, LoadResult], storage: dict[str, Any],
           cpu: dict[str, tuple[float, float]], loads: dict[str, float],
           connections: int) -> None:
    print()
    print(f"{'server':<12} {'req/s':>10} {'2xx/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'requests':>10} {'non-2xx':>8} {'errors':>7} {'server us/req':>14}"
          f" {'pg us/req':>10} {'load':>5}")
    for name, r in results.items():
        server_cpu, pg_cpu = cpu.get(name, (0.0, 0.0))
        per = 1e6 / max(r.requests, 1)
        print(f"{name:<12} {r.rate:>10.0f} {r.ok_rate:>10.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}"
              f" {r.requests:>10} {r.non_2xx:>8} {r.errors:>7} {server_cpu * per:>14.0f}"
              f" {pg_cpu * per:>10.0f} {loads.get(name, 0.0):>5.1f}")
    print("(triggerd: the daemon with [http] processes = --processes; triggerd-1p: with one"
          " process)")
    print("(server/pg us/req: CPU time of the server processes and of PostgreSQL per request;"
          f" load: 1-minute load average at the end of the run, on {os.cpu_count()} CPUs)")
    mine = results.get("triggerd")
    if mine is None:
        return
    print()
    stored = storage["requests"]
    stored_rate = min(stored, mine.ok) / mine.seconds
    print(f"triggerd: stored and acknowledged {stored_rate:.0f} requests/s,"
          f" p50 {mine.p50_ms:.2f} ms, p99 {mine.p99_ms:.2f} ms")
    for other in ("bare", "insert", "triggerd-1p"):
        if other in results:
            print(f"ratio triggerd / {other}: {mine.ok_rate / results[other].ok_rate:.2f}")
    for name in FILTERS:
        if name in results:
            print(f"ratio {name} / triggerd: {results[name].ok_rate / mine.ok_rate:.2f}")
    print()
    in_flight = stored - mine.ok
    print(f"storage check: 2xx answers {mine.ok}, webhook_requests rows {stored},"
          f" executions {storage['executions']}, requests joined to their execution"
          f" {storage['joined']}")
    ok = storage["joined"] == stored == storage["executions"] and 0 <= in_flight <= connections
    if in_flight == 0:
        print("  rows stored == 2xx answers: OK")
    elif ok:
        print(f"  rows stored == 2xx answers + {in_flight} requests wrk left in flight at the"
              f" cut-off (stored, never answered; at most {connections}): OK")
    else:
        print("  MISMATCH: some 2xx answer has no stored row, or rows are unaccounted for")
    print()
    checks = [
        ("stored requests/s >= 10,000", stored_rate >= TARGETS["min_stored_per_s"]),
        ("p99 <= 20 ms", mine.p99_ms <= TARGETS["max_p99_ms"]),
    ]
    if "bare" in results:
        checks.append(("ratio to bare aiohttp >= 0.5",
                       mine.ok_rate / results["bare"].ok_rate >= TARGETS["min_ratio_to_bare"]))
    for label, passed in checks:
        print(f"target {label}: {'met' if passed else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
