"""``triggerd apply`` benchmark (issue 14). Not a test: it prints figures next to their
targets.

    .venv/bin/python bench/apply.py [--triggers 100000] [--per-workflow 10] [--runs 3]

Writes one definition file with N cron triggers of the realistic mix (``bench/cron.py``:
random minutes and hours, ``*/5``-style steps, weekday and monthly forms over four zones),
``--per-workflow`` triggers to a workflow, then times ``triggerd apply FILE`` as a whole
process (the way an operator runs it, YAML parsing and validation included) against a
fresh database of an embedded PostgreSQL:

(1) the first apply (everything created);
(2) re-applying the unchanged file (nothing written), and how many lines it printed;
(3) re-applying with 1% of the triggers changed.

Medians of --runs runs, each on a fresh database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cron import fresh_database, realistic_mix
from triggerd import db

TARGETS = {"first_s": 10.0, "unchanged_s": 3.0}


def definition_document(configs: list[dict[str, Any]], per_workflow: int) -> dict[str, Any]:
    workflows = []
    for start in range(0, len(configs), per_workflow):
        number = start // per_workflow
        workflows.append({
            "key": f"wf{number}",
            "graph": {"nodes": [{"id": "start", "type": "noop"}]},
            "triggers": [
                {"name": f"t{start + i}", "type": "cron", **config}
                for i, config in enumerate(configs[start : start + per_workflow])
            ],
        })
    return {"workflows": workflows}


def write_yaml(path: Path, document: dict[str, Any]) -> None:
    """Block-style YAML as people write it (one key a line), without a YAML dumper's cost."""
    lines = ["workflows:"]
    for workflow in document["workflows"]:
        lines += [
            f"  - key: {workflow['key']}",
            "    graph:",
            "      nodes:",
            "        - id: start",
            "          type: noop",
            "    triggers:",
        ]
        for trigger in workflow["triggers"]:
            lines += [
                f"      - name: {trigger['name']}",
                "        type: cron",
                f"        cron: \"{trigger['cron']}\"",
                f"        timezone: {trigger['timezone']}",
            ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_apply(config: Path, file: Path) -> tuple[float, list[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "triggerd", "--config", str(config), "apply", str(file)],
        capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"apply failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout.splitlines()


def breakdown(file: Path) -> str:
    """Where reading and checking the file goes, in this process (seconds of CPU)."""
    from triggerd.definitions.build import build_workflow
    from triggerd.definitions.checks import check_across, check_document, known_node_types
    from triggerd.definitions.loading import paused_gc, read_file
    from triggerd.definitions.problems import Report
    from triggerd.definitions.schema import validate_file

    report = Report(file=str(file))
    parts: dict[str, float] = {}
    with paused_gc():
        started = time.process_time()
        _, document = read_file(file, report)
        parts["YAML"] = time.process_time() - started
        started = time.process_time()
        validate_file(document, report)
        parts["schema"] = time.process_time() - started
        started = time.process_time()
        check_document(document, report, node_types=known_node_types())
        check_across([(report, document)])
        report.problems(document)
        parts["checks"] = time.process_time() - started
        started = time.process_time()
        built: dict[Any, Any] = {}
        [build_workflow(workflow, built) for workflow in document["workflows"]]
        parts["building"] = time.process_time() - started
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())


async def main(args: argparse.Namespace) -> None:
    configs = realistic_mix(args.triggers)
    document = definition_document(configs, args.per_workflow)
    changed = json.loads(json.dumps(document))
    step = 100  # one trigger in a hundred gets another minute
    for workflow in changed["workflows"]:
        for trigger in workflow["triggers"]:
            if int(trigger["name"][1:]) % step == 0:
                trigger["cron"] = "7 7 * * *" if trigger["cron"] != "7 7 * * *" else "8 8 * * *"
    with tempfile.TemporaryDirectory(prefix="triggerd-bench-apply-") as tmp:
        work = Path(tmp)
        admin_dsn = await asyncio.to_thread(db.start_embedded, work / "state")
        first_file, changed_file = work / "defs.yaml", work / "defs-changed.yaml"
        write_yaml(first_file, document)
        write_yaml(changed_file, changed)
        size_mb = first_file.stat().st_size / 1e6
        print(f"triggerd apply: {args.triggers:,} cron triggers of the realistic mix,"
              f" {len(document['workflows']):,} workflows, one YAML file of {size_mb:.1f} MB;"
              f" medians of {args.runs} runs (fresh database each)")
        figures: dict[str, list[float]] = {"first": [], "unchanged": [], "changed": []}
        lines: dict[str, int] = {}
        for run in range(args.runs):
            dsn = await fresh_database(admin_dsn, f"bench_apply_{run}")
            config = work / f"triggerd-{run}.toml"
            config.write_text(f'[database]\nurl = "{dsn}"\n[log]\nlevel = "warning"\n')
            for name, file in (("first", first_file), ("unchanged", first_file),
                               ("changed", changed_file)):
                elapsed, out = run_apply(config, file)
                figures[name].append(elapsed)
                lines[name] = len(out)
                if name != "first" and run == 0:
                    print(f"    ({name}) last line: {out[-1] if out else '(nothing)'}")
        for name, label, target in (
            ("first", "(1) first apply", TARGETS["first_s"]),
            ("unchanged", "(2) re-apply, unchanged", TARGETS["unchanged_s"]),
            ("changed", "(3) re-apply, 1% changed", None),
        ):
            median = statistics.median(figures[name])
            spread = ", ".join(f"{v:.2f}" for v in figures[name])
            verdict = "" if target is None else (
                f"  target <= {target:.0f} s [{'ok' if median <= target else 'MISSED'}]")
            print(f"{label}: {median:.2f} s (runs {spread}), {lines[name]:,} lines printed"
                  f"{verdict}")
        print(f"reading and checking the file (CPU, in one process): {breakdown(first_file)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--triggers", type=int, default=100_000)
    parser.add_argument("--per-workflow", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    os.environ.setdefault("TRIGGERD_LOG_LEVEL", "warning")
    asyncio.run(main(parser.parse_args()))
