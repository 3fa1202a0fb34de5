"""The admin API's OpenAPI 3.1 vocabulary: component schemas, shared parameters and
responses, the :class:`Route` declaration and :func:`build_document`, which turns a table of
routes (:data:`triggerd.api.admin_routes.ADMIN_ROUTES`) into the document.

The document is the contract the handlers keep (a schemathesis test checks them against
it): every status an operation can answer is listed with its body, parameters carry the
same constraints the handlers enforce, and the definition document of
``POST /api/v1/definitions`` is the definition file's own JSON Schema, embedded.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from triggerd.definitions import definitions_schema
from triggerd.model import (
    KEY_MAX_LENGTH,
    KEY_PATTERN,
    ExecutionStatus,
    NodeStatus,
    SlotOutcome,
    TriggerType,
    WorkflowStatus,
)
from triggerd.positions import CURSOR_PATTERN
from triggerd.storable import BIGINT_TEXT_PATTERN

API_PREFIX = "/api/v1"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"

# Limits the handlers enforce; the document states the same numbers.
PAGE_LIMIT_MAX = 500
PAGE_LIMIT_DEFAULT = 50
NEXT_COUNT_MAX = 1000
NEXT_COUNT_DEFAULT = 10
# Pages of workflows and triggers: the last item's key (and trigger name) and id, so every
# value the pattern allows is a position.
WORKFLOW_CURSOR_PATTERN = r"^[a-z0-9_-]{1,100}\.[0-9a-f]{32}$"
TRIGGER_CURSOR_PATTERN = r"^[a-z0-9_-]{1,100}\.[a-z0-9_-]{1,100}\.[0-9a-f]{32}$"
# Pages of a workflow's versions: the last version number (a PostgreSQL integer).
VERSION_CURSOR_PATTERN = r"^[0-9]{1,10}$"
VERSION_MAX = 2_147_483_647

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


_DATETIME: Schema = {"type": "string", "format": "date-time"}
_UUID: Schema = {"type": "string", "format": "uuid"}
_ANY: Schema = {}  # any JSON value
_OBJECT: Schema = {"type": "object"}


# A note is stored as text: PostgreSQL text cannot hold NUL (422 otherwise).
_NOTE: Schema = {"type": "string", "maxLength": 500, "pattern": "^[^\\u0000]*$"}


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A closed object whose properties are all required unless listed in ``optional``."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }


def _inbox_schemas() -> dict[str, Schema]:
    """The webhook inbox's shapes (triggerd/webhooks/inbox_views.py)."""
    summary: dict[str, Schema] = {
        "id": _UUID,
        "trigger": _nullable({"type": "string", "description": "null: the trigger was deleted"}),
        "tenant": _nullable({"type": "string",
                             "description": "the trigger's tenant; null: it was deleted"}),
        "method": {"type": "string"},
        "path": {"type": "string"},
        "received_at": _DATETIME,
        "outcome": {"type": "string", "enum": ["accepted", "filtered", "debounced"]},
        "execution_id": _nullable(_UUID),
        "delivery_count": {"type": "integer", "minimum": 1},
        "last_seen_at": _nullable(_DATETIME),
        "body_bytes": {"type": "integer", "minimum": 0},
        "detail": _nullable({"type": "string"}),
    }
    return {
        "WebhookRequest": _object(summary),
        "WebhookRequestDetail": _object({
            **summary,
            "query": _OBJECT,
            "headers": _OBJECT,
            "remote_addr": _nullable({"type": "string"}),
            "body_text": _nullable({"type": "string", "description": "the body, if UTF-8"}),
            "body_base64": _nullable({"type": "string", "description": "else, base64"}),
        }),
        "WebhookRequestPage": _object({
            "items": {"type": "array", "items": _ref("WebhookRequest")},
            "next_cursor": _nullable(_UUID),
        }),
        "Replayed": _object({
            "execution_id": _UUID,
            "status_url": {"type": "string"},
            "replay_of": _UUID,
            "dedupe_key": {"type": "string", "description": "replay:<request id>:<n>"},
            "trigger": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
        }),
    }


