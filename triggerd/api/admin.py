"""The admin API under ``/api/v1``: workflows, triggers, executions and definitions.

Handlers are thin: they parse and check the request, call the store, and shape the answer
as :mod:`triggerd.api.openapi` documents it; :mod:`triggerd.api.admin_routes` declares which
method and path each one serves. One middleware, scoped to ``/api/v1``, checks
the bearer token and turns every failure into a JSON error ``{"error", "message", ...}``
with the status the document lists — including aiohttp's own 404/405/413 — so that no
request, however malformed, gets a 500 or an answer the document does not describe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web, web_protocol

from triggerd.api.auth import API_AUTH, ApiAuth, AuthFailure, StoredTokens
from triggerd.api.openapi import (
    API_PREFIX,
    NEXT_COUNT_DEFAULT,
    NEXT_COUNT_MAX,
    PAGE_LIMIT_DEFAULT,
    PAGE_LIMIT_MAX,
    TRIGGER_CURSOR_PATTERN,
    VERSION_CURSOR_PATTERN,
    VERSION_MAX,
    WORKFLOW_CURSOR_PATTERN,
)
from triggerd.appkeys import OWN_PORTS, POOL, SETTINGS
from triggerd.cron import utc_iso
from triggerd.db import is_unavailable
from triggerd.definitions import load_documents
from triggerd.definitions.loading import parse_yaml
from triggerd.definitions.problems import Report, definition_error
from triggerd.errors import (
    Conflict,
    DatabaseUnavailable,
    DefinitionError,
    NotFound,
    Problem,
    TriggerdError,
    UsageError,
    http_refusal,
)
from triggerd.jsonrules import finite_float, no_duplicates, refusal_text, refuse_constant
from triggerd.model import (
    CORRELATION_COLUMNS,
    DEFAULT_TENANT,
    ExecutionStatus,
    TriggerType,
    WorkflowSpec,
    audit_target_problem,
    is_key,
    key_filter_problem,
    labelled_target,
    trigger_filter_problem,
)
from triggerd.operations import Actor, token_actor
from triggerd.operations.approvals import DecisionRequest
from triggerd.operations.approvals import decide as decide_approval
from triggerd.operations.backfills import DEFAULT_RATE, BackfillRequest
from triggerd.operations.backfills import cancel as cancel_backfill
from triggerd.operations.backfills import create as create_backfill
from triggerd.operations.backfills import get as get_backfill
from triggerd.operations.backfills import list_ as list_backfills
from triggerd.operations.executions import cancel as cancel_execution
from triggerd.operations.executions import retry as retry_run
from triggerd.operations.testruns import TestRunRequest, new_test_run, run_test
from triggerd.operations.triggers import (
    FireRequest,
    StateChange,
    fire,
    pause,
    resume,
    set_enabled,
    skip,
)
from triggerd.operations.webhooks import (
    ListRequests,
    check_outcome,
    list_requests,
    parse_request_id,
    replay,
    show_request,
)
from triggerd.operations.workflows import WorkflowChange
from triggerd.operations.workflows import activate as activate_workflow
from triggerd.operations.workflows import archive as archive_workflow
from triggerd.operations.workflows import delete as delete_workflow
from triggerd.positions import decode_position, encode_position
from triggerd.schedules import SCHEDULED_TYPES
from triggerd.secrets import secret_policy_problems
from triggerd.serving.sockets import body_limit
from triggerd.storable import is_bigint_text, storage_problem, unstorable
from triggerd.store.admin import (
    ExecutionPosition,
    is_invalid_value,
    page_executions,
    slot_history,
)
from triggerd.store.approvals import DECISIONS
from triggerd.store.audit import AuditEntry, list_audit
from triggerd.store.backfills import BACKFILL_STATES, BackfillRecord
from triggerd.store.executions import (
    ExecutionScope,
    child_executions,
    get_execution,
    node_timeline,
)
from triggerd.store.records import ExecutionRecord
from triggerd.store.trigger_state import get_state, paused_and_completed
from triggerd.store.workflows import (
    apply_workflows,
    get_trigger,
    get_workflow,
    list_triggers,
    list_versions,
    list_workflows,
)
from triggerd.tokens import Principal, addressed_tenant, is_tenant_name, method_refusal
from triggerd.trigger_detail import describe as describe_trigger
from triggerd.trigger_detail import parse_instant, preview, preview_instant
from triggerd.views import (
    audit_json,
    backfill_json,
    execution_json,
    node_json,
    planned_json,
    slot_json,
    state_change_json,
    trigger_json,
    trigger_state,
    version_json,
    workflow_json,
)
from triggerd.webhooks.answers import close_unread, undecodable_message, unsupported_encoding
from triggerd.webhooks.decoding import UndecodableBody, request_bytes
from triggerd.webhooks.inbox_views import request_json, summary_json
from triggerd.windows import check_window

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Who the request acts as, and its tenant (None: every tenant), set once authenticated.
PRINCIPAL = web.RequestKey("principal", Principal)
TENANT = web.RequestKey[str | None]("tenant")
# "METHOD /path" of the routes that need no token, from the route table.
PUBLIC_OPERATIONS = web.AppKey("public_operations", frozenset[str])
# Definitions checked at once (apply, dry run, test run), each in a thread: more would take
# the default executor's threads from other work (the ingress's large parses, DNS).
DEFINITION_CHECKS_AT_ONCE = 2
DEFINITION_CHECKS = web.AppKey("definition_checks", asyncio.Semaphore)

# Label under which problems of a POSTed definition document are reported.
BODY_LABEL = "request body"
# Deeper JSON than this is refused before it reaches the store (PostgreSQL, the JSON
# encoder and the validators all recurse).
# Listed input violations, as in webhook answers: a hostile body must not make a huge answer.
MAX_LISTED_ERRORS = 100
RETRY_AFTER_SECONDS = 5
# A request the database does not answer gets a 503 after this long instead of no answer
# at all: a frozen or cut-off server cannot enforce its own statement_timeout, and a
# request waiting for a pool connection held by such queries has none. Above the test-run
# wait (30 s), under the usual proxy timeouts (60 s).
API_DEADLINE_SECONDS = 45.0
# Matched with fullmatch: "$" alone would also accept a trailing newline.
_WORKFLOW_CURSOR = re.compile(WORKFLOW_CURSOR_PATTERN)
_TRIGGER_CURSOR = re.compile(TRIGGER_CURSOR_PATTERN)
_VERSION_CURSOR = re.compile(VERSION_CURSOR_PATTERN)
_INTEGER = re.compile(r"^-?[0-9]{1,12}$")


class ApiError(TriggerdError):
    """A request the admin API refuses: the HTTP status, a stable code and the reason."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


