"""The console's pages: server-rendered HTML over the same store reads and operations as
the admin API (every action goes through :mod:`triggerd.operations`)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
import secrets
import urllib.parse
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from triggerd.api.admin import (
    decode_cursor,
    decode_name_cursor,
    encode_cursor,
    encode_name_cursor,
)
from triggerd.api.auth import API_AUTH, AuthFailure
from triggerd.api.health import readiness
from triggerd.appkeys import POOL, SCHEDULER_LAG
from triggerd.console.bidi import escape_controls, show_controls
from triggerd.console.calendar_view import (
    DAYS_AHEAD,
    DAYS_BACK,
    FUTURE_FIRES,
    PAST_ROWS,
    CalendarDay,
    calendar_days,
)
from triggerd.console.graph import NodeRun, layout
from triggerd.console.sessions import (
    COOKIE,
    LOGIN_ATTEMPTS,
    LOGIN_COOKIE,
    PREFIX,
    SESSION,
    SESSION_TTL,
    TENANT,
    ConsoleSession,
    csrf_matches,
    hash_session_id,
    login_address,
    new_secret,
    page_policy,
    set_cookie,
    status_of,
)
from triggerd.console.version_diff import VersionDiff, version_diff
from triggerd.cron import Fire, utc_iso
from triggerd.errors import Conflict, InputInvalid, NotFound, TriggerdError, UsageError
from triggerd.executor.runner import truncate_output
from triggerd.ids import parse_execution_id
from triggerd.jsonrules import finite_float, no_duplicates, refusal_text, refuse_constant
from triggerd.model import (
    DEFAULT_TENANT,
    ExecutionStatus,
    TriggerType,
    WorkflowStatus,
    labelled_target,
    tenant_label,
)
from triggerd.operations import Actor, token_actor
from triggerd.operations.backfills import DEFAULT_RATE, BackfillRequest
from triggerd.operations.backfills import cancel as cancel_backfill
from triggerd.operations.backfills import create as create_backfill
from triggerd.operations.backfills import get as get_backfill
from triggerd.operations.triggers import FireRequest, fire, pause, resume, skip
from triggerd.operations.webhooks import ListRequests, list_requests, show_request
from triggerd.operations.webhooks import replay as replay_request
from triggerd.operations.workflows import activate as activate_workflow
from triggerd.operations.workflows import archive as archive_workflow
from triggerd.schedules import SCHEDULED_TYPES, Schedule, schedule_of
from triggerd.storable import is_bigint_text, is_truncation_marker, storage_problem
from triggerd.store.admin import page_executions, slot_counts_by_day, slot_history
from triggerd.store.audit import list_audit
from triggerd.store.console import (
    create_session,
    delete_expired_sessions,
    delete_session,
    last_hour_counts,
    token_id_of,
    triggers_needing_attention,
    version_graph,
)
from triggerd.store.executions import ExecutionScope, get_execution, node_timeline
from triggerd.store.inbox import OUTCOMES
from triggerd.store.trigger_state import get_state, paused_and_completed, recorded_slots
from triggerd.store.workflows import (
    count_versions,
    get_trigger,
    get_workflow,
    list_triggers,
    list_workflows,
    page_versions,
    resolve_version,
)
from triggerd.tokens import hash_token, is_tenant_name, is_token_form
from triggerd.trigger_detail import marked_fires, preview_instant, progress
from triggerd.views import planned_json, trigger_state
from triggerd.webhooks.inbox_views import request_json

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
NEXT_FIRES = 10
SLOTS_SHOWN = 60
WORKFLOW_TRIGGERS_SHOWN = 200  # the rest are on the Triggers page, filtered by workflow
VERSIONS_SHOWN = PAGE_SIZE  # a workflow's newest; older ones by pages
# The most of one input or output an execution's page shows, or of a webhook request's body:
# the start of a larger one (the admin API, `executions show --json` and `webhooks show`
# give it whole).
SHOWN_BYTES = 16 * 1024
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# Each outcome and status is shown with a word and a symbol, never by colour alone.
SYMBOLS = {
    "SUCCESS": "✓", "ERROR": "✗", "CANCELED": "⊘", "RUNNING": "▶", "WAITING": "⏸",
    "NEW": "○", "SKIPPED": "↷", "fired": "✓", "buffered": "◷", "canceled_previous": "⊘",
    "duplicate": "=", "skipped_overlap": "⤼", "skipped_misfire": "⌛", "skipped_disabled": "⊖",
    "skipped_paused": "⏸", "skipped_manual": "⤼",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return "-" if value is None else utc_iso(value)


def _json(value: Any) -> str:
    """JSON as pages show it: readable text, but a bidi control written as its escape
    (they occur only inside strings, so the text still reads as the same value)."""
    return escape_controls(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False,
                                      default=str))


def _short_id(value: str) -> str:
    """A run's or request's id as lists show it: the first 8 hex digits of a time-ordered
    id are its creation time to about a minute (every run of a burst shared them), so the
    last 4, random, go with them."""
    return f"{value[:8]}…{value[-4:]}" if len(value) == 36 else value


_env.filters["short_id"] = _short_id
_env.filters["when"] = _when
_env.filters["pretty"] = _json
_env.tests["truncated"] = is_truncation_marker
_env.globals["symbol"] = lambda key: SYMBOLS.get(str(key), "·")
_env.globals["prefix"] = PREFIX


@functools.cache
def asset_version(name: str) -> str:
    """A digest of the static file ``name``: its URL changes with its content, so a browser
    never keeps the previous release's script or style past an upgrade."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


