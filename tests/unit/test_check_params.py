"""`check` catches what could only fail at run time: node params against their type's
schema, template syntax, references to nodes that do not run before, and unknown names."""

from __future__ import annotations

import itertools
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from triggerd.definitions import check_documents, load_documents
from triggerd.definitions.params import check_nodes
from triggerd.definitions.problems import Report
from triggerd.errors import DefinitionError
from triggerd.expressions import (
    CHECK_STEPS,
    MAX_CONSTANT_SIZE,
    MAX_STEPS,
    ExpressionError,
    _parsed_facts,
    _plain_facts,
    constant_budget,
    inspect_template,
    render_string,
)
from triggerd.nodes.registry import builtin_node_types, load_registry

BUILTIN_NODE_TYPES = tuple(builtin_node_types())
Doc = dict[str, Any]
NODE = "$.workflows[0].graph.nodes"


def node(node_id: str, node_type: str, **params: Any) -> Doc:
    return {"id": node_id, "type": node_type, "params": params}


def chain(*nodes: Doc, **fields: Any) -> Doc:
    """A workflow whose nodes run one after another, in the order given."""
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"key": "wf", "graph": {"nodes": list(nodes), "edges": edges}, **fields}


def found(workflow: Doc, node_types: Any = None) -> set[tuple[str, str]]:
    problems = check_documents([("f.yaml", {"workflows": [workflow]})], node_types=node_types)
    return {(p.path, p.message) for p in problems}


# --- the issue's examples ----------------------------------------------------------------


def test_every_example_of_the_issue_is_caught() -> None:
    workflow = chain(
        node("a", "log", message="{{ input.x > }}"),
        node("b", "http", url="ftp://x"),
        node("c", "http", url="https://example.test/", bogus=1),
        node("d", "http", url="https://example.test/", method="POST", body={"a": 1}),
    )
    assert found(workflow) == {
        (
            f"{NODE}[0].params.message",
            "expression '{{ input.x > }}': syntax error: unexpected 'end of template'",
        ),
        (
            f"{NODE}[1].params.url",
            "'ftp://x' is not an http(s) URL: it must start with http:// or https:// and a host",
        ),
        (
            f"{NODE}[2].params.bogus",
            "http node: unknown parameter 'bogus'"
            " (known: accept, body, headers, json, method, query, timeout, url)",
        ),
        (
            f"{NODE}[3].params.body",
            'body must be a string, got {"a": 1}: to send an object or a list as JSON,'
            " use json: instead of body:",
        ),
    }


def test_an_expression_that_reads_nothing_a_run_brings_and_fails_is_caught() -> None:
    """Literals, Jinja2's globals and the workflow's env are the same in every run: such an
    expression that fails (a division by zero, a range past the sandbox's limit) failed
    every run that reached its node, and check said the file was valid."""
    workflow = chain(
        node("a", "set", value={"n": ["{{ 1 / 0 }}"]}),
        node("b", "log", message="{{ range(10 ** 6) | list | length }}"),
        node("c", "log", message="{{ env.N | int / 0 }}"),
        # What a run brings, or a value drawn anew each time, is not evaluated here.
        node("d", "log", message="{{ input.n / 0 }}"),
        node("e", "log", message="{{ [] | random }}"),
        node("f", "log", message="{{ 6 // 3 }} {{ env.N }} {{ range(3) | list }}"),
        env={"N": "5"},
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.value.n[0]",
         "expression '{{ 1 / 0 }}': it fails in every run: ZeroDivisionError: division by"
         " zero"),
        (f"{NODE}[1].params.message",
         "expression '{{ range(10 ** 6) | list | length }}': it fails in every run:"
         " OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE"
         " (100000)."),
        (f"{NODE}[2].params.message",
         "expression '{{ env.N | int / 0 }}': it fails in every run: ZeroDivisionError:"
         " division by zero"),
    }
    # As a run renders them: the same failure.
    with pytest.raises(ExpressionError, match="division by zero"):
        render_string("{{ env.N | int / 0 }}", {"env": {"N": "5"}})


def test_what_may_draw_anew_is_known_from_the_syntax_not_the_words() -> None:
    # A filter named at run time may be random: 1 / 0 or 1 / 1, each run anew; check
    # refused it half the time. So a filter or test not named by a literal is taken as one
    # that may draw (as random and lipsum themselves); the words in text draw nothing.
    drawn = chain(
        node("a", "log", message="{{ 1 / ([[0, 1]] | map('ran' ~ 'dom') | first) }}"),
        node("b", "log", message="{{ 1 / ([0, 1] | select(*['even']) | first) }}"),
        node("c", "log", message="{{ 1 / ([0, 1] | reject(env.T) | first) }}"),
        node("d", "log", message="{{ 1 / ([{'a': 0}] | selectattr('a', env.T) | length) }}"),
        node("e", "log", message="{% filter random %}ab{% endfilter %}{{ 1 / 0 }}"),
        node("f", "log", message="{{ lipsum(1)[:0] }}{{ 1 / 0 }}"),
        env={"T": "odd"},
    )
    for _ in range(40):
        assert found(drawn) == set()
    worded = chain(
        node("a", "log", message="{{ 'random' }} {{ 1 / 0 }}"),
        node("b", "log", message="lipsum: {{ [0] | map('string') | join | int / 0 }}"),
    )
    assert found(worded) == {
        (f"{NODE}[0].params.message", "expression \"{{ 'random' }} {{ 1 / 0 }}\": it fails in"
         " every run: ZeroDivisionError: division by zero"),
        (f"{NODE}[1].params.message", "expression \"lipsum: {{ [0] | map('string') | join |"
         " int / 0 }}\": it fails in every run: ZeroDivisionError: division by zero"),
    }


def test_each_distinct_constant_expression_is_evaluated_once_per_check() -> None:
    # Each was evaluated twice (as the parameter's value, then for its failure), and again
    # in every node that repeated it.
    slow = "{% for a in range(1000) %}{% for b in range(200) %}{% endfor %}{% endfor %}"
    workflow = chain(
        *(node(f"n{i}", "log", message=slow, level="{{ 'INFO' }}") for i in range(10)),
        node("v", "workflow", workflow="c", version="{{ env.V }}"),
        node("w", "workflow", workflow="c", version="{{ env.V }}"),
        env={"V": "2"},
    )
    # The same expression with another env is another value.
    other = {**chain(node("v", "workflow", workflow="c", version="{{ env.V }}"),
                     env={"V": "0"}), "key": "other"}
    with constant_budget() as budget:
        problems = check_documents([("f.yaml", {"workflows": [workflow, other]})])
    assert [(p.path, p.message) for p in problems] == [
        ("$.workflows[1].graph.nodes[0].params.version",
         "expected an integer from 1 to 2147483647, got 0 ('{{ env.V }}' with the workflow's"
         " env)"),
    ]
    assert budget.evaluations == 4
    assert budget.known[("{{ 'INFO' }}", "")] == ("INFO", None)


