"""Webhook idempotency keys: which request is a redelivery of which.

The key goes into ``workflow_executions.dedupe_key``; the unique (``trigger_id``,
``dedupe_key``) constraint turns a redelivery into ``200`` with the first execution's id.

Sources, tried in this order, the first that yields a value winning:

1. ``header``: the value of that request header (looked up case-insensitively), else of
   its ``header_alias`` (the standard scheme's ``svix-id`` for ``webhook-id``);
2. ``json_pointer``: an RFC 6901 pointer (``/data/id``, ``~1`` for ``/``, ``~0`` for ``~``)
   into the parsed body (pass :attr:`ParsedBody.input`; a JSON body that is not an object
   sits under ``/body``). A string is used as-is; a number or boolean as its JSON text; an
   object or array as its canonical JSON; ``null`` counts as absent;
3. ``body_hash``: the SHA-256 hex digest of the raw body.

An empty (or blank) value counts as absent: deduplicating every request that lacks an id
against each other would drop deliveries. The result is ``"webhook:<key>"``; a key longer
than 200 characters (or one PostgreSQL text cannot hold) becomes ``"webhook:sha256:<hex>"``
of its UTF-8 bytes, so the column stays small and indexable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from triggerd.model import DedupeConfig, WebhookConfig
from triggerd.webhooks.auth import STANDARD_HEADERS, SVIX_HEADERS, get_header

KEY_PREFIX = "webhook:"
MAX_KEY_CHARS = 200

# Where the schemes that carry a delivery id put it: a redelivery carries the same one, so
# these dedupe by default (``dedupe: none`` turns it off; a dedupe mapping replaces it).
# Slack marks a retry with X-Slack-Retry-Num and sends the same event_id again.
PROVIDER_DEDUPE: Mapping[str, DedupeConfig] = {
    "github": DedupeConfig(header="X-GitHub-Delivery"),
    "standard": DedupeConfig(header=STANDARD_HEADERS[0]),  # or svix-id: effective_dedupe
    "stripe": DedupeConfig(json_pointer="/id"),
    "slack": DedupeConfig(json_pointer="/event_id"),
}


def effective_dedupe(config: WebhookConfig) -> DedupeConfig | None:
    """The dedupe a trigger uses: its mapping, else its scheme's delivery id unless
    ``dedupe: none``, else none.

    On the standard scheme, a dedupe on ``webhook-id`` reads ``svix-id`` when there is no
    ``webhook-id``: the scheme accepted the request on the svix-* set then, and a
    redelivery carries the same svix-id."""
    dedupe = config.dedupe
    if dedupe is None:
        if not config.provider_dedupe:
            return None
        dedupe = PROVIDER_DEDUPE.get(config.auth.scheme)
    if (dedupe is not None and config.auth.scheme == "standard" and dedupe.header
            and dedupe.header.lower() == STANDARD_HEADERS[0]):
        return replace(dedupe, header_alias=SVIX_HEADERS[0])
    return dedupe


# Bounded so that int() stays cheap and within Python's digit limit.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")


def dedupe_key(
    config: DedupeConfig | None,
    headers: Mapping[str, str],
    body: bytes,
    parsed: Any,
) -> str | None:
    """The execution's dedupe key for this request, or ``None`` (no dedupe)."""
    if config is None:
        return None
    key: str | None = None
    if config.header:
        key = _present(get_header(headers, config.header))
        if key is None and config.header_alias:
            key = _present(get_header(headers, config.header_alias))
    if key is None and config.json_pointer is not None:
        key = _present(_as_key(resolve_json_pointer(parsed, config.json_pointer)))
    if key is None and config.body_hash:
        key = hashlib.sha256(body).hexdigest()
    if key is None:
        return None
    return KEY_PREFIX + _bounded(key)


def validate_dedupe_config(config: DedupeConfig) -> list[str]:
    """Human-readable problems with ``config``; ``[]`` when it is usable."""
    problems: list[str] = []
    if config.header is None and config.json_pointer is None and not config.body_hash:
        problems.append("dedupe needs one of header, json or body_hash")
    if config.header is not None and not config.header.strip():
        problems.append("dedupe header must not be empty")
    if config.json_pointer is not None and not _is_pointer(config.json_pointer):
        problems.append(
            f"dedupe json {config.json_pointer!r} is not a JSON pointer (RFC 6901: it starts"
            " with '/' and writes '~' as '~0' and '/' inside a name as '~1', e.g. '/data/id')"
        )
    if config.ttl.total_seconds() <= 0:
        problems.append("dedupe ttl must be positive")
    return problems


def resolve_json_pointer(document: Any, pointer: str) -> Any:
    """The value at RFC 6901 ``pointer`` in ``document``, or ``None`` when there is none.

    ``""`` is the whole document. A malformed pointer (not starting with ``/``) or a
    malformed array index (``-``, ``01``, ``x``) resolves to nothing.
    """
    if not _is_pointer(pointer):
        return None
    if pointer == "":
        return document
    current = document
    for token in pointer[1:].split("/"):
        # ~1 before ~0, so that "~01" means "~1" (RFC 6901 section 4).
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            if token not in current:
                return None
            current = current[token]
        elif isinstance(current, list):
            if not _ARRAY_INDEX.fullmatch(token) or int(token) >= len(current):
                return None
            current = current[int(token)]
        else:
            return None
    return current


def _is_pointer(pointer: str) -> bool:
    # "" is the whole document; otherwise "/"-separated, and "~" must be followed by 0 or 1.
    if pointer == "":
        return True
    return pointer.startswith("/") and re.search(r"~(?![01])", pointer) is None


def _as_key(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError):
        return None  # not a JSON document after all (the caller passed something else)


def _present(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value


def _bounded(key: str) -> str:
    if len(key) <= MAX_KEY_CHARS and "\x00" not in key:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"
