from __future__ import annotations

from typing import Any

import pytest

from triggerd.errors import TriggerdError
from triggerd.expressions import (
    CALL_STEPS,
    MAX_BUILT,
    MAX_STEPS,
    ExpressionError,
    build_context,
    evaluate_condition,
    render,
    render_string,
)
from triggerd.model import JSON

CONTEXT = build_context(
    input={
        "n": 41,
        "day": "2024-03-01",
        "items": [1, 2, 3],
        "keys": "k",
        "flag": False,
        "obj": {"a": 1},
    },
    env={"REGION": "eu-west-1"},
    secrets={"API_TOKEN": "s3cr3t"},
    node_outputs={"fetch": {"status": 200, "body": {"total": 150}}, "my-node": "x"},
    trigger={"name": "nightly", "type": "cron"},
    execution={"id": "e-1"},
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ input.n + 1 }}", 42),
        ("  {{ input.n }}\n", 41),
        ("{{ input.n / 2 }}", 20.5),
        ("{{ input.flag }}", False),
        ("{{ nodes.fetch.output.body.total > 100 }}", True),
        ("{{ input.items }}", [1, 2, 3]),
        ("{{ input.obj }}", {"a": 1}),
        ("{{ none }}", None),
        ("{{ {'a': {'b': input.n}} }}", {"a": {"b": 41}}),
        ("{{ '}}' }}", "}}"),
        ("{{- input.n -}}", 41),
        ("{{ input.items | map('string') }}", ["1", "2", "3"]),  # a generator becomes a list
        ("{{ (1, 2) }}", [1, 2]),
        ("{{ nodes['my-node'].output }}", "x"),
        ("{{ input.keys }}", "k"),  # keys of JSON objects win over dict methods
        ("{{ input.obj.keys() | list }}", ["a"]),
        ("{{ secrets.API_TOKEN }}", "s3cr3t"),
        ("{{ env.REGION }}", "eu-west-1"),
        ("{{ trigger.name }}/{{ execution.id }}", "nightly/e-1"),
        ("{{ '{\"a\": [1]}' | fromjson }}", {"a": [1]}),
    ],
)
def test_single_expression_keeps_its_native_value(source: str, expected: JSON) -> None:
    result = render_string(source, CONTEXT)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("https://api.example/{{ input.day }}", "https://api.example/2024-03-01"),
        ("Bearer {{ secrets.API_TOKEN }}", "Bearer s3cr3t"),
        ("n={{ input.n }}", "n=41"),
        ("items: {{ input.items }}", "items: [1, 2, 3]"),
        ("obj: {{ input.obj }}", 'obj: {"a": 1}'),
        ("flag={{ input.flag }} none={{ none }}", "flag=false none=null"),
        ("{{ input.n }} {{ input.n }}", "41 41"),
        ("{{ input.n }}!", "41!"),
        ("{% if input.n > 40 %}big{% else %}small{% endif %}", "big"),
        ("{{ input.obj | tojson }}<b>", '{"a": 1}<b>'),
        ("no expression {here}", "no expression {here}"),
        ("a {# is text when there is no expression", "a {# is text when there is no expression"),
    ],
)
def test_mixed_strings_render_to_text(source: str, expected: str) -> None:
    assert render_string(source, CONTEXT) == expected


