"""A flooded tenant and a quiet one: fair claiming, measured (prints figures).

    .venv/bin/python bench/tenants.py [--duration 30] [--backlog 150000]

The real daemon (``python -m triggerd --config FILE run``) on the default configuration
(the embedded PostgreSQL under a temporary state directory). The default tenant has a
workflow ``pulse`` with an every-second interval trigger; both the default tenant and
tenant ``acme`` have a workflow ``flood`` of three nodes (set -> if -> noop, like
``bench/executor.py``'s). Three phases of ``--duration`` seconds each, one after another
on the same daemon:

1. **quiet**: nothing but the every-second trigger;
2. **flood in another tenant**: ``--backlog`` runs of acme's ``flood`` inserted NEW at
   once (more than the executor finishes in the phase, so it works flat out all along);
3. **flood in the same tenant**: the same backlog, in the default tenant: what a single
   queue taken oldest first does to the every-second runs (the reference).

For each phase the bench reports the every-second runs' *start lateness* (the run's
``start_time`` minus its ``scheduled_for``: the scheduler's commit plus the wait in the
queue), p50, p99 and max over the phase's runs, its slots by outcome (the interval's
default overlap policy skips a slot while the previous run has not ended, so a run stuck
in the queue shows as ``skipped_overlap`` slots), and how many flood runs finished per
second. Between phases the backlog is deleted. Fair claiming should keep phase 2 close to
phase 1; phase 3 shows the backlog's delay.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.processes import stop_daemon, wait_ready  # noqa: E402
from bench.sustained import dsn_of  # noqa: E402
from bench.webhook import free_port, stop_embedded  # noqa: E402

FLOOD_GRAPH = """\
    graph:
      nodes:
        - {id: set, type: set, params: {value: "{{ input.n }}"}}
        - {id: check, type: if, params: {condition: "{{ nodes.set.output > 0 }}"}}
        - {id: done, type: noop}
      edges:
        - {from: set, to: check}
        - {from: check, to: done, when: "true"}
"""


def definitions(folder: Path) -> list[Path]:
    default = folder / "default.yaml"
    default.write_text(textwrap.dedent("""\
        workflows:
          - key: pulse
            graph: {nodes: [{id: a, type: noop}]}
            triggers:
              - {name: every-second, type: interval, every: 1s}
          - key: flood
        """) + FLOOD_GRAPH + "    triggers: [{name: run, type: manual}]\n")
    acme = folder / "acme.yaml"
    acme.write_text("tenant: acme\nworkflows:\n  - key: flood\n" + FLOOD_GRAPH
                    + "    triggers: [{name: run, type: manual}]\n")
    return [default, acme]


async def flood(dsn: str, tenant: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO workflow_executions (workflow_id, workflow_version_id, trigger_type,"
            " trigger_name, tenant_id, input)"
            " SELECT w.id, v.id, 'manual', 'run', w.tenant_id, jsonb_build_object('n', g)"
            " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id AND v.is_latest,"
            " generate_series(1, $2) g WHERE w.key = 'flood' AND w.tenant_id = $1",
            tenant, count)
        await conn.execute("SELECT pg_notify('triggerd_executions', '1')")
    finally:
        await conn.close()


async def measure(dsn: str, since: float, until: float) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM start_time - scheduled_for) * 1000 AS late_ms"
            " FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
            " WHERE w.key = 'pulse' AND e.scheduled_for >= to_timestamp($1)"
            " AND e.scheduled_for < to_timestamp($2)", since, until)
        finished = await conn.fetchval(
            "SELECT count(*) FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
            " WHERE w.key = 'flood' AND e.end_time >= to_timestamp($1)"
            " AND e.end_time < to_timestamp($2)", since, until)
        waiting = await conn.fetchval(
            "SELECT count(*) FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id"
            " WHERE w.key = 'pulse' AND e.scheduled_for >= to_timestamp($1)"
            " AND e.scheduled_for < to_timestamp($2) AND e.start_time IS NULL", since, until)
        slots = dict(await conn.fetch(
            "SELECT s.outcome, count(*) FROM trigger_slots s"
            " JOIN workflow_triggers t ON t.id = s.trigger_id"
            " JOIN workflows w ON w.id = t.workflow_id WHERE w.key = 'pulse'"
            " AND s.scheduled_for >= to_timestamp($1) AND s.scheduled_for < to_timestamp($2)"
            " GROUP BY 1", since, until))
    finally:
        await conn.close()
    late = sorted(float(r["late_ms"]) for r in rows if r["late_ms"] is not None)
    return {"runs": len(rows), "not_started": waiting, "late": late, "slots": slots,
            "flood_per_s": finished / (until - since)}


async def reset(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DELETE FROM workflow_executions WHERE workflow_id IN"
            " (SELECT id FROM workflows WHERE key = 'flood')")
    finally:
        await conn.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--backlog", type=int, default=150_000,
                        help="flood runs inserted at the start of phases 2 and 3")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="triggerd-bench-tenants-"))
    state = folder / "state"
    files = definitions(folder)
    port = free_port()
    config = folder / "triggerd.toml"
    listed = ", ".join(f'"{f}"' for f in files)
    config.write_text(f"[http]\nport = {port}\n\n[daemon]\nstate_dir = \"{state}\"\n"
                      f"definitions = [{listed}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    env["PYTHONPATH"] = str(ROOT)
    log = (folder / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "triggerd", "--config", str(config), "run"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"temp dir {folder}; {args.duration:g} s per phase; backlog {args.backlog:,};"
          f" {os.cpu_count()} CPUs", flush=True)
    try:
        wait_ready(port, daemon)
        dsn = dsn_of(state)
        time.sleep(3.0)
        phases = [("quiet", None), ("flood in tenant acme", "acme"),
                  ("flood in the same tenant", "default")]
        for label, tenant in phases:
            if tenant is not None:
                asyncio.run(flood(dsn, tenant, args.backlog))
            start = time.time()
            time.sleep(args.duration)
            end = time.time()
            # Runs scheduled in the last seconds may not have started yet: leave them.
            found = asyncio.run(measure(dsn, start + 1, end - 2))
            late = found["late"]
            print(f"{label:<26} every-second runs {found['runs']:>3}"
                  f" (not started {found['not_started']}); start lateness p50"
                  f" {pct(late, 0.5):8.1f} ms  p99 {pct(late, 0.99):9.1f} ms  max"
                  f" {max(late) if late else float('nan'):9.1f} ms"
                  f" (mean {statistics.fmean(late) if late else float('nan'):.1f});"
                  f" flood runs finished {found['flood_per_s']:,.0f}/s; slots"
                  f" {dict(sorted(found['slots'].items()))}", flush=True)
            asyncio.run(reset(dsn))
            time.sleep(2.0)
    finally:
        stop_daemon(daemon)
        log.close()
        stop_embedded(state)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
