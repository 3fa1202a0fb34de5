"""``triggerd workflows list | show | archive | activate | delete``: reads, and thin
transports over :mod:`triggerd.operations.workflows` (the admin API calls the same
operations)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from triggerd.cli import _name, _pool, _table, _text, _when, print_json
from triggerd.config import Settings
from triggerd.errors import UsageError
from triggerd.model import DEFAULT_TENANT, tenant_label
from triggerd.views import trigger_json, workflow_json

if TYPE_CHECKING:
    from triggerd.operations.workflows import WorkflowChange

# The operations import the store and jsonschema (a quarter of a second): each command
# imports what it runs, so `--help` and the others do not pay it.


async def cmd_workflows_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.workflows import list_workflows

    async with _pool(settings) as pool:
        workflows = await list_workflows(pool, tenant=args.tenant)
    if args.json:
        print_json([workflow_json(w) for w in workflows])
        return 0
    # Another tenant's key as tenant:key, as the trigger lists print names (and as every
    # command takes them).
    rows = [[tenant_label(w.tenant_id, w.key), w.status,
             "-" if w.latest_version is None else str(w.latest_version),
             w.name, _when(w.updated_at)] for w in workflows]
    print(_table(rows, ["KEY", "STATUS", "VERSION", "NAME", "UPDATED"]))
    return 0


async def cmd_workflows_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.store.workflows import get_workflow, list_triggers

    async with _pool(settings) as pool:
        workflow = await get_workflow(pool, args.key, args.tenant or DEFAULT_TENANT)
        triggers = await list_triggers(pool, workflow_id=workflow.id)
    doc = {**workflow_json(workflow), "triggers": [trigger_json(t) for t in triggers]}
    if args.json:
        print_json(doc)
        return 0
    for key in ("key", "name", "status", "latest_version", "id", "description", "created_at",
                "updated_at"):
        if doc[key] not in (None, ""):
            print(f"{key + ':':<16} {_text(doc[key])}")
    if triggers:
        print("triggers:")
        rows = [[t.name, t.type, "enabled" if t.enabled else "disabled"] for t in triggers]
        print(_table(rows, ["NAME", "TYPE", "STATE"]))
    return 0


def _print_change(result: WorkflowChange, done: str, as_json: bool) -> int:
    if as_json:
        print_json({"workflow": result.workflow, "changed": result.changed,
                    "status": result.status, "previous": result.previous,
                    "canceled_backfills": result.canceled_backfills})
    elif not result.changed:
        print(f"workflow {result.workflow} is already {result.status}")
    else:
        extra = (f"; {result.canceled_backfills} running backfill(s) canceled"
                 if result.canceled_backfills else "")
        print(f"workflow {result.workflow} {done} (was {result.previous}){extra}")
    return 0


async def cmd_workflows_archive(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.workflows import archive

    async with _pool(settings) as pool:
        result = await archive(pool, cli_actor(args.tenant), args.key, args.note)
    return _print_change(result, "archived: its triggers start nothing", args.json)


async def cmd_workflows_activate(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.workflows import activate

    async with _pool(settings) as pool:
        result = await activate(pool, cli_actor(args.tenant), args.key, args.note)
    return _print_change(result, "activated: no slot from before now runs", args.json)


async def cmd_workflows_delete(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.workflows import delete

    if not args.yes:
        raise UsageError(f"deleting workflow {args.key} removes its versions, triggers and"
                         " history for good; add --yes to do it")
    async with _pool(settings) as pool:
        result = await delete(pool, cli_actor(args.tenant), args.key, args.note)
    if args.json:
        print_json({"workflow": result.workflow, "versions": result.versions,
                    "triggers": result.triggers, "executions": result.executions,
                    "webhook_requests": result.webhook_requests})
    else:
        print(f"workflow {result.workflow} deleted: {result.versions} version(s),"
              f" {result.triggers} trigger(s), {result.executions} execution(s),"
              f" {result.webhook_requests} stored webhook request(s)")
    return 0


def add_workflows_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    workflows = sub.add_parser(
        "workflows", help="list, show, archive, activate or delete workflows")
    wsub = workflows.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    wsub.required = True
    p = wsub.add_parser("list", help="workflows by key, with status and latest version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_workflows_list)
    p = wsub.add_parser("show", help="a workflow and its triggers")
    p.add_argument("key", metavar="KEY", type=_name)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_workflows_show)
    p = wsub.add_parser(
        "archive", help="stop every trigger of a workflow; keep its history",
        description="Archive a workflow: its schedules plan nothing, its webhooks answer"
        " 404, fire and replay are refused and its running backfills are canceled. Runs"
        " already started go on; the history stays. apply keeps the status unless a"
        " document names one (status: active).")
    p.add_argument("key", metavar="KEY", type=_name)
    p.add_argument("--note", metavar="TEXT", type=_name, help="why (audited)")
    p.add_argument("--json", action="store_true",
                   help='print {"workflow", "changed", "status", "previous",'
                        ' "canceled_backfills"}')
    p.set_defaults(handler=cmd_workflows_archive)
    p = wsub.add_parser(
        "activate", help="start an archived (or draft) workflow's triggers again",
        description="Activate a workflow. Nothing is caught up: no slot from before the"
        " activation runs.")
    p.add_argument("key", metavar="KEY", type=_name)
    p.add_argument("--note", metavar="TEXT", type=_name, help="why (audited)")
    p.add_argument("--json", action="store_true",
                   help='print {"workflow", "changed", "status", "previous",'
                        ' "canceled_backfills"}')
    p.set_defaults(handler=cmd_workflows_activate)
    p = wsub.add_parser(
        "delete", help="delete a workflow with its versions, triggers and history (--yes)",
        description="Delete a workflow, its versions, triggers (with their state, ledger and"
        " backfills) and history (executions, node rows, stored webhook requests). Refused"
        " (exit 4) while runs are in flight. The audit trail keeps the delete. Remove the"
        " workflow from your definition files too, or the next apply creates it again.")
    p.add_argument("key", metavar="KEY", type=_name)
    p.add_argument("--yes", action="store_true", help="really delete (required)")
    p.add_argument("--note", metavar="TEXT", type=_name, help="why (audited)")
    p.add_argument("--json", action="store_true",
                   help='print {"workflow", "versions", "triggers", "executions",'
                        ' "webhook_requests"}')
    p.set_defaults(handler=cmd_workflows_delete)