def test_render_walks_dicts_and_lists_and_keeps_keys_and_other_values() -> None:
    params: dict[str, Any] = {
        "url": "https://x/{{ input.day }}",
        "headers": {"{{ literal key }}": "{{ input.n }}"},
        "list": ["{{ input.flag }}", 3, None, True],
        "n": 1.5,
    }
    assert render(params, CONTEXT) == {
        "url": "https://x/2024-03-01",
        "headers": {"{{ literal key }}": 41},
        "list": [False, 3, None, True],
        "n": 1.5,
    }
    assert params["url"] == "https://x/{{ input.day }}"  # the argument is left alone


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ input.missing }}",
            "expression '{{ input.missing }}' in headers.X[1]:"
            " undefined: 'dict object' has no attribute 'missing'",
        ),
        (
            "id {{ nope }}",
            "expression 'id {{ nope }}' in headers.X[1]: undefined: 'nope' is undefined",
        ),
        (
            "{{ [input.missing] }}",
            "expression '{{ [input.missing] }}' in headers.X[1]:"
            " undefined: 'dict object' has no attribute 'missing'",
        ),
        (
            "{{ input. }}",
            "expression '{{ input. }}' in headers.X[1]: syntax error: expected name or number",
        ),
        (
            "x {% if %}",
            "expression 'x {% if %}' in headers.X[1]: syntax error: Expected an expression,"
            " got 'end of statement block'",
        ),
        (
            "{{ ''.__class__ }}",
            "expression \"{{ ''.__class__ }}\" in headers.X[1]: not allowed in the sandbox:"
            " access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "expression \"{{ ''.__class__.__mro__[1].__subclasses__() }}\" in headers.X[1]:"
            " not allowed in the sandbox: access to attribute '__class__' of 'str' object"
            " is unsafe.",
        ),
        (
            "{{ input.items.append(4) }}",
            "expression '{{ input.items.append(4) }}' in headers.X[1]: not allowed in the"
            " sandbox: access to attribute 'append' of 'list' object is unsafe.",
        ),
        (
            "{{ 2 ** 100000 }}",
            "expression '{{ 2 ** 100000 }}' in headers.X[1]: not allowed in the sandbox:"
            " the result of 2 ** 100000 is too large",
        ),
        (
            "{{ 'x' * 10 ** 9 }}",
            "expression \"{{ 'x' * 10 ** 9 }}\" in headers.X[1]: not allowed in the sandbox:"
            " repeating a sequence 1000000000 times would exceed 1000000 items",
        ),
        (
            "{{ 1 / 0 }}",
            "expression '{{ 1 / 0 }}' in headers.X[1]: ZeroDivisionError: division by zero",
        ),
        (
            "{{ input.day | replace('2024-03-01', 'nan') | float }}",
            "expression \"{{ input.day | replace('2024-03-01', 'nan') | float }}\""
            " in headers.X[1]: nan is not a JSON number",
        ),
        (
            # A constant Jinja2 folds at compile time: it said "NameError: name 'nan' is
            # not defined".
            "{{ 'nan' | float }}",
            "expression \"{{ 'nan' | float }}\" in headers.X[1]: nan is not a JSON number",
        ),
        (
            "{{ input.items.__len__ }}",
            "expression '{{ input.items.__len__ }}' in headers.X[1]: not allowed in the"
            " sandbox: access to attribute '__len__' of 'list' object is unsafe.",
        ),
        (
            "{{ input.items.index }}",
            "expression '{{ input.items.index }}' in headers.X[1]:"
            " a builtin_function_or_method is not a JSON value",
        ),
    ],
)
def test_errors_name_the_expression_and_where_it_is(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        render({"headers": {"X": ["ok", source]}}, CONTEXT)
    assert str(caught.value) == message
    assert caught.value.expression == source
    assert caught.value.path == ("headers", "X", 1)
    assert isinstance(caught.value, TriggerdError)


def test_same_expression_with_other_context_is_evaluated_again() -> None:
    # Compiled templates are cached; results must not be.
    source = "{{ input.n * 2 }}"
    assert render_string(source, build_context(input={"n": 1})) == 2
    assert render_string(source, build_context(input={"n": 5})) == 10


def test_context_mutation_is_impossible() -> None:
    context = build_context(input={"d": {"a": 1}})
    with pytest.raises(ExpressionError):
        render_string("{{ input.d.update({'a': 2}) }}", context)
    assert context["input"] == {"d": {"a": 1}}


def test_build_context_exposes_node_outputs_under_output() -> None:
    context = build_context(input=None, node_outputs={"a": 1})
    assert context == {
        "input": None,
        "env": {},
        "secrets": {},
        "nodes": {"a": {"output": 1}},
        "trigger": {},
        "execution": {},
        "memory": {},
    }


def test_memory_reads_absent_keys_as_null() -> None:
    context = build_context(input=None, memory={"cursor": 41})
    assert render("{{ memory.cursor + 1 }}", context) == 42
    assert render("{{ memory.nothing or 0 }}", context) == 0
    assert render("{{ memory.nothing is none }}", context) is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (None, False),
        (0, False),
        (0.0, False),
        (1, True),
        (-2.5, True),
        ("true", True),
        ("True ", True),
        ("yes", True),
        ("anything", True),
        ("false", False),
        (" FALSE\n", False),
        ("", False),
        ("  ", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("null", False),
        ("None", False),
        ([], False),
        ([0], True),
        ({}, False),
        ({"a": 1}, True),
    ],
)
def test_evaluate_condition(value: JSON, expected: bool) -> None:
    assert evaluate_condition(value) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ range(3) | list }}", [0, 1, 2]),
        ("{{ dict(a=input.n) }}", {"a": 41}),
        ("n={{ range(2) | list }} {{ dict(b=1) }}", 'n=[0, 1] {"b": 1}'),
        ("{% set ns = namespace(x=input.n) %}{{ ns.x }}", "41"),
    ],
)
def test_expressions_see_jinja2_globals_beside_the_context(source: str, expected: JSON) -> None:
    assert render_string(source, CONTEXT) == expected
    # And again, from the compiled template cache.
    assert render_string(source, CONTEXT) == expected