def key_schema(what: str) -> Schema:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": KEY_MAX_LENGTH,
        "pattern": KEY_PATTERN,
        "description": f"{what}: 1-100 lowercase letters, digits, '-' and '_'.",
    }


def _schemas() -> dict[str, Schema]:
    error = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "A stable code, e.g. not_found."},
            "message": {"type": "string", "description": "What is wrong, for a person."},
            "problems": {
                "type": "array",
                "items": _ref("Problem"),
                "description": "definitions_invalid: every problem of the document.",
            },
            "errors": {
                "type": "array",
                "items": _ref("InputError"),
                "description": "input_invalid: every violation of the parameter_schema.",
            },
        },
    }
    workflow_props: dict[str, Schema] = {
        "id": _UUID,
        "tenant_id": {"type": "string"},
        "key": {"type": "string"},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in WorkflowStatus]},
        "latest_version": _nullable({"type": "integer", "minimum": 1}),
        "created_at": _DATETIME,
        "updated_at": _DATETIME,
    }
    trigger_props: dict[str, Schema] = {
            "id": _UUID,
            "name": {"type": "string", "description": "workflow_key/trigger_name"},
            "workflow": {"type": "string"},
            "trigger": {"type": "string"},
            "type": {"type": "string", "enum": [t.value for t in TriggerType]},
            "enabled": {"type": "boolean"},
            "version": _nullable({"type": "integer", "minimum": 1}),
            "config": _OBJECT,
            "input": _OBJECT,
            "enabled_at": _DATETIME,
            "created_at": _DATETIME,
            "updated_at": _DATETIME,
            "tenant": {"type": "string"},
            "workflow_status": {"type": "string", "enum": [s.value for s in WorkflowStatus],
                                "description": "an archived workflow's triggers do not fire"},
    }
    trigger = _object({**trigger_props, "status": {
        "type": "string",
        "enum": ["enabled", "disabled", "paused", "completed", "archived", "draft"],
        "description": "in lists: whether it fires (completed: max_runs made or end_at"
                       " passed; archived, draft: its workflow is)"}}, optional=("status",))
    execution_props: dict[str, Schema] = {
        "id": _UUID,
        "workflow": _nullable({"type": "string"}),
        "workflow_id": _UUID,
        "version": _nullable({"type": "integer", "minimum": 1}),
        "trigger": _nullable({"type": "string"}),
        "trigger_id": _nullable(_UUID),
        "trigger_type": {"type": "string", "enum": [*(t.value for t in TriggerType), "retry"]},
        "status": {"type": "string", "enum": [s.value for s in ExecutionStatus]},
        "input": _ANY,
        "output": _ANY,
        "error_code": _nullable({"type": "string"}),
        "error_message": _nullable({"type": "string"}),
        "scheduled_for": _nullable(_DATETIME),
        "created_at": _DATETIME,
        "start_time": _nullable(_DATETIME),
        "end_time": _nullable(_DATETIME),
        "resume_at": _nullable(_DATETIME),
        "attempt": {"type": "integer", "minimum": 0},
        "retry_of": _nullable(_UUID),
        "parent_execution_id": _nullable(_UUID),
        "lease_owner": _nullable({"type": "string"}),
        "lease_expires_at": _nullable(_DATETIME),
        "tenant": {"type": "string"},
        "agent_id": _nullable({"type": "string"}),
        "session_id": _nullable({"type": "string"}),
        "conversation_id": _nullable({"type": "string"}),
        "correlation": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "every correlation key the trigger mapped"},
    }
    node = _object(
        {
            "id": _UUID,
            "node_id": {"type": "string"},
            "node_type": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in NodeStatus]},
            "attempt": {"type": "integer", "minimum": 1},
            "from": _nullable({"type": "string"}),
            "edge": _nullable({"type": "string"}),
            "branch": _nullable({"type": "string"}),
            "input": _ANY,
            "output": _ANY,
            "error_code": _nullable({"type": "string"}),
            "error_message": _nullable({"type": "string"}),
            "start_time": _nullable(_DATETIME),
            "end_time": _nullable(_DATETIME),
            "execution_time_ms": _nullable({"type": "number"}),
        }
    )
    schemas: dict[str, Schema] = {
        "Error": error,
        "Problem": _object(
            {
                "file": {"type": "string"},
                "path": {"type": "string", "description": "JSON path, e.g. $.workflows[0].key"},
                "message": {"type": "string"},
            }
        ),
        "InputError": _object({"path": {"type": "string"}, "message": {"type": "string"}}),
        "Workflow": _object(workflow_props),
        "WorkflowDetail": _object({**workflow_props, "triggers": {"type": "array",
                                                                  "items": _ref("Trigger")}}),
        "WorkflowList": _object(
            {
                "items": {"type": "array", "items": _ref("Workflow")},
                "next_cursor": _nullable({"type": "string", "pattern": WORKFLOW_CURSOR_PATTERN}),
            }
        ),
        "Version": _object(
            {
                "id": _UUID,
                "workflow_id": _UUID,
                "version": {"type": "integer", "minimum": 1},
                "graph": _OBJECT,
                "parameter_schema": _OBJECT,
                "env_config": _OBJECT,
                "timeout_ms": {"type": "integer", "minimum": 1},
                "is_latest": {"type": "boolean"},
                "published_at": _nullable(_DATETIME),
                "created_at": _DATETIME,
            }
        ),
        "VersionList": _object(
            {
                "items": {"type": "array", "items": _ref("Version")},
                "next_cursor": _nullable({"type": "string", "pattern": VERSION_CURSOR_PATTERN}),
            }
        ),
        "Trigger": trigger,
        "TriggerDetail": _object({
            **trigger_props,
            "state": _ref("TriggerState"),
            "next_fires": {"type": "array", "items": _ref("Fire"),
                           "description": "previews; empty for webhook and manual triggers"},
            "recent_actions": {"type": "array", "items": _ref("AuditEntry")},
            "running": {"type": "array", "items": _object({
                "id": _UUID, "status": {"enum": ["NEW", "RUNNING", "WAITING"]},
                "scheduled_for": _nullable(_DATETIME), "created_at": _DATETIME})},
            "slot_counts": {"type": "object", "additionalProperties": {"type": "integer"},
                            "description": "ledger rows by outcome among the trigger's"
                                           " newest 10,000 slots (of what retention"
                                           " kept)"},
                   "remaining_runs": _nullable({"type": "integer", "minimum": 0,
                                         "description": "max_runs minus scheduled fires"}),
            "completed": _nullable({"type": "string",
                                    "description": "why the schedule has ended: max_runs"
                                                   " reached, or end_at passed"}),
        }),
        "TriggerList": _object(
            {
                "items": {"type": "array", "items": _ref("Trigger")},
                "next_cursor": _nullable({"type": "string", "pattern": TRIGGER_CURSOR_PATTERN}),
            }
        ),
        "TriggerState": _object(
            {
                "paused": {"type": "boolean"},
                "note": _nullable({"type": "string"}),
                "changed_by": _nullable({"type": "string"}),
                "changed_at": _nullable(_DATETIME),
                "completed_at": _nullable(_DATETIME),
                "scheduled_runs": {"type": "integer", "minimum": 0},
                "consecutive_failures": {"type": "integer", "minimum": 0},
                "failed_executions": {
                    "type": "array", "items": _UUID,
                    "description": "the consecutive failed scheduled runs, oldest first"},
                "last_success_at": _nullable(_DATETIME),
            }
        ),
        "Decision": _object({
            "execution_id": _UUID,
            "decision": {"type": "string", "enum": ["approved", "rejected"]},
        }),
        "DecisionRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["decision"],
            "properties": {
                "decision": {"type": "string", "enum": ["approved", "rejected"]},
                "note": _NOTE,
                "input": {"type": "object",
                          "description": "passed on in the approval node's output"},
            },
        },
        "TestRunRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["definition", "workflow"],
            "properties": {
                "definition": {
                    "description": "A definition document (as triggerd apply reads), as an"
                    " object or as YAML/JSON text; it is not applied.",
                    "anyOf": [{"type": "object"}, {"type": "string"}]},
                "workflow": key_schema("The key of the workflow to run (in the definition)"),
                "input": {"type": "object", "description": "the run's input"},
                "trigger": {"type": "string",
                            "description": "run as this trigger of the workflow"},
                "decision": {"type": "string", "enum": ["approve", "reject"],
                             "description": "decide every approval node the run meets (without"
                             " one such a node ends the run ERROR APPROVAL_UNDECIDED)"},
                "dry": {"type": "boolean", "default": False,
                        "description": "record {\"would_call\": params} for nodes that act"
                        " outside the run instead of running them"},
            },
        },
        "TestRun": _object({
            "execution_id": _UUID,
            "workflow": {"type": "string", "description": "the definition's workflow key"},
            "scratch_workflow": {"type": "string",
                                 "description": "the key of the scratch copy it ran under"},
            "status": {"type": "string", "enum": [s.value for s in ExecutionStatus]},
            "test": {"type": "boolean", "const": True},
            "dry": {"type": "boolean"},
            "output": _ANY,
            "error_code": _nullable({"type": "string"}),
            "error_message": _nullable({"type": "string"}),
            "nodes": {"type": "array", "items": _ref("NodeExecution")},
        }),
        "WorkflowChange": _object({
            "workflow": {"type": "string", "description": "the workflow key"},
            "changed": {"type": "boolean", "description": "false: it already was so"},
            "status": {"type": "string", "enum": [s.value for s in WorkflowStatus]},
            "previous": {"type": "string", "enum": [s.value for s in WorkflowStatus]},
            "canceled_backfills": {"type": "integer", "minimum": 0},
        }),
        "WorkflowDeleted": _object({
            "workflow": {"type": "string", "description": "the workflow key"},
            "versions": {"type": "integer", "minimum": 0},
            "triggers": {"type": "integer", "minimum": 0},
            "executions": {"type": "integer", "minimum": 0},
            "webhook_requests": {"type": "integer", "minimum": 0},
        }),
        "NoteRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"note": _NOTE},
        },
        "StateChange": _object(
            {
                "trigger": {"type": "string", "description": "workflow_key/trigger_name"},
                "changed": {"type": "boolean", "description": "false: it already was so"},
                "state": _ref("TriggerState"),
                "forgotten_slots": {
                    "type": "integer", "minimum": 0,
                    "description": "a resume with catch_up: the slots recorded"
                    " skipped_paused that were forgotten, to be caught up under the"
                    " trigger's misfire policy (skip runs none of them); else 0"},
            }
        ),
        "PauseRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"note": _NOTE},
        },
        "ResumeRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "note": _NOTE,
                "catch_up": {"type": "boolean", "description": "also run the slots skipped"
                             " while paused (under the misfire policy)"},
            },
        },
        "SkipRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "next": {"type": "integer", "minimum": 1, "maximum": 1000},
                "at": {"type": "string", "format": "date-time"},
                "note": _NOTE,
            },
        },
        "SkipResult": _object(
            {
                "trigger": {"type": "string"},
                "skipped": {"type": "array", "items": _DATETIME},
            }
        ),
        "BackfillRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "to"],
            "properties": {
                "from": {"type": "string", "format": "date-time",
                         "description": "first instant (inclusive)"},
                "to": {"type": "string", "format": "date-time",
                       "description": "end (exclusive), not in the future"},
                "only_missing": {"type": "boolean"},
                "overlap": {"enum": ["allow", "skip", "buffer_one", "cancel_previous"]},
                "rate": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?/(s|m|h)$"},
                "dry_run": {"type": "boolean"},
                "note": _NOTE,
            },
        },
        "BackfillPlan": _object(
            {
                "backfill_id": _nullable(_UUID),
                "slots": {"type": "array", "items": _object({
                    "at": _DATETIME, "action": {"enum": ["start", "skip"]},
                    "reason": _nullable({"type": "string"})})},
                "started": {"type": "integer"},
                "status_url": {"type": "string"},
            },
            optional=("status_url",),
        ),
        "Backfill": _object(
            {
                "backfill_id": _UUID, "trigger": {"type": "string"}, "from": _DATETIME,
                "to": _DATETIME, "only_missing": {"type": "boolean"},
                "overlap": {"type": "string"}, "rate_per_second": {"type": "number"},
                "state": {"enum": ["running", "done", "canceled"]},
                "total": {"type": "integer"}, "done": {"type": "integer"},
                "started": {"type": "integer"}, "skipped": {"type": "integer"},
                "actor": {"type": "string"}, "note": _nullable({"type": "string"}),
                "created_at": _DATETIME, "finished_at": _nullable(_DATETIME),
                "tenant": {"type": "string", "description": "the trigger's tenant"},
                "waiting_for": {
                    "type": "integer", "minimum": 0,
                    "description": "a running backfill under an overlap policy other than"
                    " allow starts its next slot only when no run of the trigger is active:"
                    " how many are (the schedule's own runs count)"},
            }
        ),
        "BackfillPage": _object(
            {
                "items": {"type": "array", "items": _ref("Backfill")},
                "next_cursor": _nullable({"type": "string", "pattern": CURSOR_PATTERN}),
            }
        ),
        "AuditEntry": _object(
            {
                "id": {"type": "integer"},
                "at": _DATETIME,
                "actor": {"type": "string"},
                "action": {"type": "string"},
                "target_kind": {"type": "string"},
                "target": {"type": "string"},
                "target_id": _nullable(_UUID),
                "note": _nullable({"type": "string"}),
                "detail": {"type": "object"},
                "tenant": {"type": "string"},
            }
        ),
        "AuditPage": _object(
            {
                "items": {"type": "array", "items": _ref("AuditEntry")},
                "next_cursor": _nullable({"type": "string", "pattern": BIGINT_TEXT_PATTERN}),
            }
        ),
        "TriggerChange": _object(
            {
                "trigger": _ref("Trigger"),
                "changed": {"type": "boolean", "description": "false: it already was so"},
            }
        ),
        "Fire": _object(
            {
                "at": {"type": "string", "format": "date-time", "description": "UTC"},
                "local": {"type": "string", "format": "date-time",
                          "description": "the same instant with the zone's offset"},
                "note": {"enum": [None, "dst-gap", "dst-fold", "shifted", "excluded",
                                  "skipped"]},
                "nominal": {"type": "string", "format": "date-time",
                            "description": "shifted: the instant before the calendar shift"},
                "reason": {"type": "string",
                           "description": "excluded: why, e.g. 'holiday: Christmas Day';"
                                          " what the ledger holds of the slot, e.g."
                                          " 'skipped by hand', 'recorded: fired'"},
            },
            optional=("nominal", "reason"),
        ),
        "NextFires": _object(
            {
                "trigger": {"type": "string"},
                "type": {"enum": ["cron", "interval"]},
                "cron": {"oneOf": [{"type": "string"},
                                   {"type": "array", "items": {"type": "string"}}]},
                "every": {"type": "string"},
                "offset": {"type": "string"},
                "timezone": {"type": "string"},
                "paused": {"type": "boolean",
                           "description": "paused: the schedule's times, none of which runs"
                                          " (recorded skipped_paused) until a resume"},
                "pause_note": _nullable({"type": "string",
                                         "description": "the pause's note; null when not"
                                                        " paused"}),
                "items": {"type": "array", "items": _ref("Fire")},
            },
            optional=("cron", "every", "offset"),
        ),
        "Slot": _object(
            {
                "scheduled_for": _DATETIME,
                "outcome": {"type": "string", "enum": [o.value for o in SlotOutcome]},
                "execution_id": _nullable(_UUID),
                "decided_at": _DATETIME,
                "detail": _nullable({"type": "string"}),
            }
        ),
        "SlotList": _object(
            {"trigger": {"type": "string"}, "items": {"type": "array", "items": _ref("Slot")}}
        ),
        "Execution": _object(execution_props),
        "ExecutionDetail": _object(
            {**execution_props, "nodes": {"type": "array", "items": _ref("NodeExecution")},
             "children": {"type": "array", "items": _object({
                 "id": _UUID, "workflow": {"type": "string"}, "status": {"type": "string"},
                 "created_at": _DATETIME}),
                 "description": "runs started by this run's workflow nodes, oldest first"}}
        ),
        "NodeExecution": node,
        "ExecutionPage": _object(
            {
                "items": {"type": "array", "items": _ref("Execution")},
                "next_cursor": _nullable({"type": "string", "pattern": CURSOR_PATTERN}),
            }
        ),
        "Accepted": _object(
            {
                "execution_id": _UUID,
                "status_url": {"type": "string", "description": "GET it for the run's state"},
            }
        ),
        **_inbox_schemas(),
        "FireRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "input": {
                    "type": "object",
                    "description": "Run input, merged over the trigger's static input and"
                    " validated against the workflow's parameter_schema.",
                },
                "reason": {
                    "type": "string",
                    "maxLength": 500,
                    "description": "Why: recorded in the run's provenance and the audit"
                    " trail.",
                },
            },
        },
        "ApplyResult": _object(
            {
                "changed": {"type": "boolean"},
                "dry_run": {"type": "boolean",
                            "description": "true: nothing was written (?dry_run=true)"},
                "lines": {"type": "array", "items": {"type": "string"},
                          "description": "One line per change (as triggerd apply prints)."},
                "changes": {
                    "type": "array",
                    "items": _object({
                        "kind": {"enum": ["workflow", "trigger"]},
                        "name": {"type": "string"},
                        "action": {"enum": ["created", "updated", "published", "disabled",
                                            "deleted"]},
                        "detail": {"type": "string"},
                    }),
                },
                "unchanged": {"type": "integer", "minimum": 0,
                              "description": "Workflows and triggers left as they were."},
            }
        ),
    }
    schemas.update(_definition_schemas())
    return schemas