def test_one_check_evaluates_constant_expressions_within_one_budget() -> None:
    # 40 nested loops over range(1000) (3.5 KB of YAML) took 5 s to check, on the event
    # loop of an admin API apply. Past the budget the rest is left to the runs: none is
    # refused for it (each of these takes about 249,000 steps, which a run allows).
    over = "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"
    loops = "{% for a in range(1000) %}{% for b in range(240) %}{% endfor %}{% endfor %}"
    workflow = chain(
        # Evaluated first, with a run's whole limit: past it, as in every run.
        node("a", "log", message=over),
        *(node(f"n{i}", "log", message=f"{loops}{i}") for i in range(40)),
        node("z", "log", message="{{ 1 / 0 }}"),  # reached with the budget spent
    )
    with constant_budget() as budget:
        assert found(workflow) == {
            (f"{NODE}[0].params.message",
             f"expression {over!r}: it fails in every run: not allowed in the sandbox: the"
             " expression took more than 250,000 steps (a loop iteration is one, a call 4)"),
        }
    # The over-limit one, two whole ones and the one that ran out of what was left.
    assert budget.evaluations == 4
    assert budget.steps <= 0
    assert CHECK_STEPS == 4 * MAX_STEPS


def test_compiling_each_constant_is_charged_by_its_length() -> None:
    # Distinct 4 KB constants take some 100 ms each to compile, and few steps to run:
    # charged a step a character, 150 of them took 10 s within the budget.
    constants = ["{{ [" + "1," * 2000 + f"{i}] | last | string }}}}" for i in range(40)]
    workflow = chain(*(node(f"n{i}", "log", message=source)
                       for i, source in enumerate(constants)))
    with constant_budget() as budget:
        assert found(workflow) == set()
    assert len(constants[0]) == 4025
    # 2000 + 25 * 4025 steps each: the tenth runs out of what was left.
    assert budget.evaluations == 10
    assert budget.steps <= 0
    assert CHECK_STEPS == 4 * MAX_STEPS


def test_one_check_builds_text_within_one_budget_and_keeps_no_large_value() -> None:
    # Ten copies of a join by a megabyte (each a little different) reached 500 MB; a value
    # past MAX_CONSTANT_SIZE is checked as its template, and not kept.
    joins = [f"{{{{ range(49) | map('string') | join('x' * 1000000) }}}}{' ' * i}"
             for i in range(10)]
    workflow = chain(
        *(node(f"n{i}", "log", message=source) for i, source in enumerate(joins)),
        node("s", "respond", status="{{ 'x' * (MAX // 2) }}".replace(
            "MAX", str(MAX_CONSTANT_SIZE))),
        node("t", "respond", status="{{ 'x' * (MAX + 1) }}".replace(
            "MAX", str(MAX_CONSTANT_SIZE))),
    )
    with constant_budget() as budget:
        assert found(workflow) == set()
    # The first join, the one that ran out of what was left; the respond nodes not at all.
    assert budget.evaluations == 2
    assert budget.built <= 0
    assert set(budget.known.values()) == {None}
    # With the budget whole, the smaller value stands for the parameter, the larger not.
    workflow = chain(*workflow["graph"]["nodes"][-2:])
    assert found(workflow) == {
        (f"{NODE}[0].params.status",
         "expected an HTTP status (200-599), got '" + "x" * 56 + "... (\"{{ 'x' * (10000 //"
         " 2) }}\" in every run)"),
    }


def test_the_same_problems_refuse_a_load() -> None:
    # check, apply, the admin API and the daemon's start all load through the same checks.
    workflow = chain(node("a", "http", url="ftp://x"))
    with pytest.raises(DefinitionError) as caught:
        load_documents([("f.yaml", {"workflows": [workflow]})])
    assert [(p.path, p.message) for p in caught.value.problems] == [
        (
            f"{NODE}[0].params.url",
            "'ftp://x' is not an http(s) URL: it must start with http:// or https:// and a host",
        )
    ]


def test_a_url_template_whose_text_rules_out_http() -> None:
    # The expression decides the host, but the text before it had already decided the
    # scheme: every run failed with INVALID_PARAMS where check said the file was valid.
    workflow = chain(
        node("a", "http", url="ftp://{{ input.host }}/x"),
        node("b", "http", url="  api.example/{{ input.day }}"),
        node("c", "http", url="HTTPS://{{ input.host }}"),
        node("d", "http", url="ht{{ 'tps' }}://h.test"),
        node("e", "http", url="{{ input.url }}"),
        node("f", "http", url=" https://h.test/{% if input.x %}x{% endif %}"),
        node("g", "http", url="{# where #}ftp://{{ input.host }}"),
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.url",
         "'ftp://{{ input.host }}/x' is never an http(s) URL: every run renders it starting"
         " with 'ftp://', not http:// or https://"),
        (f"{NODE}[1].params.url",
         "'api.example/{{ input.day }}' is never an http(s) URL: every run renders it"
         " starting with 'api.example/', not http:// or https://"),
    }


# --- params against the schemas ----------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "path", "message"),
    [
        ({}, "params", "http node: parameter 'url' is required"),
        (
            {"url": "https://x/", "urll": "https://x/"},
            "params.urll",
            "http node: unknown parameter 'urll' (did you mean 'url'?)",
        ),
        (
            {"url": "https://x/", "json": {}, "body": ""},
            "params",
            "give at most one of 'json' and 'body'",
        ),
        (
            {"url": "https://x/", "method": "GE T"},
            "params.method",
            "'GE T' is not an HTTP method (letters only, e.g. GET or POST)",
        ),
        (
            {"url": "https://x/", "timeout": 30},
            "params.timeout",
            "30 is not a duration: use a number and a unit (ms, s, m, h, d), e.g. '500ms',"
            " '30s', '6h'",
        ),
        (
            {"url": "https://x/", "headers": ["a"]},
            "params.headers",
            'expected a mapping or null, got ["a"]',
        ),
        (
            {"url": "https://x/", "accept": [200, "201"]},
            "params.accept",
            "expected a non-empty list of HTTP statuses (100-599), got [200, \"201\"]",
        ),
        (
            # What YAML reads from "200.0": a number that the node refuses as a status.
            {"url": "https://x/", "accept": [200.0]},
            "params.accept",
            "expected a non-empty list of HTTP statuses (100-599), got [200.0]",
        ),
        # Each of these failed every run (the first crashed the node), check called it valid.
        (
            {"url": "https://x/", "headers": {"X-A": "a\nb", "X-T": "{{ input.t }}"}},
            "params.headers.X-A",
            "the value of 'X-A' has a line break or another control character",
        ),
        (
            {"url": "https://x/", "headers": {"Bad Name": "{{ input.t }}"}},
            'params.headers["Bad Name"]',
            "'Bad Name' is not a header name (letters, digits and !#$%&'*+.^_`|~-)",
        ),
        (
            {"url": "https://example.com:99999/"},
            "params.url",
            "'https://example.com:99999/' is not a URL (Port out of range 0-65535)",
        ),
        # A host that no connection can ever reach failed every run (HTTP_CONNECT, or the
        # node crashed); a name that does not resolve now may later, and is not refused.
        (
            {"url": "http://exa mple.com/"},
            "params.url",
            "'http://exa mple.com/' can never be connected to: its host 'exa mple.com' has"
            " ' ', which no host name has",
        ),
        (
            {"url": "http://a..b/"},
            "params.url",
            "'http://a..b/' can never be connected to: its host 'a..b' has an empty label or"
            " one longer than 63 characters",
        ),
        (
            {"url": "https://example.com:0/"},
            "params.url",
            "'https://example.com:0/' can never be connected to: port 0 is no port a server"
            " listens on",
        ),
        (
            {"url": "http://[1::2::3]/"},
            "params.url",
            "'http://[1::2::3]/' can never be connected to: [1::2::3] is not an IPv6 address",
        ),
        (
            {"url": "http://127.1/"},
            "params.url",
            "'http://127.1/' can never be connected to: '127.1' is not an IPv4 address (four"
            " numbers 0-255, e.g. 10.0.0.1)",
        ),
        (
            # Written as a constant expression: the same.
            {"url": "{{ 'http://ex%20ample.com/' }}"},
            "params.url",
            "'http://ex%20ample.com/' can never be connected to: its host 'ex%20ample.com' has"
            " '%', which no host name has (\"{{ 'http://ex%20ample.com/' }}\" in every run)",
        ),
        (
            {"url": "http://[::1"},
            "params.url",
            "'http://[::1' is not a URL (Invalid IPv6 URL)",
        ),
    ],
)
def test_http_params(params: Doc, path: str, message: str) -> None:
    assert found(chain(node("a", "http", **params))) == {(f"{NODE}[0].{path}", message)}