# --- answers ------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _ok(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.json_response(
        {"error": code, "message": message, **extra}, status=status, headers=headers,
        dumps=_dumps,
    )


def _unauthorized(message: str) -> web.Response:
    return error_response(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="triggerd"'}
    )


# aiohttp's own refusals, as the document names them.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = {}
    if "Allow" in exc.headers:
        headers["Allow"] = exc.headers["Allow"]
    message = exc.reason
    if exc.status == 404:
        message = "no such admin API route (see /api/v1/openapi.json)"
    elif exc.status == 405:
        message = f"method not allowed here; allowed: {exc.headers.get('Allow', '')}"
    elif exc.status == 413:
        message = f"the request body is too large ({exc.text})"
    return error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message,
                          headers=headers or None)


def _from_error(exc: TriggerdError) -> web.Response:
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, **exc.extra)
    refusal = http_refusal(exc)
    if refusal is not None:
        status, code, extra = refusal
        return error_response(status, code, exc.message, **extra)
    if isinstance(exc, DefinitionError):
        problems = [{"file": p.file, "path": p.path, "message": p.message} for p in exc.problems]
        return error_response(422, "definitions_invalid", exc.message, problems=problems)
    if isinstance(exc, DatabaseUnavailable):
        return _unavailable()
    return error_response(400, "bad_request", exc.message)


