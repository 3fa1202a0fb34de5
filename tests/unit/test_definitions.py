from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from triggerd.definitions import (
    canonical_json,
    check_documents,
    check_files,
    definitions_schema,
    graph_from_json,
    graph_to_json,
    load_documents,
    load_files,
    parse_trigger_config,
    trigger_config_to_json,
)
from triggerd.definitions.problems import show
from triggerd.durations import DURATION_PATTERN
from triggerd.errors import DefinitionError, Problem
from triggerd.model import (
    AuthConfig,
    CronConfig,
    DedupeConfig,
    Edge,
    EdgeOn,
    Graph,
    ManualConfig,
    MisfirePolicy,
    Node,
    OverlapPolicy,
    ResponseMode,
    RetryPolicy,
    SecretRef,
    TriggerType,
    WebhookConfig,
    WorkflowStatus,
)
from triggerd.nodes.registry import builtin_node_types

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
BUILTIN_NODE_TYPES = tuple(builtin_node_types())

Doc = dict[str, Any]


# --- helpers -------------------------------------------------------------------------


def workflow(key: str = "wf", /, **fields: Any) -> Doc:
    """A valid workflow document (one noop node) with ``fields`` replacing its keys."""
    doc: Doc = {"key": key, "graph": {"nodes": [{"id": "start", "type": "noop"}]}}
    doc.update(fields)
    return doc


# Params that make a node of each type valid (check validates params against the type's
# schema); a switch's params are up to each test.
VALID_PARAMS: dict[str, Doc] = {
    "http": {"url": "https://example.test/"},
    "if": {"condition": True},
    "log": {"message": "x"},
    "set": {"value": 1},
    "wait": {"duration": "1s"},
}


def graph(nodes: str | dict[str, str], *edges: Doc) -> Doc:
    """``nodes``: space-separated ids (type noop) or {id: type}, with valid params."""
    types = dict.fromkeys(nodes.split(), "noop") if isinstance(nodes, str) else nodes
    return {
        "nodes": [
            {"id": i, "type": t, **({"params": dict(VALID_PARAMS[t])} if t in VALID_PARAMS else {})}
            for i, t in types.items()
        ],
        "edges": list(edges),
    }


def edge(source: str, target: str, **fields: Any) -> Doc:
    return {"from": source, "to": target, **fields}


def found(*workflows: Doc, node_types: Any = None) -> set[tuple[str, str]]:
    """The (path, message) of every problem in one document holding ``workflows``."""
    problems = check_documents([("f.yaml", {"workflows": list(workflows)})], node_types=node_types)
    assert {p.file for p in problems} <= {"f.yaml"}
    return {(p.path, p.message) for p in problems}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the example files and the schema ---------------------------------------------------


def test_the_example_files_load_cleanly() -> None:
    files = [EXAMPLES / "nightly-report.yaml", EXAMPLES / "github-push.yaml"]
    assert check_files(files) == []
    nightly, github = load_files(files)
    assert nightly.key == "nightly-report"
    assert [(t.name, t.type) for t in nightly.triggers] == [
        ("every-minute", TriggerType.CRON),
        ("by-hand", TriggerType.MANUAL),
    ]
    assert github.key == "github-push"
    ping, push = github.triggers
    assert isinstance(ping.config, WebhookConfig)
    assert ping.enabled and ping.config.auth == AuthConfig(scheme="none")
    assert not push.enabled
    used = {n.type for spec in (nightly, github) for n in spec.graph.nodes}
    assert used <= {"set", "if", "switch", "log", "noop", "wait", "respond", "http"}


def test_the_schema_is_valid_and_its_duration_syntax_is_the_parsers() -> None:
    schema = definitions_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["duration"]["pattern"] == DURATION_PATTERN


# --- all problems at once ---------------------------------------------------------------

TEN_MISTAKES = """\
workflows:
  - key: Nightly Report
    descripton: typo in a key
    secrets:
      TOKEN: {env: REPORT_TOKEN, file: /run/token}
    graph:
      nodes:
        - {id: fetch, type: htp}
        - {id: big, type: if, params: {condition: "{{ true }}"}}
        - {id: alert, type: log, params: {message: hi}}
      edges:
        - {from: fetch, to: big}
        - {from: big, to: alrt, when: "true"}
        - {from: big, to: alert, when: maybe}
    triggers:
      - {name: nightly, type: cron, cron: "61 2 * * *", timezone: Mars/Olympus, jitter: -5s}
      - {name: hook, type: webhook, path: _internal/hook}
"""


def test_a_file_with_ten_mistakes_reports_all_ten(tmp_path: Path) -> None:
    path = write(tmp_path, "ten.yaml", TEN_MISTAKES)
    problems = check_files([path])
    assert {p.file for p in problems} == {str(path)}
    assert {(p.path, p.message) for p in problems} == {
        (
            "$.workflows[0].key",
            "'Nightly Report' is not a valid name: use lowercase letters, digits, '-' and '_'",
        ),
        ("$.workflows[0].descripton", "unknown key 'descripton' (did you mean 'description'?)"),
        (
            "$.workflows[0].secrets.TOKEN",
            "a secret reference takes exactly one of env, file or credential",
        ),
        ("$.workflows[0].graph.nodes[0].type", "unknown node type 'htp' (did you mean 'http'?)"),
        ("$.workflows[0].graph.edges[1].to", "unknown node 'alrt' (did you mean 'alert'?)"),
        (
            "$.workflows[0].graph.edges[2].when",
            "'maybe' is not a branch of the 'if' node 'big': use \"true\" or \"false\"",
        ),
        ("$.workflows[0].triggers[0].cron", "minute: 61 is out of range 0-59"),
        ("$.workflows[0].triggers[0].timezone", "unknown time zone 'Mars/Olympus'"),
        (
            "$.workflows[0].triggers[0].jitter",
            "'-5s' is not a duration: use a non-negative number and a unit (ms, s, m, h, d),"
            " e.g. '500ms', '30s', '6h'",
        ),
        (
            "$.workflows[0].triggers[1].path",
            "'_internal/hook' starts with '_': paths starting with '_' are reserved",
        ),
    }
    # Reported top to bottom, as a person reads the file.
    assert [p.path for p in problems] == [
        "$.workflows[0].key",
        "$.workflows[0].descripton",
        "$.workflows[0].secrets.TOKEN",
        "$.workflows[0].graph.nodes[0].type",
        "$.workflows[0].graph.edges[1].to",
        "$.workflows[0].graph.edges[2].when",
        "$.workflows[0].triggers[0].cron",
        "$.workflows[0].triggers[0].timezone",
        "$.workflows[0].triggers[0].jitter",
        "$.workflows[0].triggers[1].path",
    ]
    with pytest.raises(DefinitionError) as caught:
        load_files([path])
    assert caught.value.problems == problems
    assert caught.value.message == f"10 problems in definitions: {problems[0]} (and 9 more)"
    assert str(problems[0]) == (
        f"{path}: $.workflows[0].key: 'Nightly Report' is not a valid name: use lowercase"
        " letters, digits, '-' and '_'"
    )


def test_semantic_checks_run_beside_schema_problems_in_other_workflows() -> None:
    assert found(
        workflow("a", graph=graph("x y")),  # two entry nodes
        workflow("b", status="paused"),
    ) == {
        (
            "$.workflows[0].graph.nodes",
            "the graph has 2 entry nodes (nodes without incoming edges): 'x', 'y';"
            " it needs exactly one",
        ),
        ("$.workflows[1].status", "'paused' is not one of draft, active, archived"),
    }


# --- workflows and triggers -------------------------------------------------------------


def test_duplicate_workflow_key_across_files(tmp_path: Path) -> None:
    text = """\
    workflows:
      - key: report
        graph: {nodes: [{id: start, type: noop}]}
    """
    first = write(tmp_path, "a.yaml", text)
    second = write(tmp_path, "b.yaml", text)
    assert check_files([first, second]) == [
        Problem(
            str(second),
            "$.workflows[0].key",
            f"duplicate workflow key 'report' (first defined in {first} at $.workflows[0])",
        )
    ]


def test_duplicate_workflow_key_in_one_file() -> None:
    assert found(workflow("a"), workflow("a")) == {
        ("$.workflows[1].key", "duplicate workflow key 'a' (first defined at $.workflows[0])")
    }


def test_duplicate_trigger_name() -> None:
    triggers = [
        {"name": "go", "type": "manual"},
        {"name": "go", "type": "cron", "cron": "0 * * * *"},
    ]
    assert found(workflow(triggers=triggers)) == {
        (
            "$.workflows[0].triggers[1].name",
            "duplicate trigger name 'go' (first at $.workflows[0].triggers[0])",
        )
    }


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            {"key": "x" * 101},
            "$.workflows[0].key",
            "must be at most 100 characters long",
        ),
        (
            {"status": "live"},
            "$.workflows[0].status",
            "'live' is not one of draft, active, archived",
        ),
        (
            {"env": {"PORT": 8080}},
            "$.workflows[0].env.PORT",
            "env values are strings: quote 8080 in YAML",
        ),
        (
            {"timeout": "0s"},
            "$.workflows[0].timeout",
            "'0s' is not a duration longer than zero: use a positive number and a unit"
            " (ms, s, m, h, d), e.g. '500ms', '30s', '6h'",
        ),
        ({"name": 5}, "$.workflows[0].name", "expected a string, got 5 (an integer)"),
        ({"triggers": {}}, "$.workflows[0].triggers", "expected a list, got a mapping"),
        ({"graph": {"nodes": []}}, "$.workflows[0].graph.nodes", "must not be empty"),
    ],
)
def test_workflow_key_problems(fields: Doc, path: str, message: str) -> None:
    assert found(workflow(**fields)) == {(path, message)}


def test_missing_keys_and_a_wrong_top_level() -> None:
    assert found({"graph": {"nodes": [{"id": "a"}]}}) == {
        ("$.workflows[0]", "missing required key 'key'"),
        ("$.workflows[0].graph.nodes[0]", "missing required key 'type'"),
    }
    problems = check_documents([("api", ["not", "a", "mapping"]), ("api2", {"workflow": []})])
    assert [str(p) for p in problems] == [
        "api: $: the top level must be a mapping with a 'workflows' list",
        "api2: $: the top level must be a mapping with a 'workflows' list",
        "api2: $.workflow: unknown key 'workflow' (did you mean 'workflows'?)",
    ]


def test_unknown_keys_are_caught_at_every_level() -> None:
    fields = {
        "graph": {
            "nodes": [{"id": "a", "type": "noop", "retry": {"max_attempt": 3}}],
            "edge": [],
        },
        "triggers": [
            {"name": "t", "type": "cron", "cron": "* * * * *", "timzone": "UTC"},
            {"name": "h", "type": "webhook", "path": "h", "auth": {"scheme": "none", "secert": 1}},
        ],
    }
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edge", "unknown key 'edge' (did you mean 'edges'?)"),
        (
            "$.workflows[0].graph.nodes[0].retry.max_attempt",
            "unknown key 'max_attempt' (did you mean 'max_attempts'?)",
        ),
        ("$.workflows[0].triggers[0].timzone", "unknown key 'timzone' (did you mean 'timezone'?)"),
        ("$.workflows[0].triggers[1].auth.secert", "unknown key 'secert' (did you mean 'secret'?)"),
    }


