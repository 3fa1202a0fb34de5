"""The admin API's OpenAPI 3.1 document, built in code next to the handlers it describes.

The document is the contract the handlers keep (a schemathesis test checks them against
it): every status an operation can answer is listed with its body, parameters carry the
same constraints the handlers enforce, and the definition document of
``POST /api/v1/definitions`` is the definition file's own JSON Schema, embedded.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from triggerd.definitions import definitions_schema
from triggerd.model import ExecutionStatus, NodeStatus, SlotOutcome, TriggerType, WorkflowStatus

API_PREFIX = "/api/v1"
OPENAPI_PATH = f"{API_PREFIX}/openapi.json"

# Limits the handlers enforce; the document states the same numbers.
PAGE_LIMIT_MAX = 500
PAGE_LIMIT_DEFAULT = 50
NEXT_COUNT_MAX = 1000
NEXT_COUNT_DEFAULT = 10
# An execution cursor: microseconds since the epoch and the row id (hex), "<µs>-<hex>".
# Every string of this shape is a valid position, so the pattern is the whole rule.
CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9a-f]{32}$"
KEY_PATTERN = r"^[a-z0-9_-]*$"
KEY_MAX_LENGTH = 100
TRIGGER_NAME_PATTERN = r"^[a-z0-9_-]{1,100}/[a-z0-9_-]{1,100}$"

Schema = dict[str, Any]


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


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A closed object whose properties are all required unless listed in ``optional``."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in properties if name not in optional],
        "properties": properties,
    }


def _key_schema(what: str) -> Schema:
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
    trigger = _object(
        {
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
        }
    )
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
        "lease_owner": _nullable({"type": "string"}),
        "lease_expires_at": _nullable(_DATETIME),
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
        "WorkflowList": _object({"items": {"type": "array", "items": _ref("Workflow")}}),
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
        "VersionList": _object({"items": {"type": "array", "items": _ref("Version")}}),
        "Trigger": trigger,
        "TriggerList": _object({"items": {"type": "array", "items": _ref("Trigger")}}),
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
                "note": {"enum": [None, "dst-gap", "dst-fold"]},
            }
        ),
        "NextFires": _object(
            {
                "trigger": {"type": "string"},
                "cron": {"type": "string"},
                "timezone": {"type": "string"},
                "items": {"type": "array", "items": _ref("Fire")},
            }
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
            {**execution_props, "nodes": {"type": "array", "items": _ref("NodeExecution")}}
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
        "FireRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "input": {
                    "type": "object",
                    "description": "Run input, merged over the trigger's static input and"
                    " validated against the workflow's parameter_schema.",
                }
            },
        },
        "ApplyResult": _object(
            {
                "changed": {"type": "boolean"},
                "lines": {"type": "array", "items": {"type": "string"},
                          "description": "What happened to each workflow and trigger."},
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
        "NotFound": _error("No such workflow, trigger or execution (error: not_found)."),
        "Conflict": _error(
            "The request conflicts with the current state, e.g. cancelling a finished run"
            " or firing a disabled trigger (error: conflict)."
        ),
        "PayloadTooLarge": _error(
            "The body is larger than [http] max_body_bytes (error: body_too_large)."
        ),
        "UnsupportedMediaType": _error(
            "The body is not sent as application/json (error: unsupported_media_type)."
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


def _parameters() -> dict[str, Any]:
    return {
        "WorkflowKey": {
            "name": "key", "in": "path", "required": True,
            "schema": _key_schema("workflow key"),
        },
        "TriggerWorkflow": {
            "name": "workflow", "in": "path", "required": True,
            "schema": _key_schema("workflow key"),
        },
        "TriggerName": {
            "name": "trigger", "in": "path", "required": True,
            "schema": _key_schema("trigger name"),
        },
        "ExecutionId": {
            "name": "id", "in": "path", "required": True, "schema": _UUID,
            "description": "Execution id; a value that is not a UUID names no execution (404).",
        },
        "PageLimit": {
            "name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT_MAX,
                       "default": PAGE_LIMIT_DEFAULT},
        },
    }


def _op(
    summary: str,
    operation_id: str,
    ok: dict[str, Any],
    errors: tuple[str, ...],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    tag: str,
) -> dict[str, Any]:
    responses: dict[str, Any] = dict(ok)
    codes = {
        "400": "BadRequest", "401": "Unauthorized", "404": "NotFound", "409": "Conflict",
        "413": "PayloadTooLarge", "415": "UnsupportedMediaType", "422": "UnprocessableBody",
        "503": "Unavailable",
    }
    for code in (*errors, "401", "503"):
        responses[code] = {"$ref": f"#/components/responses/{codes[code]}"}
    operation: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "tags": [tag],
        "responses": dict(sorted(responses.items())),
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _json_ok(description: str, schema: str, status: str = "200",
             headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema)}},
    }
    if headers:
        response["headers"] = headers
    return {status: response}


def _param(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"}


def _query(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_LOCATION = {"Location": {"schema": {"type": "string"}, "description": "the status_url"}}


def _paths() -> dict[str, Any]:
    trigger_params = [_param("TriggerWorkflow"), _param("TriggerName")]
    trigger_base = f"{API_PREFIX}/triggers/{{workflow}}/{{trigger}}"
    execution_base = f"{API_PREFIX}/executions/{{id}}"
    accepted = _json_ok("Accepted: the execution is stored and will run.", "Accepted", "202",
                        headers=_LOCATION)
    return {
        OPENAPI_PATH: {
            "get": {
                "summary": "This document",
                "operationId": "getOpenApi",
                "tags": ["meta"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document of the admin API.",
                        "content": {"application/json": {"schema": _OBJECT}},
                    }
                },
            }
        },
        f"{API_PREFIX}/workflows": {
            "get": _op("List workflows", "listWorkflows",
                       _json_ok("Every workflow, by key.", "WorkflowList"), (), tag="workflows"),
        },
        f"{API_PREFIX}/workflows/{{key}}": {
            "get": _op("Get a workflow and its triggers", "getWorkflow",
                       _json_ok("The workflow.", "WorkflowDetail"), ("404",),
                       parameters=[_param("WorkflowKey")], tag="workflows"),
        },
        f"{API_PREFIX}/workflows/{{key}}/versions": {
            "get": _op("List a workflow's published versions", "listWorkflowVersions",
                       _json_ok("Versions, oldest first.", "VersionList"), ("404",),
                       parameters=[_param("WorkflowKey")], tag="workflows"),
        },
        f"{API_PREFIX}/triggers": {
            "get": _op(
                "List triggers", "listTriggers",
                _json_ok("Triggers, by workflow key and name.", "TriggerList"), ("400", "404"),
                parameters=[
                    _query("type", {"type": "string", "enum": [t.value for t in TriggerType]},
                           "Only triggers of this type."),
                    _query("workflow", _key_schema("workflow key"),
                           "Only the triggers of this workflow (404 when there is none)."),
                ],
                tag="triggers",
            ),
        },
        trigger_base: {
            "get": _op("Get a trigger", "getTrigger", _json_ok("The trigger.", "Trigger"),
                       ("404",), parameters=trigger_params, tag="triggers"),
        },
        f"{trigger_base}/enable": {
            "post": _op("Enable a trigger", "enableTrigger",
                        _json_ok("The trigger, enabled.", "TriggerChange"), ("404", "409"),
                        parameters=trigger_params, tag="triggers"),
        },
        f"{trigger_base}/disable": {
            "post": _op("Disable a trigger", "disableTrigger",
                        _json_ok("The trigger, disabled.", "TriggerChange"), ("404",),
                        parameters=trigger_params, tag="triggers"),
        },
        f"{trigger_base}/fire": {
            "post": _op(
                "Fire a trigger now (a manual run)", "fireTrigger", accepted,
                ("400", "404", "409", "413", "415", "422"),
                parameters=trigger_params,
                body={"required": False,
                      "content": {"application/json": {"schema": _ref("FireRequest")}}},
                tag="triggers",
            ),
        },
        f"{trigger_base}/next": {
            "get": _op(
                "Next fire instants of a cron trigger", "nextFires",
                _json_ok("The next instants, as the scheduler computes them.", "NextFires"),
                ("400", "404", "409"),
                parameters=[
                    *trigger_params,
                    _query("count", {"type": "integer", "minimum": 1,
                                     "maximum": NEXT_COUNT_MAX, "default": NEXT_COUNT_DEFAULT},
                           "How many instants."),
                ],
                tag="triggers",
            ),
        },
        f"{trigger_base}/slots": {
            "get": _op(
                "Recorded cron slots of a trigger (fired, skipped and why)", "listSlots",
                _json_ok("Slots, newest first.", "SlotList"), ("400", "404"),
                parameters=[*trigger_params, _param("PageLimit")], tag="triggers",
            ),
        },
        f"{API_PREFIX}/executions": {
            "get": _op(
                "List executions, newest first", "listExecutions",
                _json_ok("One page of executions.", "ExecutionPage"), ("400", "404"),
                parameters=[
                    _query("status", {"type": "string",
                                      "enum": [s.value for s in ExecutionStatus]},
                           "Only executions in this status."),
                    _query("trigger", {"type": "string", "pattern": TRIGGER_NAME_PATTERN},
                           "Only executions of this trigger, workflow_key/trigger_name"
                           " (404 when there is no such trigger)."),
                    _query("workflow", _key_schema("workflow key"),
                           "Only executions of this workflow (404 when there is none)."),
                    _param("PageLimit"),
                    _query("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
                           "Opaque: the next_cursor of the previous page."),
                ],
                tag="executions",
            ),
        },
        execution_base: {
            "get": _op("Get an execution with its node timeline", "getExecution",
                       _json_ok("The execution; nodes in the order they ran.",
                                "ExecutionDetail"),
                       ("404",), parameters=[_param("ExecutionId")], tag="executions"),
        },
        f"{execution_base}/cancel": {
            "post": _op(
                "Cancel an execution", "cancelExecution",
                {
                    **_json_ok("Canceled (it was NEW or WAITING).", "Execution"),
                    **_json_ok("Cancel requested: its running nodes are being cancelled.",
                               "Execution", "202"),
                },
                ("404", "409"), parameters=[_param("ExecutionId")], tag="executions",
            ),
        },
        f"{execution_base}/retry": {
            "post": _op("Run an execution again with the same input and version",
                        "retryExecution", accepted, ("404",),
                        parameters=[_param("ExecutionId")], tag="executions"),
        },
        f"{API_PREFIX}/definitions": {
            "post": _op(
                "Apply a definition document (as triggerd apply)", "applyDefinitions",
                _json_ok("Applied in one transaction.", "ApplyResult"),
                ("400", "413", "415", "422"),
                parameters=[
                    _query("prune", {"type": "boolean", "default": False},
                           "Delete the triggers of the document's workflows that it no"
                           " longer lists (default: disable them)."),
                ],
                body={"required": True,
                      "content": {"application/json": {"schema": _ref("DefinitionFile")}}},
                tag="definitions",
            ),
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "triggerd admin API",
            "version": "1",
            "description": (
                "Workflows, triggers and executions of a triggerd daemon. Every operation"
                " but this document needs the bearer token ([api] token or the systemd"
                " credential 'api-token'). Errors are JSON {\"error\": code, \"message\":"
                " text}."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "workflows"}, {"name": "triggers"}, {"name": "executions"},
            {"name": "definitions"}, {"name": "meta"},
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[api] token (TRIGGERD_API_TOKEN) or the credential"
                    " 'api-token'.",
                }
            },
            "parameters": _parameters(),
            "responses": _responses(),
            "schemas": _schemas(),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document (a fresh copy: callers may modify it)."""
    return copy.deepcopy(_document())
