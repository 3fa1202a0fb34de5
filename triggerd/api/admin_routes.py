"""The admin API's route table: every ``/api/v1`` operation, declared once.

The aiohttp router (:func:`triggerd.api.admin.add_admin_routes`) and the OpenAPI document
(:func:`openapi_document`) are both built from :data:`ADMIN_ROUTES`, so a route cannot be
served without being documented, or documented without being served.
:func:`route_mismatches` compares what an application serves with what a document lists,
for the tests and for anything that wants to check a running application.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from triggerd.api import admin
from triggerd.api.openapi import (
    ACCEPTED,
    API_PREFIX,
    BACKFILL_ID,
    EXECUTION_ID,
    LOCATION_HEADER,
    NEXT_COUNT_DEFAULT,
    NEXT_COUNT_MAX,
    OPENAPI_PATH,
    PAGE_LIMIT,
    TENANT,
    TRIGGER_CURSOR_PATTERN,
    TRIGGER_NAME,
    TRIGGER_WORKFLOW,
    VERSION_CURSOR_PATTERN,
    WORKFLOW_CURSOR_PATTERN,
    WORKFLOW_KEY,
    Answer,
    Body,
    Param,
    Route,
    build_document,
    json_answer,
    key_schema,
    query,
)
from triggerd.model import (
    CORRELATION_COLUMNS,
    TRIGGER_NAME_PATTERN,
    ExecutionStatus,
    TriggerType,
)
from triggerd.positions import CURSOR_PATTERN
from triggerd.storable import BIGINT_TEXT_PATTERN
from triggerd.store.backfills import BACKFILL_STATES


async def openapi_handler(request: web.Request) -> web.Response:
    return web.Response(text=_openapi_text(), content_type="application/json")


_P = API_PREFIX
_TRIGGER = f"{_P}/triggers/{{workflow}}/{{trigger}}"
_EXECUTION = f"{_P}/executions/{{id}}"
_TRIGGER_PARAMS = (TRIGGER_WORKFLOW, TRIGGER_NAME)
_WEBHOOK_REQUEST = f"{_P}/webhook-requests/{{id}}"
_WEBHOOK_REQUEST_ID = Param(
    name="id", location="path", schema={"type": "string", "format": "uuid"},
    description="Stored request id; a value that is not a UUID is answered 400 (exit 2 in"
    " the CLI).",
)

WORKFLOW_CURSOR = query("cursor", {"type": "string", "pattern": WORKFLOW_CURSOR_PATTERN},
                        "Opaque: the next_cursor of the previous page.")
TRIGGER_CURSOR = query("cursor", {"type": "string", "pattern": TRIGGER_CURSOR_PATTERN},
                       "Opaque: the next_cursor of the previous page.")

ADMIN_ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="getOpenApi", method="GET", path=OPENAPI_PATH, handler=openapi_handler,
        summary="This document", tag="meta", public=True,
        answers={200: Answer(description="The OpenAPI 3.1 document of the admin API (HEAD,"
                                         " also without a token: its headers only).",
                             schema={"type": "object"})},
    ),
    Route(
        operation_id="listWorkflows", method="GET", path=f"{_P}/workflows",
        handler=admin.list_workflows_handler, summary="List workflows", tag="workflows",
        answers={200: json_answer("One page of workflows, by key.", "WorkflowList")},
        errors=(400,),
        parameters=(PAGE_LIMIT, WORKFLOW_CURSOR),
    ),
    Route(
        operation_id="getWorkflow", method="GET", path=f"{_P}/workflows/{{key}}",
        handler=admin.get_workflow_handler, summary="Get a workflow and its triggers",
        tag="workflows", answers={200: json_answer("The workflow.", "WorkflowDetail")},
        errors=(404,), parameters=(WORKFLOW_KEY,),
    ),
    Route(
        operation_id="listWorkflowVersions", method="GET",
        path=f"{_P}/workflows/{{key}}/versions", handler=admin.list_versions_handler,
        summary="List a workflow's published versions", tag="workflows",
        answers={200: json_answer("One page of versions, oldest first.", "VersionList")},
        errors=(400, 404),
        parameters=(WORKFLOW_KEY, PAGE_LIMIT,
                    query("cursor", {"type": "string", "pattern": VERSION_CURSOR_PATTERN},
                          "Opaque: the next_cursor of the previous page.")),
    ),
    Route(
        operation_id="archiveWorkflow", method="POST", path=f"{_P}/workflows/{{key}}/archive",
        handler=admin.archive_workflow_handler,
        summary="Archive a workflow: its triggers start nothing, its history stays",
        tag="workflows", answers={200: json_answer("The workflow's status.", "WorkflowChange")},
        errors=(400, 404, 413, 415, 422), parameters=(WORKFLOW_KEY,),
        body=Body(schema={"$ref": "#/components/schemas/NoteRequest"}, required=False),
    ),
    Route(
        operation_id="activateWorkflow", method="POST",
        path=f"{_P}/workflows/{{key}}/activate", handler=admin.activate_workflow_handler,
        summary="Activate a workflow (no slot from before the activation runs)",
        tag="workflows", answers={200: json_answer("The workflow's status.", "WorkflowChange")},
        errors=(400, 404, 413, 415, 422), parameters=(WORKFLOW_KEY,),
        body=Body(schema={"$ref": "#/components/schemas/NoteRequest"}, required=False),
    ),
    Route(
        operation_id="deleteWorkflow", method="DELETE", path=f"{_P}/workflows/{{key}}",
        handler=admin.delete_workflow_handler,
        summary="Delete a workflow with its versions, triggers and history (refused while"
        " runs are in flight)", tag="workflows",
        answers={200: json_answer("What was deleted.", "WorkflowDeleted")},
        errors=(400, 404, 409, 422),
        parameters=(WORKFLOW_KEY,
                    query("note", {"type": "string", "maxLength": 500, "pattern": "^[^\\u0000]*$"},
                          "Why (in the audit trail).")),
    ),
    Route(
        operation_id="listTriggers", method="GET", path=f"{_P}/triggers",
        handler=admin.list_triggers_handler, summary="List triggers", tag="triggers",
        answers={200: json_answer("One page of triggers, by workflow key and name.",
                                  "TriggerList")},
        errors=(400, 404),
        parameters=(
            query("type", {"type": "string", "enum": [t.value for t in TriggerType]},
                  "Only triggers of this type."),
            query("workflow", key_schema("workflow key"),
                  "Only the triggers of this workflow (404 when there is none)."),
            PAGE_LIMIT,
            TRIGGER_CURSOR,
        ),
    ),
    Route(
        operation_id="getTrigger", method="GET", path=_TRIGGER,
        handler=admin.get_trigger_handler,
        summary="Get a trigger: its state, next fires, recent actions, runs in flight and"
        " ledger counts", tag="triggers",
        answers={200: json_answer("The trigger, described.", "TriggerDetail")},
        errors=(400, 404),
        parameters=(
            *_TRIGGER_PARAMS,
            query("count", {"type": "integer", "minimum": 1, "maximum": NEXT_COUNT_MAX,
                            "default": NEXT_COUNT_DEFAULT}, "How many next fires."),
        ),
    ),
    Route(
        operation_id="enableTrigger", method="POST", path=f"{_TRIGGER}/enable",
        handler=admin.enable_trigger_handler, summary="Enable a trigger", tag="triggers",
        answers={200: json_answer("The trigger, enabled.", "TriggerChange")},
        errors=(404, 409), parameters=_TRIGGER_PARAMS,
    ),
    Route(
        operation_id="disableTrigger", method="POST", path=f"{_TRIGGER}/disable",
        handler=admin.disable_trigger_handler, summary="Disable a trigger", tag="triggers",
        answers={200: json_answer("The trigger, disabled.", "TriggerChange")},
        errors=(404,), parameters=_TRIGGER_PARAMS,
    ),
    Route(
        operation_id="pauseTrigger", method="POST", path=f"{_TRIGGER}/pause",
        handler=admin.pause_trigger_handler,
        summary="Pause a scheduled trigger (runtime state; apply keeps it)", tag="triggers",
        answers={200: json_answer("The trigger's state.", "StateChange")},
        errors=(400, 404, 409, 413, 415, 422), parameters=_TRIGGER_PARAMS,
        body=Body(schema={"$ref": "#/components/schemas/PauseRequest"}, required=False),
    ),
    Route(
        operation_id="resumeTrigger", method="POST", path=f"{_TRIGGER}/resume",
        handler=admin.resume_trigger_handler, summary="Resume a paused trigger",
        tag="triggers", answers={200: json_answer("The trigger's state.", "StateChange")},
        errors=(400, 404, 409, 413, 415, 422), parameters=_TRIGGER_PARAMS,
        body=Body(schema={"$ref": "#/components/schemas/ResumeRequest"}, required=False),
    ),
    Route(
        operation_id="skipSlots", method="POST", path=f"{_TRIGGER}/skip",
        handler=admin.skip_trigger_handler,
        summary="Skip the next N slots or one instant (ledger outcome skipped_manual)",
        tag="triggers", answers={200: json_answer("The slots skipped.", "SkipResult")},
        errors=(400, 404, 409, 413, 415, 422), parameters=_TRIGGER_PARAMS,
        body=Body(schema={"$ref": "#/components/schemas/SkipRequest"}, required=True),
    ),
    Route(
        operation_id="createBackfill", method="POST", path=f"{_TRIGGER}/backfills",
        handler=admin.create_backfill_handler,
        summary="Backfill a past range (all slots, or only the missing); dry_run plans only",
        tag="triggers",
        answers={200: json_answer("The plan of a dry run (nothing started).", "BackfillPlan"),
                 202: json_answer("The backfill, started by the daemons at its rate.",
                                  "BackfillPlan")},
        errors=(400, 404, 409, 413, 415, 422), parameters=_TRIGGER_PARAMS,
        body=Body(schema={"$ref": "#/components/schemas/BackfillRequest"}, required=True),
    ),
    Route(
        operation_id="listBackfills", method="GET", path=f"{_P}/backfills",
        handler=admin.list_backfills_handler, summary="List backfills, newest first",
        tag="triggers", answers={200: json_answer("One page of backfills.", "BackfillPage")},
        errors=(400, 404),
        parameters=(
            query("trigger", {"type": "string", "pattern": TRIGGER_NAME_PATTERN},
                  "Only this trigger's backfills, workflow_key/trigger_name"
                  " (404 when there is no such trigger)."),
            query("state", {"type": "string", "enum": list(BACKFILL_STATES)},
                  "Only backfills in this state."),
            PAGE_LIMIT,
            query("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
                  "Opaque: the next_cursor of the previous page."),
        ),
    ),
    Route(
        operation_id="getBackfill", method="GET", path=f"{_P}/backfills/{{id}}",
        handler=admin.get_backfill_handler, summary="A backfill's progress", tag="triggers",
        answers={200: json_answer("The backfill.", "Backfill")}, errors=(400, 404),
        parameters=(BACKFILL_ID,),
    ),
    Route(
        operation_id="cancelBackfill", method="POST", path=f"{_P}/backfills/{{id}}/cancel",
        handler=admin.cancel_backfill_handler,
        summary="Stop a running backfill (runs started go on)", tag="triggers",
        answers={200: json_answer("The backfill, canceled.", "Backfill")},
        errors=(400, 404, 409), parameters=(BACKFILL_ID,),
    ),
    Route(
        operation_id="listAudit", method="GET", path=f"{_P}/audit",
        handler=admin.list_audit_handler, summary="The audit trail, newest first",
        tag="audit", answers={200: json_answer("One page of audit rows.", "AuditPage")},
        errors=(400,),
        parameters=(
            query("target", {"type": "string", "minLength": 1, "maxLength": 300},
                  "Only rows of this target (workflow/trigger, workflow key, execution id)."),
            PAGE_LIMIT,
            query("cursor", {"type": "string", "pattern": BIGINT_TEXT_PATTERN},
                  "Opaque: the next_cursor of the previous page."),
        ),
    ),
    Route(
        operation_id="fireTrigger", method="POST", path=f"{_TRIGGER}/fire",
        handler=admin.fire_trigger_handler, summary="Fire a trigger now (a manual run)",
        tag="triggers", answers={202: ACCEPTED},
        errors=(400, 404, 409, 413, 415, 422), parameters=_TRIGGER_PARAMS,
        body=Body(schema={"$ref": "#/components/schemas/FireRequest"}, required=False),
    ),
    Route(
        operation_id="nextFires", method="GET", path=f"{_TRIGGER}/next",
        handler=admin.next_fires_handler, summary="Next fire instants of a scheduled trigger",
        tag="triggers",
        answers={200: json_answer("The next instants, as the scheduler computes them.",
                                  "NextFires")},
        errors=(400, 404, 409),
        parameters=(
            *_TRIGGER_PARAMS,
            query("count", {"type": "integer", "minimum": 1, "maximum": NEXT_COUNT_MAX,
                            "default": NEXT_COUNT_DEFAULT}, "How many instants."),
            query("after", {"type": "string", "format": "date-time"},
                  "The instant to start after (ISO-8601 with an offset, 1900-9000); default"
                  " now. Past fires the ledger holds say so in their reason."),
        ),
    ),
    Route(
        operation_id="listSlots", method="GET", path=f"{_TRIGGER}/slots",
        handler=admin.slots_handler,
        summary="Recorded cron slots of a trigger (fired, skipped and why)", tag="triggers",
        answers={200: json_answer("Slots, newest first.", "SlotList")},
        errors=(400, 404), parameters=(*_TRIGGER_PARAMS, PAGE_LIMIT),
    ),
    Route(
        operation_id="listExecutions", method="GET", path=f"{_P}/executions",
        handler=admin.list_executions_handler, summary="List executions, newest first",
        tag="executions", answers={200: json_answer("One page of executions.", "ExecutionPage")},
        errors=(400, 404),
        parameters=(
            query("status", {"type": "string", "enum": [s.value for s in ExecutionStatus]},
                  "Only executions in this status."),
            query("trigger", {"type": "string", "pattern": TRIGGER_NAME_PATTERN},
                  "Only executions of this trigger, workflow_key/trigger_name"
                  " (404 when there is no such trigger)."),
            query("workflow", key_schema("workflow key"),
                  "Only executions of this workflow (404 when there is none)."),
            # No NUL: the database cannot hold one (400 invalid_parameter).
            *(query(name, {"type": "string", "minLength": 1, "maxLength": 200,
                           "pattern": "^[^\\u0000]+$"},
                    f"Only executions with this {name} (their correlation).")
              for name in CORRELATION_COLUMNS),
            query("since", {"type": "string", "format": "date-time"},
                  "Only executions created at or after this instant (ISO-8601 with an"
                  " offset), as the CLI's --since."),
            query("until", {"type": "string", "format": "date-time"},
                  "Only executions created before this instant (exclusive), as the CLI's"
                  " --until: equal to since answers no items, before since is a 400."),
            PAGE_LIMIT,
            query("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
                  "Opaque: the next_cursor of the previous page."),
        ),
    ),
    Route(
        operation_id="getExecution", method="GET", path=_EXECUTION,
        handler=admin.get_execution_handler,
        summary="Get an execution with its node timeline", tag="executions",
        answers={200: json_answer("The execution; nodes in the order they ran.",
                                  "ExecutionDetail")},
        errors=(400, 404), parameters=(EXECUTION_ID,),
    ),
    Route(
        operation_id="cancelExecution", method="POST", path=f"{_EXECUTION}/cancel",
        handler=admin.cancel_execution_handler, summary="Cancel an execution",
        tag="executions",
        answers={
            200: json_answer("Canceled (it was NEW or WAITING).", "Execution"),
            202: json_answer("Cancel requested: its running nodes are being cancelled.",
                             "Execution"),
        },
        errors=(400, 404, 409), parameters=(EXECUTION_ID,),
    ),
    Route(
        operation_id="resumeExecution", method="POST", path=f"{_EXECUTION}/resume",
        handler=admin.resume_execution_handler,
        summary="Decide for a run waiting on an approval node (approved or rejected)",
        tag="executions",
        answers={200: json_answer("The decision, recorded; the run goes on.", "Decision")},
        errors=(400, 404, 409, 413, 415, 422), parameters=(EXECUTION_ID,),
        body=Body(schema={"$ref": "#/components/schemas/DecisionRequest"}, required=True),
    ),
    Route(
        operation_id="retryExecution", method="POST", path=f"{_EXECUTION}/retry",
        handler=admin.retry_execution_handler,
        summary="Run an ended execution again with the same input and version (409 while"
                " it has not ended, or its workflow is archived or its trigger disabled)",
        tag="executions",
        answers={202: ACCEPTED}, errors=(400, 404, 409), parameters=(EXECUTION_ID,),
    ),
    Route(
        operation_id="listWebhookRequests", method="GET", path=f"{_P}/webhook-requests",
        handler=admin.list_webhook_requests_handler,
        summary="List stored webhook requests (the inbox), newest first", tag="webhooks",
        answers={200: json_answer("One page of stored requests.", "WebhookRequestPage")},
        errors=(400, 404),
        parameters=(
            query("trigger", {"type": "string", "pattern": TRIGGER_NAME_PATTERN},
                  "Only requests of this trigger, workflow_key/trigger_name"
                  " (404 when there is no such trigger)."),
            query("outcome", {"type": "string", "enum": ["accepted", "filtered", "debounced"]},
                  "Only requests with this outcome."),
            PAGE_LIMIT,
            query("cursor", {"type": "string", "format": "uuid"},
                  "Opaque: the next_cursor of the previous page."),
        ),
    ),
    Route(
        operation_id="getWebhookRequest", method="GET", path=_WEBHOOK_REQUEST,
        handler=admin.get_webhook_request_handler,
        summary="Get a stored webhook request with its headers and body", tag="webhooks",
        answers={200: json_answer("The stored request (auth material was never stored).",
                                  "WebhookRequestDetail")},
        errors=(400, 404), parameters=(_WEBHOOK_REQUEST_ID,),
    ),
    Route(
        operation_id="replayWebhookRequest", method="POST", path=f"{_WEBHOOK_REQUEST}/replay",
        handler=admin.replay_webhook_request_handler,
        summary="Run a stored webhook request again through its trigger's current version",
        tag="webhooks",
        answers={202: json_answer("The replay's execution is stored and will run.",
                                  "Replayed", LOCATION_HEADER)},
        errors=(400, 404, 409, 422), parameters=(_WEBHOOK_REQUEST_ID,),
    ),
    Route(
        operation_id="createTestRun", method="POST", path=f"{_P}/test-runs",
        handler=admin.create_test_run_handler,
        summary="Run a workflow of a definition document without applying it (a test run,"
        " as triggerd test)", tag="definitions",
        answers={
            200: json_answer("The test run ended (SUCCESS, ERROR or CANCELED): the run and"
                             " its node timeline.", "TestRun"),
            202: json_answer("Still running after 30s: it goes on; GET the execution for"
                             " its state.", "Accepted", LOCATION_HEADER),
        },
        errors=(400, 413, 415, 422),
        body=Body(schema={"$ref": "#/components/schemas/TestRunRequest"}, required=True),
    ),
    Route(
        operation_id="applyDefinitions", method="POST", path=f"{_P}/definitions",
        handler=admin.apply_definitions_handler,
        summary="Apply a definition document (as triggerd apply), as JSON or YAML",
        tag="definitions",
        answers={200: json_answer("Applied in one transaction.", "ApplyResult")},
        errors=(400, 413, 415, 422),
        parameters=(
            query("prune", {"type": "boolean", "default": False},
                  "Delete the triggers of the document's workflows that it no longer lists"
                  " (default: disable them)."),
            query("dry_run", {"type": "boolean", "default": False},
                  "Work out and return the changes, then roll them back: nothing is"
                  " written (as triggerd apply --plan)."),
        ),
        body=Body(schema={"$ref": "#/components/schemas/DefinitionFile"}, required=True,
                  yaml=True),
    ),
)


@functools.cache
def _document() -> dict[str, Any]:
    return build_document(ADMIN_ROUTES)


@functools.cache
def _openapi_text() -> str:
    return json.dumps(_document())


def openapi_document() -> dict[str, Any]:
    """The admin API's document (a fresh copy: callers may modify it)."""
    result: dict[str, Any] = json.loads(_openapi_text())
    return result