def _definition_name(name: str) -> str:
    return "Definition" + name[0].upper() + name[1:]


def _definition_schemas() -> dict[str, Schema]:
    """The definition file's JSON Schema as components: ``$defs`` entries become
    ``DefinitionX`` schemas, the annotations only triggerd reads (``errorMessage``) and the
    standalone document's ``$schema``/``$id`` are dropped."""
    source = copy.deepcopy(definitions_schema())
    defs = source.pop("$defs", {})

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key in ("errorMessage", "$schema", "$id"):
                    continue
                if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/"):
                    out[key] = f"#/components/schemas/{_definition_name(item[len('#/$defs/'):])}"
                    continue
                out[key] = clean(item)
            return out
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    result: dict[str, Schema] = {"DefinitionFile": clean(source)}
    for name, schema in defs.items():
        result[_definition_name(name)] = clean(schema)
    return result


def _error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _error(
            "A parameter is invalid or the body is not well-formed JSON (error:"
            " invalid_parameter, invalid_json)."
        ),
        "Unauthorized": _error(
            "Missing or wrong bearer token, or no token is configured (error: unauthorized).",
            headers={"WWW-Authenticate": {"schema": {"type": "string"},
                                          "description": "Bearer realm=\"triggerd\""}},
        ),
        "Forbidden": _error(
            "The token has the viewer role, which only reads (error: forbidden)."
        ),
        "NotFound": _error("No such workflow, trigger or execution (error: not_found)."),
        "Conflict": _error(
            "The request conflicts with the current state, e.g. cancelling a finished run"
            " or firing a disabled trigger (error: conflict)."
        ),
        "PayloadTooLarge": _error(
            "The body is larger than [http] max_body_bytes (error: body_too_large)."
        ),
        "UnsupportedMediaType": _error(
            "The body is not sent as application/json (error: unsupported_media_type), or"
            " in a Content-Encoding the server does not decode, on any route (error:"
            " unsupported_encoding, with an Accept-Encoding header naming those it does)."
        ),
        "UnprocessableBody": _error(
            "The JSON body has the wrong shape (error: invalid_body), fails the workflow's"
            " parameter_schema (input_invalid, with errors) or is an invalid definition"
            " document (definitions_invalid, with problems)."
        ),
        "Unavailable": _error(
            "The database cannot be reached right now (error: database_unavailable).",
            headers={"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                     "description": "seconds"}},
        ),
    }