@pytest.mark.parametrize("source", [
    # Two nested loops: 12 s of the event loop (the whole daemon) before the limit.
    "{% for i in range(3500) %}{% for j in range(3500) %}{% if i * j < 0 %}y{% endif %}"
    "{% endfor %}{% endfor %}x",
    # A macro calling itself twice: 2 ** 40 calls.
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    "{{ f(40) }}",
    # Three nested loops, each well within range()'s own limit.
    "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}{% endfor %}"
    "{% endfor %}{% endfor %}",
])
def test_an_expression_that_would_run_for_ever_is_stopped(source: str) -> None:
    with pytest.raises(ExpressionError) as info:
        render(source, {"input": {}})
    assert info.value.detail == (
        f"not allowed in the sandbox: the expression took more than {MAX_STEPS:,} steps"
        f" (a loop iteration is one, a call {CALL_STEPS})")


def test_ordinary_loops_are_untouched_by_the_step_limit() -> None:
    context = {"input": {"items": list(range(20_000))}}
    text = render("{% for x in input['items'] if x < 3 %}{{ loop.index }}/{{ loop.length }}"
                  " {% else %}none{% endfor %}", context)
    assert text == "1/3 2/3 3/3 "
    assert render("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}", {}) == "a=1"
    # Each string has its own allowance: a long loop does not eat the next one's.
    big = "{% for x in input['items'] %}{% endfor %}done"
    assert render({"a": big, "b": big, "c": big}, context) == {
        "a": "done", "b": "done", "c": "done"}


