"""``triggerd test FILE --workflow KEY``: a thin transport over
:mod:`triggerd.operations.testruns` (the admin API's ``POST /api/v1/test-runs`` calls the
same operation)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from triggerd.cli import _json_default, _parse_input, _path, _pool, print_json
from triggerd.config import Settings
from triggerd.errors import DefinitionError
from triggerd.testrun_rules import decision_of, timeline_line

if TYPE_CHECKING:
    from triggerd.store.executions import NodeRow


def _print_rows(rows: Sequence[NodeRow]) -> None:
    for row in rows:
        if row.status == "RUNNING":
            continue  # printed when it ends (or parks)
        print(timeline_line({
            "node_id": row.node_id, "node_type": row.node_type, "status": row.status,
            "execution_time_ms": row.execution_time_ms, "error_code": row.error_code,
            "error_message": row.error_message, "output": row.output,
        }), flush=True)


async def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    # Here, not at the top: they bring the executor, aiohttp, the definitions and
    # jsonschema, which every other command would otherwise import while its parser is
    # built (0.2 s and more).
    from triggerd.definitions import load_files
    from triggerd.operations import cli_actor
    from triggerd.operations.testruns import TestRunRequest, new_test_run, run_test
    from triggerd.secrets import refused_secret_problems

    decision = decision_of(args.approve, args.reject)
    run_input = _parse_input(args.input)
    # The loader of check and apply: a bad file is exit 2 with its problems, nothing written.
    specs = await asyncio.to_thread(lambda: load_files(
        [args.file], tenant=args.tenant,
        max_workflow_depth=settings.executor.max_workflow_depth))
    # And the secrets check and apply refuse under this configuration (the daemon's own,
    # another tenant's): a test run read them, where the API's test runs refuse them.
    problems = refused_secret_problems(args.file, specs, settings, os.environ)
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) found", problems)
    request = TestRunRequest(specs=specs, workflow=args.workflow, input=run_input,
                             trigger=args.trigger, decision=decision, dry=args.dry)
    new_test_run(request)  # unknown workflow or trigger, bad input: before any connection

    def started(execution_id: str) -> None:
        if not args.json:
            print(f"test run {execution_id} of {args.workflow}"
                  f"{' (dry)' if args.dry else ''}", flush=True)

    async with _pool(settings) as pool:
        result = await run_test(pool, settings, cli_actor(args.tenant), request,
                                observe=None if args.json else _print_rows, started=started)
    doc = result.to_json()
    ok = doc["status"] == "SUCCESS"
    if args.json:
        print_json(doc)
        return 0 if ok else 1
    print(doc["status"])
    shown: Any = doc["output"] if ok else {"error_code": doc["error_code"],
                                           "error_message": doc["error_message"]}
    print(json.dumps(shown, default=_json_default, ensure_ascii=False))
    if not ok:
        print(f"triggerd: test run {doc['execution_id']} ended {doc['status']}:"
              f" {doc['error_code']}: {doc['error_message']}", file=sys.stderr)
    return 0 if ok else 1


def add_test_command(sub: Any) -> None:
    p = sub.add_parser(
        "test", help="run a workflow of a definition file without applying it",
        description="Run workflow KEY of FILE (not applied) as a test run: the executor's run"
        " path, node rows recorded, under a scratch copy of the workflow that no list,"
        " trigger or metric shows, kept for [executor] test_retention. Prints each node as"
        " it is recorded. Exit 0 when the run succeeds, 1 when it fails.")
    p.add_argument("file", metavar="FILE", type=_path)
    p.add_argument("--workflow", metavar="KEY", required=True)
    p.add_argument("--input", metavar="JSON", help="the run's input (a JSON object)")
    p.add_argument("--trigger", metavar="NAME",
                   help="run as this trigger of the workflow (its input under --input)")
    decision = p.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true",
                          help="decide every approval node the run meets: approved")
    decision.add_argument("--reject", action="store_true",
                          help="decide every approval node the run meets: rejected")
    p.add_argument("--dry", action="store_true",
                   help='do not run nodes that act outside the run (http, workflow, memory'
                        ' writes); record {"would_call": params} instead')
    p.add_argument("--json", action="store_true",
                   help='print {"execution_id", "workflow", "scratch_workflow", "status",'
                        ' "test", "dry", "output", "error_code", "error_message", "nodes"}'
                        ' at the end')
    p.set_defaults(handler=cmd_test)
