"""``triggerd webhooks list | show | replay``: thin transports over
:mod:`triggerd.operations.webhooks` (the admin API calls the same operations)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from triggerd.cli import (
    _check_range,
    _json_default,
    _name,
    _pool,
    _table,
    _wait_final,
    _when,
    checked_filter,
    print_json,
)
from triggerd.config import Settings
from triggerd.errors import UsageError
from triggerd.ids import MIN_PREFIX_DIGITS, WEBHOOK_REQUEST, parse_id
from triggerd.model import tenant_label, trigger_filter_problem
from triggerd.terminal import printable, printable_line

# The operations import the webhook ingress, the definitions and jsonschema (a quarter of
# a second): each command imports what it runs, so `--help` and the others do not pay it.


async def cmd_webhooks_list(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations.webhooks import (
        MAX_LIST_LIMIT,
        ListRequests,
        list_requests,
        parse_request_id,
    )
    from triggerd.webhooks.inbox_views import summary_json

    _check_range("--limit", args.limit, MAX_LIST_LIMIT)  # as the other lists' --limit
    checked_filter("trigger", args.trigger, trigger_filter_problem)
    if args.cursor is not None:  # as executions list's --cursor: the id a page printed
        try:
            parse_request_id(args.cursor)
        except UsageError:
            raise UsageError(f"--cursor: {args.cursor[:60]!r} is not a cursor this command"
                             " printed") from None
    async with _pool(settings) as pool:
        page = await list_requests(pool, ListRequests(
            trigger=args.trigger, outcome=args.outcome, after_id=args.cursor,
            limit=args.limit), tenant=args.tenant)
    items = page.items
    if page.next_cursor is not None:
        # On stderr: stdout stays the page alone (a table or a JSON list).
        print(f"more: add --cursor {page.next_cursor} for the next page", file=sys.stderr)
    if args.json:
        print_json([summary_json(r) for r in items])
        return 0
    rows = [
        # No tenant: the trigger was deleted (the row keeps no name of its own then).
        [r.id, "(deleted)" if r.trigger is None or r.tenant_id is None
         else tenant_label(r.tenant_id, r.trigger), r.outcome, str(r.delivery_count),
         _when(r.received_at), r.execution_id or ""]
        for r in items
    ]
    print(_table(rows, ["ID", "TRIGGER", "OUTCOME", "DELIVERIES", "RECEIVED", "EXECUTION"]))
    return 0


async def cmd_webhooks_show(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations.webhooks import show_request
    from triggerd.store.inbox import resolve_request_id
    from triggerd.webhooks.inbox_views import request_json

    query = parse_id(args.id, WEBHOOK_REQUEST)  # malformed: exit 2 before the database
    async with _pool(settings) as pool:
        request_id = await resolve_request_id(pool, query, args.tenant)
        found = await show_request(pool, request_id, args.tenant)
    doc = request_json(found)
    if args.json:
        print_json(doc)
        return 0
    for key in ("id", "trigger", "tenant", "outcome", "method", "path", "received_at",
                "delivery_count", "last_seen_at", "execution_id", "remote_addr", "detail"):
        if doc[key] is not None:
            print(f"{key}: {printable(str(doc[key]))}")
    if doc["query"]:
        print(f"query: {printable(json.dumps(doc['query'], ensure_ascii=False))}")
    print("headers:")
    for name, value in doc["headers"].items():
        print(f"  {printable_line(name)}: {printable_line(value)}")
    if doc["body_text"] is not None:
        print("body:")
        print(printable(doc["body_text"]))
    else:
        print("body (base64, not UTF-8):")
        print(doc["body_base64"])
    return 0


async def cmd_webhooks_replay(args: argparse.Namespace, settings: Settings) -> int:
    from triggerd.operations import cli_actor
    from triggerd.operations.webhooks import replay
    from triggerd.store.inbox import resolve_request_id

    query = parse_id(args.id, WEBHOOK_REQUEST)
    async with _pool(settings) as pool:
        request_id = await resolve_request_id(pool, query, args.tenant)
        result = await replay(pool, cli_actor(args.tenant), request_id)
        doc: dict[str, Any] = {"execution_id": result.execution_id,
                               "replay_of": result.request_id,
                               "dedupe_key": result.dedupe_key, "status": "NEW"}
        if not args.wait:
            if args.json:
                print_json(doc)
            else:
                print(result.execution_id)
            return 0
        if not args.json:
            print(result.execution_id)
        final = await _wait_final(pool, result.execution_id)
    if args.json:
        print_json({**doc, "status": final.status, "output": final.output,
                    "error_code": final.error_code, "error_message": final.error_message})
    else:
        print(final.status)
        print(json.dumps(
            final.output if final.status == "SUCCESS"
            else {"error_code": final.error_code, "error_message": final.error_message},
            default=_json_default,
        ))
    return 0 if final.status == "SUCCESS" else 1


ID_HELP = (f"the request's id, or a prefix of it that names only it ({MIN_PREFIX_DIGITS} or"
           " more leading hex digits)")


def add_webhooks_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    webhooks = sub.add_parser("webhooks", help="list, show or replay stored webhook requests")
    wsub = webhooks.add_subparsers(dest="action", metavar="ACTION", parser_class=parser_class)
    wsub.required = True
    p = wsub.add_parser("list", help="stored webhook requests (the inbox), newest first")
    p.add_argument("--trigger", metavar="NAME", type=_name)
    p.add_argument("--outcome", metavar="O", help="accepted, filtered or debounced")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", metavar="CURSOR",
                   help="the next page: the cursor a full page printed on stderr")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_webhooks_list)
    p = wsub.add_parser("show", help="a stored request with its headers and body")
    p.add_argument("id", metavar="ID", help=ID_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_webhooks_show)
    p = wsub.add_parser("replay", help="run a stored request again through its trigger's"
                                       " current version (exit 1 with --wait: the run failed)")
    p.add_argument("id", metavar="ID", help=ID_HELP)
    p.add_argument("--wait", action="store_true", help="wait for the run to end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_webhooks_replay)