@pytest.mark.parametrize("source", [
    "{{ ('x' * 1000) | replace('x', 'y' * 1000000) | length }}",
    "{{ 'x'.replace('x', 'y' * 1000000).replace('y', 'z' * 1000) | length }}",
    "{{ '%1500000000d' | format(1) | length }}",
    "{{ ('%2000000000d' % 1) | length }}",
    "{{ '{:2000000000}'.format(1) | length }}",
    "{{ ('x' * 1000000) | center(2000000000) | length }}",
    "{{ 'x'.ljust(2000000000) | length }}",
    "{{ 'x' | indent(2000000000) | length }}",
    "{{ ('y' * 999999).join(['a'] * 999999) | length }}",
    # Items taken one at a time (map, select): joined as they came, uncounted (200 MB).
    "{{ range(200) | map('string') | join('x' * 1000000) | length }}",
    "{{ ('x' * 1000000).join(range(200) | map('string')) | length }}",
    # An empty separator (the items' own text counts), items that are a text or not
    # text, and items taken by attribute: each built 60 MB unrefused.
    "{{ (['x' * 1000000] * 60) | join | length }}",
    "{{ ''.join(['x' * 1000000] * 60) | length }}",
    "{{ ('a' * 60) | join('x' * 1000000) | length }}",
    "{{ ('x' * 1000000).join('a' * 60) | length }}",
    "{{ ([['x' * 1000000]] * 60) | join | length }}",
    "{{ ([{'a': 'b'}] * 60) | join('x' * 1000000, attribute='a') | length }}",
    "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(12) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(12) %}"
    "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
])
def test_text_an_expression_builds_is_bounded_before_it_is_built(source: str) -> None:
    """Each of these built gigabytes on the event loop in one step or a few (a node's
    timeout cannot interrupt a render): refused before the text is made."""
    with pytest.raises(ExpressionError) as caught:
        render_string(source, CONTEXT)
    assert caught.value.message.endswith(
        f"would take the text the expression builds past {MAX_BUILT:,} characters")


