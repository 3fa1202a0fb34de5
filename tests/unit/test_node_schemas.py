"""Node metadata: every built-in type declares whether it has side effects and a JSON Schema
of its params; the executor's buffered set comes from the registry; the schemas accept the
params of every definition in the repository and reject what the nodes reject."""

from __future__ import annotations

import ast
import logging
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from triggerd.definitions.loading import parse_json, parse_yaml
from triggerd.definitions.problems import Report
from triggerd.executor import runner
from triggerd.model import JSON, Node
from triggerd.nodes.base import (
    INVALID_PARAMS,
    DescribedNodeType,
    NodeContext,
    NodeFailure,
    NodeResult,
    described,
)
from triggerd.nodes.registry import buffered_node_types, builtin_node_types, run_node

ROOT = Path(__file__).resolve().parents[2]
BUILTINS = builtin_node_types()
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def validator(node_type: str) -> Draft202012Validator:
    return Draft202012Validator(BUILTINS[node_type].params_schema)


def schema_accepts(node_type: str, params: JSON) -> bool:
    # A node without params gets None, which the nodes read as {}.
    return validator(node_type).is_valid({} if params is None else params)


async def node_outcome(node_type: str, params: JSON) -> NodeFailure | NodeResult:
    ctx = NodeContext(
        execution_id="exec-1",
        node=Node(id="n1", type=node_type),
        attempt=1,
        http=None,
        now=NOW,
        log=logging.getLogger("tests.node_schemas"),
    )
    try:
        return await run_node(params, ctx)
    except NodeFailure as failure:
        return failure


# --- declarations --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_declares_a_valid_params_schema(name: str) -> None:
    node_type = BUILTINS[name]
    assert isinstance(node_type, DescribedNodeType)
    assert isinstance(node_type.side_effects, bool)
    schema = node_type.params_schema
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["title"] == f"{name} node parameters"
    assert schema["description"]
    # Every parameter carries a description (the node reference page is built from them).
    for key, prop in schema.get("properties", {}).items():
        assert isinstance(prop.get("description"), str) and prop["description"], key


def test_the_executor_buffers_exactly_the_types_without_side_effects() -> None:
    declared = {name for name, node_type in BUILTINS.items() if not node_type.side_effects}
    assert buffered_node_types() == declared
    assert declared == runner.BUFFERED_TYPES
    # The set the executor had before the metadata existed: behaviour is unchanged.
    assert declared == {"set", "if", "switch", "noop", "log", "fail", "respond"}


class Forgetful:
    name = "forgetful"

    async def run(self, params: JSON, ctx: NodeContext) -> NodeResult:
        return NodeResult()


class NoSchema(Forgetful):
    side_effects = False


class TextualSideEffects(Forgetful):
    side_effects = "no"
    params_schema: dict[str, Any] = {"type": "object"}


class BrokenSchema(Forgetful):
    side_effects = True
    params_schema: dict[str, Any] = {"type": "objekt"}


@pytest.mark.parametrize(
    ("node_type", "message"),
    [
        (Forgetful(), "node type 'forgetful' does not declare 'side_effects' (a bool)"),
        (NoSchema(), "node type 'forgetful' does not declare 'params_schema' (a JSON Schema)"),
        (TextualSideEffects(), "node type 'forgetful': 'side_effects' must be a bool, got str"),
        (
            BrokenSchema(),
            "node type 'forgetful': 'params_schema' is not a valid JSON Schema:"
            " 'objekt' is not valid under any of the given schemas",
        ),
    ],
)
def test_a_node_type_that_forgets_its_metadata_is_refused(node_type: object, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        described(node_type)
    assert str(caught.value) == message


# --- the schemas accept every definition in the repository ---------------------------


class _NotLiteral(Exception):
    pass


def _placeholder(part: ast.expr) -> str:
    # A loopback server's base URL, or a port or id.
    if isinstance(part, ast.FormattedValue) and ast.unparse(part.value).endswith("url"):
        return "http://127.0.0.1:0"
    return "0"


def _literal(node: ast.expr) -> Any:
    """The value of a literal expression; an f-string becomes its text with each
    placeholder written as a value of its kind (a base URL, else 0)."""
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Dict(keys=keys, values=values) if None not in keys:
            return {_literal(k): _literal(v) for k, v in zip(keys, values, strict=True) if k}
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            return [_literal(e) for e in elts]
        case ast.JoinedStr(values=parts):
            return "".join(
                str(p.value) if isinstance(p, ast.Constant) else _placeholder(p) for p in parts
            )
        case ast.BinOp(left=left, op=ast.Add(), right=right):
            return _literal(left) + _literal(right)
        case ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=int() | float() as n)):
            return -n
    raise _NotLiteral