@pytest.mark.parametrize("url", [
    "http://exa_mple.com/", "http://-a.test/", "http://a.test./", "http://\u00fc.test/",
    "http://[::1]:8080/", "http://[fe80::1%25eth0]/", "http://0.0.0.0:65535/",
    "http://localhost/", "http://{{ input.host }}/",
])
def test_http_hosts_that_may_connect_are_not_refused(url: str) -> None:
    # A name that does not resolve here may resolve where the daemon runs, or later.
    assert found(chain(node("a", "http", url=url))) == set()


@pytest.mark.parametrize(
    ("node_type", "params", "path", "message"),
    [
        ("set", {}, "params", "set node: parameter 'value' is required"),
        ("if", {"conditon": True}, "params.conditon", "if node: unknown parameter 'conditon' (did you mean 'condition'?)"),  # noqa: E501
        ("if", {"conditon": True}, "params", "if node: parameter 'condition' is required"),
        ("wait", {}, "params", "give exactly one of 'duration' and 'until'"),
        ("wait", {"duration": "1s", "until": "2027-01-01T00:00:00Z"}, "params", "give exactly one of 'duration' and 'until'"),  # noqa: E501
        (
            "wait",
            {"until": "2027-01-01T00:00:00"},
            "params.until",
            "'2027-01-01T00:00:00' is not an ISO-8601 instant with a UTC offset, e.g."
            " '2027-03-01T09:00:00+01:00' or '2027-03-01T08:00:00Z'",
        ),
        ("log", {"message": "x", "level": "loud"}, "params.level", "'loud' is not a log level: use debug, info, warning or error"),  # noqa: E501
        ("fail", {"code": ""}, "params.code", "expected a non-empty string, got ''"),
        ("http", {"url": "http://x/", "accept": []}, "params.accept", "expected a non-empty list of HTTP statuses (100-599), got []"),  # noqa: E501

        # Each failed every run; check called it valid.
        ("memory", {"op": "increment", "key": "k", "value": "abc"}, "params.value", "must be a number for op 'increment', got 'abc'"),  # noqa: E501
        ("memory", {"op": "increment", "key": "k", "value": "1e3"}, "params.value", "must be a number for op 'increment', got '1e3'"),  # noqa: E501
        ("memory", {"op": "increment", "key": "k", "value": True}, "params.value", "must be a number for op 'increment'"),  # noqa: E501
        ("memory", {"op": "increment", "key": "k", "value": "1.e999"}, "params.value", "must be a number for op 'increment', got '1.e999'"),  # noqa: E501
        ("memory", {"op": "increment", "key": "k", "value": float("inf")}, "params.value", "must be a finite number for op 'increment', got inf"),  # noqa: E501
        ("memory", {"op": "set", "key": "k"}, "params.value", "is required for op 'set'"),
        ("http", {"url": "http://x/", "timeout": "0s"}, "params.timeout", "must be more than 0 (0 would be no limit at all)"),  # noqa: E501
        # Past int4: check called it valid, then apply failed with an internal error.
        ("workflow", {"workflow": "child", "version": 99999999999}, "params.version", "expected an integer from 1 to 2147483647, got 99999999999"),  # noqa: E501
        ("memory", {"op": "cas", "key": "k", "expected": 1}, "params.value", "is required for op 'cas'"),  # noqa: E501
        ("memory", {"op": "set", "key": "k", "value": None}, "params.value", "is null: memory holds no null values (op 'delete' removes a key)"),  # noqa: E501
        # The pattern sees an instant's shape; these failed every run (the last one, past
        # year 9999 in UTC, crashed the run and left its node row RUNNING).
        ("wait", {"until": "2020-13-45T99:00:00Z"}, "params.until", "'2020-13-45T99:00:00Z' is not an ISO-8601 instant"),  # noqa: E501
        ("wait", {"until": "9999-12-31T23:59:59-05:00"}, "params.until", "'9999-12-31T23:59:59-05:00' is out of range (years 1-9999 in UTC)"),  # noqa: E501
        ("set", {"value": "{% include 'x' %}"}, "params.value", "expression \"{% include 'x' %}\": an expression cannot include, extend or import another template"),  # noqa: E501
        ("respond", {"status": 999}, "params.status", "expected an HTTP status (200-599), got 999"),
        # The answer left such a header out without a word; the run now fails as an http
        # node's does.
        ("respond", {"headers": {"X-Bad": "a\nb"}}, "params.headers.X-Bad", "the value of 'X-Bad' has a line break or another control character"),  # noqa: E501
        ("respond", {"headers": {"Bad Name": "x"}}, 'params.headers["Bad Name"]', "'Bad Name' is not a header name (letters, digits and !#$%&'*+.^_`|~-)"),  # noqa: E501
        ("respond", {"status": 200.0}, "params.status", "expected an HTTP status (200-599), got 200.0"),  # noqa: E501
    ],
)
def test_params_of_the_other_types(
    node_type: str, params: Doc, path: str, message: str
) -> None:
    assert (f"{NODE}[0].{path}", message) in found(chain(node("a", node_type, **params)))


def test_literal_checks_leave_templates_and_good_values_alone() -> None:
    # An increment rendered at run time, a number, a number as text; a macro the template
    # defines is no unknown name.
    for params in ({"value": "{{ input.n }}"}, {"value": 2.5}, {"value": "3"}, {}):
        assert found(chain(node("a", "memory", op="increment", key="k", **params))) == set()
    assert found(chain(node("a", "set", value="{% macro m() %}x{% endmacro %}{{ m() }}"))) \
        == set()
    # What Jinja gives a macro's body was refused as unknown names, in templates that render.
    for value in ("{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}hi{% endcall %}",
                  "{% macro m() %}{{ varargs | length }}{% endmacro %}{{ m(1, 2) }}",
                  "{% macro m() %}{{ kwargs | length }}{% endmacro %}{{ m(a=1) }}"):
        assert found(chain(node("a", "set", value=value))) == set(), value
        assert render_string(value, {}) in ("hi", "2", "1")