@pytest.mark.parametrize(("source", "limit"), [
    # A word longer than the width is cut a line at a time, the rest copied each time:
    # 0.9 s for a 1 MB word at 72, 25 s at 1 (a webhook body may be 10 MB).
    ("{{ ('x' * 1000000) | wordwrap(72) | length }}",
     f"wordwrap would take the text the expression builds past {MAX_BUILT:,} characters"),
    # Each line joined by a megabyte: 200 MB in one call.
    ("{{ ('x ' * 200) | wordwrap(1, wrapstring='y' * 1000000) | length }}",
     f"wordwrap would take the text the expression builds past {MAX_BUILT:,} characters"),
    # A line or a word at a time in Python: 25 s for a million hyphens.
    ("{{ ('-' * 1000000) | wordwrap(1) | length }}", f"more than {MAX_STEPS:,} steps"),
    ("{{ ('a ' * 500000) | wordwrap(1) | length }}", f"more than {MAX_STEPS:,} steps"),
    # A float width wraps as an int one does.
    ("{{ ('a ' * 300000) | wordwrap(1.0, false) | length }}", f"more than {MAX_STEPS:,} steps"),
    ("{{ ('-' * 1000000) | wordwrap(0.5) | length }}", f"more than {MAX_STEPS:,} steps"),
])
def test_wordwrap_is_bounded_before_it_runs(source: str, limit: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        render_string(source, CONTEXT)
    assert limit in caught.value.message


def test_ordinary_wordwrap_is_left_alone() -> None:
    assert render_string("{{ 'a b c d e f' | wordwrap(3) }}", CONTEXT) == "a b\nc d\ne f"
    assert render_string("{{ 'abcdefghij' | wordwrap(3, wrapstring='|') }}", CONTEXT) == \
        "abc|def|ghi|j"
    # A long word kept whole costs nothing to cut; a 500 KB text of words wraps.
    assert render_string("{{ ('a' * 1000000) | wordwrap(1, false) | length }}",
                         CONTEXT) == 1_000_000
    assert render_string("{{ ('lorem ipsum dolor sit amet, ' * 17000) | wordwrap(72)"
                         " | length }}", CONTEXT) == 475_999
    with pytest.raises(ExpressionError, match="invalid width 0"):
        render_string("{{ 'abc' | wordwrap(0) }}", CONTEXT)
    # A float width is its whole characters; a NaN one looped for ever in textwrap.
    assert render_string("{{ 'abcdefghij' | wordwrap(2.5, wrapstring='|') }}", CONTEXT) == \
        "ab|cd|ef|gh|ij"
    for width in ("nan", "inf", "-inf"):
        with pytest.raises(ExpressionError, match="must be a finite number"):
            render_string("{{ 'a b c' | wordwrap(input.w | float) }}", {"input": {"w": width}})


def test_ordinary_text_building_is_left_alone() -> None:
    assert render_string("{{ 'a' ~ 'b' ~ 3 }}", CONTEXT) == "ab3"
    assert render_string("{{ range(3) | map('string') | join('-') }}", CONTEXT) == "0-1-2"
    assert render_string("{{ ', '.join(['a', 'b'] | select) }}", CONTEXT) == "a, b"
    assert render_string("{{ {'a': 1, 'b': 2} | join(',') }}", CONTEXT) == "a,b"
    assert render_string("{{ 'abc' | join('-') }}", CONTEXT) == "a-b-c"
    assert render_string("{{ '-'.join('abc') }}", CONTEXT) == "a-b-c"
    assert render_string("{{ [1, none] | join }}", CONTEXT) == "1None"
    assert render_string("{{ [{'a': 'b'}, {'a': 'c'}] | join('-', attribute='a') }}",
                         CONTEXT) == "b-c"
    assert render_string("{{ (['x' * 1000000] * 40) | join | length }}", CONTEXT) == 40_000_000
    assert render_string("{{ [1] + [2] }}", CONTEXT) == [1, 2]
    assert render_string("{{ '%05d' | format(42) }}", CONTEXT) == "00042"
    assert render_string("{{ '{:>4}'.format('r') }}", CONTEXT) == "   r"
    assert render_string("{{ 'order 12345678: %s' | format('ok') }}", CONTEXT) == \
        "order 12345678: ok"
    # A large input is no expression's fault: replacing in a 2 MB text is fine.
    assert render_string("{{ ('x' * 1000000 ~ 'x' * 1000000) | replace('x', 'yy')"
                         " | length }}", CONTEXT) == 4_000_000


@pytest.mark.parametrize("source", [
    # A 10 MB webhook body's text or list through a filter that takes an item at a time in
    # Python: 2.4-11 s on the event loop each, where a loop over it stops at MAX_STEPS.
    "{{ input.text | map('upper') | list | length }}",
    "{{ input.numbers | map('string') | join | length }}",
    "{{ input.numbers | select('odd') | list | length }}",
    "{{ input.numbers | reject('odd') | list | length }}",
    "{{ input.text | batch(1) | list | length }}",
    "{{ input.numbers | sort | length }}",
    "{{ input.text | unique | list | length }}",
    "{{ input.numbers | sum }}",
    "{{ input.numbers | max }}",
    # Counted as taken when the value has no length (one filter's output into the next).
    "{{ range(99999) | map('string') | map('upper') | map('lower') | list | length }}",
])
def test_filters_that_take_an_item_at_a_time_count_the_items_as_steps(source: str) -> None:
    context = {"input": {"text": "x" * 300_000, "numbers": list(range(300_000))}}
    with pytest.raises(ExpressionError) as caught:
        render_string(source, context)
    assert f"more than {MAX_STEPS:,} steps" in caught.value.message


def test_per_item_filters_of_ordinary_sizes_are_untouched() -> None:
    context = {"input": {"users": [{"name": "b", "age": 3}, {"name": "a", "age": 40}]}}
    assert render_string("{{ input.users | selectattr('age', 'gt', 18) | map(attribute="
                         "'name') | list }}", context) == ["a"]
    assert render_string("{{ input.users | sort(attribute='name') | map(attribute='age')"
                         " | sum }}", context) == 43
    assert render_string("{{ {'b': 1, 'a': 2} | dictsort }}", context) == [["a", 2], ["b", 1]]
    assert render_string("{{ range(50000) | map('string') | select | list | length }}",
                         context) == 50_000
    assert render_string("{{ input.users | groupby('age') | list | length }}", context) == 2