# --- declarations: what one route of the table says about itself ---------------------------


@dataclass(frozen=True, kw_only=True)
class Param:
    """A path or query parameter. Path parameters are required, query parameters are not.
    ``component`` shares it as ``#/components/parameters/<component>``."""

    name: str
    location: Literal["path", "query"]
    schema: Schema
    description: str | None = None
    component: str | None = None

    def openapi(self) -> dict[str, Any]:
        result: dict[str, Any] = {"name": self.name, "in": self.location,
                                  "required": self.location == "path", "schema": self.schema}
        if self.description is not None:
            result["description"] = self.description
        return result

    def reference(self) -> dict[str, Any]:
        if self.component is None:
            return self.openapi()
        return {"$ref": f"#/components/parameters/{self.component}"}


@dataclass(frozen=True, kw_only=True)
class Body:
    """A JSON request body (also accepted as YAML when ``yaml``)."""

    schema: Schema
    required: bool
    yaml: bool = False

    def openapi(self) -> dict[str, Any]:
        content = {"application/json": {"schema": self.schema}}
        if self.yaml:
            content["application/yaml"] = {"schema": self.schema}
        return {"required": self.required, "content": content}


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A success answer: its JSON body's schema and the headers it carries."""

    description: str
    schema: Schema
    headers: Mapping[str, Schema] = field(default_factory=dict)

    def openapi(self) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": self.description,
            "content": {"application/json": {"schema": self.schema}},
        }
        if self.headers:
            response["headers"] = dict(self.headers)
        return response