_env.globals["asset"] = lambda name: f"{PREFIX}/static/{name}?v={asset_version(name)}"


def _tenant_query(tenant: str | None) -> str:
    """The query a link or form to an object of ``tenant`` carries (none for the default
    tenant's): an all-tenant session would otherwise open the default tenant's namesake."""
    if tenant is None or tenant == DEFAULT_TENANT:
        return ""
    return "?" + urllib.parse.urlencode({"tenant": tenant})


@jinja2.pass_context
def _label(context: jinja2.runtime.Context, tenant: str, name: str) -> str:
    """A name as the CLI and the logs show it, "acme:billing/hook" outside the default
    tenant, for a session that sees every tenant (a scoped one sees its own only)."""
    session = context.get("session")
    if session is not None and session.principal.tenant is not None:
        return name
    return tenant_label(tenant, name)


@jinja2.pass_context
def _link(context: jinja2.runtime.Context, path: str, **params: str | None) -> str:
    """``path`` with the non-empty ``params``, staying in the tenant an all-tenant
    session's page was opened in (``?tenant=``): without it a filter, a next page or a
    refresh showed the default tenant's namesake, or every tenant."""
    query = {name: value for name, value in params.items() if value}
    tenant = context.get("page_tenant")
    if tenant:
        query["tenant"] = tenant
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


_env.filters["tq"] = _tenant_query
_env.globals["label"] = _label
_env.globals["link"] = _link


def render(request: web.Request, template: str, status: int = 200, **context: Any
           ) -> web.Response:
    session = request.get(SESSION)
    # The ?tenant= an all-tenant session's page works in, which its links and forms keep
    # (a scoped session's is implied).
    page_tenant = request.get(TENANT) if session and session.principal.tenant is None \
        else None
    nonce = secrets.token_urlsafe(16)
    html = show_controls(_env.get_template(template).render(
        session=session, path=request.path, page_tenant=page_tenant, csp_nonce=nonce,
        **context))
    response = web.Response(text=html, status=status, content_type="text/html",
                            charset="utf-8")
    response.headers["Content-Security-Policy"] = page_policy(nonce)
    return response


def _session(request: web.Request) -> ConsoleSession:
    return request[SESSION]


# --- login --------------------------------------------------------------------------------


def _safe_next(value: object) -> str:
    """Only a console path: never an absolute URL (an open redirect), nor a control
    character (a header cannot carry it), nor a dot segment that leaves the console
    (``/ui/../x``, also percent-encoded: a browser resolves it to ``/x``)."""
    if isinstance(value, str) and value.startswith(PREFIX + "/") and "//" not in value \
            and "\\" not in value and value.isprintable():
        path = urllib.parse.unquote(value.partition("?")[0].partition("#")[0])
        if not any(segment in (".", "..") for segment in path.split("/")):
            return value
    return PREFIX + "/"


def login_form(request: web.Request, *, target: str, status: int = 200,
               error: str | None = None, ended: str | None = None) -> web.Response:
    """The login page, with a fresh double-submitted CSRF token; ``target``: where a login
    leads (checked by :func:`_safe_next`); ``ended``: say that the session has ended, on
    opening a ``"page"`` or sending a ``"form"``."""
    token = new_secret()
    response = render(request, "login.html", status=status, login_csrf=token, error=error,
                      next=_safe_next(target), ended=ended)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


def form_page(raw_path: str) -> str:
    """The page a console form posted to ``raw_path`` is on: every action's path is its
    object's page and a verb (``/ui/triggers/w/t/pause?tenant=acme`` is on
    ``/ui/triggers/w/t?tenant=acme``), which that page's form posts to again."""
    path, sep, query = raw_path.partition("?")
    return path.rsplit("/", 1)[0] + (f"?{query}" if sep and query else "")