def test_a_key_of_another_trigger_type() -> None:
    triggers = [
        {"name": "c", "type": "cron", "cron": "* * * * *", "path": "x"},
        {"name": "m", "type": "manual", "misfire": "skip"},
    ]
    assert found(workflow(triggers=triggers)) == {
        ("$.workflows[0].triggers[0].path", "'path' applies to webhook triggers, not to cron ones"),
        (
            "$.workflows[0].triggers[1].misfire",
            "'misfire' applies to cron triggers, not to manual ones",
        ),
    }


def test_trigger_common_keys() -> None:
    triggers = [
        {"name": "Bad Name", "type": "manual"},
        {"name": "t2", "type": "manual", "version": 0, "enabled": "yes", "input": []},
        {"name": "t3", "type": "crom"},
        {"type": "manual"},
    ]
    assert found(workflow(triggers=triggers)) == {
        (
            "$.workflows[0].triggers[0].name",
            "'Bad Name' is not a valid name: use lowercase letters, digits, '-' and '_'",
        ),
        ("$.workflows[0].triggers[1].version", "must be at least 1, got 0"),
        ("$.workflows[0].triggers[1].enabled", "expected true or false, got 'yes' (a string)"),
        ("$.workflows[0].triggers[1].input", "expected a mapping, got a list"),
        (
            "$.workflows[0].triggers[2].type",
            "'crom' is not one of cron, interval, webhook, manual (did you mean 'cron'?)",
        ),
        ("$.workflows[0].triggers[3]", "missing required key 'name'"),
    }


def test_workflow_defaults_and_values() -> None:
    (spec,) = load_documents(
        [
            (
                "f.yaml",
                {
                    "workflows": [
                        workflow(
                            "wf",
                            env={"REGION": "eu"},
                            secrets={"A": {"file": "/run/a"}, "B": {"credential": "b"}},
                            triggers=[
                                {"name": "m", "type": "manual", "input": {"x": 1}, "version": 2}
                            ],
                        )
                    ]
                },
            )
        ]
    )
    assert spec.name == "wf"
    assert spec.description == ""
    assert spec.status is WorkflowStatus.ACTIVE
    assert spec.timeout == timedelta(hours=1)
    assert spec.parameter_schema == {}
    assert spec.env == {"REGION": "eu"}
    assert spec.secrets == {"A": SecretRef(file="/run/a"), "B": SecretRef(credential="b")}
    (trigger,) = spec.triggers
    assert (trigger.name, trigger.type, trigger.enabled, trigger.version, trigger.input) == (
        "m",
        TriggerType.MANUAL,
        True,
        2,
        {"x": 1},
    )
    assert trigger.config == ManualConfig()
    assert spec.graph == Graph(nodes=(Node(id="start", type="noop"),))


# --- graphs -----------------------------------------------------------------------------


def test_cycle() -> None:
    fields = {"graph": graph("a b c", edge("a", "b"), edge("b", "c"), edge("c", "b"))}
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edges[2]", "this edge closes a cycle: b -> c -> b")
    }


def test_self_loop_is_a_cycle() -> None:
    fields = {"graph": graph("a b", edge("a", "b"), edge("b", "b"))}
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edges[1]", "this edge closes a cycle: b -> b")
    }


def test_unreachable_nodes() -> None:
    # With one entry, nodes that cannot be reached always sit on a cycle of their own.
    fields = {"graph": graph("a b c d", edge("a", "b"), edge("c", "d"), edge("d", "c"))}
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edges[2]", "this edge closes a cycle: c -> d -> c"),
        ("$.workflows[0].graph.nodes[2]", "node 'c' is not reachable from the entry node 'a'"),
        ("$.workflows[0].graph.nodes[3]", "node 'd' is not reachable from the entry node 'a'"),
    }


def test_two_entry_nodes() -> None:
    fields = {"graph": graph("a b c", edge("a", "c"), edge("b", "c"))}
    assert found(workflow(**fields)) == {
        (
            "$.workflows[0].graph.nodes",
            "the graph has 2 entry nodes (nodes without incoming edges): 'a', 'b';"
            " it needs exactly one",
        )
    }


def test_a_join_and_a_failure_edge_are_fine() -> None:
    fields = {
        "graph": graph(
            {"a": "http", "b": "noop", "c": "noop", "d": "log"},
            edge("a", "b"),
            edge("a", "c", on="failure"),
            edge("b", "d"),
            edge("c", "d"),
        )
    }
    assert found(workflow(**fields)) == set()


def test_duplicate_node_ids_and_edges() -> None:
    fields = {
        "graph": {
            "nodes": [
                {"id": "a", "type": "noop"},
                {"id": "a", "type": "log", "params": {"message": "x"}},
            ],
            "edges": [],
        }
    }
    assert found(workflow(**fields)) == {
        (
            "$.workflows[0].graph.nodes[1].id",
            "duplicate node id 'a' (first at $.workflows[0].graph.nodes[0])",
        )
    }
    fields = {"graph": graph("a b", edge("a", "b"), edge("a", "b"))}
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edges[1]", "duplicate edge (same as $.workflows[0].graph.edges[0])")
    }


def test_unknown_edge_ends_skip_the_shape_checks_they_would_distort() -> None:
    # Without edge 0, 'b' would look like a second entry node: only the typo is reported.
    fields = {"graph": graph("a b", edge("x", "b"), edge("a", "zz"))}
    assert found(workflow(**fields)) == {
        ("$.workflows[0].graph.edges[0].from", "unknown node 'x'"),
        ("$.workflows[0].graph.edges[1].to", "unknown node 'zz'"),
    }


def test_unknown_node_type() -> None:
    fields = {
        "graph": graph({"a": "noop", "b": "htpp", "c": "email"}, edge("a", "b"), edge("b", "c"))
    }
    assert found(workflow(**fields), node_types=BUILTIN_NODE_TYPES) == {
        ("$.workflows[0].graph.nodes[1].type", "unknown node type 'htpp' (did you mean 'http'?)"),
        (
            "$.workflows[0].graph.nodes[2].type",
            "unknown node type 'email' (known: approval, fail, http, if, log, memory, noop,"
            " respond, set, switch, wait, workflow)",
        ),
    }
    # Node types added by an installed plugin are known too.
    assert found(workflow(**fields), node_types=[*BUILTIN_NODE_TYPES, "email", "htpp"]) == set()


def test_if_edges() -> None:
    nodes = {"check": "if", "yes": "noop", "no": "noop", "odd": "noop", "oops": "noop", "x": "noop"}
    fields = {
        "graph": graph(
            nodes,
            edge("check", "yes", when=True),  # a YAML boolean is the label "true"
            edge("check", "no", when="false"),
            edge("check", "odd", when="maybe"),
            edge("check", "oops"),
            edge("check", "x", on="failure"),
        )
    }
    assert found(workflow(**fields)) == {
        (
            "$.workflows[0].graph.edges[2].when",
            "'maybe' is not a branch of the 'if' node 'check': use \"true\" or \"false\"",
        ),
        (
            "$.workflows[0].graph.edges[3]",
            "edges leaving the 'if' node 'check' need when: \"true\" or \"false\"",
        ),
    }


def test_switch_edges() -> None:
    nodes = {"route": "switch", "a": "noop", "b": "noop", "c": "noop", "d": "noop", "e": "noop"}
    doc = graph(
        nodes,
        edge("route", "a", when="push"),
        edge("route", "b", when=200),  # the integer case 200 and the label "200" match
        edge("route", "c", when="default"),
        edge("route", "d", when="pull"),
        edge("route", "e"),
    )
    doc["nodes"][0]["params"] = {"value": "{{ input.kind }}", "cases": ["push", 200]}
    assert found(workflow(graph=doc)) == {
        (
            "$.workflows[0].graph.edges[3].when",
            "'pull' is not a case of the 'switch' node 'route': use one of 'push', '200',"
            " 'default'",
        ),
        (
            "$.workflows[0].graph.edges[4]",
            "edges leaving the 'switch' node 'route' need when: one of 'push', '200', 'default'",
        ),
    }


def test_switch_cases_must_be_a_list_without_duplicates_or_default() -> None:
    doc = graph({"s": "switch"})
    doc["nodes"][0]["params"] = {"value": 1, "cases": [1, "1", "default"]}
    assert found(workflow(graph=doc)) == {
        ("$.workflows[0].graph.nodes[0].params.cases[1]", "duplicate case '1'"),
        (
            "$.workflows[0].graph.nodes[0].params.cases[2]",
            "'default' cannot be a case: it names the fallback branch",
        ),
    }
    doc["nodes"][0]["params"] = {"value": 1}
    assert found(workflow(graph=doc)) == {
        (
            "$.workflows[0].graph.nodes[0].params",
            "a 'switch' node needs params.cases, a list of values",
        )
    }
    # Cases computed at run time cannot be checked before it.
    doc["nodes"][0]["params"] = {"value": 1, "cases": "{{ input.cases }}"}
    doc["nodes"].append({"id": "t", "type": "noop"})
    doc["edges"] = [edge("s", "t", when="anything")]
    assert found(workflow(graph=doc)) == set()


def test_a_workflow_cannot_be_its_own_error_workflow() -> None:
    assert found(workflow("wf", on_failure="wf")) == {(
        "$.workflows[0].on_failure",
        "a workflow cannot be its own error workflow (its failures would start it again)",
    )}
    assert found(workflow("wf", on_failure="alerts")) == set()
    assert found(workflow("wf", on_failure="Not A Key!")) != set()


def _caller(key: str, *calls: str) -> Doc:
    nodes = [{"id": f"call{i}", "type": "workflow", "params": {"workflow": c}}
             for i, c in enumerate(calls)] or [{"id": "a", "type": "noop"}]
    return workflow(key, graph={"nodes": nodes[:1], "edges": []})


