"""debounce and concurrency on webhook triggers: what check says about bad values, what
the definition builds, and how a request's key is computed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict

from tests.unit.test_definitions import found, hook, workflow
from triggerd.definitions import parse_trigger_config
from triggerd.definitions.build import build_webhook
from triggerd.definitions.serialize import canonical_json, trigger_config_to_json
from triggerd.expressions import ExpressionError
from triggerd.model import ConcurrencyConfig, DebounceConfig, TriggerType
from triggerd.webhooks.debounce import Window, plan_window
from triggerd.webhooks.keys import request_key

DURATION = (
    " is not a duration longer than zero: use a positive number and a unit (ms, s, m, h, d),"
    " e.g. '500ms', '30s', '6h'"
)


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"debounce": {"period": "5s"}}, "debounce", "missing required key 'key'"),
        ({"debounce": {"key": "{{ input.ref }}"}}, "debounce", "missing required key 'period'"),
        ({"debounce": {"key": "k", "period": "soon"}}, "debounce.period", "'soon'" + DURATION),
        ({"debounce": {"key": "k", "period": "0s"}}, "debounce.period", "'0s'" + DURATION),
        (
            {"debounce": {"key": "k", "period": "5s", "max_wait": "-1s"}},
            "debounce.max_wait",
            "'-1s'" + DURATION,
        ),
        (
            {"debounce": {"key": "k", "period": "1m", "max_wait": "30s"}},
            "debounce.max_wait",
            "max_wait 30s is shorter than period 1m",
        ),
        ({"debounce": {"key": " ", "period": "5s"}}, "debounce.key", "must not be empty"),
        (
            {"debounce": {"key": "{{ input.ref ", "period": "5s"}},
            "debounce.key",
            "syntax error: unexpected end of template, expected 'end of print statement'.",
        ),
        (
            {"debounce": {"key": "{{ nodes.a.output }}", "period": "5s"}},
            "debounce.key",
            "unknown name 'nodes' (a key sees input, headers, query)",
        ),
        (
            {"debounce": {"key": "k", "period": "5s", "every": "1s"}},
            "debounce.every",
            "unknown key 'every'",
        ),
        (
            {"concurrency": {"key": "k", "limit": 0}},
            "concurrency.limit",
            "must be at least 1, got 0",
        ),
        ({"concurrency": {"key": "k"}}, "concurrency", "missing required key 'limit'"),
        (
            {"concurrency": {"key": "k", "limit": "2"}},
            "concurrency.limit",
            "expected an integer, got '2' (a string)",
        ),
        (
            {"concurrency": {"key": "{{ secrets.x }}", "limit": 1}},
            "concurrency.key",
            "unknown name 'secrets' (a key sees input, headers, query)",
        ),
        (
            # It reads nothing of the request: each one was refused 422.
            {"concurrency": {"key": "{{ 1 / 0 }}", "limit": 1}},
            "concurrency.key",
            "it fails on every request, which is refused: ZeroDivisionError: division by zero",
        ),
        (
            {"debounce": {"key": "{{ none }}", "period": "5s"}},
            "debounce.key",
            "it fails on every request, which is refused: the key is empty",
        ),
        (
            # The word random is no draw: the guard reads the syntax tree, not the text.
            {"debounce": {"key": "{{ 'random' ~ (1 / 0) }}", "period": "5s"}},
            "debounce.key",
            "it fails on every request, which is refused: ZeroDivisionError: division by zero",
        ),
    ],
)
def test_bad_debounce_and_concurrency(fields: dict[str, Any], path: str, message: str) -> None:
    where = "$.workflows[0].triggers[0]" + (f".{path}" if path else "")
    assert found(workflow(triggers=[hook(**fields)])) == {(where, message)}


def test_a_key_drawn_anew_for_each_request_is_not_computed_by_check() -> None:
    # random named at run time: the key is empty on half the requests, not on all of them;
    # check refused it half the time (its guard looked for the word in the text).
    key = "{{ [[1, none]] | map('ran' ~ 'dom') | first }}"
    for _ in range(40):
        assert found(workflow(triggers=[hook(debounce={"key": key, "period": "5s"})])) == set()


def test_good_debounce_and_concurrency_build() -> None:
    doc = hook(
        debounce={"key": "{{ input.ref }}", "period": "30s", "max_wait": "5m"},
        concurrency={"key": "{{ query.env }}", "limit": 2},
    )
    assert found(workflow(triggers=[doc])) == set()
    config = build_webhook(doc)
    assert config.debounce == DebounceConfig(
        key="{{ input.ref }}", period=timedelta(seconds=30), max_wait=timedelta(minutes=5)
    )
    assert config.concurrency == ConcurrencyConfig(key="{{ query.env }}", limit=2)
    # Without max_wait a burst is cut after ten periods.
    short = build_webhook(hook(debounce={"key": "k", "period": "2s"}))
    assert short.debounce is not None and short.debounce.max_wait == timedelta(seconds=20)
    assert build_webhook(hook()).debounce is None


def test_request_key_reads_input_headers_and_query() -> None:
    headers = CIMultiDict({"X-GitHub-Event": "push"})
    source = "{{ headers['x-github-event'] }}:{{ input.ref }}:{{ query.env }}"
    key = request_key(source, input={"ref": "main"}, headers=headers, query={"env": "prod"})
    assert key == "push:main:prod"
    assert request_key("{{ input.n }}", input={"n": 3}, headers={}, query={}) == "3"
    assert request_key("all", input={}, headers={}, query={}) == "all"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ input.ref }}", "expression '{{ input.ref }}': undefined: 'dict object' has no"
         " attribute 'ref'"),
        ("{{ input.none }}", "expression '{{ input.none }}': the key is empty"),
        ("{{ 'x' * 1001 }}", "expression \"{{ 'x' * 1001 }}\": the key is longer than 1000"
         " characters"),
    ],
)
def test_request_key_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        request_key(source, input={"none": None}, headers={}, query={})
    assert str(caught.value) == message


def test_debounce_and_concurrency_survive_storing() -> None:
    """The stored trigger config (what the route table reads back) keeps both."""
    config = build_webhook(
        hook(
            debounce={"key": "{{ input.ref }}", "period": "30s", "max_wait": "5m"},
            concurrency={"key": "{{ query.env }}", "limit": 2},
        )
    )
    stored = json.loads(canonical_json(trigger_config_to_json(config)))
    assert parse_trigger_config(TriggerType.WEBHOOK, stored) == config


@pytest.mark.parametrize(
    ("opened", "pending", "now", "fold", "due"),
    [
        (None, False, 100, False, 110),  # no window: one opens, due a period later
        (100, False, 105, False, 115),  # its run started: a new window
        (100, True, 105, True, 115),  # folded: a period after this request
        (100, True, 125, True, 130),  # but no later than max_wait after the first
        (100, True, 140, True, 130),  # past max_wait, not yet claimed: due at once
    ],
)
def test_window_plan(
    opened: int | None, pending: bool, now: int, fold: bool, due: int
) -> None:
    def at(seconds: int) -> datetime:
        return datetime(2027, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)

    window = None if opened is None else Window(
        execution_id="e", opened_at=at(opened), pending=pending
    )
    plan = plan_window(window, at(now), timedelta(seconds=10), timedelta(seconds=30))
    assert (plan.fold, plan.due_at) == (fold, at(due))
    assert plan.opened_at == (at(opened) if fold and opened is not None else at(now))


@pytest.mark.parametrize("source", ["{{ 'x' * 1001 }}", "{{ 'x' * 20000 }}"])
def test_a_constant_key_too_long_for_any_request_is_a_problem(source: str) -> None:
    # Past the size a check keeps of a value (10,000 characters), it went unreported.
    from triggerd.webhooks.keys import key_problems

    assert list(key_problems(source)) == [
        "it fails on every request, which is refused: the key is longer than 1000 characters"]