def session_ended(request: web.Request) -> web.Response:
    """The answer to a form posted after its session ended (expired, revoked, logged out
    elsewhere): the login page, saying so, that leads back to the form's page. Nothing of
    the form was done, nor is it kept here to be done after the login (no CSRF token vouches
    for it); the page's script keeps what was typed and puts it back in the form."""
    return login_form(request, target=form_page(request.raw_path), status=401, ended="form")


async def login_page(request: web.Request) -> web.Response:
    # A session cookie that opens nothing (revoked, or ended elsewhere) is a session that
    # has ended; a browser drops an expired one, and a logout deletes it.
    ended = bool(request.cookies.get(COOKIE)) and request.get(SESSION) is None
    return login_form(request, target=request.query.get("next", ""),
                      ended="page" if ended else None)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    target = _safe_next(form.get("next"))
    if not csrf_matches(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf")):
        return web.Response(status=403, text="the login form's CSRF token is missing or wrong;"
                                             " reload the page and try again")
    address = login_address(request)
    wait = request.app[LOGIN_ATTEMPTS].admit(address)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        answer = login_form(request, target=target, status=429,
                            error=f"too many login attempts from this address; try again in"
                                  f" {retry} s")
        answer.headers["Retry-After"] = str(retry)
        return answer
    presented = form.get("token")
    text = presented.strip() if isinstance(presented, str) else ""
    auth = request.app[API_AUTH]
    try:
        # The API's words for no token name a header, which the form does not have.
        if not text:
            raise AuthFailure("enter a token")
        # Fresh: a token revoked seconds ago would open a session that ends at once.
        principal = await auth.authenticate(f"Bearer {text}", fresh=True)
    except AuthFailure as exc:
        return login_form(request, target=target, status=401, error=exc.message)
    pool = request.app[POOL]
    await delete_expired_sessions(pool)  # indexed; keeps the table to the live sessions
    previous = request.cookies.get(COOKIE)
    if previous:
        # This browser's session before: its cookie is replaced below, so it ends here
        # rather than staying usable for hours by whoever copied the old cookie.
        await delete_session(pool, hash_session_id(previous))
    token_id = await token_id_of(pool, hash_token(text)) if is_token_form(text) else None
    config_hash = None if token_id is not None else auth.configured_fingerprint()
    session_id = new_secret()
    await create_session(
        pool, id_hash=hash_session_id(session_id), principal=principal.name,
        role=principal.role.value, tenant=principal.tenant, token_id=token_id,
        config_hash=config_hash, csrf=new_secret(), ttl=SESSION_TTL,
    )
    request.app[LOGIN_ATTEMPTS].succeeded(address)
    logger.info("console login", extra={"event": "console_login", "token": principal.name,
                                        "role": principal.role.value})
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, COOKIE, session_id,
               max_age=int(SESSION_TTL.total_seconds()))
    response.del_cookie(LOGIN_COOKIE, path=PREFIX + "/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session_id = request.cookies.get(COOKIE)
    if session_id:
        await delete_session(request.app[POOL], hash_session_id(session_id))
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX + "/")
    raise response


# --- pages --------------------------------------------------------------------------------


def _scope(request: web.Request) -> str | None:
    """The tenant the session's token is scoped to (None: every tenant)."""
    return _session(request).principal.tenant


def _asked_tenant(request: web.Request) -> str | None:
    """The tenant a page works in: a scoped session's own, or for an all-tenant session
    the one ``?tenant=`` names (links and forms to another tenant's objects carry it).
    The middleware refused a scoped session's ``?tenant=`` of another tenant (404)."""
    return request[TENANT]


def _home(request: web.Request) -> str:
    """The tenant names (workflow keys, trigger names) are looked up in."""
    return _asked_tenant(request) or DEFAULT_TENANT


def _labelled(request: web.Request, name: str) -> tuple[str, str]:
    """A trigger name and the tenant to look it up in: an all-tenant session's lists label
    another tenant's triggers ``acme:billing/hook``, and such a label names that tenant's
    trigger (without ``?tenant=``); otherwise the page's tenant."""
    tenant, sep, rest = name.partition(":")
    if sep and _asked_tenant(request) is None and is_tenant_name(tenant):
        return rest, tenant
    return name, _home(request)


def _actor(request: web.Request) -> Actor:
    """The session's token, acting in the page's tenant (its own, or ``?tenant=``)."""
    session = _session(request)
    return token_actor(session.principal.name, _asked_tenant(request), via="console")