@dataclass(frozen=True, kw_only=True)
class Route:
    """One admin API operation, declared once: the router and the OpenAPI document are both
    built from these. ``errors`` are the error statuses it may answer besides 401 and 503,
    which every route that needs the token may answer; a ``public`` route needs no token."""

    operation_id: str
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    parameters: tuple[Param, ...] = ()
    body: Body | None = None
    public: bool = False

    @property
    def label(self) -> str:
        """``"GET /api/v1/..."``, as schemathesis and the route checks name an operation."""
        return f"{self.method} {self.path}"

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods served. A public GET also answers HEAD (the same status and headers,
        no body): probes and caches ask the document that way, and it needs no token. A GET
        that needs the token does not (405), so its HEAD is never an unaudited read."""
        return ("GET", "HEAD") if self.public and self.method == "GET" else (self.method,)

    @property
    def labels(self) -> tuple[str, ...]:
        """:attr:`label` of each of :attr:`methods`."""
        return tuple(f"{method} {self.path}" for method in self.methods)


def json_answer(description: str, schema: str,
                headers: Mapping[str, Schema] | None = None) -> Answer:
    return Answer(description=description, schema=_ref(schema), headers=headers or {})


def query(name: str, schema: Schema, description: str) -> Param:
    return Param(name=name, location="query", schema=schema, description=description)


# Shared parameters: the table refers to these, the document lists them once as components.
WORKFLOW_KEY = Param(name="key", location="path", schema=key_schema("workflow key"),
                     component="WorkflowKey")
TRIGGER_WORKFLOW = Param(name="workflow", location="path", schema=key_schema("workflow key"),
                         component="TriggerWorkflow")
TRIGGER_NAME = Param(name="trigger", location="path", schema=key_schema("trigger name"),
                     component="TriggerName")
BACKFILL_ID = Param(
    name="id", location="path", schema=_UUID, component="BackfillId",
    description="Backfill id, as the backfill's creation answered it (not a UUID: 400).",
)
EXECUTION_ID = Param(
    name="id", location="path", schema=_UUID, component="ExecutionId",
    description="Execution id; a value that is not a UUID is answered 400 (exit 2 in"
    " the CLI).",
)
PAGE_LIMIT = Param(
    name="limit", location="query", component="PageLimit",
    schema={"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX,
            "default": PAGE_LIMIT_DEFAULT},
)
TENANT = Param(
    name="tenant", location="query", component="Tenant",
    schema={"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
    description="The tenant to work in, for a token of every tenant (names resolve there,"
                " lists show only it); a tenant-scoped token works in its own, and naming"
                " another finds nothing (404).",
)
SHARED_PARAMETERS = (BACKFILL_ID, WORKFLOW_KEY, TRIGGER_WORKFLOW, TRIGGER_NAME, EXECUTION_ID,
                     PAGE_LIMIT, TENANT)

LOCATION_HEADER: Mapping[str, Schema] = {
    "Location": {"schema": {"type": "string"}, "description": "the status_url"}
}
ACCEPTED = json_answer("Accepted: the execution is stored and will run.", "Accepted",
                       LOCATION_HEADER)
# Error statuses and the shared response each one refers to.
_ERROR_RESPONSES = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
    413: "PayloadTooLarge", 415: "UnsupportedMediaType", 422: "UnprocessableBody",
    503: "Unavailable",
}


def _parameters() -> dict[str, Any]:
    return {p.component: p.openapi() for p in SHARED_PARAMETERS if p.component is not None}


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {str(status): answer.openapi()
                                 for status, answer in route.answers.items()}
    errors = route.errors if route.public else (*route.errors, 401, 503)
    if not route.public and 400 not in errors:
        errors = (*errors, 400)  # ?tenant= that is not a tenant name
    if not route.public and 404 not in errors:
        errors = (*errors, 404)  # ?tenant= another tenant's, with a tenant-scoped token
    if not route.public and route.method not in ("GET", "HEAD"):
        errors = (*errors, 403)  # a viewer token only reads
    if not route.public and 415 not in errors:
        errors = (*errors, 415)  # any request's body in a Content-Encoding not served
    for status in errors:
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status]}"}
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.operation_id,
        "tags": [route.tag],
    }
    if route.public:
        operation["security"] = []
    operation["responses"] = dict(sorted(responses.items()))
    parameters = route.parameters if route.public else (*route.parameters, TENANT)
    if parameters:
        operation["parameters"] = [p.reference() for p in parameters]
    if route.body is not None:
        operation["requestBody"] = route.body.openapi()
    return operation


def _paths(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return paths


def build_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (the admin API's: ``admin_routes.openapi_document()``)."""
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "triggerd admin API",
            "version": "1",
            "description": (
                "Workflows, triggers and executions of a triggerd daemon. Every operation"
                " but this document needs a bearer token: [api] token or the systemd"
                " credential 'api-token' (an all-tenant admin), or a named token of"
                " 'triggerd token create' (role admin or viewer; a viewer only reads)."
                " Errors are JSON {\"error\": code, \"message\": text}."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "workflows"}, {"name": "triggers"}, {"name": "executions"},
            {"name": "definitions"}, {"name": "meta"},
        ],
        "paths": _paths(routes),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[api] token (TRIGGERD_API_TOKEN), the credential"
                    " 'api-token', or a named token (tgd_...) of 'triggerd token create'.",
                }
            },
            "parameters": _parameters(),
            "responses": _responses(),
            "schemas": _schemas(),
        },
    }