def test_names_set_in_a_scope_that_ended_are_unknown_where_they_are_read() -> None:
    # Jinja2 forgets what a loop's body, a macro or a {% with %} set once it ends: each of
    # these failed every run ('y' is undefined) while check called it valid.
    for value, name in (
        ("{% for x in input.items %}{% set y = x %}{% endfor %}{{ y }}", "y"),
        ("{% for x in input.items %}{% endfor %}{{ x }}", "x"),
        ("{% macro m() %}{% set z = 1 %}{% endmacro %}{{ m() }}{{ z }}", "z"),
        ("{% with q = 1 %}{% endwith %}{{ q }}", "q"),
        ("{% for x in input.items %}{% endfor %}{{ loop.index }}", "loop"),
        ("{% autoescape true %}{% set q = 1 %}{% endautoescape %}{{ q }}", "q"),
        # Set in an inner loop, read in the outer one after the inner ended.
        ("{% for a in input.items %}{% for b in input.items %}{% set y = b %}{% endfor %}"
         "{{ y }}{% endfor %}", "y"),
    ):
        problems = {m for _, m in found(chain(node("a", "set", value=value)))}
        assert len(problems) == 1 and f"unknown name {name!r}" in problems.pop(), value
        with pytest.raises(ExpressionError, match="undefined"):
            render_string(value, {"input": {"items": [1, 2]}})
    # What renders stays valid: a set in an {% if %} (no scope), in both branches, before a
    # loop that changes it, or read inside its own scope.
    for value in (
        "{% if input.items %}{% set y = 1 %}{% endif %}{% if input.items %}{{ y }}{% endif %}",
        "{% if input.items %}{% set y = 1 %}{% else %}{% set y = 2 %}{% endif %}{{ y }}",
        "{% set y = 0 %}{% for x in input.items %}{% set y = x %}{% endfor %}{{ y }}",
        "{% for x in input.items %}{% set y = x %}{{ y }}{{ loop.index }}{% endfor %}",
        "{% with q = 1 %}{{ q }}{% endwith %}",
        # Set in an {% if %} inside the scope that reads it (Jinja2's own analysis calls
        # such names unset: a first version refused these working templates).
        "{% for x in input.items %}{% if x > 1 %}{% set label = 'big' %}{% else %}"
        "{% set label = 'small' %}{% endif %}{{ label }},{% endfor %}",
        "{% for x in input.items %}{% if x > 1 %}{% set y = 'big' %}{{ y }}{% endif %}"
        "{% endfor %}",
        "{% macro m(x) %}{% if x %}{% set y = 1 %}{% else %}{% set y = 2 %}{% endif %}"
        "{{ y }}{% endmacro %}{{ m(1) }}",
        "{% with a = 1 %}{% if a %}{% set y = 1 %}{% else %}{% set y = 2 %}{% endif %}"
        "{{ y }}{% endwith %}",
        "{% for x in input.items %}{% if loop.first %}{% set y = 0 %}{% endif %}"
        "{{ y | default(9) }}{% endfor %}",
        "{% set ns = namespace(n=0) %}{% for x in input.items %}{% set ns.n = x %}"
        "{% endfor %}{{ ns.n }}",
        "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}{% for x in input.items %}"
        "{{ x }}{% endfor %}{% endcall %}",
    ):
        assert found(chain(node("a", "set", value=value))) == set(), value
        render_string(value, {"input": {"items": [1, 2]}})


def test_python_attributes_the_sandbox_refuses_are_refused_by_check() -> None:
    # Every run failed "not allowed in the sandbox"; check called the template valid.
    for value in ("{{ ''.__class__ }}", "{{ input.__init__ }}"):
        assert found(chain(node("a", "set", value=value))) == {(
            f"{NODE}[0].params.value",
            f"expression {value!r}: not allowed in the sandbox: attribute"
            f" {value.split('.')[-1][:-3]!r}")}, value
    assert found(chain(node("a", "set", value="{{ input._private }}"))) == set()


def test_execution_keys_a_run_never_has_are_refused() -> None:
    # execution.resume_url exists only with an approval node: each run failed without one.
    value = "{{ execution.resume_url }} {{ execution.idd }} {{ execution.id }}"
    said = f"{NODE}[0].params.value"
    assert {m.split(": ", 1)[1] for p, m in found(chain(node("a", "set", value=value)))
            if p == said} == {
        "execution.resume_url exists only in runs of workflows with an approval node",
        "execution has no 'idd' (did you mean 'id'?)"}
    with_approval = chain(node("a", "set", value="{{ execution.resume_url }}"),
                          node("ask", "approval", message="ok?"))
    assert found(with_approval) == set()


def test_trigger_keys_no_run_has_are_refused() -> None:
    # Every run failed with EXPRESSION_ERROR ('dict object' has no attribute
    # 'schedule_for'); keys some runs have stay allowed (| default for the others).
    value = ("{{ trigger.schedule_for }} {{ trigger.when }} {{ trigger.scheduled_for }}"
             " {{ trigger.request.headers }} {{ trigger['failed_execution'] }}")
    said = f"{NODE}[0].params.value"
    assert {m.split(": ", 1)[1] for p, m in found(chain(node("a", "set", value=value)))
            if p == said} == {
        "trigger has no 'schedule_for' (did you mean 'scheduled_for'?)",
        "trigger has no 'when' (known: type, name, scheduled_for, fired_at, backfill,"
        " request, replay_of, replayed_by, actor, fired_by, reason, node,"
        " parent_execution_id, depth, failed_execution)"}
    plain = "{{ trigger.type }}/{{ trigger.name }} {{ trigger.fired_by }}"
    assert found(chain(node("a", "set", value=plain))) == set()


def test_parameters_made_of_env_values_are_checked_with_them() -> None:
    # env values are literal: url "{{ env.U }}" with U: ftp://x passed check and failed
    # every run.
    env = {"U": "ftp://x", "M": "GE T", "OK": "https://ok.test", "H": "ok.test", "T": "0s"}
    workflow = chain(
        node("a", "http", url="{{ env.U }}", method="{{ env.M }}"),
        node("b", "http", url="{{ env.OK }}/x", method="{{ env.M | replace(' ', '') }}"),
        node("c", "http", url="https://{{ env.H }}/x", timeout="{{ env.T }}"),
        # What a run reads besides env is known at run time only; a secret is not literal.
        node("d", "http", url="{{ env.U if input.x else env.OK }}"),
        node("e", "http", url="{{ secrets.U }}"),
        env=env, secrets={"U": {"env": "U"}},
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.url", "'ftp://x' is not an http(s) URL: it must start with"
         " http:// or https:// and a host ('{{ env.U }}' with the workflow's env)"),
        (f"{NODE}[0].params.method", "'GE T' is not an HTTP method (letters only, e.g. GET or"
         " POST) ('{{ env.M }}' with the workflow's env)"),
        (f"{NODE}[2].params.timeout", "must be more than 0 (0 would be no limit at all)"
         " ('{{ env.T }}' with the workflow's env)"),
    }