async def overview(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    failing, checks = await readiness(request.app)
    # The tenant worked in: a scoped session's own, or the one ?tenant= names.
    counts = await last_hour_counts(pool, _asked_tenant(request))
    attention = await triggers_needing_attention(pool, tenant=_asked_tenant(request))
    lag = request.app.get(SCHEDULER_LAG)
    return render(request, "overview.html", ready=not failing, checks=checks, counts=counts,
                  attention=attention, scheduler_lag=None if lag is None else lag())


def _name_cursor(text: str | None, parts: int) -> list[str] | None:
    """A list page's cursor, checked as the admin API checks it."""
    if not text:
        return None
    found = decode_name_cursor(text, parts=parts)
    if found is None:
        raise web.HTTPBadRequest(text="cursor: not one this page made")
    return found


_TRIGGER_TYPES = tuple(t.value for t in TriggerType)


async def triggers_page(request: web.Request) -> web.Response:
    workflow = request.query.get("workflow") or None
    kind = request.query.get("type") or None
    if kind is not None and kind not in _TRIGGER_TYPES:
        # The admin API's words; an unknown type listed nothing, as if there were none.
        raise web.HTTPBadRequest(
            text=f"type: {kind[:40]!r} is not one of {', '.join(_TRIGGER_TYPES)}")
    found = _name_cursor(request.query.get("cursor"), 3)
    after = None if found is None else (found[0], found[1], found[2])
    # A workflow key in every tenant for an all-tenant session without ?tenant= (the list
    # shows them all: the filter looked in the default tenant only and found nothing).
    rows = await list_triggers(request.app[POOL], workflow_key=workflow, trigger_type=kind,
                               tenant=_asked_tenant(request), after=after,
                               limit=PAGE_SIZE + 1)
    page = rows[:PAGE_SIZE]
    next_cursor = (encode_name_cursor(page[-1].workflow_key, page[-1].name, page[-1].id)
                   if len(rows) > PAGE_SIZE else None)
    now = datetime.now(UTC)
    # The state the CLI's and the API's lists give (a draft's or an archived workflow's
    # triggers, paused and completed ones do not fire, enabled or not).
    paused, completed = await paused_and_completed(request.app[POOL], [t.id for t in page])
    items = []
    for t in page:
        status = trigger_state(t, paused=t.id in paused, completed=t.id in completed,
                               now=now)
        next_fire = "-"
        if status == "enabled":
            try:
                fire_at = schedule_of(t.type, t.config).next_fire(now)
                next_fire = _when(None if fire_at is None else fire_at.at)
            except TriggerdError:
                pass
        items.append({"trigger": t, "next_fire": next_fire, "status": status})
    return render(request, "triggers.html", items=items, next_cursor=next_cursor,
                  workflow=workflow or "", kind=kind or "")


async def _calendar(pool: Any, trigger_id: str, schedule: Schedule, zone_name: str,
                    now: datetime) -> list[CalendarDay]:
    """The calendar rows: recorded slots of the past days (a bounded read of the ledger)
    and the projected fires (a bounded preview, computed in a thread)."""
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    since = datetime.combine(today - timedelta(days=DAYS_BACK), time(), zone)
    recorded, _ = await slot_counts_by_day(pool, trigger_id, since=since, zone=zone_name,
                                           limit=PAST_ROWS)
    # Projected only as far as the rows shown: a daily trigger with a holiday calendar
    # asked for FUTURE_FIRES fires, well over a year of calendar days, and its page took
    # about a second (for 7 rows).
    window_end = datetime.combine(today + timedelta(days=DAYS_AHEAD + 1), time(), zone)
    fires, capped = await asyncio.to_thread(_projection, schedule, now, window_end)
    return calendar_days(today=today, recorded=recorded, fires=fires, fires_capped=capped)


def _projection(schedule: Schedule, now: datetime, end: datetime
                ) -> tuple[list[Fire], bool]:
    """The fires until ``end`` (at most FUTURE_FIRES: then True), as a preview marks them:
    with the excluded instants among them, up to the first fire after ``end``."""
    count = len(schedule.fires_between(now, end, FUTURE_FIRES))
    capped = count >= FUTURE_FIRES
    return schedule.preview(now, count if capped else count + 1), capped


async def _trigger_context(request: web.Request, name: str) -> dict[str, Any]:
    pool = request.app[POOL]
    trigger = await get_trigger(pool, name, _home(request))
    fires: list[dict[str, Any]] = []
    zone_name = str(trigger.config.get("timezone", "UTC"))
    try:
        schedule = schedule_of(trigger.type, trigger.config)
    except TriggerdError:
        schedule = None
    now = datetime.now(UTC)
    zone = ZoneInfo(zone_name) if zone_name else UTC
    days: list[CalendarDay] = []
    runs = trigger.workflow_status == WorkflowStatus.ACTIVE
    # Calendar-excluded instants are listed but marked; shifted ones name their nominal
    # instant (the schedule's preview, as `triggers next` prints it). In a thread: a
    # calendar's preview can take a tenth of a second, which every request waiting on
    # the event loop would wait too.
    state = await get_state(pool, trigger.id)
    remaining, completed = progress(trigger.config, state, now=now)
    if schedule is not None and runs:
        upcoming = await asyncio.to_thread(schedule.preview, now, NEXT_FIRES)
        # Marked as `triggers next` marks them: skipped by hand, past max_runs.
        fires = marked_fires(upcoming, await recorded_slots(
            pool, trigger.id, [f.at for f in upcoming]), runs_left=remaining, now=now)
        days = await _calendar(pool, trigger.id, schedule, zone_name, now)
    slots = await slot_history(pool, trigger.id, limit=SLOTS_SHOWN)
    version = await resolve_version(pool, trigger.workflow_id, trigger.version)
    recent = await list_audit(pool, target=name, limit=10, tenant=trigger.tenant_id)
    return {
        "trigger": trigger, "name": name, "fires": fires, "zone": zone_name, "days": days,
        "state": state, "scheduled": trigger.type in SCHEDULED_TYPES, "actions": recent,
        "remaining_runs": remaining, "completed": completed,
        "workflow_status": trigger.workflow_status,
        "slots": [{"slot": s, "local": s.scheduled_for.astimezone(zone).isoformat()}
                  for s in slots],
        "schema": None if version is None else version.parameter_schema,
        "input_text": "{}", "errors": [], "message": None,
        "backfill_form": {"from": "", "to": "", "rate": DEFAULT_RATE, "note": "",
                          "only_missing": True},
        "backfill_message": None, "preview": None, "future_fires": FUTURE_FIRES,
    }


async def trigger_page(request: web.Request) -> web.Response:
    name = f"{request.match_info['workflow']}/{request.match_info['trigger']}"
    return render(request, "trigger.html", **await _trigger_context(request, name))


async def fire_action(request: web.Request) -> web.StreamResponse:
    name = f"{request.match_info['workflow']}/{request.match_info['trigger']}"
    form = await request.post()
    text = form.get("input")
    text = text if isinstance(text, str) else ""
    reason = form.get("reason")
    reason_text = reason.strip() if isinstance(reason, str) and reason.strip() else None
    errors: list[dict[str, str]] = []
    message: str | None = None
    status = 422
    not_an_object = False
    try:
        # The admin API's rules: no duplicate keys, NaN or number beyond a float.
        value = json.loads(text, object_pairs_hook=no_duplicates,
                           parse_constant=refuse_constant,
                           parse_float=finite_float) if text.strip() else {}
        # null too: it was read as "no input" and started a run.
        not_an_object = not isinstance(value, dict)
    except json.JSONDecodeError as exc:
        value, status = None, 400
        errors = [{"path": "$", "message": f"not valid JSON: {exc.msg} at position {exc.pos}"}]
    except RecursionError:
        value, status = None, 400
        errors = [{"path": "$", "message": "not valid JSON: nested too deeply"}]
    except ValueError as exc:  # JsonRefusal, or an integer with too many digits
        value, status = None, 400
        errors = [{"path": "$", "message": f"not valid JSON: {refusal_text(exc)}"}]
    if not_an_object:
        errors = [{"path": "$", "message": "the input must be a JSON object"}]
    problem = storage_problem(value) if value is not None and not errors else None
    if problem is not None:
        path, _, reason = problem.partition(": ")
        errors = [{"path": path, "message": reason}]
    if not errors:
        actor = _actor(request)
        try:
            fired = await fire(request.app[POOL], actor,
                               FireRequest(trigger=name, input=value or {}, reason=reason_text))
        except InputInvalid as exc:
            errors, message = exc.errors, exc.message
        else:
            raise web.HTTPSeeOther(f"{PREFIX}/executions/{fired.execution_id}")
    context = await _trigger_context(request, name)
    if message is None:
        message = ("the input holds text that cannot be stored" if problem
                   else "the input must be a JSON object" if not_an_object
                   else "the input is not valid JSON")
    context.update(input_text=text, errors=errors, message=message)
    return render(request, "trigger.html", status=status, **context)


async def executions_page(request: web.Request) -> web.Response:
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in ExecutionStatus}:
        raise web.HTTPBadRequest(text=f"status: {status[:40]!r} is not a run status")
    trigger_name = request.query.get("trigger") or None
    pool = request.app[POOL]
    trigger_id = None
    statuses = [s.value for s in ExecutionStatus]
    if trigger_name:
        try:
            trigger_id = (await get_trigger(pool, *_labelled(request, trigger_name))).id
        except (NotFound, UsageError) as exc:
            # Shown at the filter, with the form to correct it (a bare text page had no
            # way back but the browser's).
            return render(request, "executions.html", status=status_of(exc), executions=[],
                          next_cursor=None, cursor="", status_filter=status or "",
                          trigger=trigger_name, statuses=statuses,
                          filter_error=exc.message)
    cursor = request.query.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except TriggerdError as exc:
        raise web.HTTPBadRequest(text=exc.message) from None
    rows = await page_executions(pool, status=status, trigger_id=trigger_id,
                                 limit=PAGE_SIZE + 1, after=after,
                                 scope=ExecutionScope(tenant=_asked_tenant(request)))
    page = rows[:PAGE_SIZE]
    next_cursor = encode_cursor(page[-1]) if len(rows) > PAGE_SIZE else None
    template = ("_execution_rows.html" if request.headers.get("HX-Request") == "true"
                else "executions.html")
    return render(request, template, executions=page, next_cursor=next_cursor,
                  cursor=cursor or "",
                  status_filter=status or "", trigger=trigger_name or "",
                  statuses=statuses, filter_error=None)