def _unavailable() -> web.Response:
    return error_response(
        503, "database_unavailable", "the database cannot be reached right now; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _in_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


async def _authorize(request: web.Request) -> web.Response | None:
    """Authenticate the request, then apply its token's role and tenant scope; the
    refusal, or None (the request may go on, with ``request[PRINCIPAL]`` and
    ``request[TENANT]`` set)."""
    lines = request.headers.getall("Authorization", [])
    if len(lines) > 1:
        # Which one counts would depend on the proxy in front: none does.
        return _unauthorized("the Authorization header appears more than once; send it once")
    try:
        principal = await request.app[API_AUTH].authenticate(lines[0] if lines else None)
    except AuthFailure as exc:
        return _unauthorized(exc.message)
    except Exception as exc:
        if is_unavailable(exc):
            return _unavailable()
        logger.exception("admin API: token lookup failed",
                         extra={"event": "api_internal_error", "path": request.path,
                                "method": request.method})
        return error_response(500, "internal", "internal error; the daemon log has the details")
    request[PRINCIPAL] = principal
    refusal = method_refusal(principal, request.method)
    if refusal is not None:
        return error_response(403, "forbidden", refusal)
    given = request.query.getall("tenant", [])
    if len(given) > 1:  # as every other parameter (the first one won, silently)
        return error_response(400, "invalid_parameter",
                              f"tenant: given {len(given)} times; give it once")
    asked = given[0] if given else None
    tenant, refusal = addressed_tenant(principal, asked)
    if refusal is not None:
        if principal.tenant is None or not asked or not is_tenant_name(asked):
            return error_response(400, "invalid_parameter", refusal)
        return error_response(404, "not_found", refusal)
    request[TENANT] = tenant
    return None


@web.middleware
async def admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token and JSON errors for everything under ``/api/v1`` (nothing else)."""
    if not _in_api(request.path):
        return await handler(request)
    # Public routes (the document: clients need it to learn how to authenticate) are
    # named by the route table; a request that matches no route needs the token.
    resource = request.match_info.route.resource
    operation = f"{request.method} {resource.canonical}" if resource is not None else None
    if operation not in request.app[PUBLIC_OPERATIONS]:
        refused = await _authorize(request)
        if refused is not None:
            return refused
    refused_encoding = unsupported_encoding(request) if request.body_exists else None
    if refused_encoding is not None:
        return close_unread(request, refused_encoding)
    unusable = _unstorable_parameter(request)
    if unusable is not None:
        # A NUL (or a lone surrogate) reached the database as a statement's argument,
        # which refused it: a 500 before (a DELETE's note too).
        return error_response(400, "invalid_parameter", unusable)
    try:
        async with asyncio.timeout(API_DEADLINE_SECONDS):  # TimeoutError: 503 below
            return await handler(request)
    except web.HTTPException as exc:
        return _from_http_exception(exc)
    except (web_protocol.RequestPayloadError, UndecodableBody):
        return close_unread(request, error_response(400, "invalid_body",
                                                    undecodable_message(request)))
    except TriggerdError as exc:
        return _from_error(exc)
    except Exception as exc:
        if is_unavailable(exc):
            logger.warning("admin API: database unavailable",
                           extra={"event": "api_database_unavailable", "path": request.path,
                                  "error": f"{type(exc).__name__}: {exc}"})
            return _unavailable()
        logger.exception("admin API: unexpected error",
                         extra={"event": "api_internal_error", "path": request.path,
                                "method": request.method})
        return error_response(500, "internal", "internal error; the daemon log has the details")


# --- request parsing ------------------------------------------------------------------------


def _unstorable_parameter(request: web.Request) -> str | None:
    """Why a query parameter cannot be used (a NUL, a lone surrogate), or None. (A path
    id that cannot exist names nothing: the routes answer 404 without a query.)"""
    for name, value in request.query.items():
        reason = unstorable(value)
        if reason is not None:
            return f"{name}: {reason}"
    return None


def _bad_parameter(message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", message)


def _query_value(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _bad_parameter(f"{name}: given {len(values)} times; give it once")
    return values[0] if values else None


def _int_query(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    text = _query_value(request, name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):
        raise _bad_parameter(f"{name}: {text[:40]!r} is not an integer ({low}-{high})")
    value = int(text)
    if not low <= value <= high:
        raise _bad_parameter(f"{name}: {value} is out of range {low}-{high}")
    return value


def _enum_query(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    text = _query_value(request, name)
    if text is not None and text not in choices:
        raise _bad_parameter(f"{name}: {text[:40]!r} is not one of {', '.join(choices)}")
    return text


def _bool_query(request: web.Request, name: str, *, default: bool) -> bool:
    text = _query_value(request, name)
    if text is None:
        return default
    if text not in ("true", "false"):
        raise _bad_parameter(f"{name}: {text[:40]!r} is not true or false")
    return text == "true"


def _key_query(request: web.Request, name: str) -> str | None:
    text = _query_value(request, name)
    problem = None if text is None else key_filter_problem(text)
    if problem is not None:
        raise _bad_parameter(f"{name}: {problem}")
    return text


def _trigger_query(request: web.Request) -> str | None:
    """The ``trigger`` filter: a name that cannot be one is a 400, as the CLI's exit 2."""
    text = _query_value(request, "trigger")
    problem = None if text is None else trigger_filter_problem(text)
    if problem is not None:
        raise _bad_parameter(f"trigger: {problem}")
    return text


def _path_key(request: web.Request, name: str, what: str) -> str:
    """A workflow key or trigger name from the path. One that cannot be a name names
    nothing (404), and never reaches the database."""
    value = request.match_info[name]
    if not is_key(value):
        raise NotFound(f"no {what} {value[:100]!r}")
    return value


def _trigger_name(request: web.Request) -> str:
    workflow = _path_key(request, "workflow", "workflow")
    trigger = _path_key(request, "trigger", "trigger")
    return f"{workflow}/{trigger}"


def _execution_id(request: web.Request) -> str:
    """The path's execution id. One that is not a UUID is bad input (400, as a backfill or
    webhook request id, and exit 2 in the CLI), refused before any query."""
    value = request.match_info["id"]
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise UsageError(f"{value[:100]!r} is not an execution id (a UUID)") from None
    if len(value) != 36:  # uuid.UUID also takes braces, "urn:uuid:" and bare hex
        raise UsageError(f"{value[:100]!r} is not an execution id (a UUID)")
    return str(parsed)


def encode_cursor(record: ExecutionRecord | BackfillRecord) -> str:
    """The position after a row of a list ordered newest first by (created_at, id)."""
    return encode_position(record.created_at, record.id)


def decode_cursor(text: str) -> ExecutionPosition:
    position = decode_position(text)
    if position is None:
        raise _bad_parameter("cursor: not a cursor returned by this API (pass next_cursor back)")
    return ExecutionPosition(created_at=position[0], id=position[1])


def encode_name_cursor(*names: str) -> str:
    """The position after an item listed by name: a workflow key (and a trigger name) and
    the item's id, which breaks ties between tenants."""
    *keys, item_id = names
    return ".".join([*keys, uuid.UUID(item_id).hex])


def decode_name_cursor(text: str, *, parts: int) -> list[str] | None:
    """The names and id of an :func:`encode_name_cursor` position (a workflow key and id,
    ``parts=2``, or a key, a trigger name and id, ``parts=3``); None for any other text."""
    pattern = _WORKFLOW_CURSOR if parts == 2 else _TRIGGER_CURSOR
    if not pattern.fullmatch(text):
        return None
    *keys, hex_id = text.split(".")
    return [*keys, str(uuid.UUID(hex_id))]


def _name_cursor(request: web.Request, *, parts: int) -> list[str] | None:
    text = _query_value(request, "cursor")
    if text is None:
        return None
    found = decode_name_cursor(text, parts=parts)
    if found is None:
        raise _bad_parameter("cursor: not a cursor returned by this API (pass next_cursor back)")
    return found


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


_MISSING: Any = object()


def _max_depth(request: web.Request) -> int:
    """[executor] max_workflow_depth, which definitions are checked against."""
    depth: int = request.app[SETTINGS].current.executor.max_workflow_depth
    return depth


async def _body(request: web.Request) -> bytes:
    """The body decoded; over [http] max_body_bytes HTTPRequestEntityTooLarge (413), a
    body not whole in its Content-Encoding UndecodableBody (400, in the middleware)."""
    return await request_bytes(request, body_limit(request.app))


async def _json_body(request: web.Request, *, required: bool, expected: str) -> Any:
    """The body as JSON, or ``_MISSING`` when it is empty and optional. Malformed JSON is a
    400; JSON that PostgreSQL cannot store (NUL characters, lone surrogates) or nested
    deeper than :data:`MAX_JSON_DEPTH` is a 422."""
    raw = await _body(request)
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", f"the request body is empty; expected {expected}")
        return _MISSING
    if not _is_json_type(request.content_type):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as Content-Type: application/json, not"
                       f" {request.content_type[:60]!r}")
    try:
        # utf-8-sig: a byte-order mark some editors write is not part of the text, as
        # for definition files (the API answered "Unexpected UTF-8 BOM" where check and
        # apply read the same bytes).
        text = raw.decode("utf-8-sig")
        value = json.loads(text, object_pairs_hook=no_duplicates,
                           parse_constant=refuse_constant, parse_float=finite_float)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json",
                       f"the body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json",
                       f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                       ) from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
    except ValueError as exc:  # JsonRefusal, or an integer with too many digits
        raise ApiError(400, "invalid_json", f"malformed JSON: {refusal_text(exc)}") from None
    problem = storage_problem(value)
    if problem is not None:
        raise ApiError(422, "invalid_body", problem)
    return value