def test_typed_parameters_made_of_constant_expressions_are_checked_as_rendered() -> None:
    # An expression that reads nothing a run brings renders the same in every run: a
    # workflow node's input of {{ 5 }} passed check and failed every run (INVALID_PARAMS:
    # parameter 'input' must be an object, got a number).
    workflow = chain(
        node("a", "workflow", workflow="c", input="{{ 5 }}", wait="{{ 'yes' }}"),
        node("b", "http", url="https://x.test/", accept=[200, "{{ 'x' }}"]),
        node("c", "http", url="https://x.test/", headers={"X": "{{ 'a\\nb' }}"}),
        node("d", "respond", status="{{ 700 }}"),
        node("e", "memory", op="set", key="k", value="{{ none }}"),
        node("f", "workflow", workflow="c", version="{{ env.V ~ 'x' }}"),
        # What every run renders and the node takes (digits as text for an integer, null
        # for the input), and what a run brings, are not refused.
        node("g", "workflow", workflow="c", version="{{ env.V }}", input="{{ none }}"),
        node("h", "workflow", workflow="c", version="{{ '2' }}", wait="{{ 1 > 0 }}",
             input="{{ {'a': range(2) | list, 'env': env} }}"),
        node("i", "http", url="https://x.test/", accept="{{ [200] }}", timeout="{{ '10s' }}"),
        node("j", "log", message="x", level="{{ 'INFO' }}"),
        node("k", "workflow", workflow="c", input="{{ input.x }}", wait="{{ [true] | random }}"),
        env={"V": "3"},
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.input",
         "expected a mapping or null, got 5 ('{{ 5 }}' in every run)"),
        (f"{NODE}[0].params.wait",
         "expected true or false, got 'yes' (\"{{ 'yes' }}\" in every run)"),
        (f"{NODE}[1].params.accept",
         "expected a non-empty list of HTTP statuses (100-599), got [200, \"x\"]"
         " (\"{{ 'x' }}\" in every run)"),
        (f"{NODE}[2].params.headers.X",
         "the value of 'X' has a line break or another control character"
         " (\"{{ 'a\\\\nb' }}\" in every run)"),
        (f"{NODE}[3].params.status",
         "expected an HTTP status (200-599), got 700 ('{{ 700 }}' in every run)"),
        (f"{NODE}[4].params.value",
         "is null: memory holds no null values (op 'delete' removes a key)"
         " ('{{ none }}' in every run)"),
        (f"{NODE}[5].params.version",
         "expected an integer from 1 to 2147483647, got '3x'"
         " (\"{{ env.V ~ 'x' }}\" with the workflow's env)"),
    }
    # As a run renders it: the value the node refused.
    assert render_string("{{ 5 }}", {}) == 5


def test_number_like_text_that_is_no_integer_is_checked_as_text() -> None:
    # "--5" and "²" passed isdigit() after lstrip("-"), then int() raised: check exited 70
    # (internal error), a reload could not be applied and the admin API answered 500.
    workflow = chain(
        node("a", "respond", status="{{ '--5' }}"),
        node("b", "respond", status="{{ '²' }} "),
        node("c", "respond", status="{{ '9' * 5000 }}"),  # past int()'s digits
        node("d", "workflow", workflow="c", version="{{ ' -4 ' }}"),
        node("e", "respond", status="{{ ' 201 ' }}"),  # digits as text: the node's integer
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.status",
         "expected an HTTP status (200-599), got '--5' (\"{{ '--5' }}\" in every run)"),
        (f"{NODE}[1].params.status",
         "expected an HTTP status (200-599), got '²' (\"{{ '²' }} \" in every run)"),
        (f"{NODE}[2].params.status",
         "expected an HTTP status (200-599), got '" + "9" * 56 + "..."
         " (\"{{ '9' * 5000 }}\" in every run)"),
        (f"{NODE}[3].params.version",
         "expected an integer from 1 to 2147483647, got -4 (\"{{ ' -4 ' }}\" in every run)"),
    }


def test_a_node_without_params_is_checked_as_an_empty_mapping() -> None:
    workflow = chain({"id": "a", "type": "log"})
    assert found(workflow) == {
        (f"{NODE}[0].params", "log node: parameter 'message' is required")
    }


def test_templates_stand_in_for_typed_values() -> None:
    workflow = chain(
        node(
            "a",
            "http",
            url="{{ env.BASE }}/x",
            method="{{ input.method }}",
            headers="{{ input.headers }}",
            accept=[200, "{{ input.also }}"],
            timeout="{{ input.seconds }}s",
        ),
        node("b", "respond", status="{{ nodes.a.output.status }}"),
        env={"BASE": "https://example.test"},
    )
    assert found(workflow) == set()


def test_the_switch_cases_are_reported_once() -> None:
    # The graph checks already explain a switch's cases; the schema does not repeat them.
    workflow = chain(node("s", "switch", value=1, cases=["default"]))
    assert found(workflow) == {
        (f"{NODE}[0].params.cases[0]", "'default' cannot be a case: it names the fallback branch")
    }


def test_a_third_party_type_without_a_schema_gets_its_templates_checked_only() -> None:
    workflow = chain(node("a", "sftp", anything={"deep": "{{ 1 + }}"}, more=[1, 2]))
    assert found(workflow, node_types=[*BUILTIN_NODE_TYPES, "sftp"]) == {
        (
            f"{NODE}[0].params.anything.deep",
            "expression '{{ 1 + }}': syntax error: unexpected 'end of template'",
        )
    }


# --- templates ---------------------------------------------------------------------------


def test_syntax_errors_anywhere_in_the_params_with_their_path() -> None:
    workflow = chain(
        node(
            "a",
            "http",
            url="https://x/",
            headers={"Authorization": "Bearer {{ secrets.T }"},
            json={"items": [1, "{% if input.x %}yes"]},
        ),
        secrets={"T": {"env": "T"}},
    )
    assert found(workflow) == {
        (
            f"{NODE}[0].params.headers.Authorization",
            "expression 'Bearer {{ secrets.T }': syntax error: unexpected '}'",
        ),
        (
            f"{NODE}[0].params.json.items[1]",
            "expression '{% if input.x %}yes': syntax error: Unexpected end of template. Jinja"
            " was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost"
            " block that needs to be closed is 'if'.",
        ),
    }


def test_references_to_nodes_that_do_not_run_before() -> None:
    workflow = {
        "key": "wf",
        "graph": {
            "nodes": [
                node("fetch", "set", value="{{ nodes.report.output }}"),
                node("check", "if", condition="{{ nodes.fetch.output.n > 1 }}"),
                node("yes", "log", message="{{ nodes['no'].output }} {{ nodes.check.output }}"),
                node("no", "log", message="{{ nodes.fecth.output }}"),
                node("report", "set", value="{{ nodes.yes.output }} {{ nodes.report.output }}"),
            ],
            "edges": [
                {"from": "fetch", "to": "check"},
                {"from": "check", "to": "yes", "when": "true"},
                {"from": "check", "to": "no", "when": "false"},
                {"from": "yes", "to": "report"},
                {"from": "no", "to": "report"},
            ],
        },
    }
    assert found(workflow) == {
        (
            f"{NODE}[0].params.value",
            "expression '{{ nodes.report.output }}': node 'report' does not run before node"
            " 'fetch'",
        ),
        (
            f"{NODE}[2].params.message",
            "expression \"{{ nodes['no'].output }} {{ nodes.check.output }}\": node 'no' does"
            " not run before node 'yes'",
        ),
        (
            f"{NODE}[3].params.message",
            "expression '{{ nodes.fecth.output }}': there is no node 'fecth' (did you mean"
            " 'fetch'?)",
        ),
        (
            f"{NODE}[4].params.value",
            "expression '{{ nodes.yes.output }} {{ nodes.report.output }}': node 'report'"
            " does not run before node 'report'",
        ),
        (
            f"{NODE}[4].params.value",
            "expression '{{ nodes.yes.output }} {{ nodes.report.output }}': node 'yes' may"
            " not have run when node 'report' runs (not every path to 'report' goes through"
            " it): read it behind a test such as 'nodes.yes is defined'",
        ),
    }


