"""``GET /hooks/_executions/{id}``: the status of one execution (status and times only,
unless its trigger opts in to exposing the output), for the sender that got a ``202``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from triggerd.errors import DatabaseUnavailable
from triggerd.model import JSON
from triggerd.store.webhooks import webhook_execution_status
from triggerd.webhooks.answers import RETRY_DATABASE, error_response, public_reason, retry_after
from triggerd.webhooks.decisions import resume_handler
from triggerd.webhooks.methods import allow_header, allows
from triggerd.webhooks.routes import RouteTable

if TYPE_CHECKING:
    import asyncpg


async def reserved_path(
    request: web.Request, path: str, *, pool: asyncpg.Pool, routes: RouteTable
) -> web.Response:
    """The answer for ``/hooks/{path}`` when ``path`` starts with ``_``: the status of one
    execution at ``_executions/{id}``, an approval's decision at ``_resume/{token}``, 404
    for anything else."""
    name, _, rest = path.partition("/")
    if name == "_resume":
        return await resume_handler(request, rest, pool)
    if name != "_executions" or not rest or "/" in rest:
        return error_response(404, "not_found", f"no webhook at /hooks/{path}")
    if not allows(("GET",), request.method):  # HEAD: the same answer, without its body
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here (allowed: GET, HEAD)",
            headers={"Allow": allow_header(("GET",))},
        )
    try:
        execution_id = str(uuid.UUID(rest))
    except ValueError:
        return error_response(404, "not_found", f"no execution {rest}")
    try:
        row = await webhook_execution_status(pool, execution_id)
    except DatabaseUnavailable as exc:
        return error_response(
            503,
            "database_unavailable",
            f"{public_reason(exc)}; retry later",
            headers=retry_after(RETRY_DATABASE),
        )
    if row is None:
        return error_response(404, "not_found", f"no execution {rest}")
    body: dict[str, JSON] = {
        "execution_id": row.execution_id,
        "status": row.status,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.start_time),
        "finished_at": _iso(row.end_time),
    }
    route = routes.by_trigger.get(row.trigger_id or "")
    if route is not None and route.config.expose_output:
        body["output"] = row.output
        body["error_code"] = row.error_code
    return web.json_response(body)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