def test_workflow_nodes_may_not_call_each_other_in_a_cycle_or_too_deep() -> None:
    cycle = found(_caller("a", "b"), _caller("b", "c"), _caller("c", "a"))
    assert cycle == {(
        "$.workflows[2].graph.nodes[0].params.workflow",
        "workflow 'a' is already running in this chain: a -> b -> c -> a (a cycle of"
        " sub-workflows)",
    )}
    assert found(_caller("self", "self")) == {(
        "$.workflows[0].graph.nodes[0].params.workflow",
        "workflow 'self' is already running in this chain: self -> self (a cycle of"
        " sub-workflows)",
    )}
    chain = [_caller(f"w{i}", f"w{i + 1}") for i in range(9)] + [_caller("w9")]
    assert found(*chain) == {(
        "$.workflows[0].graph.nodes[0].params.workflow",
        "workflow 'w0' nests runs deeper than 8 levels ([executor] max_workflow_depth)",
    )}
    assert found(*chain[1:]) == set()  # 8 levels below w1: allowed
    # The configured depth, not the default: the daemon refused to start on a chain its
    # configuration allows, and check passed one every run of which would fail.
    document = [("f.yaml", {"workflows": chain})]
    assert check_documents(document, max_workflow_depth=9) == []
    [problem] = check_documents([("f.yaml", {"workflows": chain[5:]})], max_workflow_depth=3)
    assert problem.message == (
        "workflow 'w5' nests runs deeper than 3 levels ([executor] max_workflow_depth)")
    # A key given by an expression is known only at run time.
    assert found(_caller("x", "{{ input.next }}")) == set()


def test_approval_edges_take_a_decision_as_when() -> None:
    fields = {
        "graph": graph(
            {"ask": "approval", "yes": "noop", "no": "noop", "late": "noop", "any": "noop",
             "bad": "noop"},
            edge("ask", "yes", when="approved"),
            edge("ask", "no", when="rejected"),
            edge("ask", "late", when="timeout"),
            edge("ask", "any"),
            edge("ask", "bad", when="maybe"),
        )
    }
    assert found(workflow(**fields)) == {(
        "$.workflows[0].graph.edges[4].when",
        "'maybe' is not a decision of the 'approval' node 'ask': use 'approved', 'rejected',"
        " 'timeout'",
    )}


def test_when_only_on_branching_nodes_and_never_on_failure_edges() -> None:
    fields = {
        "graph": graph(
            {"a": "http", "b": "if", "c": "noop", "d": "noop"},
            edge("a", "b", when="true"),
            edge("b", "c", when="true"),
            edge("b", "d", on="failure", when="false"),
        )
    }
    assert found(workflow(**fields)) == {
        (
            "$.workflows[0].graph.edges[0].when",
            "only edges leaving 'if', 'switch' and 'approval' nodes take 'when' ('a' is a"
            " 'http' node)",
        ),
        ("$.workflows[0].graph.edges[2].when", "failure edges take no 'when'"),
    }


def test_edge_on_and_node_retry_and_timeout() -> None:
    doc = graph("a b c", edge("a", "b", on="error"), edge("b", "c", when=None))
    doc["nodes"][0]["retry"] = {
        "max_attempts": 0,
        "backoff": "10m",
        "retry_on": ["HTTP_CONNECT", 503, 42, "", 404.5],
    }
    doc["nodes"][1]["retry"] = {"backoff": "1m", "max_backoff": "30s"}
    doc["nodes"][1]["timeout"] = "soon"
    assert found(workflow(graph=doc)) == {
        ("$.workflows[0].graph.edges[0].on", "'error' is not one of success, failure"),
        (
            "$.workflows[0].graph.edges[1].when",
            "expected a string, a number or true or false, got null",
        ),
        (
            "$.workflows[0].graph.nodes[0].retry.retry_on[4]",
            "expected a string or an integer, got 404.5 (a number)",
        ),
        ("$.workflows[0].graph.nodes[0].retry.max_attempts", "must be at least 1, got 0"),
        (
            "$.workflows[0].graph.nodes[0].retry.backoff",
            "backoff 10m is longer than max_backoff 5m",
        ),
        ("$.workflows[0].graph.nodes[0].retry.retry_on[2]", "must be at least 100, got 42"),
        ("$.workflows[0].graph.nodes[0].retry.retry_on[3]", "must not be empty"),
        (
            "$.workflows[0].graph.nodes[1].retry.backoff",
            "backoff 1m is longer than max_backoff 30s",
        ),
        (
            "$.workflows[0].graph.nodes[1].timeout",
            "'soon' is not a duration longer than zero: use a positive number and a unit"
            " (ms, s, m, h, d), e.g. '500ms', '30s', '6h'",
        ),
    }


def test_graph_values() -> None:
    doc = graph({"a": "http", "b": "if", "c": "log", "d": "log"})
    doc["nodes"][0].update(
        params={"url": "http://127.0.0.1:1/x"},
        retry={"max_attempts": 3, "backoff": "2s", "retry_on": [503, "TIMEOUT"]},
        timeout="1m30s",
    )
    doc["edges"] = [
        edge("a", "b"),
        edge("b", "c", when=True),
        edge("b", "d", when="false"),
        edge("a", "d", on="failure"),
    ]
    (spec,) = load_documents([("f", {"workflows": [workflow(graph=doc)]})])
    assert spec.graph == Graph(
        nodes=(
            Node(
                id="a",
                type="http",
                params={"url": "http://127.0.0.1:1/x"},
                retry=RetryPolicy(
                    max_attempts=3, backoff=timedelta(seconds=2), retry_on=(503, "TIMEOUT")
                ),
                timeout=timedelta(seconds=90),
            ),
            Node(id="b", type="if", params={"condition": True}),
            Node(id="c", type="log", params={"message": "x"}),
            Node(id="d", type="log", params={"message": "x"}),
        ),
        edges=(
            Edge(source="a", target="b"),
            Edge(source="b", target="c", when="true"),
            Edge(source="b", target="d", when="false"),
            Edge(source="a", target="d", on=EdgeOn.FAILURE),
        ),
    )
    # The spec does not share mutable state with the document it came from.
    doc["nodes"][0]["params"]["url"] = "changed"
    assert spec.graph.nodes[0].params == {"url": "http://127.0.0.1:1/x"}


# --- parameter schema and secrets ---------------------------------------------------------


def test_invalid_parameter_schema() -> None:
    schema = {"type": "object", "required": "day", "properties": {"day": {"type": "date"}}}
    assert found(workflow(parameter_schema=schema)) == {
        (
            "$.workflows[0].parameter_schema.required",
            "not a valid JSON Schema: 'day' is not of type 'array'",
        ),
        (
            "$.workflows[0].parameter_schema.properties.day.type",
            "not a valid JSON Schema: 'date' is not valid under any of the given schemas",
        ),
    }
    assert found(
        workflow(parameter_schema={"type": "object", "properties": {"p": {"pattern": "("}}})
    ) == {
        (
            "$.workflows[0].parameter_schema.properties.p.pattern",
            "not a valid JSON Schema: '(' is not a 'regex'",
        )
    }


def test_a_parameter_schema_that_requires_a_key_it_never_allows() -> None:
    # Valid JSON Schema, but no input passes it: every webhook was answered 422 and every
    # fire refused, where check said the file was valid.
    schema = {"type": "object", "additionalProperties": False,
              "required": ["day", "count", "region", "note"],
              "properties": {"day": {"type": "string"}, "cuont": {"type": "integer"},
                             "note": False}}
    assert found(workflow(parameter_schema=schema)) == {
        ("$.workflows[0].parameter_schema.required[1]",
         "'count' is required, but it is not among the properties and additionalProperties"
         " is false: no input can pass this schema (did you mean 'cuont'?)"),
        ("$.workflows[0].parameter_schema.required[2]",
         "'region' is required, but it is not among the properties and additionalProperties"
         " is false: no input can pass this schema"),
        ("$.workflows[0].parameter_schema.required[3]",
         "'note' is required, but its property schema is false: no input can pass this"
         " schema"),
    }
    # Open schemas may require keys they do not describe; patternProperties may allow them.
    for open_schema in (
        {"type": "object", "required": ["day"], "properties": {"dya": {}}},
        {"type": "object", "additionalProperties": False, "required": ["x-id"],
         "patternProperties": {"^x-": {}}},
        # A null input passes it (required applies to objects only).
        {"type": ["object", "null"], "additionalProperties": False, "required": ["day"]},
    ):
        assert found(workflow(parameter_schema=open_schema)) == set()


def test_a_parameter_schema_reference_must_resolve_within_the_schema() -> None:
    # Accepted before, then every run of the workflow crashed (exit 70, a webhook's 500).
    schema = {
        "$defs": {"id": {"type": "string"}},
        "properties": {
            "a": {"$ref": "#/$defs/id"},
            "b": {"$ref": "#/definitions/nope"},
            "c": {"$ref": "http://example.com/x.json"},
            "d": {"enum": [{"$ref": "#/nowhere"}]},  # data, not a reference
            "e": {"$id": "https://example.com/e", "$defs": {"n": {"type": "integer"}},
                  "$ref": "#/$defs/n"},  # resolved within its own $id
            "$ref": {"type": "string"},  # a property named $ref
        },
    }
    assert found(workflow(parameter_schema=schema)) == {
        ('$.workflows[0].parameter_schema.properties.b["$ref"]',
         "$ref '#/definitions/nope' cannot be resolved: only references within this schema"
         " are followed"),
        ('$.workflows[0].parameter_schema.properties.c["$ref"]',
         "$ref 'http://example.com/x.json' cannot be resolved: only references within this"
         " schema are followed"),
    }


def test_a_scheduled_trigger_input_must_pass_the_parameter_schema() -> None:
    # `check` said such a file was valid; every fire then failed with INPUT_INVALID.
    schema = {"type": "object", "required": ["day"],
              "properties": {"day": {"type": "string", "format": "date"},
                             "count": {"type": "integer"}}}
    tail = ("; every run of this trigger would fail with INPUT_INVALID (its input must"
            " match the workflow's parameter_schema)")
    triggers = [
        {"name": "bad-cron", "type": "cron", "cron": "0 3 * * *",
         "input": {"day": "someday", "count": "three"}},
        {"name": "no-input", "type": "interval", "every": "1h"},
        {"name": "good", "type": "cron", "cron": "0 4 * * *", "input": {"day": "2026-01-02"}},
        # Not checked: their runs get more than `input:`, or run another version, or none.
        {"name": "by-hand", "type": "manual"},
        {"name": "hook", "type": "webhook", "path": "days"},
        {"name": "off", "type": "cron", "cron": "0 5 * * *", "enabled": False},
        {"name": "pinned", "type": "cron", "cron": "0 6 * * *", "version": 1},
    ]
    assert found(workflow(parameter_schema=schema, triggers=triggers)) == {
        ("$.workflows[0].triggers[0].input.day", "'someday' is not a 'date'" + tail),
        ("$.workflows[0].triggers[0].input.count", "'three' is not of type 'integer'" + tail),
        ("$.workflows[0].triggers[1].input", "'day' is a required property" + tail),
    }
    # A schema that is itself wrong is reported once, not again through each trigger.
    broken = {"$ref": "#/definitions/nope"}
    assert [path for path, _ in found(workflow(parameter_schema=broken, triggers=triggers))] \
        == ['$.workflows[0].parameter_schema["$ref"]']