def add_routes(router: web.UrlDispatcher, routes: Iterable[Route]) -> None:
    """Serve each route at its methods (:attr:`Route.methods`: its own, and HEAD beside a
    public GET) and path, and nothing else. A route that needs the token refuses a query
    parameter it does not declare (400): a misspelt filter (``?statsu=ERROR``) answered
    the whole unfiltered list."""
    for route in routes:
        handler = route.handler if route.public else _declared_query_only(route)
        for method in route.methods:
            router.add_route(method, route.path, handler)


def _declared_query_only(route: Route) -> admin.Handler:
    known = frozenset({*(p.name for p in route.parameters if p.location == "query"),
                       TENANT.name})
    handler = route.handler

    async def handle(request: web.Request) -> web.StreamResponse:
        for name in request.query:
            if name not in known:
                raise admin.ApiError(
                    400, "invalid_parameter",
                    f"unknown query parameter {name[:60]!r} (this operation takes:"
                    f" {', '.join(sorted(known))})")
        return await handler(request)

    return handle


# --- checks ----------------------------------------------------------------------------------

_PATH_PARAMETER = re.compile(r"\{([^}:]+)\}")


def table_problems(routes: Sequence[Route]) -> list[str]:
    """What is inconsistent inside a table: a repeated operation id or method and path, or
    a path whose ``{parameters}`` are not exactly the path parameters it declares."""
    problems: list[str] = []
    for value, count in Counter(r.operation_id for r in routes).items():
        if count > 1:
            problems.append(f"operation id {value} is declared {count} times")
    for value, count in Counter(r.label for r in routes).items():
        if count > 1:
            problems.append(f"{value} is declared {count} times")
    for route in routes:
        in_path = _PATH_PARAMETER.findall(route.path)
        declared = [p.name for p in route.parameters if p.location == "path"]
        if sorted(in_path) != sorted(declared):
            problems.append(f"{route.label}: the path has parameters {in_path}, the route"
                            f" declares {declared}")
        if not route.answers or any(not 200 <= status < 300 for status in route.answers):
            problems.append(f"{route.label}: answers must be success statuses, and at least one")
    return problems