def diamond(*joined: Doc) -> Doc:
    """fetch -> check -> yes | no -> each of ``joined`` (each after both branches) -> tail."""
    tail = node("tail", "log", message="{{ nodes.fetch.output }}")
    return {
        "key": "wf",
        "graph": {
            "nodes": [
                node("fetch", "set", value=1),
                node("check", "if", condition="{{ nodes.fetch.output > 1 }}"),
                node("yes", "set", value=2),
                node("no", "set", value=3),
                *joined,
                tail,
            ],
            "edges": [
                {"from": "fetch", "to": "check"},
                {"from": "check", "to": "yes", "when": "true"},
                {"from": "check", "to": "no", "when": "false"},
                *({"from": branch, "to": j["id"]} for j in joined for branch in ("yes", "no")),
                *({"from": j["id"], "to": "tail"} for j in joined),
            ],
        },
    }


def test_a_node_after_a_branch_reads_only_what_ran_on_every_path() -> None:
    # A node runs when any incoming edge is taken, and a skipped node has no entry under
    # nodes: every run down the other branch failed ('dict object' has no attribute
    # 'yes') where check had said the file was valid.
    workflow = diamond(
        node("join", "log", message="{{ nodes.yes.output }}"),
        node("ok", "log", message="{{ nodes.check.output }} {{ nodes.fetch.output }}"),
        node("guarded", "log",
             message="{{ nodes.yes.output if nodes.yes is defined else nodes.no.output }}"),
        node("member", "log", message="{% if 'no' in nodes %}{{ nodes.no.output }}{% endif %}"),
        node("entry", "log", message="{{ (nodes.no | default({'output': 0})).output }}"),
        # The missing entry fails before the filter runs.
        node("late", "log", message="{{ nodes.no.output | default(0) }}"),
    )
    assert found(workflow) == {
        (f"{NODE}[4].params.message",
         "expression '{{ nodes.yes.output }}': node 'yes' may not have run when node 'join'"
         " runs (not every path to 'join' goes through it): read it behind a test such as"
         " 'nodes.yes is defined'"),
        (f"{NODE}[9].params.message",
         "expression '{{ nodes.no.output | default(0) }}': node 'no' may not have run when"
         " node 'late' runs (not every path to 'late' goes through it): read it behind a test"
         " such as 'nodes.no is defined'"),
    }
    # After the join every path goes through it again, and through what came before.
    assert found(diamond(node("join", "log", message="x"))) == set()
    chained = diamond(node("join", "log", message="x"))
    chained["graph"]["nodes"][-1]["params"]["message"] = (
        "{{ nodes.join.output }} {{ nodes.check.output }} {{ nodes.no.output }}")
    assert found(chained) == {
        (f"{NODE}[5].params.message",
         "expression '{{ nodes.join.output }} {{ nodes.check.output }} {{ nodes.no.output }}':"
         " node 'no' may not have run when node 'tail' runs (not every path to 'tail' goes"
         " through it): read it behind a test such as 'nodes.no is defined'"),
    }


def test_both_sides_of_a_plain_fan_out_have_run_at_its_join() -> None:
    # A node runs once every incoming edge is resolved: after a fan-out without
    # conditions both sides succeeded (or the run ended) when the join runs.
    def fan_out(failure_edge: bool) -> Doc:
        edges = [{"from": "start", "to": "left"}, {"from": "start", "to": "right"},
                 {"from": "left", "to": "merge"}, {"from": "right", "to": "merge"}]
        nodes = [node("start", "set", value=1), node("left", "set", value=2),
                 node("right", "set", value=3),
                 node("merge", "log", message="{{ nodes.left.output }} {{ nodes.right.output }}")]
        if failure_edge:  # left may fail and the run go on through its handler
            nodes.append(node("handle", "log", message="left failed"))
            edges += [{"from": "left", "to": "handle", "on": "failure"},
                      {"from": "handle", "to": "merge"}]
        return {"key": "wf", "graph": {"nodes": nodes, "edges": edges}}

    assert found(fan_out(failure_edge=False)) == set()
    assert found(fan_out(failure_edge=True)) == {
        (f"{NODE}[3].params.message",
         "expression '{{ nodes.left.output }} {{ nodes.right.output }}': node 'left' may have"
         " failed when node 'merge' runs (its failure edge leads to 'merge' too), and a failed"
         " node has no entry under nodes: read it behind a test such as 'nodes.left is"
         " defined'"),
    }


def test_a_node_entry_has_only_its_output() -> None:
    # Every run failed: 'dict object' has no attribute 'outptu'.
    workflow = chain(
        node("a", "set", value=1),
        node("b", "log", message="{{ nodes.a.outptu }}"),
        node("c", "log", message="{% if nodes['a']['status'] %}x{% endif %}"),
        node("d", "log", message="{{ nodes.a.output.x }} {{ nodes.a.get('output') }}"),
    )
    assert found(workflow) == {
        (f"{NODE}[1].params.message",
         "expression '{{ nodes.a.outptu }}': nodes.a has no 'outptu' (it has 'output')"),
        (f"{NODE}[2].params.message",
         "expression \"{% if nodes['a']['status'] %}x{% endif %}\": nodes.a has no 'status'"
         " (it has 'output')"),
    }


def test_unknown_names_and_undeclared_env_and_secrets() -> None:
    workflow = chain(
        node("a", "log", message="{{ inptu.x }}"),
        node("b", "log", message="{{ foo }}"),
        node("c", "log", message="{{ env.REGOIN }} {{ secrets.PASSWORD }}"),
        env={"REGION": "eu"},
        secrets={"API_TOKEN": {"env": "X"}},
    )
    assert found(workflow) == {
        (f"{NODE}[0].params.message", "expression '{{ inptu.x }}': unknown name 'inptu' (did you mean 'input'?)"),  # noqa: E501
        (
            f"{NODE}[1].params.message",
            "expression '{{ foo }}': unknown name 'foo' (expressions see input, env, secrets,"
            " nodes, trigger, execution, memory)",
        ),
        (
            f"{NODE}[2].params.message",
            "expression '{{ env.REGOIN }} {{ secrets.PASSWORD }}': 'REGOIN' is not in the"
            " workflow's env (did you mean 'REGION'?)",
        ),
        (
            f"{NODE}[2].params.message",
            "expression '{{ env.REGOIN }} {{ secrets.PASSWORD }}': 'PASSWORD' is not in the"
            " workflow's secrets (known: API_TOKEN)",
        ),
    }