def test_an_input_key_the_closed_parameter_schema_never_allows_is_refused() -> None:
    # `additionalProperties: false`: every run's input has only these keys, so reading
    # another failed each run at that node ("'dict object' has no attribute ...").
    closed = {"type": "object", "additionalProperties": False,
              "properties": {"day": {"type": "string"}, "count": {"type": "integer"}}}
    value = ("{{ input.day }} {{ input.dayy }} {{ input['total'] }} {{ input.get('x') }}"
             " {{ input.count }}")
    nodes = {"nodes": [{"id": "a", "type": "set", "params": {"value": value}}]}
    where = "$.workflows[0].graph.nodes[0].params.value"
    said = f"expression {show(value, limit=80)}: "
    assert found(workflow(parameter_schema=closed, graph=nodes)) == {
        (where, said + "'dayy' is never in the input: the parameter_schema allows no other"
                       " keys than its properties (did you mean 'day'?)"),
        (where, said + "'total' is never in the input: the parameter_schema allows no other"
                       " keys than its properties (known: day, count)"),
    }
    # Open schemas (any key may come), or keys matched by a pattern: nothing to say.
    for schema in ({"type": "object", "properties": {"day": {"type": "string"}}},
                   {**closed, "patternProperties": {"^x-": {}}}, {}):
        assert found(workflow(parameter_schema=schema, graph=nodes)) == set()


def test_a_stored_schema_whose_reference_does_not_resolve_is_a_conflict_not_a_crash() -> None:
    from triggerd.errors import Conflict
    from triggerd.inputs import check_input

    with pytest.raises(Conflict) as info:
        check_input({"$ref": "#/definitions/nope"}, {"a": 1})
    assert info.value.message == (
        "the workflow's parameter_schema is invalid: a $ref ('/definitions/nope') cannot be"
        " resolved")


@pytest.mark.parametrize(
    ("ref", "path", "message"),
    [
        (
            {},
            "$.workflows[0].secrets.S",
            "a secret reference is one of {env: NAME}, {file: PATH} or {credential: NAME}",
        ),
        (
            "MY_TOKEN",
            "$.workflows[0].secrets.S",
            # A value written in place of a reference may be the secret: not repeated.
            "a secret reference is one of {env: NAME}, {file: PATH} or {credential: NAME},"
            " not a value written in the definition (which is not repeated here)",
        ),
        ({"env": ""}, "$.workflows[0].secrets.S.env", "must not be empty"),
        (
            {"file": "token.txt"},
            "$.workflows[0].secrets.S.file",
            "'token.txt' is not an absolute path",
        ),
        (
            {"credential": 7},
            "$.workflows[0].secrets.S.credential",
            "expected a string, got 7 (an integer)",
        ),
        # A run said it "needs $CREDENTIALS_DIRECTORY" even with the directory set.
        (
            {"credential": "../x"},
            "$.workflows[0].secrets.S.credential",
            "'../x' is not a credential name: a file name in $CREDENTIALS_DIRECTORY (systemd"
            " LoadCredential=), without '/'",
        ),
        (
            {"env": "A", "credential": "b"},
            "$.workflows[0].secrets.S",
            "a secret reference takes exactly one of env, file or credential",
        ),
        ({"vault": "x"}, "$.workflows[0].secrets.S.vault", "unknown key 'vault'"),
    ],
)
def test_bad_secret_ref(ref: Any, path: str, message: str) -> None:
    assert found(workflow(secrets={"S": ref})) == {(path, message)}


# --- cron triggers ------------------------------------------------------------------------


def cron_trigger(**fields: Any) -> Doc:
    return {"name": "c", "type": "cron", "cron": "0 2 * * *", **fields}


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"cron": "61 2 * * *"}, "cron", "minute: 61 is out of range 0-59"),
        ({"cron": "0 2 * * * * *"}, "cron", "expected 5 or 6 fields, got 7 (a year field,"
         " as Quartz has, is not supported; 6 fields start with seconds)"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone 'Europe/Atlantis'"),
        ({"misfire": "sometimes"}, "misfire", "'sometimes' is not one of skip, latest, all"),
        (
            {"overlap": "queue"},
            "overlap",
            "'queue' is not one of allow, skip, buffer_one, cancel_previous",
        ),
        ({"max_catchup": 0}, "max_catchup", "must be at least 1, got 0"),
        (
            {"catchup_window": "soon"},
            "catchup_window",
            "'soon' is not a duration: use a non-negative number and a unit (ms, s, m, h, d),"
            " e.g. '500ms', '30s', '6h'",
        ),
        ({"jitter": 30}, "jitter", "expected a duration such as '30s', got 30"),
    ],
)
def test_bad_cron_trigger(fields: Doc, path: str, message: str) -> None:
    problems = found(workflow(triggers=[cron_trigger(**fields)]))
    assert problems == {(f"$.workflows[0].triggers[0].{path}", message)}


def test_cron_that_never_fires_reports_the_cron_modules_message() -> None:
    from triggerd.cron import parse_cron
    from triggerd.errors import CronError

    with pytest.raises(CronError) as caught:
        parse_cron("0 0 30 2 *")
    assert "never fires" in caught.value.message
    assert found(workflow(triggers=[cron_trigger(cron="0 0 30 2 *")])) == {
        ("$.workflows[0].triggers[0].cron", caught.value.message)
    }


def test_missing_cron_expression() -> None:
    trigger = {"name": "c", "type": "cron"}
    assert found(workflow(triggers=[trigger])) == {
        ("$.workflows[0].triggers[0]", "missing required key 'cron'")
    }


def test_cron_defaults_and_values() -> None:
    triggers = [
        cron_trigger(name="plain"),
        cron_trigger(
            name="full",
            timezone="Europe/Madrid",
            misfire="all",
            catchup_window="6h",
            max_catchup=5,
            overlap="buffer_one",
            jitter="30s",
        ),
    ]
    (spec,) = load_documents([("f", {"workflows": [workflow(triggers=triggers)]})])
    assert [t.config for t in spec.triggers] == [
        CronConfig(cron="0 2 * * *"),
        CronConfig(
            cron="0 2 * * *",
            timezone="Europe/Madrid",
            misfire=MisfirePolicy.ALL,
            catchup_window=timedelta(hours=6),
            max_catchup=5,
            overlap=OverlapPolicy.BUFFER_ONE,
            jitter=timedelta(seconds=30),
        ),
    ]
    assert CronConfig(cron="x") == CronConfig(
        cron="x",
        timezone="UTC",
        misfire=MisfirePolicy.LATEST,
        catchup_window=timedelta(hours=1),
        max_catchup=100,
        overlap=OverlapPolicy.SKIP,
        jitter=timedelta(0),
    )


# --- webhook triggers -----------------------------------------------------------------------


def hook(path: str = "h", name: str = "h", **fields: Any) -> Doc:
    return {"name": name, "type": "webhook", "path": path, **fields}


def test_duplicate_webhook_path_across_files(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.yaml",
        """\
        workflows:
          - key: one
            graph: {nodes: [{id: start, type: noop}]}
            triggers:
              - {name: push, type: webhook, path: github/push}
              - {name: old, type: webhook, path: legacy, enabled: false}
        """,
    )
    second = write(
        tmp_path,
        "b.json",
        json.dumps(
            {
                "workflows": [
                    workflow(
                        "two",
                        triggers=[hook("github/push", "also"), hook("legacy", "legacy")],
                    )
                ]
            }
        ),
    )
    # Only enabled triggers claim a path: a disabled one does not conflict.
    assert check_files([first, second]) == [
        Problem(
            str(second),
            "$.workflows[0].triggers[0].path",
            f"webhook path 'github/push' is already used by the enabled trigger one/push"
            f" (in {first} at $.workflows[0].triggers[0])",
        )
    ]


@pytest.mark.parametrize(
    ("path", "messages"),
    [
        ("_internal/x", ["'_internal/x' starts with '_': paths starting with '_' are reserved"]),
        (
            "/github",
            ["'/github' starts with '/': write the path without it (it is served under /hooks/)"],
        ),
        ("a//b", ["'a//b' contains '//'"]),
        ("a/../b", ["'a/../b' contains a '.' or '..' segment"]),
        ("a b?", ["'a b?' may only contain ASCII letters, digits and the characters . _ ~ / -"]),
        # "letters" read as any letter: ü is one, and was refused.
        ("t/ünï", ["'t/ünï' may only contain ASCII letters, digits and the characters . _ ~ / -"]),
        ("", ["must not be empty"]),
        (
            "_x//y",
            [
                "'_x//y' starts with '_': paths starting with '_' are reserved",
                "'_x//y' contains '//'",
            ],
        ),
    ],
)
def test_bad_webhook_path(path: str, messages: list[str]) -> None:
    assert found(workflow(triggers=[hook(path)])) == {
        ("$.workflows[0].triggers[0].path", message) for message in messages
    }


def test_fine_webhook_paths() -> None:
    triggers = [hook(p, f"h{i}") for i, p in enumerate(["a", "a.b~c-d_e/F9", "github/push/"])]
    assert found(workflow(triggers=triggers)) == set()


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            {"methods": ["POST", "FETCH"]},
            "methods[1]",
            "'FETCH' is not one of GET, POST, PUT, PATCH, DELETE",
        ),
        (
            {"methods": ["post"]},
            "methods[0]",
            "'post' is not one of GET, POST, PUT, PATCH, DELETE (did you mean 'POST'?)",
        ),
        ({"methods": []}, "methods", "must not be empty"),
        ({"methods": ["POST", "POST"]}, "methods", "must not contain duplicates"),
        ({"response": "later"}, "response", "'later' is not one of async, sync"),
        ({"body": "json"}, "body", "'json' is not one of parsed, raw"),
        ({"max_body_bytes": 0}, "max_body_bytes", "must be at least 1, got 0"),
        ({"rate": 0, "burst": 1}, "rate", "must be greater than 0, got 0"),
        ({"burst": 5}, "", "burst applies only together with rate (requests per second)"),
        ({"expose_output": "no"}, "expose_output", "expected true or false, got 'no' (a string)"),
        ({"dedupe": {}}, "dedupe", "dedupe needs one of header, json or body_hash"),
        # No request can carry such a header: every delivery was stored without a key.
        ({"dedupe": {"header": "X Id"}}, "dedupe.header",
         "'X Id' is not a header name (letters, digits and !#$%&'*+.^_`|~-)"),
        ({"auth": {"scheme": "token", "header": "Bad Header", "secret": {"env": "T"}}},
         "auth.header", "'Bad Header' is not a header name (letters, digits and !#$%&'*+.^_`|~-)"),
        (
            {"dedupe": {"header": "X-Id", "body_hash": True}},
            "dedupe",
            "dedupe takes only one of header, json or body_hash",
        ),
        (
            {"dedupe": {"json": "delivery.id"}},
            "dedupe.json",
            "'delivery.id' is not a JSON pointer: it starts with '/', e.g. /delivery/id",
        ),
        (
            {"dedupe": {"body_hash": False}},
            "dedupe.body_hash",
            "body_hash takes true (leave it out otherwise)",
        ),
        (
            {"filter": 5},
            "filter",
            "expected a string, got 5 (an integer)",
        ),
        (
            {"filter": "{{ body.action }}"},
            "filter",
            "unknown name 'body' (a filter sees input, headers, query)",
        ),
        (
            {"filter": "{{ input.x == }}"},
            "filter",
            "syntax error: unexpected 'end of template'",
        ),
        (
            {"filter": "opened"},
            "filter",
            "a filter is an expression, e.g. \"{{ input.action == 'opened' }}\"",
        ),
        (
            # It reads nothing of the request: it failed on each one, stored as filtered.
            {"filter": "{{ 1 / 0 }}"},
            "filter",
            "it fails on every request, which is then filtered: ZeroDivisionError: division"
            " by zero",
        ),
        (
            {"dedupe": {"header": "X-Id", "ttl": "0s"}},
            "dedupe.ttl",
            "'0s' is not a duration longer than zero: use a positive number and a unit"
            " (ms, s, m, h, d), e.g. '500ms', '30s', '6h'",
        ),
    ],
)
def test_bad_webhook_settings(fields: Doc, path: str, message: str) -> None:
    where = "$.workflows[0].triggers[0]" + (f".{path}" if path else "")
    assert found(workflow(triggers=[hook(**fields)])) == {(where, message)}