def _nodes_in(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("id"), str) and value.get("type") in BUILTINS:
            yield value
        for item in value.values():
            yield from _nodes_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes_in(item)


def _parsed(text: str, json_text: bool) -> Any:
    ok, document = (parse_json if json_text else parse_yaml)(text, Report(file="text"))
    return document if ok else None


def definition_nodes() -> list[tuple[str, dict[str, Any]]]:
    """(where, node) for every built-in node in the definition files under config/ and
    tests/, and in the definitions written inline in the tests (YAML text and dict literals)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for top in ("config", "tests"):
        for path in sorted((ROOT / top).rglob("*")):
            where = str(path.relative_to(ROOT))
            if path.suffix in (".yaml", ".yml", ".json"):
                document = _parsed(path.read_text(encoding="utf-8"), path.suffix == ".json")
                found += [(where, node) for node in _nodes_in(document)]
            elif path.suffix == ".py" and path.name != Path(__file__).name:
                for tree_node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                    if isinstance(tree_node, ast.Constant) and isinstance(tree_node.value, str):
                        if "type:" in tree_node.value:
                            document = _parsed(textwrap.dedent(tree_node.value), False)
                            found += [(where, node) for node in _nodes_in(document)]
                    elif isinstance(tree_node, ast.Dict):
                        try:
                            value = _literal(tree_node)
                        except (_NotLiteral, TypeError):
                            continue
                        found += [(where, node) for node in _nodes_in(value) if node is value]
    return found


# Nodes in the tests that are wrong on purpose (a test of what happens then).
ON_PURPOSE = {
    # What check refuses: a node without its required params, an ftp URL, an unknown
    # parameter, a body given as an object.
    ("tests/unit/test_check_params.py", "a", "log"),
    ("tests/acceptance/test_check_params.py", "b", "http"),
    ("tests/acceptance/test_check_params.py", "c", "http"),
    ("tests/acceptance/test_check_params.py", "d", "http"),
}


def test_the_schemas_accept_every_definition_in_the_repository() -> None:
    nodes = definition_nodes()
    rejected = set()
    for where, node in nodes:
        if not schema_accepts(node["type"], node.get("params")):
            rejected.add((where, node["id"], node["type"]))
    assert rejected == ON_PURPOSE
    # The harvest found the examples and the tests' workflows (counted, so a broken
    # harvest cannot pass by finding nothing).
    assert sum(where.startswith("config/examples/") for where, _ in nodes) == 8
    assert len(nodes) >= 80
    assert {node["type"] for _, node in nodes} == set(BUILTINS)


# --- the schemas and the nodes agree -------------------------------------------------

INVALID: list[tuple[str, JSON, str]] = [
    ("http", {}, "parameter 'url' is required"),
    ("http", {"url": "ftp://x/"}, "parameter 'url': 'ftp://x/' is not an http(s) URL"),
    ("http", {"url": "/relative"}, "parameter 'url': '/relative' is not an http(s) URL"),
    ("http", {"url": 5}, "parameter 'url' must be a string, got a number"),
    ("http", {"url": "http://x/", "method": "GE T"}, "parameter 'method': 'GE T' is not an HTTP method"),  # noqa: E501
    ("http", {"url": "http://x/", "method": None}, "parameter 'method' must be a string, got null"),
    ("http", {"url": "http://x/", "json": {}, "body": ""}, "give at most one of 'json' and 'body'"),
    ("http", {"url": "http://x/", "body": 5}, "parameter 'body' must be a string, got a number"),
    ("http", {"url": "http://x/", "headers": ["a"]}, "parameter 'headers' must be an object, got a list"),  # noqa: E501
    ("http", {"url": "http://x/", "query": "a=1"}, "parameter 'query' must be an object, got a string"),  # noqa: E501
    (
        "http",
        {"url": "http://x/", "accept": [200, "201"]},
        "parameter 'accept' must be a non-empty list of HTTP statuses (100-599)",
    ),
    (
        "http",
        {"url": "http://x/", "accept": [99]},
        "parameter 'accept' must be a non-empty list of HTTP statuses (100-599)",
    ),
    (
        "http",
        {"url": "http://x/", "accept": 200},
        "parameter 'accept' must be a non-empty list of HTTP statuses (100-599)",
    ),
    (
        "http",
        {"url": "http://x/", "timeout": 30},
        "parameter 'timeout': expected a duration string such as '30s', got int 30",
    ),
    (
        "http",
        {"url": "http://x/", "timeout": "soon"},
        "parameter 'timeout': 'soon' is not a duration (use a number and a unit: ms, s, m, h,"
        " d; e.g. '500ms', '30s', '6h')",
    ),
    (
        "http",
        {"url": "http://x/", "data": "x"},
        "unknown parameter 'data' (allowed: accept, body, headers, json, method, query, timeout,"
        " url)",
    ),
    ("set", {}, "parameter 'value' is required"),
    ("set", {"value": 1, "values": 2}, "unknown parameter 'values' (allowed: value)"),
    ("if", {}, "parameter 'condition' is required"),
    ("if", {"conditon": True}, "unknown parameter 'conditon' (allowed: condition)"),
    ("switch", {"value": 1}, "parameter 'cases' is required"),
    ("switch", {"cases": []}, "parameter 'value' is required"),
    ("switch", {"value": 1, "cases": "a"}, "parameter 'cases' must be a list"),
    ("switch", {"value": 1, "cases": ["a", "default"]}, "'default' cannot be a case: it names the fallback"),  # noqa: E501
    ("switch", {"value": 1, "cases": [], "case": 1}, "unknown parameter 'case' (allowed: cases, value)"),  # noqa: E501
    ("wait", {}, "give exactly one of 'duration' and 'until'"),
    ("wait", {"duration": "1s", "until": "2024-03-01T13:00:00Z"}, "give exactly one of 'duration' and 'until'"),  # noqa: E501
    (
        "wait",
        {"duration": "soon"},
        "parameter 'duration': 'soon' is not a duration (use a number and a unit: ms, s, m, h,"
        " d; e.g. '500ms', '30s', '6h')",
    ),
    (
        "wait",
        {"duration": 5},
        "parameter 'duration': expected a duration string such as '30s', got int 5",
    ),
    ("wait", {"until": "tomorrow"}, "parameter 'until': 'tomorrow' is not an ISO-8601 instant"),
    ("approval", {"message": 5}, "parameter 'message' must be a string, got a number"),
    ("approval", {"timeout": "soon"}, "parameter 'timeout': 'soon' is not a duration (use a"
     " number and a unit: ms, s, m, h, d; e.g. '500ms', '30s', '6h')"),
    ("approval", {"to": "ops"}, "unknown parameter 'to' (allowed: message, timeout)"),
    ("memory", {"key": "k"}, "parameter 'op' is required"),
    ("memory", {"op": "push", "key": "k"},
     "parameter 'op': 'push' is not one of get, set, delete, increment, cas"),
    ("memory", {"op": "get", "key": 5}, "parameter 'key' must be a string, got a number"),
    ("workflow", {}, "parameter 'workflow' is required"),
    ("workflow", {"workflow": "x", "input": [1]},
     "parameter 'input' must be an object, got a list"),
    ("workflow", {"workflow": "x", "wait": "yes"}, "parameter 'wait' must be true or false"),
    (
        "wait",
        {"until": "2024-03-01T13:00:00"},
        "parameter 'until': '2024-03-01T13:00:00' has no UTC offset (e.g. add 'Z' or '+02:00')",
    ),
    ("wait", {"until": 1709298000}, "parameter 'until' must be a string, got a number"),
    ("log", {}, "parameter 'message' is required"),
    ("log", {"message": "x", "level": "loud"}, "parameter 'level' must be one of debug, info, warning, error, got 'loud'"),  # noqa: E501
    ("log", {"message": "x", "level": 3}, "parameter 'level' must be a string, got a number"),
    ("log", {"msg": "x"}, "unknown parameter 'msg' (allowed: level, message)"),
    ("fail", {"code": ""}, "parameter 'code' must not be empty or blank"),
    ("fail", {"code": "  "}, "parameter 'code' must not be empty or blank"),
    ("fail", {"code": 5}, "parameter 'code' must be a string, got a number"),
    ("fail", {"reason": "x"}, "unknown parameter 'reason' (allowed: code, message)"),
    ("respond", {"status": 999}, "parameter 'status' must be an HTTP status of 200-599, got 999"),
    # A 1xx is no final answer: a sync webhook answered 200 instead.
    ("respond", {"status": 101}, "parameter 'status' must be an HTTP status of 200-599, got 101"),
    ("respond", {"status": "99"}, "parameter 'status' must be an HTTP status of 200-599, got 99"),
    ("respond", {"status": True}, "parameter 'status' must be an integer, got a boolean"),
    ("respond", {"status": "ok"}, "parameter 'status' must be an integer, got a string"),
    ("respond", {"headers": []}, "parameter 'headers' must be an object, got a list"),
    ("respond", {"code": 200}, "unknown parameter 'code' (allowed: body, headers, status)"),
]


@pytest.mark.parametrize(("node_type", "params", "message"), INVALID)
async def test_what_a_node_rejects_its_schema_rejects(
    node_type: str, params: JSON, message: str
) -> None:
    outcome = await node_outcome(node_type, params)
    assert isinstance(outcome, NodeFailure)
    assert (outcome.code, outcome.message) == (INVALID_PARAMS, f"{node_type} node: {message}")
    assert not schema_accepts(node_type, params)


VALID: list[tuple[str, JSON]] = [
    ("http", {"url": "http://127.0.0.1:9/", "method": " post ", "accept": [200], "headers": None}),
    ("http", {"url": " HTTPS://127.0.0.1:9/x ", "query": {"a": [1, None], "b": True}}),
    ("http", {"url": "http://127.0.0.1:9/", "json": None, "timeout": " 1s "}),
    ("http", {"url": "http://127.0.0.1:9/", "body": "", "headers": {"X-N": 7, "X-None": None}}),
    ("set", {"value": None}),
    ("if", {"condition": "false"}),
    ("switch", {"value": None, "cases": [200, True, None, {"a": 1}, "x"]}),
    ("wait", {"duration": " 90s "}),
    ("wait", {"until": "2024-03-02T00:00:00+01:00"}),
    ("wait", {"until": " 2024-03-01T11:00:00Z "}),
    ("wait", {"until": "2024-03-01 11:00:00.5+0130"}),
    ("log", {"message": {"n": 1}, "level": " WARNING "}),
    ("log", {"message": None}),
    ("fail", {}),
    ("fail", {"code": " X ", "message": [1]}),
    ("respond", {}),
    ("respond", {"status": " 201 ", "headers": None, "body": [1]}),
    ("respond", {"status": 599, "headers": {"X-Id": 7}}),
    ("noop", None),
    ("noop", {"anything": [1, 2]}),
]


@pytest.mark.parametrize(("node_type", "params"), VALID)
async def test_what_a_node_accepts_its_schema_accepts(node_type: str, params: JSON) -> None:
    outcome = await node_outcome(node_type, params)
    # The http node goes on to its request (to a closed loopback port: refused or denied),
    # the fail node to its failure; neither is a complaint about params.
    assert not (isinstance(outcome, NodeFailure) and outcome.code == INVALID_PARAMS), outcome
    assert schema_accepts(node_type, params)


@pytest.mark.parametrize(
    ("node_type", "params"),
    [
        ("http", {"url": "{{ env.BASE_URL }}/x", "method": "{{ input.method }}"}),
        ("http", {"url": "https://x/", "headers": "{{ input.headers }}", "timeout": "{{ x }}s"}),
        ("http", {"url": "https://x/", "query": "{{ input.q }}", "accept": "{{ input.ok }}"}),
        ("http", {"url": "https://x/", "accept": [200, "{{ input.also }}"], "body": "{{ b }}"}),
        ("switch", {"value": "{{ input.kind }}", "cases": "{{ input.kinds }}"}),
        ("wait", {"duration": "{{ input.delay }}"}),
        ("wait", {"until": "{{ input.at }}"}),
        ("log", {"message": "x", "level": "{% if input.bad %}error{% else %}info{% endif %}"}),
        ("fail", {"code": "{{ input.code }}"}),
        ("respond", {"status": "{{ input.status }}", "headers": "{{ input.headers }}"}),
    ],
)
def test_a_template_may_stand_in_for_a_typed_value(node_type: str, params: JSON) -> None:
    assert schema_accepts(node_type, params)