async def execution_page(request: web.Request) -> web.Response:
    execution_id = request.match_info["id"]
    try:
        parse_execution_id(execution_id)
    except TriggerdError:
        raise web.HTTPNotFound(text=f"no execution {execution_id[:40]!r}") from None
    pool = request.app[POOL]
    async with pool.acquire() as conn:
        execution = await get_execution(conn, execution_id, _scope(request))
        nodes = await node_timeline(conn, execution_id, shown_bytes=SHOWN_BYTES)
        graph = (await version_graph(conn, execution.workflow_version_id)
                 if execution.workflow_version_id else None)
    run_io = {"input": truncate_output(execution.input, SHOWN_BYTES),
              "output": truncate_output(execution.output, SHOWN_BYTES)}
    runs = [NodeRun(node_id=n.node_id, status=n.status, from_node_id=n.from_node_id,
                    edge_condition=n.edge_condition) for n in nodes]
    drawn = layout(graph or {}, runs)
    starts = [n.start_time for n in nodes if n.start_time is not None]
    origin = min(starts) if starts else None
    ends = [n.end_time for n in nodes if n.end_time is not None]
    span = ((max(ends) - origin).total_seconds() if origin and ends else 0.0) or 1.0
    waterfall = []
    for n in nodes:
        if origin is None or n.start_time is None:
            continue
        offset = (n.start_time - origin).total_seconds()
        length = ((n.end_time or n.start_time) - n.start_time).total_seconds()
        waterfall.append({"node": n, "left": round(100 * offset / span, 2),
                          "width": max(0.5, round(100 * length / span, 2))})
    return render(request, "execution.html", execution=execution, nodes=nodes, graph=drawn,
                  waterfall=waterfall, run_io=run_io)


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound(text="no such asset")
    response = web.FileResponse(path)
    # The pages name each asset with its digest (asset_version): that URL's content never
    # changes. Any other (an old page's) is checked again each time.
    response.headers["Cache-Control"] = (
        "public, max-age=31536000, immutable"
        if request.query.get("v") == asset_version(name) else "no-cache")
    # The sessions' middleware leaves assets alone (no session needed): a script or a
    # style is still only ever read as what its type says.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def favicon(request: web.Request) -> web.StreamResponse:
    """``/favicon.ico``, which browsers ask for on every page without an icon link (the
    API's answers, a health check): each asked was a 404 in the browser's console."""
    response = web.FileResponse(STATIC / "favicon.ico")
    response.content_type = "image/x-icon"
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def redirect_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{PREFIX}/")