@pytest.mark.parametrize(
    ("auth", "problems"),
    [
        (
            {"scheme": "github"},
            {
                (
                    "",
                    "auth scheme 'github' needs a secret: {env: NAME}, {file: PATH} or"
                    " {credential: NAME}",
                )
            },
        ),
        (
            {"scheme": "hmac", "secret": {"env": "S"}},
            {("", "auth scheme 'hmac' needs a header (the one that carries the signature)")},
        ),
        (
            {"scheme": "github", "secret": {"env": "S"}, "algorithm": "sha1", "tolerance": "5m"},
            {
                (".algorithm", "'algorithm' does not apply to auth scheme 'github'"),
                (".tolerance", "'tolerance' does not apply to auth scheme 'github'"),
            },
        ),
        (
            {"scheme": "none", "secret": {"env": "S"}},
            {(".secret", "'secret' does not apply to auth scheme 'none'")},
        ),
        (
            {"scheme": "oauth"},
            {
                (
                    ".scheme",
                    "'oauth' is not one of none, token, basic, hmac, github, stripe, standard,"
                    " slack",
                )
            },
        ),
        ({"secret": {"env": "S"}}, {("", "missing required key 'scheme'")}),
        (
            {"scheme": "hmac", "secret": {"env": "S"}, "header": " ", "algorithm": "md5"},
            {
                (".header", "must not be empty"),
                (".algorithm", "'md5' is not one of sha1, sha256, sha512"),
            },
        ),
        (
            {"scheme": "basic", "secret": {"env": "S"}, "username": "a:b"},
            {(".username", "'a:b' is not a valid user name: not empty and without ':'")},
        ),
    ],
)
def test_bad_webhook_auth(auth: Doc, problems: set[tuple[str, str]]) -> None:
    where = "$.workflows[0].triggers[0].auth"
    assert found(workflow(triggers=[hook(auth=auth)])) == {
        (where + suffix, message) for suffix, message in problems
    }


def test_webhook_defaults_and_values() -> None:
    triggers = [
        hook("plain", "plain"),
        hook(
            "full",
            "full",
            methods=["POST", "PUT"],
            auth={
                "scheme": "hmac",
                "secret": {"credential": "hook"},
                "header": "X-Sig",
                "prefix": "sha512=",
                "algorithm": "sha512",
                "encoding": "base64",
            },
            dedupe={"json": "/delivery/id", "ttl": "1d"},
            response="sync",
            timeout="3s",
            expose_output=True,
            max_body_bytes=1024,
            body="raw",
            rate=2.5,
            burst=5,
        ),
    ]
    (spec,) = load_documents([("f", {"workflows": [workflow(triggers=triggers)]})])
    assert [t.config for t in spec.triggers] == [
        WebhookConfig(path="plain"),
        WebhookConfig(
            path="full",
            methods=("POST", "PUT"),
            auth=AuthConfig(
                scheme="hmac",
                secret=SecretRef(credential="hook"),
                header="X-Sig",
                prefix="sha512=",
                algorithm="sha512",
                encoding="base64",
            ),
            dedupe=DedupeConfig(json_pointer="/delivery/id", ttl=timedelta(days=1)),
            response=ResponseMode.SYNC,
            timeout=timedelta(seconds=3),
            expose_output=True,
            max_body_bytes=1024,
            body="raw",
            rate=2.5,
            burst=5,
        ),
    ]
    assert WebhookConfig(path="p") == WebhookConfig(
        path="p",
        methods=("POST",),
        auth=AuthConfig(scheme="none"),
        dedupe=None,
        response=ResponseMode.ASYNC,
        timeout=timedelta(seconds=10),
    )


# --- reading files ----------------------------------------------------------------------


def test_yaml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "broken.yaml",
        """\
        workflows:
          - key: a
            graph: {nodes: [{id: a, type: noop}]
          - key: b
        """,
    )
    (problem,) = check_files([path])
    assert (problem.file, problem.path) == (str(path), "$")
    assert problem.message == (
        "YAML syntax error at line 4, column 3: expected ',' or '}', but got '-'"
        " (while parsing a flow mapping)"
    )


def test_json_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.json", '{"workflows": [\n  {"key": "a",}\n]}')
    assert check_files([path]) == [
        Problem(
            str(path),
            "$",
            "JSON syntax error at line 2, column 15: Expecting property name enclosed in"
            " double quotes",
        )
    ]


def test_a_json_number_beyond_a_float_is_refused_in_the_file(tmp_path: Path) -> None:
    # It read as infinity: check said ok, then apply (and a daemon's start) exit 70 when
    # the database refused it.
    text = ('{"workflows": [{"key": "flj", "graph": {"nodes": [{"id": "a", "type": "set",'
            ' "params": {"value": 1e999}}]}}]}')
    path = write(tmp_path, "big.json", text)
    assert check_files([path]) == [
        Problem(str(path), "$", "JSON syntax error: the number 1e999 is too large")]


def test_a_json_file_loads_like_the_same_yaml(tmp_path: Path) -> None:
    doc = {
        "workflows": [
            workflow(
                "wf",
                graph=graph(
                    {"a": "set", "b": "if", "c": "log"}, edge("a", "b"), edge("b", "c", when="true")
                ),
                triggers=[
                    cron_trigger(),
                    hook("x/y", "hook", auth={"scheme": "token", "secret": {"env": "T"}}),
                ],
            )
        ]
    }
    as_json = write(tmp_path, "wf.json", json.dumps(doc))
    as_yaml = write(tmp_path, "wf.yml", yaml.safe_dump(doc))
    from_json = load_files([as_json])
    assert len(from_json) == 1
    (other_key,) = load_files(
        [write(tmp_path, "other.yaml", yaml.safe_dump({"workflows": [workflow("other")]}))]
    )
    assert other_key.key == "other"
    assert from_json == load_files([as_yaml])


def test_yaml_keeps_on_and_dates_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gotchas.yaml",
        """\
        workflows:
          - key: wf
            graph:
              nodes:
                - {id: a, type: noop, params: {since: 2024-01-01, flag: yes}}
                - {id: b, type: noop}
              edges:
                - {from: a, to: b, on: failure}
        """,
    )
    (spec,) = load_files([path])
    assert spec.graph.edges == (Edge(source="a", target="b", on=EdgeOn.FAILURE),)
    assert spec.graph.nodes[0].params == {"since": "2024-01-01", "flag": "yes"}


def test_yaml_duplicate_keys_and_non_json_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dups.yaml",
        """\
        workflows:
          - key: wf
            timeout: 1m
            timeout: 2m
            graph:
              nodes:
                - id: a
                  type: noop
                  params: {200: ok, blob: !!binary aGk=, x: .nan, y: !Ref z}
        """,
    )
    assert {(p.path, p.message) for p in check_files([path])} == {
        ("$.workflows[0].timeout", "duplicate key 'timeout' (line 4; first at line 3)"),
        (
            "$.workflows[0].graph.nodes[0].params",
            "mapping keys must be strings, got 200 (an integer) (line 9)",
        ),
        (
            "$.workflows[0].graph.nodes[0].params.blob",
            "'aGk=' (!!binary) is not a JSON value (line 9)",
        ),
        ("$.workflows[0].graph.nodes[0].params.x", "'.nan' (!!float) is not a JSON value (line 9)"),
        (
            "$.workflows[0].graph.nodes[0].params.y",
            "could not determine a constructor for the tag '!Ref' (line 9)",
        ),
    }


def test_a_value_json_cannot_hold_is_one_problem(tmp_path: Path) -> None:
    # The reader puts null in its place; the checks then also said "got null" there,
    # about a value the file does not have.
    path = write(
        tmp_path,
        "inf.yaml",
        """\
        workflows:
          - key: wf
            timeout: .inf
            graph: {nodes: [{id: a, type: noop, retry: {max_attempts: .inf}}]}
            triggers:
              - {name: t, type: interval, every: .inf, max_runs: !!binary aGk=}
        """,
    )
    assert {(p.path, p.message) for p in check_files([path])} == {
        ("$.workflows[0].timeout", "'.inf' (!!float) is not a JSON value (line 3)"),
        ("$.workflows[0].graph.nodes[0].retry.max_attempts",
         "'.inf' (!!float) is not a JSON value (line 4)"),
        ("$.workflows[0].triggers[0].every", "'.inf' (!!float) is not a JSON value (line 6)"),
        ("$.workflows[0].triggers[0].max_runs",
         "'aGk=' (!!binary) is not a JSON value (line 6)"),
    }


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "merge.yaml",
        """\
        defaults: &retry {max_attempts: 3, backoff: 1s}
        workflows:
          - key: wf
            graph:
              nodes:
                - {id: a, type: noop, retry: {<<: *retry, backoff: 2s}}
        """,
    )
    # The anchor's home is not a known key; the merge itself is fine.
    assert check_files([path]) == [Problem(str(path), "$.defaults", "unknown key 'defaults'")]


def test_json_duplicate_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dups.json",
        '{"workflows": [{"key": "a", "key": "b",'
        ' "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}',
    )
    assert check_files([path]) == [Problem(str(path), "$.workflows[0].key", "duplicate key 'key'")]


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    # A directory not there was "unknown file type" (it has no .yaml suffix).
    missing_dir = tmp_path / "workflows"
    other = write(tmp_path, "defs.toml", "x = 1")
    empty = write(tmp_path, "empty.yaml", "")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert check_files([missing, missing_dir, other, empty, binary]) == [
        Problem(str(missing), "$", "cannot read file: No such file or directory"),
        Problem(str(missing_dir), "$", "cannot read file: No such file or directory"),
        Problem(str(other), "$", "unknown file type: definition files end in .yaml, .yml or .json"),
        Problem(str(empty), "$", "the top level must be a mapping with a 'workflows' list"),
        Problem(str(binary), "$", "cannot read file: it is not UTF-8 text"),
    ]


