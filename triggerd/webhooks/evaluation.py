"""What the ingress derives from a request's whole input once it is parsed and valid: the
filter's verdict, the debounce and concurrency keys, the dedupe key, the correlation and
the input's JSON text for the store. One pure function, so that a large body's (seconds
of ``tojson``, ``map`` or ``sort`` over a 10 MB input) can run in a worker thread while
the event loop serves everything else. Safe there: it reads the request and the route and
writes nothing shared (the expressions' step budget is per thread)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from triggerd.correlation import evaluate_correlation
from triggerd.expressions import ExpressionError
from triggerd.model import JSON, Correlation
from triggerd.store.keyed import ConcurrencyKey, DebounceKey
from triggerd.webhooks.cleaning import input_json
from triggerd.webhooks.dedupe import dedupe_key
from triggerd.webhooks.filtering import evaluate_filter
from triggerd.webhooks.keys import request_key
from triggerd.webhooks.routes import WebhookRoute


@dataclass(frozen=True, kw_only=True, slots=True)
class RunInput:
    """A request's parsed body, its JSON text when sent as such, and the run input (the
    trigger's static input merged under the body)."""

    parsed: dict[str, JSON]
    json_text: str | None
    data: dict[str, JSON]


@dataclass(frozen=True, kw_only=True, slots=True)
class Derived:
    """What one request becomes. ``matched`` False: stored as filtered (``problem``: why
    the filter failed, if it did). ``key_problem``: the debounce or concurrency key could
    not be computed (422); the fields after it are then unset."""

    matched: bool
    problem: str | None = None
    dedupe_key: str | None = None
    key_problem: str | None = None
    debounce: DebounceKey | None = None
    concurrency: ConcurrencyKey | None = None
    correlation: Correlation | None = None
    input_json: str = "{}"


def derive(
    route: WebhookRoute,
    run_input: RunInput,
    *,
    body: bytes,
    request_headers: Mapping[str, str],
    headers: Mapping[str, JSON],
    query: Mapping[str, JSON],
) -> Derived:
    """``request_headers``: as received (the dedupe header is looked up there);
    ``headers``: as stored, which the expressions read."""
    config = route.config
    if config.filter is not None:
        matched, problem = evaluate_filter(
            config.filter, input=run_input.data, headers=headers, query=query
        )
        if not matched:
            # The row keeps the delivery id: a redelivery is a duplicate of it.
            return Derived(matched=False, problem=problem, dedupe_key=dedupe_key(
                route.dedupe, request_headers, body, run_input.parsed))
    debounce: DebounceKey | None = None
    concurrency: ConcurrencyKey | None = None
    section = "debounce"
    try:
        if config.debounce is not None:
            key = request_key(
                config.debounce.key, input=run_input.data, headers=headers, query=query
            )
            debounce = DebounceKey(
                key=key, period=config.debounce.period, max_wait=config.debounce.max_wait
            )
        if config.concurrency is not None:
            section = "concurrency"
            key = request_key(
                config.concurrency.key, input=run_input.data, headers=headers, query=query
            )
            concurrency = ConcurrencyKey(key=key, limit=config.concurrency.limit)
    except ExpressionError as exc:
        return Derived(
            matched=True,
            key_problem=f"the {section} key of this request could not be computed: {exc}",
        )
    return Derived(
        matched=True,
        dedupe_key=dedupe_key(route.dedupe, request_headers, body, run_input.parsed),
        debounce=debounce,
        concurrency=concurrency,
        correlation=None if not route.correlation else evaluate_correlation(
            route.correlation, input=run_input.data, headers=headers, query=query),
        input_json=input_json(route, body, run_input.json_text, run_input.data),
    )