async def _state_action(request: web.Request, doing: str) -> web.StreamResponse:
    name = f"{request.match_info['workflow']}/{request.match_info['trigger']}"
    form = await request.post()
    note = form.get("note")
    note_text = note if isinstance(note, str) else None
    actor = _actor(request)
    if doing == "pause":
        await pause(request.app[POOL], actor, name, note_text)
    else:
        await resume(request.app[POOL], actor, name, note_text,
                     catch_up=form.get("catch_up") == "yes")
    raise web.HTTPSeeOther(f"{PREFIX}/triggers/{name}{_tenant_query(_asked_tenant(request))}")


async def pause_action(request: web.Request) -> web.StreamResponse:
    return await _state_action(request, "pause")


async def resume_action(request: web.Request) -> web.StreamResponse:
    return await _state_action(request, "resume")


async def skip_action(request: web.Request) -> web.StreamResponse:
    name = f"{request.match_info['workflow']}/{request.match_info['trigger']}"
    form = await request.post()
    note = form.get("note")
    actor = _actor(request)
    await skip(request.app[POOL], actor, name, next_count=1,
               note=note if isinstance(note, str) else None)
    raise web.HTTPSeeOther(f"{PREFIX}/triggers/{name}{_tenant_query(_asked_tenant(request))}")