def test_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # A JSON file starting with a UTF-8 byte-order mark (some editors write one) was
    # refused in Python's words ("decode using utf-8-sig").
    doc = '{"workflows": [{"key": "b", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}'
    for name in ("bom.json", "bom.yaml"):
        marked = tmp_path / name
        marked.write_bytes(b"\xef\xbb\xbf" + doc.encode())
        assert check_files([marked]) == []
        assert [spec.key for spec in load_files([marked])] == ["b"]


def test_no_files_and_no_workflows() -> None:
    assert load_files([]) == []
    assert load_documents([("api", {"workflows": []})]) == []


# --- stored documents ---------------------------------------------------------------------

CONFIGS = [
    CronConfig(cron="0 2 * * *"),
    CronConfig(
        cron="*/5 * * * *",
        timezone="America/New_York",
        misfire=MisfirePolicy.SKIP,
        catchup_window=timedelta(minutes=90),
        max_catchup=3,
        overlap=OverlapPolicy.CANCEL_PREVIOUS,
        jitter=timedelta(milliseconds=1500),
    ),
    WebhookConfig(path="a/b"),
    WebhookConfig(
        path="x",
        methods=("GET", "POST"),
        auth=AuthConfig(scheme="basic", secret=SecretRef(file="/run/pw"), username="bot"),
        dedupe=DedupeConfig(body_hash=True, ttl=timedelta(hours=12)),
        response=ResponseMode.SYNC,
        timeout=timedelta(seconds=2),
        expose_output=True,
        max_body_bytes=10,
        body="raw",
        rate=0.5,
        burst=1,
    ),
    WebhookConfig(
        path="s",
        auth=AuthConfig(
            scheme="stripe", secret=SecretRef(env="WHSEC"), tolerance=timedelta(minutes=2)
        ),
        dedupe=DedupeConfig(header="Idempotency-Key"),
    ),
    WebhookConfig(
        path="h",
        auth=AuthConfig(
            scheme="hmac",
            secret=SecretRef(credential="c"),
            header="X-Signature",
            prefix="",
            algorithm="sha1",
            encoding="base64",
        ),
        dedupe=DedupeConfig(json_pointer="/id"),
    ),
    ManualConfig(),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_trigger_config_round_trip(config: CronConfig | WebhookConfig | ManualConfig) -> None:
    trigger_type = {
        CronConfig: TriggerType.CRON,
        WebhookConfig: TriggerType.WEBHOOK,
        ManualConfig: TriggerType.MANUAL,
    }[type(config)]
    stored = json.loads(canonical_json(trigger_config_to_json(config)))  # as jsonb gives it back
    assert parse_trigger_config(trigger_type, stored) == config
    assert parse_trigger_config(trigger_type.value, stored) == config


def test_a_stored_config_is_read_back_without_evaluating_its_constants() -> None:
    """A filter or a key that reads nothing of the request is evaluated by check (one that
    fails every time is refused at apply). Read back, a stored one is not: a trigger
    stored by a release that took it would lose its route (404s), and building routes
    spent the event loop's time evaluating each again."""
    from triggerd.webhooks.filtering import filter_problems
    from triggerd.webhooks.keys import key_problems

    stored = {"path": "kept/one", "filter": "{{ 1 / 0 }}",
              "concurrency": {"key": "{{ 1 / 0 }}", "limit": 1}}
    config = parse_trigger_config(TriggerType.WEBHOOK, stored)
    assert isinstance(config, WebhookConfig) and config.filter == "{{ 1 / 0 }}"
    # Outside a read-back they are still found.
    assert list(filter_problems("{{ 1 / 0 }}")) == [
        "it fails on every request, which is then filtered: ZeroDivisionError: division"
        " by zero"]
    assert list(key_problems("{{ 1 / 0 }}")) != []


def test_trigger_config_to_json_is_canonical() -> None:
    assert trigger_config_to_json(CronConfig(cron="0 2 * * *", jitter=timedelta(seconds=90))) == {
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "misfire": "latest",
        "catchup_window": "1h",
        "max_catchup": 100,
        "overlap": "skip",
        "jitter": "1m30s",
    }
    github = AuthConfig(scheme="github", secret=SecretRef(env="GH"))
    assert trigger_config_to_json(
        WebhookConfig(path="gh", auth=github, dedupe=DedupeConfig(header="X-GitHub-Delivery"))
    ) == {
        "path": "gh",
        "methods": ["POST"],
        "auth": {"scheme": "github", "secret": {"env": "GH"}},
        "dedupe": {"header": "X-GitHub-Delivery", "ttl": "7d"},
        "response": "async",
        "timeout": "10s",
        "expose_output": False,
        "body": "parsed",
    }
    assert trigger_config_to_json(ManualConfig()) == {}


def test_a_file_config_and_its_stored_form_parse_alike() -> None:
    short = {"cron": "0 2 * * *", "timezone": "Europe/Madrid"}
    config = parse_trigger_config(TriggerType.CRON, short)
    assert trigger_config_to_json(config) == {
        "cron": "0 2 * * *",
        "timezone": "Europe/Madrid",
        "misfire": "latest",
        "catchup_window": "1h",
        "max_catchup": 100,
        "overlap": "skip",
        "jitter": "0s",
    }
    assert parse_trigger_config(TriggerType.CRON, trigger_config_to_json(config)) == config


def test_invalid_stored_trigger_config() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_trigger_config(TriggerType.CRON, {"cron": "61 * * * *", "name": "x", "jitter": "-1s"})
    assert caught.value.problems == [
        Problem("workflow_triggers.config", "$.cron", "minute: 61 is out of range 0-59"),
        Problem("workflow_triggers.config", "$.name", "unknown key 'name'"),
        Problem(
            "workflow_triggers.config",
            "$.jitter",
            "'-1s' is not a duration: use a non-negative number and a unit (ms, s, m, h, d),"
            " e.g. '500ms', '30s', '6h'",
        ),
    ]
    with pytest.raises(DefinitionError) as caught:
        parse_trigger_config(TriggerType.WEBHOOK, {"path": "x", "auth": {"scheme": "github"}})
    assert [str(p) for p in caught.value.problems] == [
        "workflow_triggers.config: $.auth: auth scheme 'github' needs a secret: {env: NAME},"
        " {file: PATH} or {credential: NAME}"
    ]
    with pytest.raises(DefinitionError) as caught:
        parse_trigger_config("timer", {})
    assert [str(p) for p in caught.value.problems] == [
        "workflow_triggers.config: $: unknown trigger type 'timer' (expected cron, interval,"
        " webhook or manual)"
    ]
    with pytest.raises(DefinitionError) as caught:
        parse_trigger_config(TriggerType.MANUAL, '{"a": 1}')  # type: ignore[arg-type]
    assert [str(p) for p in caught.value.problems] == [
        "workflow_triggers.config: $: expected a mapping, got '{\"a\": 1}' (a string)"
    ]


SMALL_GRAPH = Graph(
    nodes=(
        Node(
            id="fetch",
            type="http",
            params={"url": "http://127.0.0.1:9/x", "headers": {"A": "b"}},
            retry=RetryPolicy(
                max_attempts=3, backoff=timedelta(seconds=2), retry_on=(503, "HTTP_CONNECT")
            ),
            timeout=timedelta(seconds=30),
        ),
        Node(id="route", type="switch", params={"value": "{{ input.k }}", "cases": ["a", 1]}),
        Node(id="a", type="log", params={"message": "a"}),
        Node(id="one", type="noop"),
        Node(id="other", type="noop"),
        Node(id="failed", type="log", params={"message": "failed"}),
    ),
    edges=(
        Edge(source="fetch", target="route"),
        Edge(source="route", target="a", when="a"),
        Edge(source="route", target="one", when="1"),
        Edge(source="route", target="other", when="default"),
        Edge(source="fetch", target="failed", on=EdgeOn.FAILURE),
    ),
)


def test_graph_round_trip() -> None:
    stored = json.loads(canonical_json(graph_to_json(SMALL_GRAPH)))
    assert graph_from_json(stored) == SMALL_GRAPH
    assert graph_to_json(graph_from_json(stored)) == stored


def test_graph_to_json_uses_the_files_keys() -> None:
    assert graph_to_json(SMALL_GRAPH) == {
        "nodes": [
            {
                "id": "fetch",
                "type": "http",
                "params": {"url": "http://127.0.0.1:9/x", "headers": {"A": "b"}},
                "retry": {
                    "max_attempts": 3,
                    "backoff": "2s",
                    "max_backoff": "5m",
                    "retry_on": [503, "HTTP_CONNECT"],
                },
                "timeout": "30s",
            },
            {
                "id": "route",
                "type": "switch",
                "params": {"value": "{{ input.k }}", "cases": ["a", 1]},
            },
            {"id": "a", "type": "log", "params": {"message": "a"}},
            {"id": "one", "type": "noop", "params": {}},
            {"id": "other", "type": "noop", "params": {}},
            {"id": "failed", "type": "log", "params": {"message": "failed"}},
        ],
        "edges": [
            {"from": "fetch", "to": "route"},
            {"from": "route", "to": "a", "when": "a"},
            {"from": "route", "to": "one", "when": "1"},
            {"from": "route", "to": "other", "when": "default"},
            {"from": "fetch", "to": "failed", "on": "failure"},
        ],
    }


def test_a_loaded_graph_stores_like_the_file() -> None:
    doc = graph({"a": "if", "b": "noop"}, edge("a", "b", when=True))
    (spec,) = load_documents([("f", {"workflows": [workflow(graph=doc)]})])
    assert graph_to_json(spec.graph) == {
        "nodes": [
            {"id": "a", "type": "if", "params": {"condition": True}},
            {"id": "b", "type": "noop", "params": {}},
        ],
        "edges": [{"from": "a", "to": "b", "when": "true"}],
    }


def test_graph_from_json_refuses_a_malformed_document() -> None:
    with pytest.raises(DefinitionError) as caught:
        graph_from_json({"nodes": [{"id": "a"}], "edges": [{"from": "a"}]})
    assert [str(p) for p in caught.value.problems] == [
        "workflow_versions.graph: $.nodes[0]: missing required key 'type'",
        "workflow_versions.graph: $.edges[0]: missing required key 'to'",
    ]
    # A stored graph stays readable even if its node type is no longer installed.
    assert graph_from_json({"nodes": [{"id": "a", "type": "gone"}]}) == Graph(
        nodes=(Node(id="a", type="gone"),)
    )


def test_canonical_json() -> None:
    assert canonical_json({"b": [1, {"y": None, "x": "é"}], "a": True}) == (
        '{"a":true,"b":[1,{"x":"é","y":null}]}'
    )
    with pytest.raises(ValueError, match="Out of range float values"):
        canonical_json({"x": float("nan")})


LOL_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
j: &j [*i,*i,*i,*i,*i,*i,*i,*i,*i]
workflows: []
"""


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 10-level "lol" file expands to 9^10 strings; later passes walked every one.
    from triggerd.definitions import loading

    built = 0
    build = loading._YamlBuilder.build

    def counting(self: Any, node: Any, path: Any) -> Any:
        nonlocal built
        built += 1
        return build(self, node, path)

    monkeypatch.setattr(loading._YamlBuilder, "build", counting)
    path = write(tmp_path, "lol.yaml", LOL_BOMB)
    (problem,) = check_files([path])
    assert (problem.file, problem.path) == (str(path), "$")
    assert problem.message == (
        "YAML aliases expand this file to more than 1,000,000 values (at line 7): write the"
        " repeated parts out, or use fewer aliases"
    )
    assert built == 0  # refused before any value was built


def test_yaml_alias_expansion_limit_is_exact() -> None:
    from triggerd.definitions import loading
    from triggerd.definitions.problems import Report

    text = "a: &a [1, 2, 3]\nb: [*a, *a]\n"  # 1 + (1 + 1+3) + (1 + 2*(1+3)) + 2 keys = 16
    assert loading.expanded_yaml_size(text) == 16
    report = Report(file="f.yaml")
    assert loading.parse_yaml(text, report, max_values=16, max_factor=1) == (
        True, {"a": [1, 2, 3], "b": [[1, 2, 3], [1, 2, 3]]}
    )
    assert report.items == []
    report = Report(file="f.yaml")
    assert loading.parse_yaml(text, report, max_values=15, max_factor=1) == (False, None)
    # Without aliases a file is never refused for its size: the limit grows with the file.
    assert loading.parse_yaml(text, Report(file="f.yaml"), max_values=15, max_factor=2)[0]
    assert [message for _, message in report.items] == [
        "YAML aliases expand this file to more than 15 values (at line 1): write the repeated"
        " parts out, or use fewer aliases"
    ]


def test_webhook_paths_are_compared_and_stored_without_a_trailing_slash() -> None:
    # Routing ignores a trailing '/', so "t/none/" beside "t/none" could never fire.
    def hook(name: str, path: str) -> Doc:
        return {"name": name, "type": "webhook", "path": path}

    assert found(workflow(triggers=[hook("a", "t/none"), hook("b", "t/none/")])) == {
        (
            "$.workflows[0].triggers[1].path",
            "webhook path 't/none' is already used by the enabled trigger wf/a"
            " (at $.workflows[0].triggers[0])",
        )
    }
    config = parse_trigger_config("webhook", {"path": "t/none/"})
    assert config.path == "t/none"  # type: ignore[union-attr]


def nested(depth: int) -> str:
    """``depth`` lists, one inside the other (the innermost empty)."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("suffix", ["json", "yaml"])
@pytest.mark.parametrize("depth", [65, 600, 10_000])
def test_a_file_nested_too_deeply_is_one_problem_with_its_line(
    tmp_path: Path, suffix: str, depth: int
) -> None:
    # 600 levels of JSON passed the parser and then ran a later pass out of stack (exit 70,
    # a traceback); 10,000 levels were "nested too deeply" without a line.
    if suffix == "json":
        text = '{"workflows": [],\n "x":\n' + nested(depth) + "}\n"
    else:
        text = "workflows: []\nx:\n  " + nested(depth) + "\n"
    path = write(tmp_path, f"deep.{suffix}", text)
    assert [(p.file, p.path, p.message) for p in check_files([path])] == [
        (str(path), "$", "nested deeper than 64 levels (at line 3)")
    ]


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_nesting_up_to_the_limit_is_read(tmp_path: Path, suffix: str) -> None:
    # The innermost list of 64 is 64 levels below the document: the deepest allowed.
    if suffix == "json":
        text = '{"workflows": [], "x": ' + nested(64) + "}\n"
    else:
        text = "workflows: []\nx: " + nested(64) + "\n"
    path = write(tmp_path, f"deep.{suffix}", text)
    assert [p.message for p in check_files([path])] == ["unknown key 'x'"]


def test_an_alias_that_nests_too_deeply_is_refused_at_the_alias(tmp_path: Path) -> None:
    # Each part is shallow, but the alias puts 40 levels under 30: 70 once expanded.
    text = "workflows: []\nx: &a " + nested(40) + "\ny: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    path = write(tmp_path, "alias.yaml", text)
    assert [(p.path, p.message) for p in check_files([path])] == [
        ("$", "nested deeper than 64 levels (at line 3)")
    ]
    fine = "workflows: []\nx: &a " + nested(30) + "\ny: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    path = write(tmp_path, "fine.yaml", fine)
    assert [p.message for p in check_files([path])] == ["unknown key 'x'", "unknown key 'y'"]


def test_brackets_inside_json_strings_do_not_count_as_nesting(tmp_path: Path) -> None:
    text = json.dumps({"workflows": [], "x": "[" * 100, "y": ['\\"[' * 100]})
    path = write(tmp_path, "strings.json", text)
    assert [p.message for p in check_files([path])] == ["unknown key 'x'", "unknown key 'y'"]


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_a_number_with_too_many_digits_is_one_problem_with_its_line(
    tmp_path: Path, suffix: str
) -> None:
    # Python refuses to read integers of more than 4,300 digits: check and apply ended in
    # "internal error" (exit 70).
    digits = "1" + "0" * 5000
    if suffix == "json":
        text = '{"workflows": [],\n "x":\n ' + digits + "}\n"
    else:
        text = "workflows: []\nx:\n  " + digits + "\n"
    path = write(tmp_path, f"big.{suffix}", text)
    assert [(p.path, p.message) for p in check_files([path])] == [
        ("$.x" if suffix == "yaml" else "$", "a number with more than 4300 digits (line 3)"),
        *([("$.x", "unknown key 'x'")] if suffix == "yaml" else []),
    ]


def test_a_valid_file_is_not_walked_to_order_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Problems are put in document order by numbering every path of the document: for
    a file without problems that walk (0.7 s for 100,000 triggers) orders nothing."""
    from triggerd.definitions import problems

    walks: list[object] = []
    real = problems._preorder

    def counting(document: Any) -> dict[Any, int]:
        walks.append(document)
        return real(document)

    monkeypatch.setattr(problems, "_preorder", counting)
    good = {"workflows": [{"key": "k", "graph": {"nodes": [{"id": "a", "type": "noop"}]}}]}
    assert load_documents([("good.yaml", good)])
    assert walks == []
    bad = {"workflows": [{"key": "k"}]}
    with pytest.raises(DefinitionError):
        load_documents([("bad.yaml", bad)])
    assert walks == [bad]


def test_storable_text_is_looked_at_once_without_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every string of a file is checked for what PostgreSQL cannot store; plain ASCII
    without NUL (nearly all of a large file) needs no closer look and no path."""
    from triggerd import storable

    looked: list[str] = []
    real = storable.unstorable

    def counting(text: str) -> str | None:
        looked.append(text)
        return real(text)

    monkeypatch.setattr(storable, "unstorable", counting)
    clean = {"a": ["x", {"b": "y", "c": 1}], "d": None}
    assert list(storable.unstorable_strings(clean)) == []
    assert looked == []
    dirty = {"a": ["x", {"b\x00": "y", "c": "caf\u00e9", "d": "\ud800"}], "e": "n\x00"}
    assert list(storable.unstorable_strings(dirty)) == [
        (("a", 1, "b\x00"), "the key contains a NUL character (\\u0000), which cannot be stored"),
        (("a", 1, "d"), "contains a lone UTF-16 surrogate, which is not valid Unicode"),
        (("e",), "contains a NUL character (\\u0000), which cannot be stored"),
    ]


def test_equal_trigger_configs_of_a_file_are_built_once() -> None:
    """A large file repeats a few thousand schedules: their (frozen) configs are shared."""
    cron = {"type": "cron", "cron": "5 * * * *", "timezone": "UTC", "misfire": "latest"}
    document = {"workflows": [
        {"key": f"w{w}", "graph": {"nodes": [{"id": "a", "type": "noop"}]},
         "triggers": [{"name": f"t{t}", **cron} for t in range(3)]
         + [{"name": "other", **cron, "timezone": "Asia/Tokyo"}]}
        for w in range(3)
    ]}
    specs = load_documents([("f.yaml", document)])
    configs = [t.config for s in specs for t in s.triggers]
    assert len({id(c) for c in configs}) == 2
    assert configs[0] == build_trigger_config_of(cron)
    assert configs[3] != configs[0]


def build_trigger_config_of(doc: dict[str, Any]) -> Any:
    from triggerd.definitions.build import build_trigger_config
    from triggerd.model import TriggerType

    return build_trigger_config(
        TriggerType(doc["type"]), {k: v for k, v in doc.items() if k != "type"}
    )


STORED_CONFIGS: list[tuple[TriggerType, Any]] = [
    (TriggerType.CRON, {"cron": "0 2 * * *", "timezone": "Europe/Madrid"}),
    (TriggerType.CRON, {"cron": "0 3 * * *", "timezone": "Asia/Tokyo"}),  # same shape
    (TriggerType.CRON, {"cron": ["0 2 * * *", "0 3 * * 1"]}),
    (TriggerType.CRON, {"cron": "", "timezone": "UTC"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "timezone": ""}),
    (TriggerType.CRON, {"cron": 5}),
    (TriggerType.CRON, {"cron": [""]}),
    (TriggerType.CRON, {"cron": []}),
    (TriggerType.CRON, {"timezone": "UTC"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "timezone": None}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "start_at": ""}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "start_at": "2026-01-01T00:00:00Z"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "zone": "UTC"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "catchup_rate": "5/x"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "jitter": "90s", "misfire": "all"}),
    (TriggerType.CRON, {"cron": "0 2 * * *", "misfire": "sometimes"}),
    (TriggerType.INTERVAL, {"every": "5m", "timezone": "UTC"}),
    (TriggerType.INTERVAL, {"every": "5m", "timezone": ""}),
    (TriggerType.INTERVAL, {"every": "5 minutes"}),
    (TriggerType.WEBHOOK, {"path": "hooks/x"}),
    (TriggerType.WEBHOOK, {"path": ""}),
]
INVALID_STORED_CONFIGS = [
    {"cron": "", "timezone": "UTC"}, {"cron": "0 2 * * *", "timezone": ""}, {"cron": 5},
    {"cron": [""]}, {"timezone": "UTC"}, {"cron": "0 2 * * *", "timezone": None},
    {"cron": "0 2 * * *", "start_at": ""}, {"cron": "0 2 * * *", "zone": "UTC"},
    {"cron": "0 2 * * *", "catchup_rate": "5/x"}, {"cron": "0 2 * * *", "misfire": "sometimes"},
    {"every": "5m", "timezone": ""}, {"every": "5 minutes"}, {"path": ""},
]