def _accepted(execution_id: str) -> web.Response:
    status_url = f"{API_PREFIX}/executions/{execution_id}"
    return _ok({"execution_id": execution_id, "status_url": status_url}, status=202,
               headers={"Location": status_url})


# --- handlers: workflows ----------------------------------------------------------------------


async def list_workflows_handler(request: web.Request) -> web.Response:
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    after = _name_cursor(request, parts=2)
    # One row more than asked tells whether another page follows.
    rows = await list_workflows(request.app[POOL], tenant=request[TENANT],
                                after=None if after is None else (after[0], after[1]),
                                limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_name_cursor(page[-1].key, page[-1].id) if len(rows) > limit else None
    return _ok({"items": [workflow_json(w) for w in page], "next_cursor": next_cursor})


async def get_workflow_handler(request: web.Request) -> web.Response:
    key = _path_key(request, "key", "workflow")
    pool = request.app[POOL]
    workflow = await get_workflow(pool, key, _home(request))
    triggers = await list_triggers(pool, workflow_id=workflow.id)
    return _ok({**workflow_json(workflow), "triggers": [trigger_json(t) for t in triggers]})


async def list_versions_handler(request: web.Request) -> web.Response:
    key = _path_key(request, "key", "workflow")
    pool = request.app[POOL]
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    after = _version_cursor(request)
    workflow = await get_workflow(pool, key, _home(request))
    # One row more than asked tells whether another page follows.
    rows = await list_versions(pool, workflow.id, after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = str(page[-1].version) if len(rows) > limit else None
    return _ok({"items": [version_json(v) for v in page], "next_cursor": next_cursor})


def _version_cursor(request: web.Request) -> int | None:
    """A versions page's cursor: the previous page's last version number. One above any
    version a workflow can have is a position after the last (an empty page)."""
    text = _query_value(request, "cursor")
    if text is None:
        return None
    if not _VERSION_CURSOR.fullmatch(text):
        raise _bad_parameter("cursor: not a cursor returned by this API (pass next_cursor back)")
    return min(int(text), VERSION_MAX)


def _workflow_change(result: WorkflowChange) -> web.Response:
    return _ok({"workflow": result.workflow, "changed": result.changed,
                "status": result.status, "previous": result.previous,
                "canceled_backfills": result.canceled_backfills})


async def archive_workflow_handler(request: web.Request) -> web.Response:
    key = _path_key(request, "key", "workflow")
    body = await _options(request, {"note": str})
    return _workflow_change(await archive_workflow(request.app[POOL], _actor(request), key,
                                                   body.get("note")))


async def activate_workflow_handler(request: web.Request) -> web.Response:
    key = _path_key(request, "key", "workflow")
    body = await _options(request, {"note": str})
    return _workflow_change(await activate_workflow(request.app[POOL], _actor(request), key,
                                                    body.get("note")))


async def delete_workflow_handler(request: web.Request) -> web.Response:
    key = _path_key(request, "key", "workflow")
    note = request.query.get("note")
    result = await delete_workflow(request.app[POOL], _actor(request), key, note)
    return _ok({"workflow": result.workflow, "versions": result.versions,
                "triggers": result.triggers, "executions": result.executions,
                "webhook_requests": result.webhook_requests})


# --- handlers: triggers ---------------------------------------------------------------------


async def list_triggers_handler(request: web.Request) -> web.Response:
    kind = _enum_query(request, "type", tuple(t.value for t in TriggerType))
    workflow_key = _key_query(request, "workflow")
    pool = request.app[POOL]
    if workflow_key is not None:
        # 404 for a workflow that does not exist (in the request's tenant).
        await get_workflow(pool, workflow_key, _home(request))
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    after = _name_cursor(request, parts=3)
    rows = await list_triggers(pool, trigger_type=kind, workflow_key=workflow_key,
                               tenant=_home(request) if workflow_key else request[TENANT],
                               after=None if after is None else (after[0], after[1], after[2]),
                               limit=limit + 1)
    page = rows[:limit]
    last = page[-1] if page else None
    next_cursor = (
        encode_name_cursor(last.workflow_key, last.name, last.id)
        if last is not None and len(rows) > limit
        else None
    )
    paused, completed = await paused_and_completed(pool, [t.id for t in page])
    now = datetime.now(UTC)
    return _ok({"items": [trigger_json(t, trigger_state(t, paused=t.id in paused,
                                                        completed=t.id in completed, now=now))
                          for t in page],
                "next_cursor": next_cursor})


async def get_trigger_handler(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    trigger = await get_trigger(pool, _trigger_name(request), _home(request))
    count = _int_query(request, "count", default=NEXT_COUNT_DEFAULT, low=1, high=NEXT_COUNT_MAX)
    return _ok(await describe_trigger(pool, trigger, now=datetime.now(UTC), count=count))


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    name = _trigger_name(request)
    trigger, changed = await set_enabled(request.app[POOL], _actor(request), name, enabled)
    return _ok({"trigger": trigger_json(trigger), "changed": changed})


def _actor(request: web.Request) -> Actor:
    """The request's token, working in the request's tenant (its own, or ``?tenant=``)."""
    return token_actor(request[PRINCIPAL].name, request[TENANT])


def _home(request: web.Request) -> str:
    """The tenant names (workflow keys, trigger names) are looked up in."""
    return request[TENANT] or DEFAULT_TENANT


async def _options(request: web.Request, allowed: dict[str, type]) -> dict[str, Any]:
    """A small optional JSON object body of the named fields and types."""
    body = await _json_body(request, required=False, expected="{...}")
    if body is _MISSING:
        return {}
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(422, "invalid_body", f"unknown field {unknown[0][:60]!r} (the body"
                       f" takes only {', '.join(repr(k) for k in allowed)})")
    # Every field here is optional: null says "not given", as clients write it.
    body = {key: value for key, value in body.items() if value is not None}
    for key, kind in allowed.items():
        if key in body and not isinstance(body[key], kind):
            words = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object"}
            raise ApiError(422, "invalid_body", f"{key} must be {words[kind]}")
    return body


def _state_change(result: StateChange) -> web.Response:
    return _ok(state_change_json(result))


async def pause_trigger_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    body = await _options(request, {"note": str})
    return _state_change(await pause(request.app[POOL], _actor(request), name,
                                     body.get("note")))


async def resume_trigger_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    body = await _options(request, {"note": str, "catch_up": bool})
    return _state_change(await resume(request.app[POOL], _actor(request), name,
                                      body.get("note"), catch_up=body.get("catch_up", False)))


async def skip_trigger_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    body = await _options(request, {"next": int, "at": str, "note": str})
    if isinstance(body.get("next"), bool):
        raise ApiError(422, "invalid_body", "next must be an integer")
    at = None
    if "at" in body:
        at = _instant(body["at"], "at")
    result = await skip(request.app[POOL], _actor(request), name,
                        next_count=body.get("next"), at=at, note=body.get("note"))
    return _ok({"trigger": result.trigger, "skipped": [utc_iso(i) for i in result.skipped]})


def _instant_field(body: dict[str, Any], key: str) -> datetime:
    if key not in body:
        raise ApiError(422, "invalid_body", f"{key} is required (an ISO-8601 instant)")
    return _instant(str(body[key]), key)


def _instant(text: str, key: str) -> datetime:
    """A body field's instant, read as the CLI reads its options: one without an offset
    is refused as a malformed one is (422 invalid_body), not later as a bad request."""
    try:
        return parse_instant(text, key)
    except UsageError as exc:
        raise ApiError(422, "invalid_body", exc.message) from None


async def create_backfill_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    body = await _options(request, {"from": str, "to": str, "only_missing": bool,
                                    "overlap": str, "rate": str, "dry_run": bool,
                                    "note": str})
    plan = await create_backfill(request.app[POOL], _actor(request), BackfillRequest(
        trigger=name, range_from=_instant_field(body, "from"),
        range_to=_instant_field(body, "to"), only_missing=body.get("only_missing", False),
        overlap=body.get("overlap"), rate=body.get("rate", DEFAULT_RATE),
        dry_run=body.get("dry_run", False), note=body.get("note")))
    doc = {"backfill_id": plan.backfill_id, "slots": planned_json(plan.slots), "started": 0}
    if plan.backfill_id is None:
        return _ok(doc)
    location = f"{API_PREFIX}/backfills/{plan.backfill_id}"
    return _ok({**doc, "status_url": location}, status=202, headers={"Location": location})


async def get_backfill_handler(request: web.Request) -> web.Response:
    return _ok(backfill_json(await get_backfill(request.app[POOL],
                                                request.match_info["id"], request[TENANT])))


async def list_backfills_handler(request: web.Request) -> web.Response:
    state = _enum_query(request, "state", BACKFILL_STATES)
    trigger_name = _trigger_query(request)
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    cursor = _query_value(request, "cursor")
    after = None if cursor is None else decode_cursor(cursor)
    rows = await list_backfills(
        request.app[POOL], tenant=request[TENANT], trigger=trigger_name, state=state,
        before=None if after is None else (after.created_at, after.id), limit=limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return _ok({"items": [backfill_json(b) for b in page], "next_cursor": next_cursor})


async def cancel_backfill_handler(request: web.Request) -> web.Response:
    record = await cancel_backfill(request.app[POOL], _actor(request),
                                   request.match_info["id"])
    return _ok(backfill_json(record))


async def list_audit_handler(request: web.Request) -> web.Response:
    target = _query_value(request, "target")
    problem = None if target is None else audit_target_problem(target)
    if problem is not None:
        raise _bad_parameter(f"target: {problem}")
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    cursor = _query_value(request, "cursor")
    before = None
    if cursor is not None:
        if not is_bigint_text(cursor):
            raise _bad_parameter(
                "cursor: not a cursor returned by this API (pass next_cursor back)")
        before = int(cursor)
    # As the lists print names: acme:billing/x, or a bare one the default tenant's.
    target, tenant = labelled_target(target, request[TENANT])
    rows = await list_audit(request.app[POOL], target=target, before_id=before,
                            limit=limit + 1, tenant=tenant)
    page = rows[:limit]
    next_cursor = str(page[-1].id) if len(rows) > limit else None
    return _ok({"items": [audit_json(a) for a in page], "next_cursor": next_cursor})


async def enable_trigger_handler(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_trigger_handler(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def fire_trigger_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    body = await _json_body(request, required=False, expected='{"input": {...}}')
    run_input: dict[str, Any] = {}
    reason: str | None = None
    if body is not _MISSING:
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_body", 'the body must be an object {"input": {...}}')
        unknown = sorted(set(body) - {"input", "reason"})
        if unknown:
            raise ApiError(422, "invalid_body",
                           f"unknown field {unknown[0][:60]!r} (the body takes only 'input'"
                           " and 'reason')")
        if "input" in body:
            if not isinstance(body["input"], dict):
                raise ApiError(422, "invalid_body", "input must be an object")
            run_input = body["input"]
        if "reason" in body:
            if not isinstance(body["reason"], str):
                raise ApiError(422, "invalid_body", "reason must be a string")
            reason = body["reason"]
    fired = await fire(request.app[POOL], _actor(request),
                       FireRequest(trigger=name, input=run_input, reason=reason))
    return _accepted(fired.execution_id)


async def next_fires_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    count = _int_query(request, "count", default=NEXT_COUNT_DEFAULT, low=1, high=NEXT_COUNT_MAX)
    # The clock is read here, at the edge; the schedule itself is pure.
    after = _instant_query(request, "after") or datetime.now(UTC)
    trigger = await get_trigger(request.app[POOL], name, _home(request))
    if trigger.type not in SCHEDULED_TYPES:
        raise Conflict(f"trigger {name} is a {trigger.type} trigger; only scheduled triggers"
                       " (cron, interval) have fire times")
    # Marked as the CLI marks them: a slot skipped by hand, a past one the ledger holds.
    fires = await preview(request.app[POOL], trigger, after, count, now=datetime.now(UTC))
    doc: dict[str, Any] = {"trigger": name, "type": trigger.type}
    for key in ("cron", "every", "offset"):
        if key in trigger.config:
            doc[key] = trigger.config[key]
    doc["timezone"] = trigger.config.get("timezone", "UTC")
    # The CLI notes a pause beside the list; a client of the API read a paused trigger's
    # times as fires to come.
    state = await get_state(request.app[POOL], trigger.id)
    doc["paused"] = state.paused
    doc["pause_note"] = state.note if state.paused else None
    return _ok({**doc, "items": fires})


def _instant_query(request: web.Request, name: str,
                   parse: Callable[[str, str], datetime] = preview_instant) -> datetime | None:
    """An instant query parameter: a preview's start (1900-9000) by default, ``parse``
    for others; what ``parse`` refuses is a 400."""
    text = _query_value(request, name)
    if text is None:
        return None
    try:
        return parse(text, name)
    except UsageError as exc:
        raise _bad_parameter(str(exc)) from None


async def slots_handler(request: web.Request) -> web.Response:
    name = _trigger_name(request)
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    pool = request.app[POOL]
    trigger = await get_trigger(pool, name, _home(request))
    slots = await slot_history(pool, trigger.id, limit=limit)
    return _ok({"trigger": name, "items": [slot_json(s) for s in slots]})


# --- handlers: executions -------------------------------------------------------------------


async def list_executions_handler(request: web.Request) -> web.Response:
    status = _enum_query(request, "status", tuple(s.value for s in ExecutionStatus))
    trigger_name = _trigger_query(request)
    workflow_key = _key_query(request, "workflow")
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    cursor = _query_value(request, "cursor")
    after = None if cursor is None else decode_cursor(cursor)
    # Parsed and checked as the CLI's --since/--until are (years 1-9999): since == until
    # answers no items, since after until is a 400.
    since = _instant_query(request, "since", parse_instant)
    until = _instant_query(request, "until", parse_instant)
    try:
        check_window(since, until)
    except UsageError as exc:
        raise _bad_parameter(str(exc)) from None
    pool = request.app[POOL]
    trigger_id = None
    if trigger_name is not None:
        trigger_id = (await get_trigger(pool, trigger_name, _home(request))).id
    workflow_id = None
    if workflow_key is not None:
        workflow_id = (await get_workflow(pool, workflow_key, _home(request))).id
    scope = ExecutionScope(tenant=request[TENANT], **_correlation_filters(request))
    # One row more than asked tells whether another page follows.
    rows = await page_executions(pool, status=status, trigger_id=trigger_id,
                                 workflow_id=workflow_id, limit=limit + 1, after=after,
                                 since=since, before=until, scope=scope)
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit else None
    return _ok({"items": [execution_json(e) for e in page], "next_cursor": next_cursor})


# The correlation ids an execution list filters on (each has an index of its own).
_CORRELATION_LIMIT = 200


def _correlation_filters(request: web.Request) -> dict[str, str]:
    filters: dict[str, str] = {}
    for name in CORRELATION_COLUMNS:
        value = _query_value(request, name)
        if value is not None:
            if not 1 <= len(value) <= _CORRELATION_LIMIT:
                raise _bad_parameter(f"{name}: must be 1-{_CORRELATION_LIMIT} characters")
            filters[name] = value
    return filters


async def get_execution_handler(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    async with request.app[POOL].acquire() as conn:
        execution = await get_execution(conn, execution_id, request[TENANT])
        nodes = await node_timeline(conn, execution_id)
        children = await child_executions(conn, execution_id)
    return _ok({**execution_json(execution), "nodes": [node_json(n) for n in nodes],
                "children": children})


async def cancel_execution_handler(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    execution = await cancel_execution(request.app[POOL], _actor(request), execution_id)
    logger.info("execution cancel requested via the admin API",
                extra={"event": "api_execution_cancel", "execution": execution_id,
                       "status": execution.status})
    # CANCELED at once (it was NEW or WAITING): 200; RUNNING: its executor cancels it: 202.
    status = 200 if execution.status == ExecutionStatus.CANCELED.value else 202
    return _ok(execution_json(execution), status=status)


async def resume_execution_handler(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    body = await _options(request, {"decision": str, "note": str, "input": dict})
    if "decision" not in body:
        raise ApiError(422, "invalid_body", 'decision is required: "approved" or "rejected"')
    if body["decision"] not in DECISIONS:
        # A bad body, as the resume link answers it (422, the same words).
        raise ApiError(422, "invalid_body", f"decision: {body['decision'][:40]!r} is not one of"
                                            f" {', '.join(DECISIONS)}")
    decided = await decide_approval(request.app[POOL], _actor(request), execution_id,
                                    DecisionRequest(decision=body["decision"],
                                                    note=body.get("note"),
                                                    input=body.get("input")))
    return _ok({"execution_id": decided.execution_id, "decision": decided.decision})


async def retry_execution_handler(request: web.Request) -> web.Response:
    execution_id = _execution_id(request)
    new_id = await retry_run(request.app[POOL], _actor(request), execution_id)
    logger.info("execution retried via the admin API",
                extra={"event": "api_execution_retry", "execution": new_id,
                       "retry_of": execution_id})
    return _accepted(new_id)


# --- handlers: definitions --------------------------------------------------------------------


def _value_refused(message: str) -> DefinitionError:
    return definition_error([Problem(BODY_LABEL, "$", message)])


# The media types a YAML definition document may be sent as (RFC 9512 registered the first).
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


async def _definition_body(request: web.Request) -> Any:
    """The definition document, sent as JSON or, like the files ``triggerd apply`` reads,
    as YAML (with the same limits on aliases, nesting and digits)."""
    if request.content_type not in YAML_TYPES:
        if await _body(request) and not _is_json_type(request.content_type):
            raise ApiError(415, "unsupported_media_type",
                           f"send the body as Content-Type: application/json or"
                           f" application/yaml, not {request.content_type[:60]!r}")
        return await _json_body(request, required=True,
                                expected='a definition document {"workflows": [...]}')
    raw = await _body(request)
    if not raw.strip():
        raise ApiError(400, "invalid_yaml",
                       "the request body is empty; expected a definition document (workflows:)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_yaml", f"the body is not UTF-8 (byte {exc.start})") from None
    document = _read_yaml(text, lambda message: ApiError(400, "invalid_yaml", message))
    problem = storage_problem(document)
    if problem is not None:
        raise ApiError(422, "invalid_body", problem)
    return document


def _read_yaml(text: str, unreadable: Callable[[str], ApiError]) -> Any:
    """A YAML (or JSON) text as a document. Unparsable, like malformed JSON, is
    ``unreadable(message)``, a 400 (the limits on aliases and nesting too); read, with
    mistakes at known places (a key given twice, a key that is no string, a tag), is a 422
    with every one at its path, as `check` lists them for a file."""
    report = Report(file=BODY_LABEL)
    parsed, document = parse_yaml(text, report)
    if not parsed:
        raise unreadable(report.items[0][1] if report.items else "it could not be read")
    if report.items:
        raise definition_error(report.problems(document))
    return document


def _refuse_unusable_secrets(request: web.Request, specs: Sequence[WorkflowSpec]) -> None:
    """A secret the workflow's tenant may not read (another tenant's, the daemon's own):
    422 with the problems, as a definition's other problems."""
    problems = secret_policy_problems(BODY_LABEL, specs, request.app[SETTINGS].current,
                                      os.environ)
    if problems:
        raise DefinitionError(f"{len(problems)} problem(s) in {BODY_LABEL}", problems)


async def _load_body(request: web.Request, document: Any) -> list[WorkflowSpec]:
    """The workflows of a request's definition document, checked in a thread: a check may
    evaluate expressions for up to about a second (see expressions.constant_budget), and
    any token of a tenant may send one; the event loop answers other requests meanwhile.
    Two at once (:data:`DEFINITION_CHECKS_AT_ONCE`): concurrent dry runs filled the default
    executor, and every other thread's work waited behind them."""
    async with request.app[DEFINITION_CHECKS]:
        return await asyncio.to_thread(load_documents, [(BODY_LABEL, document)],
                                       tenant=request[TENANT],
                                       max_workflow_depth=_max_depth(request))


async def apply_definitions_handler(request: web.Request) -> web.Response:
    prune = _bool_query(request, "prune", default=False)
    dry_run = _bool_query(request, "dry_run", default=False)
    document = await _definition_body(request)
    named = document.get("tenant") if isinstance(document, dict) else None
    if request[PRINCIPAL].tenant is not None and named not in (None, request[TENANT]):
        # A scoped token writes only its own tenant's workflows (another tenant: not found).
        raise ApiError(404, "not_found", f"nothing here belongs to tenant {str(named)[:80]!r}")
    try:
        # DefinitionError: 422 + problems
        specs = await _load_body(request, document)
        _refuse_unusable_secrets(request, specs)
    except OverflowError as exc:
        # A duration too large for a timedelta ("99999999999d") overflows while checking.
        raise _value_refused(f"a duration or number is too large ({exc})") from None
    try:
        async with request.app[POOL].acquire() as conn:
            report = await apply_workflows(
                conn, specs, prune=prune, plan=dry_run,
                audit=AuditEntry(actor=_actor(request).name, action="apply",
                                 target_kind="definitions", target=BODY_LABEL,
                                 detail={"files": [BODY_LABEL], "prune": prune},
                                 tenant_id=_home(request)))
    except Exception as exc:
        if is_invalid_value(exc):  # e.g. a trigger version beyond PostgreSQL's integer
            raise _value_refused(f"the database refused a value: {exc}") from None
        raise
    if not dry_run:
        logger.info("definitions applied via the admin API",
                    extra={"event": "api_definitions_applied", "changed": report.changed,
                           "summary": report.lines})
    return _ok({"changed": report.changed, "dry_run": dry_run, "lines": report.lines,
                **report.to_json()})


# --- handlers: test runs ---------------------------------------------------------------------

# How long a request waits for its test run to end before it is answered 202 (the run goes
# on in this process; GET /api/v1/executions/{id} shows it).
TEST_RUN_WAIT_SECONDS = 30.0
_TEST_RUN_FIELDS = ("definition", "workflow", "input", "trigger", "decision", "dry")
_TEST_RUN_DECISIONS = {"approve": "approved", "reject": "rejected"}
# Test runs still going on after their request was answered (kept from the collector).
_TEST_RUNS: set[asyncio.Task[Any]] = set()


def _test_run_body(body: Any) -> dict[str, Any]:
    """The fields of a test run request, checked: each problem a 400 with its message."""
    def bad(message: str) -> ApiError:
        return ApiError(400, "invalid_body", message)

    if not isinstance(body, dict):
        raise bad("the body must be a JSON object")
    unknown = sorted(set(body) - set(_TEST_RUN_FIELDS))
    if unknown:
        raise bad(f"unknown field {unknown[0][:40]!r} (known: {', '.join(_TEST_RUN_FIELDS)})")
    if "definition" not in body:
        raise bad("definition is required: a definition document (an object or YAML text)")
    if not isinstance(body["definition"], dict | str):
        raise bad("definition must be an object or a string (YAML or JSON text)")
    workflow = body.get("workflow")
    if not isinstance(workflow, str) or not workflow:
        raise bad("workflow is required: the key of the workflow to run")
    if not isinstance(body.get("input", {}), dict):
        raise bad("input must be a JSON object")
    if not isinstance(body.get("trigger", ""), str):
        raise bad("trigger must be a string")
    decision = body.get("decision", "approve")
    if not isinstance(decision, str) or decision not in _TEST_RUN_DECISIONS:
        raise bad('decision must be "approve" or "reject"')
    if not isinstance(body.get("dry", False), bool):
        raise bad("dry must be true or false")
    return body


def _definition_document(value: dict[str, Any] | str) -> Any:
    if isinstance(value, dict):
        return value
    # JSON text is YAML too.
    return _read_yaml(value, lambda message: ApiError(400, "invalid_body",
                                                      f"definition: {message}"))


async def create_test_run_handler(request: web.Request) -> web.Response:
    body = _test_run_body(await _json_body(
        request, required=True, expected='{"definition", "workflow", ...}'))
    document = _definition_document(body["definition"])
    named = document.get("tenant") if isinstance(document, dict) else None
    if request[PRINCIPAL].tenant is not None and named not in (None, request[TENANT]):
        # As apply: a scoped token runs only its own tenant's workflows.
        raise ApiError(404, "not_found", f"nothing here belongs to tenant {str(named)[:80]!r}")
    specs = await _load_body(request, document)
    _refuse_unusable_secrets(request, specs)
    decision = body.get("decision")
    test_request = TestRunRequest(
        specs=specs, workflow=body["workflow"], input=body.get("input", {}),
        trigger=body.get("trigger"), dry=body.get("dry", False),
        decision=None if decision is None else _TEST_RUN_DECISIONS[decision])
    new_test_run(test_request)  # unknown workflow or trigger (400), bad input (422)
    started: list[str] = []
    task = asyncio.create_task(run_test(request.app[POOL], request.app[SETTINGS].current,
                                        _actor(request), test_request,
                                        own_ports=request.app.get(OWN_PORTS, frozenset()),
                                        started=started.append))
    _TEST_RUNS.add(task)
    task.add_done_callback(_TEST_RUNS.discard)
    done, _ = await asyncio.wait({task}, timeout=TEST_RUN_WAIT_SECONDS)
    if task in done or not started:
        result = await task
        logger.info("test run via the admin API",
                    extra={"event": "api_test_run", "execution": started[0],
                           "status": result.execution.status})
        return _ok(result.to_json())
    return _accepted(started[0])


# --- wiring ---------------------------------------------------------------------------------


def add_admin_routes(
    app: web.Application, *, environ: Mapping[str, str] | None = None,
    tokens: StoredTokens | None = None,
) -> ApiAuth:
    """Add the ``/api/v1`` routes of :data:`triggerd.api.admin_routes.ADMIN_ROUTES` and their
    middleware to ``app`` (which must hold ``SETTINGS`` and ``POOL``). ``tokens``: the named
    tokens that open the API besides the configured one. Returns the token holder (also
    ``app[API_AUTH]``): call its ``update(settings)`` on reload. Called again on the same
    app it only reads the configured token again (and keeps the named tokens): the routes
    are already there."""
    # Imported here: the table refers to this module's handlers.
    from triggerd.api.admin_routes import ADMIN_ROUTES, add_routes

    first = API_AUTH not in app
    if tokens is None and not first:
        tokens = app[API_AUTH].tokens
    auth = ApiAuth.from_settings(app[SETTINGS].current, environ, tokens=tokens)
    app[API_AUTH] = auth
    if not auth.configured:
        logger.warning(
            "the admin API has no token: every /api/v1 request is refused",
            extra={"event": "api_token_missing"},
        )
    if first:
        app[PUBLIC_OPERATIONS] = frozenset(label for r in ADMIN_ROUTES if r.public
                                             for label in r.labels)
        app[DEFINITION_CHECKS] = asyncio.Semaphore(DEFINITION_CHECKS_AT_ONCE)
        app.middlewares.append(admin_middleware)
        add_routes(app.router, ADMIN_ROUTES)
    return auth


__all__ = ["API_AUTH", "PRINCIPAL", "TENANT", "ApiError", "add_admin_routes",
           "admin_middleware"]


# --- handlers: the webhook inbox ----------------------------------------------------------


async def list_webhook_requests_handler(request: web.Request) -> web.Response:
    trigger_name = _trigger_query(request)
    limit = _int_query(request, "limit", default=PAGE_LIMIT_DEFAULT, low=1, high=PAGE_LIMIT_MAX)
    # Refused as the other lists refuse their parameters (400 invalid_parameter).
    outcome = _query_value(request, "outcome")
    try:
        check_outcome(outcome)
    except UsageError as exc:
        raise _bad_parameter(exc.message) from None
    cursor = _query_value(request, "cursor")
    if cursor is not None:
        try:
            parse_request_id(cursor)
        except UsageError:
            raise _bad_parameter(
                "cursor: not a cursor returned by this API (pass next_cursor back)") from None
    page = await list_requests(request.app[POOL], ListRequests(
        trigger=trigger_name, outcome=outcome, after_id=cursor, limit=limit,
    ), tenant=request[TENANT])
    return _ok({"items": [summary_json(r) for r in page.items],
                "next_cursor": page.next_cursor})


async def get_webhook_request_handler(request: web.Request) -> web.Response:
    found = await show_request(request.app[POOL], request.match_info["id"], request[TENANT])
    return _ok(request_json(found))


async def replay_webhook_request_handler(request: web.Request) -> web.Response:
    result = await replay(request.app[POOL], _actor(request), request.match_info["id"])
    status_url = f"{API_PREFIX}/executions/{result.execution_id}"
    return _ok(
        {"execution_id": result.execution_id, "status_url": status_url,
         "replay_of": result.request_id, "dedupe_key": result.dedupe_key,
         "trigger": result.trigger, "version": result.version},
        status=202, headers={"Location": status_url},
    )