# --- the webhook inbox ----------------------------------------------------------------------


async def webhooks_page(request: web.Request) -> web.Response:
    """The stored deliveries, newest first, by trigger and outcome (keyset pages)."""
    trigger = request.query.get("trigger") or None
    outcome = request.query.get("outcome") or None
    cursor = request.query.get("cursor") or None
    tenant = _asked_tenant(request)
    name = trigger
    if trigger is not None:
        # As the other pages: the label the list prints (acme:billing/hook) names it.
        name, labelled_tenant = _labelled(request, trigger)
        if name != trigger:
            tenant = labelled_tenant
    query = ListRequests(trigger=name, outcome=outcome, after_id=cursor, limit=PAGE_SIZE)
    found = await list_requests(request.app[POOL], query, tenant=tenant)
    return render(request, "webhooks.html", items=found.items, next_cursor=found.next_cursor,
                  trigger=trigger or "", outcome=outcome or "", outcomes=OUTCOMES)


async def webhook_page(request: web.Request) -> web.Response:
    return await _webhook(request, message=None, status=200)


async def _webhook(request: web.Request, *, message: str | None, status: int,
                   errors: list[dict[str, str]] | None = None) -> web.Response:
    found = await show_request(request.app[POOL], request.match_info["id"], _scope(request),
                               shown_bytes=SHOWN_BYTES)
    return render(request, "webhook.html", status=status, req=request_json(found),
                  body_cut=found.body_cut, tenant=found.summary.tenant_id,
                  message=message, errors=errors or [])


async def replay_action(request: web.Request) -> web.StreamResponse:
    """Replay a stored request (the operation the CLI and the API call); a refusal is shown
    on the request's page with its status."""
    actor = _actor(request)
    try:
        result = await replay_request(request.app[POOL], actor, request.match_info["id"])
    except InputInvalid as exc:
        return await _webhook(request, message=exc.message, status=422, errors=exc.errors)
    except Conflict as exc:
        return await _webhook(request, message=exc.message, status=409)
    raise web.HTTPSeeOther(f"{PREFIX}/executions/{result.execution_id}")


async def _lifecycle_action(request: web.Request, doing: str) -> web.StreamResponse:
    key = request.match_info["key"]
    form = await request.post()
    note = form.get("note")
    actor = _actor(request)
    operation = archive_workflow if doing == "archive" else activate_workflow
    await operation(request.app[POOL], actor, key, note if isinstance(note, str) else None)
    raise web.HTTPSeeOther(f"{PREFIX}/workflows/{key}{_tenant_query(_asked_tenant(request))}")


async def archive_action(request: web.Request) -> web.StreamResponse:
    return await _lifecycle_action(request, "archive")


async def activate_action(request: web.Request) -> web.StreamResponse:
    return await _lifecycle_action(request, "activate")