@pytest.mark.parametrize(("trigger_type", "config"), STORED_CONFIGS)
def test_stored_configs_are_checked_once_per_shape_with_the_full_schemas_answer(
    trigger_type: TriggerType, config: Any
) -> None:
    """A start validates thousands of configs that differ in their expression and zone once
    per shape: the answer and the problems are those of the full validation, whatever was
    validated before."""
    from triggerd.definitions.problems import Report
    from triggerd.definitions.schema import _collect, _config_validator, validate_trigger_config

    full = Report(file="x")
    _collect(_config_validator(trigger_type).iter_errors(config), (), full)
    for _ in range(2):  # the second time from the memo
        report = Report(file="x")
        validate_trigger_config(trigger_type, config, (), report)
        assert report.problems() == full.problems(), config
    assert bool(full.problems()) == (config in INVALID_STORED_CONFIGS)


def test_configs_differing_in_expression_and_zone_share_one_validation() -> None:
    from triggerd.definitions import schema
    from triggerd.definitions.problems import Report

    schema._valid_shapes.clear()
    for minute in range(60):
        for zone in ("UTC", "Europe/Madrid", "Asia/Tokyo"):
            report = Report(file="x")
            config = {"cron": f"{minute} 2 * * *", "timezone": zone}
            schema.validate_trigger_config(TriggerType.CRON, config, (), report)
            assert not report.items
    assert len(schema._valid_shapes[TriggerType.CRON]) == 1


