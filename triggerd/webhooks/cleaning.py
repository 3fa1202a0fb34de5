"""A webhook request as it is stored and shown to expressions: text PostgreSQL ``jsonb``
can hold, headers without auth material, credentials masked, the query as an object, the
run input as JSON text. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping

from multidict import CIMultiDictProxy, MultiMapping

from triggerd.model import JSON
from triggerd.redaction import MASK, is_credential_name
from triggerd.webhooks.routes import WebhookRoute


def clean_text(text: str) -> str:
    """A string PostgreSQL ``jsonb`` can hold. aiohttp decodes header bytes as UTF-8 with
    surrogate escapes, and NUL is legal in a percent-encoded query: both would make the
    insert fail, so they become U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return fixed.replace("\x00", "\ufffd")


def stored_headers(
    headers: CIMultiDictProxy[str], stripped: frozenset[str]
) -> dict[str, JSON]:
    """Headers as stored and shown to expressions: lower-case names, repeated headers
    joined with ``", "`` (RFC 9110 5.3), auth material and cookies removed, the value of
    any other header named like a credential (``x-api-key``, ``x-gitlab-token``) masked."""
    result: dict[str, JSON] = {}
    for name, value in headers.items():
        key = name.lower()
        # clean_text inlined for the common, clean case: this runs for every header.
        if not key.isascii() or "\x00" in key:
            key = clean_text(key)
        if key in stripped:
            continue
        if is_credential_name(key):
            value = MASK
        elif not value.isascii() or "\x00" in value:
            value = clean_text(value)
        previous = result.get(key)
        result[key] = value if previous is None else f"{previous}, {value}"
    return result


def query_dict(query: MultiMapping[str]) -> dict[str, JSON]:
    """The query string as an object; a repeated key becomes a list of its values. The
    value of a parameter named like a credential (``?token=``, ``?api_key=``) is masked: a
    secret in a URL is still a secret."""
    result: dict[str, JSON] = {}
    for key, value in query.items():
        key = clean_text(key)
        value = MASK if is_credential_name(key) else clean_text(value)
        previous = result.get(key)
        if previous is None:
            result[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result[key] = [previous, value]
    return result


def input_json(
    route: WebhookRoute, body: bytes, json_text: str | None, data: Mapping[str, JSON]
) -> str:
    """The run input as JSON text for the store.

    A JSON object body sent as UTF-8 (``json_text``: its text, from
    :func:`~triggerd.webhooks.body.parse_input`) with nothing merged under it is the input
    exactly as sent: PostgreSQL parses the sender's text into the same document
    (duplicate keys: the last wins in both; NaN, NUL and lone surrogates were refused by
    the body parser), which spares re-encoding every request on the hot path. A leading
    BOM is not JSON to PostgreSQL: such a body is re-encoded."""
    if (
        json_text is not None
        and not route.static_input
        and (body[:1] == b"{" or body.lstrip()[:1] == b"{")
    ):
        return json_text
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