def served_operations(app: web.Application) -> list[str]:
    """``"METHOD /path"`` of every route ``app`` serves under ``/api/v1``, one entry per
    registration (a route registered twice is listed twice)."""
    served: list[str] = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = resource.canonical
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            served.append(f"{route.method} {path}")
    return served


def documented_operations(document: Mapping[str, Any]) -> list[str]:
    """``"METHOD /path"`` of every operation of an OpenAPI document, and the HEAD served
    beside a public GET (HTTP's own twin of the GET, not an operation of its own there)."""
    operations: list[str] = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operations.append(f"{method.upper()} {path}")
            if method == "get" and operation.get("security") == []:
                operations.append(f"HEAD {path}")
    return operations


def route_mismatches(served: Iterable[str], documented: Iterable[str]) -> list[str]:
    """One line per operation that is served but not documented, documented but not served,
    or served more than once; none when the two agree."""
    served_count = Counter(served)
    documented_set = set(documented)
    problems = [f"served but not documented: {op}"
                for op in sorted(served_count.keys() - documented_set)]
    problems += [f"documented but not served: {op}"
                 for op in sorted(documented_set - served_count.keys())]
    problems += [f"served {count} times: {op}"
                 for op, count in sorted(served_count.items()) if count > 1]
    return problems


__all__ = [
    "ADMIN_ROUTES",
    "add_routes",
    "documented_operations",
    "openapi_document",
    "route_mismatches",
    "served_operations",
    "table_problems",
]