def _form_text(form: Any, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


async def backfill_action(request: web.Request) -> web.StreamResponse:
    """Preview (dry run) or start a backfill; errors are shown on the trigger's page."""
    name = f"{request.match_info['workflow']}/{request.match_info['trigger']}"
    form = await request.post()
    values = {k: _form_text(form, k) for k in ("from", "to", "rate", "note")}
    only_missing = form.get("only_missing") == "yes"
    dry_run = form.get("do") != "start"
    actor = _actor(request)
    message: str | None = None
    plan = None
    try:
        request_value = BackfillRequest(
            # As for a preview's start: 1900-9000, so every instant converts to UTC.
            trigger=name, range_from=preview_instant(values["from"], "from"),
            range_to=preview_instant(values["to"], "to"), only_missing=only_missing,
            rate=values["rate"] or DEFAULT_RATE, dry_run=dry_run, note=values["note"] or None)
        plan = await create_backfill(request.app[POOL], actor, request_value)
    except (UsageError, Conflict) as exc:
        message = exc.message
    if plan is not None and plan.backfill_id is not None:
        raise web.HTTPSeeOther(f"{PREFIX}/backfills/{plan.backfill_id}")
    context = await _trigger_context(request, name)
    context.update(backfill_form={**values, "only_missing": only_missing},
                   backfill_message=message,
                   preview=None if plan is None else planned_json(plan.slots))
    return render(request, "trigger.html", status=422 if message else 200, **context)


async def backfill_page(request: web.Request) -> web.Response:
    record = await get_backfill(request.app[POOL], request.match_info["id"], _scope(request))
    template = "_backfill_progress.html" if request.headers.get("HX-Request") == "true" \
        else "backfill.html"
    return render(request, template, backfill=record)


async def cancel_backfill_action(request: web.Request) -> web.StreamResponse:
    actor = _actor(request)
    record = await cancel_backfill(request.app[POOL], actor, request.match_info["id"])
    raise web.HTTPSeeOther(f"{PREFIX}/backfills/{record.id}")


async def audit_page(request: web.Request) -> web.Response:
    target = request.query.get("target") or None
    cursor = request.query.get("cursor")
    # An audit row's id is a bigint: a larger number is no cursor (it overflowed before).
    if cursor is not None and not is_bigint_text(cursor):
        raise web.HTTPBadRequest(text="cursor: not one this page made")
    # As the lists print names (acme:billing/x; a bare one the default tenant's).
    target_name, tenant = labelled_target(target, _asked_tenant(request))
    rows = await list_audit(request.app[POOL], target=target_name, tenant=tenant,
                            before_id=int(cursor) if cursor else None, limit=PAGE_SIZE + 1)
    page = rows[:PAGE_SIZE]
    next_cursor = str(page[-1].id) if len(rows) > PAGE_SIZE else None
    return render(request, "audit.html", rows=page, next_cursor=next_cursor,
                  target=target or "")


# --- workflows and versions -------------------------------------------------------------


async def workflows_page(request: web.Request) -> web.Response:
    found = _name_cursor(request.query.get("cursor"), 2)
    after = None if found is None else (found[0], found[1])
    rows = await list_workflows(request.app[POOL], tenant=_asked_tenant(request), after=after,
                                limit=PAGE_SIZE + 1)
    page = rows[:PAGE_SIZE]
    next_cursor = (encode_name_cursor(page[-1].key, page[-1].id)
                   if len(rows) > PAGE_SIZE else None)
    return render(request, "workflows.html", workflows=page, next_cursor=next_cursor)


_VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,8}")


def _version_number(request: web.Request, name: str) -> int | None:
    """The version number query parameter ``name`` (None: not given)."""
    text = request.query.get(name)
    if text is None:
        return None
    if not _VERSION_NUMBER.fullmatch(text):
        raise web.HTTPBadRequest(text=f"{name} must be a version number")
    return int(text)


async def workflow_page(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    workflow = await get_workflow(pool, request.match_info["key"], _home(request))
    before = _version_number(request, "before")
    versions = await page_versions(pool, workflow.id, before=before,
                                   limit=VERSIONS_SHOWN + 1)
    shown = versions[:VERSIONS_SHOWN]
    older = shown[-1].version if len(versions) > VERSIONS_SHOWN else None
    count = await count_versions(pool, workflow.id)
    triggers = await list_triggers(pool, workflow_id=workflow.id,
                                   limit=WORKFLOW_TRIGGERS_SHOWN + 1)
    chosen: tuple[int, int] | None = None
    if "from" in request.query or "to" in request.query:
        old_text, new_text = request.query.get("from", ""), request.query.get("to", "")
        if not (_VERSION_NUMBER.fullmatch(old_text) and _VERSION_NUMBER.fullmatch(new_text)):
            raise web.HTTPBadRequest(text="from and to must be version numbers")
        chosen = (int(old_text), int(new_text))
    elif count >= 2:
        newest = shown if before is None else await page_versions(
            pool, workflow.id, before=None, limit=2)
        chosen = (newest[1].version, newest[0].version)
    diff: VersionDiff | None = None
    if chosen is not None:
        # Only the two versions compared are read whole.
        old = await resolve_version(pool, workflow.id, chosen[0])
        new = await resolve_version(pool, workflow.id, chosen[1])
        if old is None or new is None:
            raise web.HTTPNotFound(text=f"workflow {workflow.key} has no version {chosen[0]}"
                                        f" or {chosen[1]}")
        # Off the loop: even bounded, two large versions take a while to write and compare.
        diff = await asyncio.to_thread(version_diff, old, new, dumps=_json)
    # The compare form offers this page's versions and the pair compared.
    offered = sorted({v.version for v in shown} | set(chosen or ()))
    return render(request, "workflow.html", workflow=workflow, versions=shown,
                  version_count=count, older=older, before=before, offered=offered,
                  triggers=triggers[:WORKFLOW_TRIGGERS_SHOWN],
                  more_triggers=len(triggers) > WORKFLOW_TRIGGERS_SHOWN, diff=diff,
                  chosen=chosen)
