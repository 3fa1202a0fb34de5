"""Operations on the webhook inbox: list, show and replay stored requests. The one
implementation behind the CLI (``triggerd webhooks ...``) and the admin API
(``/api/v1/webhook-requests``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from triggerd.correlation import correlation_mapping, evaluate_correlation
from triggerd.definitions.api import parse_trigger_config
from triggerd.errors import Conflict, NotFound, UsageError
from triggerd.expressions import ExpressionError
from triggerd.ids import canonical_uuid, time_ordered_id
from triggerd.inputs import check_input
from triggerd.model import DEFAULT_TENANT, JSON, TriggerType, WebhookConfig, not_running_reason
from triggerd.operations.actor import Actor
from triggerd.store.audit import AuditEntry, record_audit
from triggerd.store.inbox import (
    OUTCOMES,
    InboxRequest,
    InboxSummary,
    get_inbox_request,
    insert_replay,
    list_inbox,
    next_replay_number,
)
from triggerd.store.workflows import get_trigger, get_trigger_by_id, get_workflow, resolve_version
from triggerd.webhooks.body import BodyError, parse_input
from triggerd.webhooks.filtering import evaluate_filter
from triggerd.webhooks.keys import request_key

logger = logging.getLogger(__name__)

MAX_LIST_LIMIT = 500


def parse_request_id(text: str) -> str:
    """A webhook request id as PostgreSQL spells it; UsageError (exit 2, 400) otherwise."""
    canonical = canonical_uuid(text)
    if canonical is None:
        raise UsageError(f"{text[:80]!r} is not a webhook request id (a UUID)")
    return canonical


def check_outcome(outcome: str | None) -> str | None:
    if outcome is not None and outcome not in OUTCOMES:
        raise UsageError(f"{outcome[:40]!r} is not one of {', '.join(OUTCOMES)}",
                         field="outcome")
    return outcome


@dataclass(frozen=True, kw_only=True)
class ListRequests:
    trigger: str | None = None  # workflow_key/trigger_name
    outcome: str | None = None
    after_id: str | None = None  # keyset: the last id of the previous page
    limit: int = 50


@dataclass(frozen=True, kw_only=True)
class RequestPage:
    items: list[InboxSummary]
    next_cursor: str | None  # the after_id of the next page; None: this is the last


async def list_requests(pool: asyncpg.Pool, query: ListRequests, tenant: str | None = None
                        ) -> RequestPage:
    """One page of stored requests, newest first."""
    outcome = check_outcome(query.outcome)
    if not 1 <= query.limit <= MAX_LIST_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    after = None if query.after_id is None else parse_request_id(query.after_id)
    trigger_id = None
    if query.trigger is not None:
        trigger_id = (await get_trigger(pool, query.trigger, tenant or DEFAULT_TENANT)).id
    # One row more than asked tells whether another page follows.
    rows = await list_inbox(
        pool, trigger_id=trigger_id, outcome=outcome, after_id=after, limit=query.limit + 1,
        tenant=tenant,
    )
    page = rows[:query.limit]
    return RequestPage(items=page,
                       next_cursor=page[-1].id if len(rows) > query.limit else None)


async def show_request(pool: asyncpg.Pool, request_id: str, tenant: str | None = None, *,
                       shown_bytes: int | None = None) -> InboxRequest:
    """One stored request; with ``shown_bytes``, the start of its body only (a page)."""
    found = await get_inbox_request(pool, parse_request_id(request_id),
                                    shown_bytes=shown_bytes)
    if not _visible(found, tenant):
        raise NotFound(f"no webhook request {request_id}")
    assert found is not None
    return found


def _visible(found: InboxRequest | None, tenant: str | None) -> bool:
    """Whether a request exists for an actor of ``tenant`` (None: every tenant). One whose
    trigger is gone has no tenant any more: only an all-tenant actor sees it."""
    return found is not None and (tenant is None or found.summary.tenant_id == tenant)


@dataclass(frozen=True, kw_only=True)
class ReplayResult:
    execution_id: str
    request_id: str
    trigger: str
    version: int
    dedupe_key: str


async def replay(pool: asyncpg.Pool, actor: Actor, request_id: str) -> ReplayResult:
    """A new run from a stored request through its trigger's current version: re-checked
    by the current filter and parameter schema, not by auth, timestamp tolerance or
    dedupe (DESIGN 5b); keyed ``replay:<request id>:<n>``, linked by ``replay_of``."""
    wanted = parse_request_id(request_id)
    async with pool.acquire() as conn, conn.transaction():
        # Locked: concurrent replays of one request take n one after the other.
        stored = await get_inbox_request(conn, wanted, for_update=True)
        # As GET answers: a 409 about another tenant's request told that it exists.
        if not _visible(stored, actor.tenant):
            raise NotFound(f"no webhook request {request_id}")
        assert stored is not None
        trigger = None
        if stored.summary.trigger_id is not None:
            trigger = await get_trigger_by_id(conn, stored.summary.trigger_id)
        if trigger is None or trigger.type != TriggerType.WEBHOOK.value:
            raise Conflict(f"webhook request {wanted} cannot be replayed: its trigger was deleted")
        name = trigger.full_name
        if not trigger.enabled:
            raise Conflict(f"trigger {name} is disabled; enable it first")
        workflow = await get_workflow(conn, trigger.workflow_key, trigger.tenant_id)
        refused = not_running_reason(workflow.status, trigger.workflow_key)
        if refused is not None:
            raise Conflict(refused)
        version = await resolve_version(conn, trigger.workflow_id, trigger.version)
        if version is None:
            raise Conflict(f"workflow {trigger.workflow_key} has no published version")
        config = parse_trigger_config(TriggerType.WEBHOOK, trigger.config)
        assert isinstance(config, WebhookConfig)
        content_type = stored.headers.get("content-type")
        try:
            parsed, _ = parse_input(
                content_type if isinstance(content_type, str) else None,
                stored.body, mode=config.body,
            )
        except BodyError as exc:
            raise Conflict(
                f"webhook request {wanted} cannot be replayed: its body does not parse under"
                f" the trigger's current settings: {exc}"
            ) from None
        data: dict[str, JSON] = {**trigger.input, **parsed}
        if config.filter is not None:
            matched, problem = evaluate_filter(
                config.filter, input=data, headers=stored.headers, query=stored.query
            )
            if not matched:
                why = "" if problem is None else f" ({problem})"
                raise Conflict(
                    f"webhook request {wanted} does not match the trigger's current filter{why}"
                )
        check_input(version.parameter_schema or {}, data)
        concurrency: tuple[str, int] | None = None
        if config.concurrency is not None:
            # A replay waits for its key like any run of it (it started beside the live
            # run: two deploys of one environment). Debounce does not fold it: a replay
            # is one run asked for by hand.
            try:
                concurrency = (request_key(config.concurrency.key, input=data,
                                           headers=stored.headers, query=stored.query),
                               config.concurrency.limit)
            except ExpressionError as exc:
                raise Conflict(f"webhook request {wanted} cannot be replayed: its concurrency"
                               f" key could not be computed: {exc}") from None
        number = await next_replay_number(conn, wanted)
        key = f"replay:{wanted}:{number}"
        execution_id = time_ordered_id()
        context: dict[str, Any] = {"trigger": {
            "type": "webhook", "name": trigger.name,
            "request": {"method": stored.summary.method, "path": stored.summary.path,
                        "headers": stored.headers, "query": stored.query},
            "replay_of": wanted, "replayed_by": actor.via, "actor": actor.name,
        }}
        inserted = await insert_replay(
            conn, execution_id=execution_id, workflow_id=trigger.workflow_id,
            version_id=version.id, trigger_id=trigger.id, trigger_name=trigger.name,
            dedupe_key=key, input=data, context=context, replay_of=wanted,
            correlation=evaluate_correlation(correlation_mapping(trigger.config), input=data,
                                             headers=stored.headers, query=stored.query),
            concurrency=concurrency,
        )
        if not inserted:
            raise Conflict(f"webhook request {wanted} was replayed at the same time; retry")
        await record_audit(conn, AuditEntry(
            tenant_id=trigger.tenant_id,
            actor=actor.name, action="replay", target_kind="webhook_request", target=wanted,
            target_id=wanted,
            detail={"execution_id": execution_id, "trigger": name,
                    "version": version.version, "dedupe_key": key},
        ))
    logger.info("webhook request replayed", extra={
        "event": "webhook_replayed", "request": wanted, "execution": execution_id,
        "trigger": name, "actor": actor.name})
    return ReplayResult(execution_id=execution_id, request_id=wanted, trigger=name,
                        version=version.version, dedupe_key=key)
