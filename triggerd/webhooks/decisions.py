"""``POST /hooks/_resume/{token}``: the single-use URL of an approval
(``execution.resume_url``). Body ``{"decision": "approved" | "rejected", "note", "input"}``;
answered ``202 {"execution_id", "decision"}``, ``404`` for an unknown link, ``409`` for
a link already used or a run already ended, ``400``/``422`` for a bad body (the admin API's
answers to the same mistakes: both go through one operation)."""

from __future__ import annotations

import json

import asyncpg
from aiohttp import web

from triggerd.errors import DatabaseUnavailable, TriggerdError, http_refusal
from triggerd.operations.approvals import DecisionRequest, decide_by_token
from triggerd.storable import storage_problem
from triggerd.webhooks.answers import (
    RETRY_DATABASE,
    close_unread,
    error_response,
    public_reason,
    retry_after,
    undecodable_message,
)
from triggerd.webhooks.decoding import TooLarge, UndecodableBody, read_body

MAX_BODY = 64 * 1024


def _refusal(exc: TriggerdError) -> web.Response:
    """The operation's refusal as the admin API answers it (``POST
    /api/v1/executions/{id}/resume``): the same mistake, the same answer."""
    refusal = http_refusal(exc)
    if refusal is not None:
        status, code, extra = refusal
        return error_response(status, code, exc.message, **extra)
    return error_response(422, "invalid_body", exc.message)  # a decision, a note


async def resume_handler(request: web.Request, token: str, pool: asyncpg.Pool
                         ) -> web.Response:
    if request.method != "POST":
        return error_response(405, "method_not_allowed",
                              f"{request.method} is not allowed here (allowed: POST)",
                              headers={"Allow": "POST"})
    if not token or "/" in token or len(token) > 100:
        return error_response(404, "not_found", "unknown resume link")
    try:
        raw = await read_body(request, MAX_BODY)
    except UndecodableBody:
        return close_unread(request, error_response(400, "invalid_body",
                                                    undecodable_message(request)))
    if isinstance(raw, TooLarge):
        message = (f"the encoded body takes more than {raw.max_size} bytes on the wire, the"
                   f" most for a limit of {MAX_BODY} decoded bytes") if raw.on_the_wire else (
            f"the body is larger than {MAX_BODY} bytes")
        return close_unread(request, error_response(413, "payload_too_large", message))
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return error_response(400, "invalid_json", "the body is not JSON")
    if not isinstance(body, dict):
        return error_response(422, "invalid_body",
                              'send a JSON object: {"decision": "approved" | "rejected",'
                              ' "note", "input"}')
    unknown = sorted(set(body) - {"decision", "note", "input"})
    if unknown:
        return error_response(422, "invalid_body",
                              f"unknown field {', '.join(map(repr, unknown))} (allowed:"
                              " decision, note, input)")
    decision, note = body.get("decision"), body.get("note")
    if not isinstance(decision, str):
        return error_response(422, "invalid_body",
                              "decision is required: \"approved\" or \"rejected\"")
    if note is not None and not isinstance(note, str):
        return error_response(422, "invalid_body", "note must be a string")
    if body.get("input") is not None and not isinstance(body["input"], dict):
        # As the API: a run's input is an object (a string here used up the link).
        return error_response(422, "invalid_body", "input must be an object")
    problem = storage_problem(body)
    if problem is not None:
        return error_response(422, "invalid_body", problem)
    try:
        decided = await decide_by_token(pool, token, DecisionRequest(
            decision=decision, note=note, input=body.get("input")))
    except DatabaseUnavailable as exc:
        return error_response(503, "database_unavailable", f"{public_reason(exc)}; retry later",
                              headers=retry_after(RETRY_DATABASE))
    except TriggerdError as exc:
        return _refusal(exc)
    return web.json_response({"execution_id": decided.execution_id,
                              "decision": decided.decision}, status=202)
