"""A webhook's run input checked against its workflow's ``parameter_schema``: the errors a
``422`` lists, bounded so that a hostile body cannot produce a huge answer. Pure."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from triggerd.model import JSON
from triggerd.webhooks.routes import WebhookRoute

# At most this many validation errors are listed in a 422, each message cut to this size.
MAX_LISTED_ERRORS = 100
# Errors read before the listed ones are chosen (sorted by path): a 10 MB array of wrong
# items made a million errors, all built and sorted to list 100.
MAX_READ_ERRORS = 10 * MAX_LISTED_ERRORS
MAX_ERROR_MESSAGE = 300


def validation_errors(route: WebhookRoute, data: Mapping[str, JSON]) -> list[dict[str, str]]:
    if route.validator is None:
        return []
    if route.quick_check is not None and route.quick_check(data):
        return []  # the common case, decided without jsonschema's machinery
    found = [
        {"path": error.json_path, "message": shorten(error.message)}
        for error in itertools.islice(route.validator.iter_errors(data), MAX_READ_ERRORS)
    ]
    found.sort(key=lambda e: (e["path"], e["message"]))
    return found[:MAX_LISTED_ERRORS]


def shorten(text: str) -> str:
    if len(text) <= MAX_ERROR_MESSAGE:
        return text
    return text[: MAX_ERROR_MESSAGE - 1] + "…"