def test_what_expressions_may_use() -> None:
    workflow = chain(
        node("a", "set", value={"n": "{{ input.n }}", "t": "{{ trigger.name }}"}),
        node(
            "b",
            "log",
            message=(
                "{% for i in range(3) %}{{ loop.index }}{{ i }}{% endfor %}"
                "{% set y = nodes.a.output %}{{ y }} {{ nodes.a.output.items() | list }}"
                " {{ env.get('MISSING', 'x') }} {{ execution.id }} {{ dict(a=1) }}"
                " {{ input.get('x') }} {{ env.REGION }} {{ secrets['T'] }}"
            ),
        ),
        env={"REGION": "eu"},
        secrets={"T": {"env": "X"}},
    )
    assert found(workflow) == set()


@pytest.mark.parametrize(
    "source",
    [
        "{{ input.day }}",
        "Bearer {{ secrets.T }}",
        "{{input.x}}",
        "https://x/{{ input.a.b }}/{{ env.HOST }}?q={{ nodes.n.output.q }}",
        "{{ env.get }} {{ nodes.items }}",
        "{{ range }}",
        "{{ true }}",
        "{{ none }} {{ input }}",
        "{{ inptu.x }}",
        "{{{ input.x }}}",
        "{ {{ input.x }} }",
        "{{ input.x }}}",
        "{{ input.x }} {# a comment #}",
        "{{- input.x -}}",
        "{{ input.x }} {% if true %}y{% endif %}",
    ],
)
def test_the_shortcut_for_plain_references_agrees_with_the_parser(source: str) -> None:
    # Most templates are plain references, read without Jinja2's lexer; the shortcut must
    # either decline or say what parsing says.
    plain = _plain_facts(source)
    assert plain is None or plain == _parsed_facts(source)
    assert inspect_template(source) == _parsed_facts(source)


def test_malformed_graphs_are_left_to_the_schema() -> None:
    # Found by schemathesis: an edge end that is a mapping crashed the checks (a 500).
    workflow = {
        "key": "wf",
        "env": "x",
        "secrets": [],
        "graph": {
            "nodes": [
                {"id": "a", "type": "log", "params": {"message": "{{ env.X }} {{ secrets.Y }}"}},
                {"id": {}, "type": {}, "params": {"message": "{{ nodes.a }}"}},
                "node",
            ],
            "edges": [{"from": {}, "to": "a"}, {"from": "a", "to": []}, "edge"],
        },
    }
    messages = {message for _, message in found(workflow)}
    assert not any("expression" in message for message in messages), messages


PLUGIN = textwrap.dedent(
    """
    from triggerd.nodes.base import NodeResult

    class Sftp:
        name = "sftp"
        side_effects = True
        params_schema = {
            "type": "object",
            "properties": {"host": {"type": "string", "description": "Where to."}},
            "required": ["host"],
            "additionalProperties": False,
        }

        async def run(self, params, ctx):
            return NodeResult()

    class Shout:
        name = "shout"

        async def run(self, params, ctx):
            return NodeResult()
    """
)


def test_a_third_party_type_with_a_schema_is_checked_against_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_check_nodes.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry(
        [
            EntryPoint(name=name, value=f"acme_check_nodes:{cls}", group="triggerd.nodes")
            for name, cls in (("sftp", "Sftp"), ("shout", "Shout"))
        ]
    )
    workflow = chain(node("a", "sftp", port=22), node("b", "shout", anything=1))
    report = Report(file="f.yaml")
    check_nodes(workflow, ("workflows", 0), report, node_types=registry.names(), registry=registry)
    assert {(p.path, p.message) for p in report.problems()} == {
        (f"{NODE}[0].params.port", "sftp node: unknown parameter 'port' (known: host)"),
        (f"{NODE}[0].params", "sftp node: parameter 'host' is required"),
    }


def test_a_call_input_the_loaded_child_refuses_is_caught() -> None:
    # apply refused these; check called the file valid.
    child = {"key": "child", "parameter_schema": {
        "type": "object", "properties": {"n": {"type": "string"}}, "required": ["n"]},
        "graph": {"nodes": [node("a", "noop")], "edges": []}}
    parent = chain(
        node("call", "workflow", workflow="child", input={"n": 1}),
        node("templated", "workflow", workflow="child", input={"m": "{{ input.x }}"}),
        node("pinned", "workflow", workflow="child", version=3, input={"n": 1}),  # in the db
        node("good", "workflow", workflow="child", input={"n": "{{ input.x }}"}),
    )
    problems = check_documents([("f.yaml", {"workflows": [parent, child]})])
    assert {(p.path, p.message) for p in problems} == {
        (f"{NODE}[0].params.input",
         "node 'call': its input does not match 'child''s parameter_schema:"
         " $.n: 1 is not of type 'string'"),
        (f"{NODE}[1].params.input",
         "node 'templated': its input does not match 'child''s parameter_schema:"
         " $: 'n' is a required property"),
    }


def test_an_error_workflow_whose_schema_refuses_the_summary_is_caught() -> None:
    # Every error run of it ended INPUT_INVALID; check and apply called the files valid.
    alert = {"key": "alert", "parameter_schema": {
        "type": "object", "required": ["severity"], "additionalProperties": False,
        "properties": {"severity": {"type": "string"}, "execution_id": {"type": "string"}}},
        "graph": {"nodes": [node("a", "noop")], "edges": []}}
    failing = {**chain(node("x", "noop")), "on_failure": "alert"}
    problems = check_documents([("f.yaml", {"workflows": [failing, alert]})])
    summary = "on_failure: 'alert''s parameter_schema refuses the failure summary its runs get"
    messages = sorted(p.message for p in problems if p.path == "$.workflows[0].on_failure")
    assert messages[0] == f"{summary}: $: 'severity' is a required property"
    assert messages[1].startswith(f"{summary}: $: Additional properties are not allowed (")
    assert "'workflow'" in messages[1] and "'execution_id'" not in messages[1]
    # A type every summary has wrong (version is an integer): refused too.
    typed = {**alert, "parameter_schema": {
        "type": "object", "properties": {"version": {"type": "string"}}}}
    problems = check_documents([("f.yaml", {"workflows": [failing, typed]})])
    assert [p.message for p in problems if p.path == "$.workflows[0].on_failure"] == [
        f"{summary}: $.version: 1 is not of type 'string'"]
    # One that only some summaries fail (a run without a failed node) is let be.
    some = {**alert, "parameter_schema": {
        "type": "object", "properties": {"failed_node": {"type": "string"}}}}
    assert not [p for p in check_documents([("f.yaml", {"workflows": [failing, some]})])
                if p.path == "$.workflows[0].on_failure"]


def test_a_failure_branch_cannot_read_the_failed_nodes_output() -> None:
    # Every run that reached it failed: a failed node has no entry under nodes.
    workflow = {"key": "wf", "graph": {
        "nodes": [node("f", "fail", code="X"),
                  node("h", "set", value="{{ nodes.f.output }}"),
                  node("ok", "set", value="{{ nodes.f.output }}")],
        "edges": [{"from": "f", "to": "h", "on": "failure"}, {"from": "f", "to": "ok"}]}}
    assert found(workflow) == {(
        f"{NODE}[1].params.value",
        "expression '{{ nodes.f.output }}': node 'h' runs only when node 'f' failed, and a"
        " failed node has no entry under nodes")}


