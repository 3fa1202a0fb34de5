"""Event-loop lag while large webhook bodies go through a heavy filter (prints figures).

    .venv/bin/python bench/large_filter.py [--requests 10] [--megabytes 5] [--filtered] [--port N]

The real daemon (``python -m triggerd --config FILE run``) on the default configuration
(the embedded PostgreSQL under a temporary state directory) with one webhook trigger
whose ``filter`` re-encodes the whole input (``tojson``) and sorts its items. Two phases:

1. **quiet**: nothing is sent;
2. **large bodies**: ``--requests`` bodies of ``--megabytes`` MB, two at a time. Each
   starts a run (of a ``noop`` node) in the same process, unless ``--filtered``.

For each phase: the daemon's own loop lag (``triggerd_event_loop_lag_seconds``: a task
that sleeps 0.1 s, p99 from the histogram's buckets, so an upper bound) and the latency
of ``/healthz`` probed every 10 ms (p50, p99, max), i.e. what every other request saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.processes import stop_daemon, wait_ready  # noqa: E402
from bench.tenants import pct  # noqa: E402
from bench.webhook import free_port, stop_embedded  # noqa: E402

FILTER = ("{{ (input | tojson | length) > 0 and"
          " (input['items'] | map(attribute='name') | sort | list | length) %s 0 }}")
LAG = "triggerd_event_loop_lag_seconds"


def definitions(folder: Path, *, matched: bool) -> Path:
    path = folder / "hooks.yaml"
    source = FILTER % (">" if matched else "<")
    path.write_text(textwrap.dedent(f"""\
        workflows:
          - key: big
            graph: {{nodes: [{{id: done, type: noop}}]}}
            triggers:
              - {{name: hook, type: webhook, path: big, filter: "{source}"}}
        """))
    return path


def body(megabytes: float) -> bytes:
    count = int(megabytes * 1_000_000 / 70)
    return json.dumps({"action": "opened", "items": [
        {"id": i, "name": f"item-{count - i:08d}", "tags": ["a", "b"]} for i in range(count)
    ]}).encode()


def lag_buckets(port: int) -> dict[float, float]:
    """The loop-lag histogram's cumulative buckets, by upper bound."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    found: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{LAG}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def bucket_p99(before: dict[float, float], after: dict[float, float]) -> tuple[float, int]:
    """The smallest bucket bound under which 99 % of the phase's samples fell."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts[float("inf")]
    for le, count in counts.items():
        if count >= 0.99 * total:
            return le, int(total)
    return float("inf"), int(total)


async def probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                out: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(url) as answer:
            await answer.read()
        out.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)


async def phase(port: int, payload: bytes | None, requests: int) -> list[float]:
    latencies: list[float] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        prober = asyncio.create_task(
            probe(session, f"http://127.0.0.1:{port}/healthz", stop, latencies))
        if payload is None:
            await asyncio.sleep(5.0)
        else:
            sem = asyncio.Semaphore(2)

            async def send() -> None:
                async with sem, session.post(
                    f"http://127.0.0.1:{port}/hooks/big", data=payload,
                    headers={"Content-Type": "application/json"},
                ) as answer:
                    assert answer.status in (200, 202), await answer.text()

            await asyncio.gather(*(send() for _ in range(requests)))
        stop.set()
        await prober
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--megabytes", type=float, default=5.0)
    parser.add_argument("--filtered", action="store_true",
                        help="a filter that matches no body (same cost): no run starts")
    parser.add_argument("--port", type=int, default=0, help="the daemon's (default: any free)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="triggerd-bench-large-"))
    state = folder / "state"
    port = args.port or free_port()
    config = folder / "triggerd.toml"
    hooks = definitions(folder, matched=not args.filtered)
    config.write_text(f"[http]\nport = {port}\nmax_body_bytes = 20000000\n\n[daemon]\n"
                      f"state_dir = \"{state}\"\ndefinitions = [\"{hooks}\"]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    env["PYTHONPATH"] = str(ROOT)
    log = (folder / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "triggerd", "--config", str(config), "run"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    payload = body(args.megabytes)
    print(f"temp dir {folder}; {args.requests} bodies of {len(payload) / 1e6:.1f} MB, two at"
          f" a time; {os.cpu_count()} CPUs", flush=True)
    try:
        wait_ready(port, daemon)
        time.sleep(2.0)
        for label, sent in (("quiet", None), ("large bodies", payload)):
            before = lag_buckets(port)
            started = time.perf_counter()
            latencies = sorted(asyncio.run(phase(port, sent, args.requests)))
            took = time.perf_counter() - started
            p99, samples = bucket_p99(before, lag_buckets(port))
            print(f"{label:<13} {took:5.1f} s; loop lag p99 <= {p99:g} s ({samples} samples);"
                  f" /healthz p50 {pct(latencies, 0.5):7.1f} ms  p99"
                  f" {pct(latencies, 0.99):7.1f} ms  max {max(latencies):7.1f} ms"
                  f" ({len(latencies)} probes)", flush=True)
    finally:
        stop_daemon(daemon)
        log.close()
        stop_embedded(state)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