def test_durations_too_long_for_a_timedelta_are_named_wherever_they_are() -> None:
    """The schema's pattern accepts any number of digits and parts; a duration no timedelta
    can hold is named at its path (a node's timeout, a trigger's repeated parts), and a
    duration-named key inside node params, which are free-form, is left alone."""
    many_parts = "99999999d" * 12  # no part too long alone, the sum is
    doc = workflow(
        timeout="99999999999d",
        graph={"nodes": [{"id": "start", "type": "set", "timeout": "1s",
                          "params": {"value": {"jitter": "99999999999d"}}}]},
        triggers=[{"name": "c", "type": "cron", "cron": "* * * * *",
                   "catchup_window": many_parts}],
    )
    assert found(doc) == {
        ("$.workflows[0].timeout", "'99999999999d' is too long a duration (at most 36500d)"),
        ("$.workflows[0].triggers[0].catchup_window",
         f"{many_parts!r} is too long a duration (at most 36500d)"),
    }
    # A timedelta holds 999999999d, but added to an instant it leaves the calendar: a
    # jitter of it failed every timer of the scheduler, a catch-up window the start.
    assert found(workflow(triggers=[
        {"name": "c", "type": "cron", "cron": "* * * * *", "jitter": "999999999d"},
        {"name": "i", "type": "interval", "every": "1h", "offset": "36501d"},
        {"name": "j", "type": "interval", "every": "36500d"},
    ])) == {
        ("$.workflows[0].triggers[0].jitter", "'999999999d' is too long a duration"
                                              " (at most 36500d)"),
        ("$.workflows[0].triggers[1].offset", "'36501d' is too long a duration"
                                              " (at most 36500d)"),
    }
    # And with every duration fine, nothing: the quick look over the text finds none.
    assert found(workflow(timeout="5m", graph={"nodes": [
        {"id": "start", "type": "set", "params": {"value": {"jitter": "9999999999d"}}}
    ]})) == set()


def test_unstorable_text_is_named_after_the_quick_look_sees_it() -> None:
    """A NUL or a lone surrogate anywhere is named at its path; a file that merely mentions
    \\u0000 as text, or holds other non-ASCII text, has no such problem."""
    assert found(workflow(name="a\x00b", description="x\ud800")) == {
        ("$.workflows[0].name", "contains a NUL character (\\u0000), which cannot be stored"),
        ("$.workflows[0].description",
         "contains a lone UTF-16 surrogate, which is not valid Unicode"),
    }
    assert found(workflow(name="literally \\u0000", description="é 漢字")) == set()


@pytest.mark.parametrize(("trigger_type", "config"), STORED_CONFIGS)
def test_file_triggers_are_checked_once_per_shape_with_the_whole_schemas_answer(
    trigger_type: TriggerType, config: Any
) -> None:
    """A file's triggers are validated once per shape too, expression and zone standing for
    one another: the problems are those of the whole file's schema, word for word and in
    order, the first time and from the memo."""
    from triggerd.definitions.problems import Report
    from triggerd.definitions.schema import _collect, _validator, validate_file

    document = {"workflows": [workflow(triggers=[
        {"name": name, "type": trigger_type.value, **config} for name in ("one", "two")
    ])]}
    full = Report(file="x")
    _collect(_validator(None).iter_errors(document), (), full)
    for _ in range(2):
        report = Report(file="x")
        validate_file(document, report)
        assert report.problems() == full.problems(), config
    assert bool(full.problems()) == (config in INVALID_STORED_CONFIGS)


def test_file_triggers_differing_in_expression_and_zone_share_one_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from triggerd.definitions import schema
    from triggerd.definitions.problems import Report

    validations = []
    real = schema._valid_once

    def counted(validator: Any, value: dict[str, Any], seen: dict[str, bool]) -> bool:
        if value not in validations:
            validations.append(value)
        return real(validator, value, seen)

    monkeypatch.setattr(schema, "_valid_once", counted)
    triggers = [{"name": f"t{minute}-{number}", "type": "cron", "cron": f"{minute} 2 * * *",
                 "timezone": zone}
                for minute in range(60) for number, zone in enumerate(("UTC", "Asia/Tokyo"))]
    report = Report(file="x")
    schema.validate_file({"workflows": [workflow(triggers=triggers)]}, report)
    assert not report.items
    trigger_shapes = [v for v in validations if v.get("type") == "cron"]
    assert trigger_shapes == [{"name": "n", "type": "cron", "cron": "n", "timezone": "n"}]


def test_equal_trigger_configs_checked_once_report_each_triggers_own_path() -> None:
    """The checks of a trigger's keys run once per distinct config (names aside); every
    trigger with a bad config still gets its problems at its own path."""
    bad = {"type": "cron", "cron": "61 * * * *", "timezone": "Mars/Base"}
    found_problems = found(
        workflow("one", triggers=[{"name": "a", **bad}, {"name": "b", **bad}]),
        workflow("two", triggers=[{"name": "a", **bad}]),
    )
    paths = sorted(path for path, _ in found_problems)
    assert paths == [
        f"$.workflows[{w}].triggers[{t}].{key}"
        for w, t in ((0, 0), (0, 1), (1, 0)) for key in ("cron", "timezone")
    ]
    assert len({message for _, message in found_problems}) == 2


def test_a_call_of_a_draft_or_archived_workflow_of_the_same_files_is_refused() -> None:
    """apply refused it (a call of it starts nothing); check called the file valid."""
    draft = workflow("g1", status="draft")
    archived = workflow("g3", status="archived")
    assert found(draft, _caller("g2", "g1"), archived, _caller("g4", "g3")) == {
        ("$.workflows[1].graph.nodes[0].params.workflow",
         "node 'call0': workflow 'g1' is a draft"),
        ("$.workflows[3].graph.nodes[0].params.workflow",
         "node 'call0': workflow 'g3' is archived"),
    }
    assert found(workflow("g5", status="active"), _caller("g6", "g5")) == set()


def test_an_error_workflow_that_is_a_draft_or_archived_is_refused() -> None:
    """Its failures started nothing (only an active error workflow runs); check and apply
    said nothing."""
    assert found(workflow("g1", status="draft"), workflow("g2", on_failure="g1"),
                 workflow("g3", status="archived"), workflow("g4", on_failure="g3"),
                 workflow("g5", status="active"), workflow("g6", on_failure="g5")) == {
        ("$.workflows[1].on_failure", "on_failure: workflow 'g1' is a draft"),
        ("$.workflows[3].on_failure", "on_failure: workflow 'g3' is archived"),
    }


def replay_hook(auth: Doc, dedupe: Any = None) -> Doc:
    trigger: Doc = {"name": "pay", "type": "webhook", "path": "pay", "auth": auth}
    if dedupe is not None:
        trigger["dedupe"] = dedupe
    return workflow("shop", triggers=[trigger])


STRIPE_AUTH: Doc = {"scheme": "stripe", "secret": {"env": "S"}}


@pytest.mark.parametrize(
    ("auth", "dedupe", "where", "message"),
    [
        # The default tolerance (5m) against a ttl set short.
        (STRIPE_AUTH, {"json": "/id", "ttl": "5m"}, "dedupe.ttl",
         "auth tolerance 5m accepts a signed request for 10m (the tolerance before and after"
         " its timestamp), longer than its dedupe ttl 5m"),
        # A tolerance set long against the default ttl (7d).
        ({**STRIPE_AUTH, "tolerance": "4d"}, None, "auth.tolerance",
         "auth tolerance 4d accepts a signed request for 8d (the tolerance before and after"
         " its timestamp), longer than its dedupe ttl 7d"),
        ({"scheme": "slack", "secret": {"env": "S"}, "tolerance": "1h"},
         {"header": "X-Id", "ttl": "90m"}, "dedupe.ttl",
         "auth tolerance 1h accepts a signed request for 2h (the tolerance before and after"
         " its timestamp), longer than its dedupe ttl 1h30m"),
    ],
    ids=["default-tolerance", "default-ttl", "both-set"],
)
def test_a_tolerance_outlasting_the_dedupe_ttl_is_refused(
    auth: Doc, dedupe: Any, where: str, message: str
) -> None:
    assert found(replay_hook(auth, dedupe)) == {(
        f"$.workflows[0].triggers[0].{where}",
        f"webhook trigger shop/pay: {message}: a captured request could be replayed as a new"
        " run after its delivery id expires; set dedupe ttl to at least"
        f" {message.split(' for ')[1].split(' ')[0]} or lower the tolerance",
    )}


@pytest.mark.parametrize(
    ("auth", "dedupe"),
    [
        (STRIPE_AUTH, None),  # the defaults: 5m and 7d
        ({"scheme": "standard", "secret": {"env": "S"}, "tolerance": "1h"}, {"header": "X",
                                                                             "ttl": "2h"}),
        ({**STRIPE_AUTH, "tolerance": "1h"}, "none"),  # no dedupe: no ttl to outlast
        ({"scheme": "github", "secret": {"env": "S"}}, {"header": "X", "ttl": "1s"}),
        ({"scheme": "token", "secret": {"env": "S"}}, {"header": "X", "ttl": "1s"}),
    ],
    ids=["defaults", "ttl-twice-tolerance", "dedupe-none", "github", "token"],
)
def test_a_dedupe_ttl_covering_the_tolerance_passes(auth: Doc, dedupe: Any) -> None:
    assert found(replay_hook(auth, dedupe)) == set()