def test_a_node_after_a_failure_branch_cannot_read_the_failed_node_either() -> None:
    """a -(on: failure)-> b -> c: c runs only when a failed too; only b was refused."""
    nodes = [node("a", "fail", code="X"), node("b", "set", value=1),
             node("c", "set", value="{{ nodes.a.output }}"),
             node("d", "set", value="{{ nodes.a.output }}")]
    edges: list[Doc] = [{"from": "a", "to": "b", "on": "failure"}, {"from": "b", "to": "c"},
                        {"from": "a", "to": "d"},
                        # A node the success path reaches too runs after a failed too (the
                        # failure path's edge is taken, the other skipped).
                        {"from": "c", "to": "join"}, {"from": "d", "to": "join"}]
    workflow = {"key": "wf", "graph": {
        "nodes": [*nodes, node("join", "set", value="{{ nodes.a.output }}")], "edges": edges}}
    assert found(workflow) == {(
        f"{NODE}[2].params.value",
        "expression '{{ nodes.a.output }}': node 'c' runs only when node 'a' failed, and a"
        " failed node has no entry under nodes"), (
        f"{NODE}[4].params.value",
        "expression '{{ nodes.a.output }}': node 'a' may have failed when node 'join' runs"
        " (its failure edge leads to 'join' too), and a failed node has no entry under nodes:"
        " read it behind a test such as 'nodes.a is defined'")}
    guarded = {"key": "wf", "graph": {
        "nodes": [*nodes,
                  node("join", "set", value="{{ nodes.a.output if nodes.a is defined else 0 }}")],
        "edges": edges}}
    assert {path for path, _ in found(guarded)} == {f"{NODE}[2].params.value"}


def _graph(edges: list[tuple[str, str, dict[str, str]]], reader: str, reads: str) -> Doc:
    """A workflow of these edges, every node a `set` but ``reader``, which reads
    ``nodes.<reads>``; conditional edges leave `if` nodes (their `when` is given)."""
    names = list(dict.fromkeys(name for source, target, _ in edges for name in (source, target)))
    branching = {source for source, _, extra in edges if "when" in extra}
    nodes = [node(name, "log", message=f"{{{{ nodes.{reads}.output }}}}") if name == reader
             else node(name, "if", condition="{{ 1 > 0 }}") if name in branching
             else node(name, "set", value=1) for name in names]
    return {"key": "wf", "graph": {"nodes": nodes, "edges": [
        {"from": source, "to": target, **extra} for source, target, extra in edges]}}


Edges = list[tuple[str, str, dict[str, str]]]
FAN_OUT: Edges = [("a", "b", {}), ("a", "c", {}), ("b", "d", {}), ("c", "d", {})]


@pytest.mark.parametrize("above", [
    [("i", "a", {"when": "true"})],  # below one branch of an if
    [("i", "y", {"when": "true"}), ("i", "n", {"when": "false"}), ("y", "j", {}),
     ("n", "j", {}), ("j", "a", {})],  # after the join of an if's branches
    [("h", "a", {}), ("h", "f", {"on": "failure"})],  # below a node with a failure handler
])
def test_a_plain_fan_out_anywhere_has_run_both_sides_at_its_join(
    above: list[tuple[str, str, dict[str, str]]]
) -> None:
    # The first version judged only fan-outs of a first node, and refused these.
    assert found(_graph([*above, *FAN_OUT], "d", "b")) == set()


def test_a_fan_out_whose_root_may_fail_into_the_join_is_not_sure_of_its_sides() -> None:
    # h fails: f runs and joins at d, b and c are skipped.
    edges = [("h", "b", {}), ("h", "c", {}), ("b", "d", {}), ("c", "d", {}),
             ("h", "f", {"on": "failure"}), ("f", "d", {})]
    assert found(_graph(edges, "d", "b")) == {(
        f"{NODE}[3].params.message",
        "expression '{{ nodes.b.output }}': node 'b' may not have run when node 'd' runs (not"
        " every path to 'd' goes through it): read it behind a test such as 'nodes.b is"
        " defined'")}


def test_a_long_chain_of_reads_is_checked_without_walking_up_from_every_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 3,000-node chain where each node reads the one before it took 1.3 s: each node's
    ancestors were walked up anew (4.5 million steps). They are found once per graph now;
    the walk is counted here, not timed."""
    from triggerd.definitions import params

    walked: list[int] = []
    walk = params._reach

    def counted(start: Any, next_of: Any) -> set[str]:
        found = walk(start, next_of)
        walked.append(len(found))
        return found

    monkeypatch.setattr(params, "_reach", counted)
    size = 3000
    nodes = [node("n0", "noop")] + [
        node(f"n{i}", "set", value=f"{{{{ nodes.n{i - 1}.output }}}}") for i in range(1, size)]
    # The first node reads the last: the verdicts are as before.
    nodes[0] = node("n0", "set", value=f"{{{{ nodes.n{size - 1}.output }}}}")
    assert found(chain(*nodes)) == {
        (f"{NODE}[0].params.value",
         f"expression '{{{{ nodes.n{size - 1}.output }}}}': node 'n{size - 1}' does not run"
         " before node 'n0'")}
    assert sum(walked) <= size  # was size * (size - 1) / 2


def test_a_node_below_a_cycle_still_sees_its_ancestors() -> None:
    # Nodes on a cycle get no topological place; their reads are judged by a walk up.
    nodes = [node("a", "noop"), node("b", "set", value="{{ nodes.a.output }}"),
             node("c", "set", value="{{ nodes.b.output }}"),
             node("d", "set", value="{{ nodes.c.output }} {{ nodes.e.output }}"),
             node("e", "noop")]
    workflow = chain(*nodes)
    workflow["graph"]["edges"].append({"from": "c", "to": "b"})
    assert found(workflow) == {
        ("$.workflows[0].graph.edges[4]", "this edge closes a cycle: b -> c -> b"),
        (f"{NODE}[3].params.value",
         "expression '{{ nodes.c.output }} {{ nodes.e.output }}': node 'e' does not run"
         " before node 'd'")}


def test_a_graph_past_the_node_or_edge_limit_is_one_problem_and_is_not_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checks keep a bitset of ancestors per node: a 100,000-node chain would have
    held about a gigabyte. Past 10,000 nodes (or 50,000 edges) the graph is refused before
    any of it is walked."""
    from triggerd.definitions import params

    built: list[int] = []
    real = params._Ancestors.__init__

    def counted(self: Any, parents: Any) -> None:
        built.append(len(parents))
        real(self, parents)

    monkeypatch.setattr(params._Ancestors, "__init__", counted)
    nodes = [node(f"n{i}", "noop") for i in range(params.MAX_NODES)]
    nodes.append(node("last", "set", value="{{ nodes.n0.output }}"))
    assert found(chain(*nodes)) == {(
        "$.workflows[0].graph.nodes",
        "the graph has 10,001 nodes and 10,000 edges; a workflow may have at most 10,000 and"
        " 50,000 (split it into sub-workflows: the workflow node)")}
    assert built == []
    small = chain(node("a", "noop"), node("b", "set", value="{{ nodes.a.output }}"))
    small["graph"]["edges"] *= params.MAX_EDGES + 1  # the same edge, 50,001 times
    assert ("$.workflows[0].graph.edges",
            "the graph has 2 nodes and 50,001 edges; a workflow may have at most 10,000 and"
            " 50,000 (split it into sub-workflows: the workflow node)") in found(small)
