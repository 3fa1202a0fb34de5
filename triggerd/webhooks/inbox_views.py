"""The JSON shapes of stored webhook requests, shared by the CLI (``--json``) and the
admin API, so both print the same document."""

from __future__ import annotations

import base64
from typing import Any

from triggerd.store.inbox import InboxRequest, InboxSummary


def summary_json(s: InboxSummary) -> dict[str, Any]:
    return {
        "id": s.id,
        "trigger": s.trigger,
        # The trigger's name alone is ambiguous across tenants (executions carry theirs).
        "tenant": s.tenant_id,
        "method": s.method,
        "path": s.path,
        "received_at": s.received_at.isoformat(),
        "outcome": s.outcome,
        "execution_id": s.execution_id,
        "delivery_count": s.delivery_count,
        "last_seen_at": None if s.last_seen_at is None else s.last_seen_at.isoformat(),
        "body_bytes": s.body_bytes,
        "detail": s.detail,
    }


def body_fields(body: bytes) -> tuple[str | None, str | None]:
    """(text, base64): the body as text when it is UTF-8, else as base64."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, base64.b64encode(body).decode("ascii")


def start_fields(start: bytes) -> tuple[str | None, str | None]:
    """:func:`body_fields` of the start of a longer body: a UTF-8 character the cut split
    (up to 3 of its bytes) is left off, so a text body still shows as text."""
    for end in range(len(start), max(len(start) - 4, -1), -1):
        try:
            return start[:end].decode("utf-8"), None
        except UnicodeDecodeError:
            continue
    return None, base64.b64encode(start).decode("ascii")


def request_json(r: InboxRequest) -> dict[str, Any]:
    text, encoded = start_fields(r.body) if r.body_cut else body_fields(r.body)
    return {
        **summary_json(r.summary),
        "query": r.query,
        "headers": r.headers,  # auth material was removed before the row was stored
        "remote_addr": r.remote_addr,
        "body_text": text,
        "body_base64": encoded,
    }
