"""The webhook answers as HTTP responses: JSON errors, ``202``/``200`` acceptances and, in
``sync`` mode, the answer of the finished run. Pure: values in, a response out."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import hdrs, web

from triggerd.errors import DatabaseUnavailable
from triggerd.model import JSON, ExecutionStatus
from triggerd.storable import is_truncation_marker
from triggerd.store.webhooks import FinishedRun
from triggerd.webhooks.decoding import content_encoding_field, encoded_limit, encodings
from triggerd.webhooks.group_commit import QueueFull, ShuttingDown, TriggerGone

STATUS_PREFIX = "/hooks/_executions/"
# Retry-After (seconds) for the retryable refusals.
RETRY_DATABASE = 5
RETRY_BACKPRESSURE = 5
# Response headers a respond node may not set: they describe the connection and the
# framing, which aiohttp owns.
# Headers a run may not set on its answer, served from the daemon's (the console's)
# origin: a cookie there is a console session (fixed, or logged out), and the others change
# what the browser keeps for the whole origin.
_ORIGIN_STATE = frozenset({"set-cookie", "set-cookie2", "clear-site-data",
                           "strict-transport-security"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 5.6.2)


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: JSON,
) -> web.Response:
    body: dict[str, JSON] = {"error": code, "message": message, **extra}
    return web.json_response(body, status=status, headers=headers)


def accepted(execution_id: str, *, created: bool) -> web.Response:
    status_url = STATUS_PREFIX + execution_id
    # Built by hand: this is the hot path, and both values are plain ASCII.
    if created:
        text = f'{{"execution_id":"{execution_id}","status_url":"{status_url}"}}'
    else:
        text = (
            f'{{"execution_id":"{execution_id}","status_url":"{status_url}",'
            '"duplicate":true}'
        )
    return web.Response(
        status=202 if created else 200,
        body=text.encode("ascii"),
        headers={"Content-Type": "application/json", "Location": status_url},
    )


def debounced(execution_id: str) -> web.Response:
    """A request folded into a pending debounced run (DESIGN §5b)."""
    text = f'{{"execution_id":"{execution_id}","debounced":true}}'
    return web.Response(
        status=202, body=text.encode("ascii"), headers={"Content-Type": "application/json"}
    )


def filtered_answer(*, duplicate: bool = False) -> web.Response:
    """A request the trigger's filter did not match: stored, no run (DESIGN 5b); or the
    redelivery of such a request (nothing stored)."""
    body = b'{"filtered":true,"duplicate":true}' if duplicate else b'{"filtered":true}'
    return web.Response(
        status=200, body=body, headers={"Content-Type": "application/json"}
    )


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# The Content-Encodings decoded (br and zstd need their modules, which the package depends
# on).
DECODABLE_ENCODINGS = encodings()


def unsupported_transfer_coding(request: web.Request) -> web.Response | None:
    """``501`` for a webhook body in a transfer coding other than chunked (RFC 9112):
    aiohttp took ``gzip, chunked`` for chunked, and the body for plain bytes."""
    transfer = request.headers.get(hdrs.TRANSFER_ENCODING)
    if transfer is None or [t.strip().lower() for t in transfer.split(",")] == ["chunked"]:
        return None
    return error_response(
        501, "unsupported_transfer_coding",
        f"the transfer coding {transfer[:60]!r} is not supported (only chunked)")


def unsupported_encoding(request: web.Request) -> web.Response | None:
    """``415`` with ``Accept-Encoding`` (RFC 7694) for a body in a Content-Encoding that is
    not decoded (``foo``, ``gzip, br``)."""
    encoding = content_encoding_field(request.headers)
    if encoding is None or encoding.lower() in ("identity", *DECODABLE_ENCODINGS):
        return None
    response = error_response(
        415, "unsupported_encoding",
        f"the body's Content-Encoding {encoding[:60]!r} is not one of"
        f" {', '.join(DECODABLE_ENCODINGS)} (or identity)")
    response.headers[hdrs.ACCEPT_ENCODING] = ", ".join(DECODABLE_ENCODINGS)
    return response


def undecodable_message(request: web.Request) -> str:
    """Why a body that could not be decoded (garbage sent as gzip, a stream cut short) is
    refused; the webhooks and the admin API say it alike."""
    encoding = content_encoding_field(request.headers) or ""
    return f"the body could not be decoded as its Content-Encoding {encoding!r}"


def too_large_message(limit: int, *, on_the_wire: bool = False) -> str:
    """Why a body is 413: past ``limit`` decoded bytes, or (``on_the_wire``) an encoded
    body past :func:`encoded_limit` bytes as sent, whatever it decodes to."""
    if on_the_wire:
        return (f"the encoded body takes more than {encoded_limit(limit)} bytes on the wire,"
                f" the most for this webhook's limit of {limit} decoded bytes")
    return f"the body is larger than this webhook's limit of {limit} bytes"


def too_large(limit: int, *, on_the_wire: bool = False) -> web.Response:
    """The 413 answer; send it with :func:`close_unread` (the rest of the body is never
    read)."""
    return error_response(413, "payload_too_large",
                          too_large_message(limit, on_the_wire=on_the_wire))


def close_unread(request: web.BaseRequest, response: web.Response) -> web.Response:
    """``response``, sent and then the connection closed, without reading the rest of the
    request's body. aiohttp otherwise reads ("lingers") up to 10 s of it after the handler
    returns, through the same parser and decoder: a slow sender kept the connection after
    its 413 or 408, and a body that does not decode logged an error with a traceback for
    every such request anyone sent."""
    response.force_close()
    protocol = request.protocol
    if protocol is not None:
        # No public switch per connection: this one closes once the answer is sent.
        protocol._lingering_time = 0.0
    return response


def public_reason(exc: DatabaseUnavailable) -> str:
    # Connection details stay in the logs; the sender only learns it is transient.
    if isinstance(exc, ShuttingDown | QueueFull | TriggerGone):
        return exc.message
    return "the database is unavailable"


def run_response(run: FinishedRun) -> web.Response:
    """The answer of a sync request whose run finished."""
    headers = {"Triggerd-Execution-Id": run.execution_id}
    if run.status != ExecutionStatus.SUCCESS:
        what = "was canceled" if run.status == ExecutionStatus.CANCELED else "failed"
        return error_response(
            500,
            "execution_failed",
            f"execution {run.execution_id} {what}",
            headers=headers,
            execution_id=run.execution_id,
        )
    output = run.output
    if run.responded and isinstance(output, dict) and is_truncation_marker(output):
        # Only the stored copy is left, cut at the limit: answering from it sent an empty
        # 200 in place of the respond node's status, headers and body.
        return error_response(
            500,
            "response_too_large",
            f"execution {run.execution_id} answered {output['size_bytes']} bytes, above"
            f" [executor] max_output_bytes ({output['limit_bytes']} bytes): raise it to"
            " send answers this large",
            headers=headers,
            execution_id=run.execution_id,
        )
    if run.responded and isinstance(output, dict):
        return _respond_node_answer(output, headers)
    return web.Response(
        status=200,
        text=json.dumps(output, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def _respond_node_answer(output: Mapping[str, Any], headers: dict[str, str]) -> web.Response:
    status = output.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        status = 200
    given = output.get("headers")
    content_type: str | None = None
    if isinstance(given, Mapping):
        for name, value in given.items():
            if not isinstance(name, str) or value is None or not _TOKEN.fullmatch(name):
                continue
            lowered = name.lower()
            if (lowered in _HOP_BY_HOP or lowered in _ORIGIN_STATE
                    or lowered == "triggerd-execution-id"):
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            if "\r" in text or "\n" in text or "\r" in name or "\n" in name:
                continue  # never let a run split the response
            if lowered == "content-type":
                content_type = text
            else:
                headers[name] = text
    body = output.get("body")
    if status in _NO_BODY_STATUSES or body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        content_type = content_type or "application/json"
    if content_type is not None and data:
        headers["Content-Type"] = content_type
    # The answer comes from the daemon's origin (the console's too): a browser must not
    # take a body built from a request's input for another type than the one given. A
    # run may still say otherwise by setting the header itself.
    given_names = {name.lower(): name for name in headers}
    if "x-content-type-options" not in given_names:
        headers["X-Content-Type-Options"] = "nosniff"
    # A text/html body would otherwise run its scripts in the console's origin (its session
    # cookie, its CSRF tokens): whoever may apply a workflow (a tenant's admin) could act as
    # any console user, the all-tenant admin included. A sandboxed document has an origin
    # of its own and runs no script, whatever the run's own policy says: a second policy
    # in the same header is enforced besides it, never instead of it.
    own = given_names.get("content-security-policy")
    policy = headers.pop(own) if own is not None else ""
    headers["Content-Security-Policy"] = f"{policy}, sandbox" if policy.strip() else "sandbox"
    return web.Response(status=status, body=data, headers=headers)

