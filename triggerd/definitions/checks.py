"""Semantic checks: the rules a JSON Schema cannot say.

Each check reads the raw document defensively and skips what it cannot judge (a value of
the wrong type has already been reported by the schema), so one mistake is reported once
and does not hide the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from triggerd.correlation import correlation_problems
from triggerd.cron import parse_cron
from triggerd.definitions.build import document_tenant
from triggerd.definitions.params import MAX_EDGES, MAX_NODES, check_nodes, too_large
from triggerd.definitions.problems import JsonPath, Report, format_path, show, suggestion
from triggerd.definitions.schedule_checks import check_scheduled, cron_problem
from triggerd.durations import MAX_DURATION, format_duration, parse_duration
from triggerd.errors import CronError, DurationError
from triggerd.httpnames import HEADER_NAME_RULE, is_header_name
from triggerd.inputs import call_input_problems, closed_input_keys, summary_problems
from triggerd.model import DedupeConfig, RetryPolicy, inactive_state, normalize_webhook_path
from triggerd.storable import unstorable_strings
from triggerd.walker import DEFAULT_BRANCH, branch_label
from triggerd.webhooks.allowlist import parse_network
from triggerd.webhooks.auth import DEFAULT_TOLERANCE, TIMESTAMPED_SCHEMES
from triggerd.webhooks.dedupe import PROVIDER_DEDUPE
from triggerd.webhooks.filtering import filter_problems
from triggerd.webhooks.keys import key_problems

# Which auth keys each scheme uses (besides `scheme`), and which it cannot do without.
AUTH_KEYS: Mapping[str, frozenset[str]] = {
    "none": frozenset(),
    "token": frozenset({"secret", "header", "prefix"}),
    "basic": frozenset({"secret", "username"}),
    "hmac": frozenset({"secret", "header", "prefix", "algorithm", "encoding"}),
    "github": frozenset({"secret"}),
    "stripe": frozenset({"secret", "tolerance"}),
    "standard": frozenset({"secret", "tolerance"}),
    "slack": frozenset({"secret", "tolerance"}),
}
_AUTH_OPTIONS = frozenset().union(*AUTH_KEYS.values())
_AUTH_NEEDS: Mapping[str, tuple[str, ...]] = {
    scheme: ("secret", "header") if scheme == "hmac" else ("secret",)
    for scheme in AUTH_KEYS
    if scheme != "none"
}
_NEEDS_WHAT = {
    "secret": "a secret: {env: NAME}, {file: PATH} or {credential: NAME}",
    "header": "a header (the one that carries the signature)",
}
IF_BRANCHES = ("true", "false")
APPROVAL_BRANCHES = ("approved", "rejected", "timeout")

_META_VALIDATOR = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)


def known_node_types() -> frozenset[str]:
    """The node types installed now: the registry's built-ins plus entry points."""
    # Imported here: loading the node types (aiohttp, entry points) is only needed by the
    # callers that check node types.
    from triggerd.nodes.registry import node_type_names

    return frozenset(node_type_names())


def _workflows(document: Any) -> list[tuple[JsonPath, dict[str, Any]]]:
    if not isinstance(document, dict) or not isinstance(document.get("workflows"), list):
        return []
    return [
        (("workflows", index), workflow)
        for index, workflow in enumerate(document["workflows"])
        if isinstance(workflow, dict)
    ]


def _triggers(workflow: dict[str, Any], path: JsonPath) -> list[tuple[JsonPath, dict[str, Any]]]:
    triggers = workflow.get("triggers")
    if not isinstance(triggers, list):
        return []
    return [
        ((*path, "triggers", index), trigger)
        for index, trigger in enumerate(triggers)
        if isinstance(trigger, dict)
    ]


_DURATION_KEYS = frozenset(
    {"timeout", "backoff", "max_backoff", "catchup_window", "jitter", "tolerance", "ttl",
     "every", "offset", "period", "max_wait"}
)


def _too_long_duration(text: str) -> bool:
    """Whether ``text`` is a duration longer than any may be (MAX_DURATION; another fault,
    such as a format the schema refuses, is the schema's to report)."""
    try:
        parse_duration(text)
    except DurationError as exc:
        return "too long" in exc.message
    return False


def _check_duration_sizes(value: Any, path: JsonPath, report: Report) -> None:
    """Durations the schema's pattern accepts but longer than any may be ("999999999d")."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _DURATION_KEYS and isinstance(item, str):
                if _too_long_duration(item):
                    report.add((*path, key), f"{item!r} is too long a duration (at most"
                                             f" {MAX_DURATION.days}d)")
            elif key != "params":  # node params are free-form
                _check_duration_sizes(item, (*path, key), report)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_duration_sizes(item, (*path, i), report)


# A duration key's string value in json.dumps' text (a quote inside a string is escaped, so
# this finds keys only, or too many, which costs a look, never too few).
_DURATION_VALUE = re.compile(
    '"(?:' + "|".join(map(re.escape, sorted(_DURATION_KEYS))) + r')": ("(?:[^"\\]|\\.)*")'
)


def _json_text(document: Any) -> str | None:
    """The document as JSON text, non-ASCII as it is; ``None`` when it is not JSON."""
    try:
        return json.dumps(document, ensure_ascii=False, check_circular=False)
    except (TypeError, ValueError, RecursionError):
        return None


def _no_duration_too_long(text: str) -> bool:
    """Whether no string under a duration key, anywhere in the document's text, is too long
    a duration (then the walk that names where one is would find none)."""
    return not any(_too_long_duration(json.loads(match.group(1)))
                   for match in _DURATION_VALUE.finditer(text))


def _trigger_config_problems(
    trigger: dict[str, Any], checked: dict[str, list[tuple[JsonPath, str]]]
) -> list[tuple[JsonPath, str]]:
    """:func:`check_trigger_config`'s problems for ``trigger``, below its path, found once
    per distinct text of it without its name in ``checked``: the checks read the type's
    keys only (a large file is 100,000 triggers and a few thousand schedules)."""
    rest = dict(trigger)
    rest["name"] = None
    key = repr(rest)
    found = checked.get(key)
    if found is None:
        scratch = Report(file="")
        check_trigger_config(trigger.get("type"), trigger, (), scratch)
        found = checked[key] = scratch.items
    return found


def check_document(document: Any, report: Report, *, node_types: Collection[str]) -> None:
    """Every semantic check that needs only this one document."""
    checked: dict[str, list[tuple[JsonPath, str]]] = {}
    # The two walks over every value below find nothing in most files, which their JSON
    # text (one C call, a fifth of their time) shows first.
    text = _json_text(document)
    if text is None or not _no_duration_too_long(text):
        _check_duration_sizes(document, (), report)
    # What apply could not store: refused here, so check says what apply would. ASCII
    # without NUL (escaped as \u0000 in the text) is always storable.
    if text is None or not text.isascii() or "\\u0000" in text:
        for path, reason in unstorable_strings(document):
            report.add(path, reason)
    for path, workflow in _workflows(document):
        graph = workflow.get("graph")
        if isinstance(graph, dict):
            check_graph(graph, (*path, "graph"), report, node_types=node_types)
        check_nodes(workflow, path, report, node_types=node_types)
        schema = workflow.get("parameter_schema")
        if isinstance(schema, dict) and check_parameter_schema(
                schema, (*path, "parameter_schema"), report):
            check_scheduled_inputs(workflow, schema, path, report)
        if workflow.get("on_failure") is not None and workflow.get("on_failure") == workflow.get(
                "key"):
            report.add((*path, "on_failure"),
                       "a workflow cannot be its own error workflow (its failures would start"
                       " it again)")
        first_name: dict[str, JsonPath] = {}
        for trigger_path, trigger in _triggers(workflow, path):
            name = trigger.get("name")
            if isinstance(name, str):
                if name in first_name:
                    report.add(
                        (*trigger_path, "name"),
                        f"duplicate trigger name {name!r}"
                        f" (first at {format_path(first_name[name])})",
                    )
                else:
                    first_name[name] = trigger_path
            for where, message in _trigger_config_problems(trigger, checked):
                report.add((*trigger_path, *where), message)
            _check_replay_window(workflow.get("key"), trigger, trigger_path, report)


# How deep workflow nodes may nest runs when no configuration says (the default of
# [executor] max_workflow_depth, which bounds them at run time; check and apply are given
# the configured one).
MAX_WORKFLOW_DEPTH = 8


def _child_calls(workflow: dict[str, Any], path: JsonPath
                 ) -> list[tuple[str, JsonPath]]:
    """The workflow keys this workflow's `workflow` nodes name literally, with the path of
    their parameter (a key given by an expression is known only at run time)."""
    graph = workflow.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    calls = []
    for i, node in enumerate(nodes if isinstance(nodes, list) else []):
        if not isinstance(node, dict) or node.get("type") != "workflow":
            continue
        params = node.get("params")
        key = params.get("workflow") if isinstance(params, dict) else None
        if isinstance(key, str) and "{{" not in key:
            calls.append((key, (*path, "graph", "nodes", i, "params", "workflow")))
    return calls


def _check_workflow_calls(calls: dict[str, tuple[Report, list[tuple[str, JsonPath]]]],
                          max_depth: int) -> None:
    """No cycle of workflows calling each other, and no chain deeper than ``max_depth``
    ([executor] max_workflow_depth), among the workflows loaded together."""
    depth: dict[str, int] = {}
    reported: set[tuple[str, str]] = set()

    def walk(key: str, trail: tuple[str, ...]) -> int:
        if key in depth:
            return depth[key]
        report, called = calls.get(key, (None, []))
        deepest = 0
        for child, where in called:
            if child in trail or child == key:
                before = trail[trail.index(child):] if child in trail else ()
                cycle = " -> ".join((*before, key, child))
                if report is not None and (key, child) not in reported:
                    reported.add((key, child))
                    report.add(where, f"workflow {child!r} is already running in this chain:"
                                      f" {cycle} (a cycle of sub-workflows)")
                continue
            deepest = max(deepest, 1 + walk(child, (*trail, key)))
        depth[key] = deepest
        return deepest

    for key, (report, called) in calls.items():
        if walk(key, ()) > max_depth and called:
            report.add(called[0][1], f"workflow {key!r} nests runs deeper than"
                                     f" {max_depth} levels ([executor] max_workflow_depth)")


def check_across(documents: Sequence[tuple[Report, Any]], *,
                 max_workflow_depth: int = MAX_WORKFLOW_DEPTH) -> None:
    """Checks across everything loaded together: workflow keys unique per tenant, paths
    unique per tenant among enabled webhook triggers, and workflow nodes that call each
    other (within their tenant) in a cycle or too deep."""
    keys: dict[tuple[str, str], tuple[Report, JsonPath]] = {}
    hooks: dict[tuple[str, str], tuple[Report, JsonPath, str]] = {}
    calls: dict[str, dict[str, tuple[Report, list[tuple[str, JsonPath]]]]] = {}
    for report, document in documents:
        tenant = document_tenant(document)
        for path, workflow in _workflows(document):
            key = workflow.get("key")
            if isinstance(key, str) and key not in calls.setdefault(tenant, {}):
                calls[tenant][key] = (report, _child_calls(workflow, path))
    for tenant_calls in calls.values():
        _check_workflow_calls(tenant_calls, max_workflow_depth)
    _check_call_inputs(documents)
    for report, document in documents:
        tenant = document_tenant(document)
        for path, workflow in _workflows(document):
            key = workflow.get("key")
            if isinstance(key, str):
                if (tenant, key) in keys:
                    first_report, first_path = keys[(tenant, key)]
                    report.add(
                        (*path, "key"),
                        f"duplicate workflow key {key!r}"
                        f" (first defined {_where(first_report, first_path, report)})",
                    )
                else:
                    keys[(tenant, key)] = (report, path)
            for trigger_path, trigger in _triggers(workflow, path):
                hook_path = trigger.get("path")
                if (
                    trigger.get("type") != "webhook"
                    or trigger.get("enabled", True) is False
                    or not isinstance(hook_path, str)
                ):
                    continue
                owner = f"{key}/{trigger.get('name')}"
                hook_path = normalize_webhook_path(hook_path)
                if (tenant, hook_path) in hooks:
                    first_report, first_path, first_owner = hooks[(tenant, hook_path)]
                    report.add(
                        (*trigger_path, "path"),
                        f"webhook path {hook_path!r} is already used by the enabled trigger"
                        f" {first_owner} ({_where(first_report, first_path, report)})",
                    )
                else:
                    hooks[(tenant, hook_path)] = (report, trigger_path, owner)


def _check_call_inputs(documents: Sequence[tuple[Report, Any]]) -> None:
    """A workflow node's literal ``input`` against the parameter_schema of the child it
    names, and the failure summary against the schema of the ``on_failure`` workflow (which
    must be active: a draft or archived one starts nothing), when that workflow is loaded
    too (its latest version: a pinned one is in the database only). apply found these;
    check called the file valid."""
    schemas: dict[tuple[str, str], Any] = {}
    statuses: dict[tuple[str, str], Any] = {}
    for _, document in documents:
        tenant = document_tenant(document)
        for _, workflow in _workflows(document):
            key = workflow.get("key")
            if isinstance(key, str):
                schemas.setdefault((tenant, key), workflow.get("parameter_schema"))
                statuses.setdefault((tenant, key), workflow.get("status"))
    for report, document in documents:
        tenant = document_tenant(document)
        for path, workflow in _workflows(document):
            target = workflow.get("on_failure")
            status = statuses.get((tenant, target)) if isinstance(target, str) else None
            state = inactive_state(status) if isinstance(status, str) else None
            if state is not None:  # as apply says: its failures would start nothing
                report.add((*path, "on_failure"), f"on_failure: workflow {target!r} is {state}")
            schema = schemas.get((tenant, target)) if isinstance(target, str) else None
            if isinstance(schema, dict):
                for problem in summary_problems(schema):
                    report.add((*path, "on_failure"),
                               f"on_failure: {target!r}'s parameter_schema refuses the"
                               f" failure summary its runs get: {problem}")
            graph = workflow.get("graph")
            nodes = graph.get("nodes") if isinstance(graph, dict) else None
            for i, node in enumerate(nodes if isinstance(nodes, list) else []):
                if not isinstance(node, dict) or node.get("type") != "workflow":
                    continue
                params = node.get("params")
                if not isinstance(params, dict):
                    continue
                key = params.get("workflow")
                status = statuses.get((tenant, key)) if isinstance(key, str) else None
                state = inactive_state(status) if isinstance(status, str) else None
                if state is not None:  # as apply says: a call of it starts nothing
                    report.add((*path, "graph", "nodes", i, "params", "workflow"),
                               f"node {node.get('id')!r}: workflow {key!r} is {state}")
                    continue
                if "version" in params:
                    continue
                schema = schemas.get((tenant, key)) if isinstance(key, str) else None
                if not isinstance(schema, dict):
                    continue
                for problem in call_input_problems(schema, params.get("input", {})):
                    report.add((*path, "graph", "nodes", i, "params", "input"),
                               f"node {node.get('id')!r}: its input does not match {key!r}'s"
                               f" parameter_schema: {problem}")


def _where(first: Report, path: JsonPath, current: Report) -> str:
    if first is current:
        return f"at {format_path(path)}"
    return f"in {first.file} at {format_path(path)}"


# --- graph ---------------------------------------------------------------------------


def check_graph(
    graph: dict[str, Any], path: JsonPath, report: Report, *, node_types: Collection[str]
) -> None:
    """Unique ids, known types, edges between existing nodes with valid branch labels,
    exactly one entry node, no cycle, every node reachable from the entry."""
    nodes = graph.get("nodes")
    edges = graph.get("edges", [])
    if not isinstance(nodes, list) or not isinstance(edges, list):
        return
    if too_large(graph):
        report.add((*path, "nodes") if len(nodes) > MAX_NODES else (*path, "edges"),
                   f"the graph has {len(nodes):,} nodes and {len(edges):,} edges; a workflow"
                   f" may have at most {MAX_NODES:,} and {MAX_EDGES:,} (split it into"
                   " sub-workflows: the workflow node)")
        return
    index: dict[str, int] = {}
    types: dict[str, str] = {}
    cases: dict[str, tuple[str, ...] | None] = {}
    # Whether every node and edge could be read; the shape checks need all of them.
    complete = True
    for i, node in enumerate(nodes):
        node_path = (*path, "nodes", i)
        if not isinstance(node, dict):
            complete = False
            continue
        node_type = node.get("type")
        node_cases: tuple[str, ...] | None = None
        if isinstance(node_type, str) and node_type:
            if node_type not in node_types:
                report.add((*node_path, "type"), _unknown_type(node_type, node_types))
            elif node_type == "switch":
                node_cases = _switch_cases(node, node_path, report)
        _check_retry(node.get("retry"), (*node_path, "retry"), report)
        node_id = node.get("id")
        if not isinstance(node_id, str):
            complete = False
        elif node_id in index:
            report.add(
                (*node_path, "id"),
                f"duplicate node id {node_id!r}"
                f" (first at {format_path((*path, 'nodes', index[node_id]))})",
            )
        else:
            index[node_id] = i
            cases[node_id] = node_cases
            if isinstance(node_type, str) and node_type:
                types[node_id] = node_type

    links: list[tuple[int, str, str]] = []
    seen_edges: dict[tuple[str, str, str | None, str], int] = {}
    for j, edge in enumerate(edges):
        edge_path = (*path, "edges", j)
        if not isinstance(edge, dict):
            complete = False
            continue
        ends_ok = True
        for end in ("from", "to"):
            ref = edge.get(end)
            if not isinstance(ref, str):
                ends_ok = complete = False
            elif ref not in index:
                report.add((*edge_path, end), f"unknown node {ref!r}{suggestion(ref, index)}")
                ends_ok = complete = False
        if not ends_ok:
            continue
        source, target = edge["from"], edge["to"]
        links.append((j, source, target))
        when = edge.get("when")
        label = branch_label(when) if isinstance(when, str | int | float | bool) else None
        signature = (source, target, label, str(edge.get("on", "success")))
        if signature in seen_edges:
            report.add(
                edge_path,
                f"duplicate edge (same as {format_path((*path, 'edges', seen_edges[signature]))})",
            )
        else:
            seen_edges[signature] = j
        if source in types and types[source] in node_types:
            _check_branch(edge, edge_path, source, types[source], cases.get(source), report)

    _check_cycles(index, links, path, report)
    if complete:
        _check_entry(index, links, path, report)


def _unknown_type(node_type: str, node_types: Collection[str]) -> str:
    hint = suggestion(node_type, node_types)
    if hint:
        return f"unknown node type {node_type!r}{hint}"
    return f"unknown node type {node_type!r} (known: {', '.join(sorted(node_types))})"


def _switch_cases(
    node: dict[str, Any], node_path: JsonPath, report: Report
) -> tuple[str, ...] | None:
    """The branch labels of a switch node's cases, or None when they cannot be known before
    the run (an expression) or are wrong (reported)."""
    params = node.get("params", {})
    if not isinstance(params, dict):
        return None
    cases = params.get("cases")
    if cases is None:
        report.add((*node_path, "params"), "a 'switch' node needs params.cases, a list of values")
        return None
    if isinstance(cases, str) and "{{" in cases:
        return None  # computed at run time
    if not isinstance(cases, list) or not cases:
        report.add(
            (*node_path, "params", "cases"), "a 'switch' node needs a non-empty list of cases"
        )
        return None
    labels: list[str] = []
    dynamic = False
    for k, case in enumerate(cases):
        label = branch_label(case)
        if isinstance(case, str) and "{{" in case:
            dynamic = True
        elif label == DEFAULT_BRANCH:
            report.add(
                (*node_path, "params", "cases", k),
                f"{DEFAULT_BRANCH!r} cannot be a case: it names the fallback branch",
            )
        elif label in labels:
            report.add((*node_path, "params", "cases", k), f"duplicate case {show(case)}")
        else:
            labels.append(label)
    return None if dynamic else tuple(labels)


def _check_branch(
    edge: dict[str, Any],
    edge_path: JsonPath,
    source: str,
    source_type: str,
    cases: tuple[str, ...] | None,
    report: Report,
) -> None:
    on = edge.get("on", "success")
    when = edge.get("when")
    if on not in ("success", "failure") or (
        "when" in edge and not isinstance(when, str | int | float | bool)
    ):
        return  # reported by the schema
    if on == "failure":
        if "when" in edge:
            report.add((*edge_path, "when"), "failure edges take no 'when'")
        return
    if source_type == "if":
        if "when" not in edge:
            report.add(
                edge_path, f'edges leaving the \'if\' node {source!r} need when: "true" or "false"'
            )
        elif branch_label(when) not in IF_BRANCHES:
            report.add(
                (*edge_path, "when"),
                f"{show(when)} is not a branch of the 'if' node {source!r}:"
                ' use "true" or "false"',
            )
    elif source_type == "switch":
        if cases is None:
            return
        choices = ", ".join([*(show(c) for c in cases), f"{DEFAULT_BRANCH!r}"])
        if "when" not in edge:
            report.add(
                edge_path,
                f"edges leaving the 'switch' node {source!r} need when: one of {choices}",
            )
        elif branch_label(when) not in (*cases, DEFAULT_BRANCH):
            report.add(
                (*edge_path, "when"),
                f"{show(when)} is not a case of the 'switch' node {source!r}: use one of {choices}",
            )
    elif source_type == "approval":
        # A plain edge is taken whatever the decision; a conditional one for its decision.
        if "when" in edge and branch_label(when) not in APPROVAL_BRANCHES:
            report.add(
                (*edge_path, "when"),
                f"{show(when)} is not a decision of the 'approval' node {source!r}: use"
                f" {', '.join(repr(b) for b in APPROVAL_BRANCHES)}",
            )
    elif "when" in edge:
        report.add(
            (*edge_path, "when"),
            f"only edges leaving 'if', 'switch' and 'approval' nodes take 'when'"
            f" ({source!r} is a {source_type!r} node)",
        )


def _check_cycles(
    index: Mapping[str, int], links: list[tuple[int, str, str]], path: JsonPath, report: Report
) -> None:
    """Report every edge that closes a cycle, with the cycle it closes."""
    outgoing: dict[str, list[tuple[int, str]]] = {node_id: [] for node_id in index}
    for j, source, target in links:
        outgoing[source].append((j, target))
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in index:
        if start in state:
            continue
        trail = [start]
        stack = [iter(outgoing[start])]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[trail.pop()] = 2
                stack.pop()
                continue
            j, target = step
            if state.get(target) == 1:
                loop = [*trail[trail.index(target) :], target]
                report.add((*path, "edges", j), f"this edge closes a cycle: {' -> '.join(loop)}")
            elif target not in state:
                state[target] = 1
                trail.append(target)
                stack.append(iter(outgoing[target]))


def _check_entry(
    index: Mapping[str, int],
    links: list[tuple[int, str, str]],
    path: JsonPath,
    report: Report,
) -> None:
    targets = {target for _, _, target in links}
    entries = [node_id for node_id in index if node_id not in targets]
    if len(entries) > 1:
        report.add(
            (*path, "nodes"),
            f"the graph has {len(entries)} entry nodes (nodes without incoming edges):"
            f" {', '.join(map(repr, entries))}; it needs exactly one",
        )
        return
    if not entries:
        return  # every node has an incoming edge: the cycle is reported
    outgoing: dict[str, list[str]] = {node_id: [] for node_id in index}
    for _, source, target in links:
        outgoing[source].append(target)
    reached = {entries[0]}
    queue = [entries[0]]
    while queue:
        for target in outgoing[queue.pop()]:
            if target not in reached:
                reached.add(target)
                queue.append(target)
    for node_id, i in index.items():
        if node_id not in reached:
            report.add(
                (*path, "nodes", i),
                f"node {node_id!r} is not reachable from the entry node {entries[0]!r}",
            )


def _duration(value: Any, default: timedelta) -> timedelta | None:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except DurationError:
        return None  # reported by the schema


def _check_retry(retry: Any, path: JsonPath, report: Report) -> None:
    if not isinstance(retry, dict):
        return
    defaults = RetryPolicy()
    backoff = _duration(retry.get("backoff"), defaults.backoff)
    ceiling = _duration(retry.get("max_backoff"), defaults.max_backoff)
    if backoff is not None and ceiling is not None and backoff > ceiling:
        report.add(
            (*path, "backoff"),
            f"backoff {format_duration(backoff)} is longer than max_backoff"
            f" {format_duration(ceiling)}",
        )


# --- parameter schema ----------------------------------------------------------------


def check_parameter_schema(schema: dict[str, Any], path: JsonPath, report: Report) -> bool:
    """The run input's schema must itself be a valid JSON Schema (draft 2020-12) whose
    references all resolve (within the schema: nothing is fetched); whether it is."""
    valid = True
    for error in _META_VALIDATOR.iter_errors(schema):
        valid = False
        best = best_match([error])
        report.add(path + tuple(best.absolute_path), f"not a valid JSON Schema: {best.message}")
    if valid:
        before = len(report.items)
        root = DRAFT202012.create_resource(schema)
        _check_references(schema, Registry().resolver_with_root(root), path, report)
        _check_required(schema, path, report)
        valid = len(report.items) == before
    return valid


def _check_required(schema: dict[str, Any], path: JsonPath, report: Report) -> None:
    """A required key that the schema never allows makes it refuse every input: each
    webhook was answered 422 and each fire refused, where check said the file was valid."""
    kinds = schema.get("type", "object")
    if kinds not in ("object", ["object"]):
        return  # required applies to objects only: an input of another type passes it
    allowed = closed_input_keys(schema)
    required = schema.get("required")
    properties = schema.get("properties", {})
    for index, name in enumerate(required if isinstance(required, list) else []):
        if not isinstance(name, str):
            continue
        if allowed is not None and name not in allowed:
            report.add((*path, "required", index),
                       f"{name!r} is required, but it is not among the properties and"
                       f" additionalProperties is false: no input can pass this schema"
                       f"{suggestion(name, allowed)}")
        elif isinstance(properties, dict) and properties.get(name) is False:
            report.add((*path, "required", index),
                       f"{name!r} is required, but its property schema is false: no input"
                       " can pass this schema")


# Triggers whose runs get exactly their `input:` (a webhook's comes from the request, a
# manual fire adds its own): one that fails the parameter schema fails every run.
_SCHEDULED_TYPES = frozenset({"cron", "interval"})


def check_scheduled_inputs(
    workflow: dict[str, Any], schema: dict[str, Any], path: JsonPath, report: Report
) -> None:
    """The `input:` of each enabled cron or interval trigger that runs this version passes
    its parameter schema, as the executor checks it (every scheduled run failed with
    ``INPUT_INVALID`` at run time, and `check` said the file was valid)."""
    validator: Draft202012Validator | None = None
    for trigger_path, trigger in _triggers(workflow, path):
        kind = trigger.get("type")
        if (not isinstance(kind, str) or kind not in _SCHEDULED_TYPES
                or trigger.get("enabled") is False
                or trigger.get("version") is not None):  # a pinned version has its own
            continue
        run_input = trigger.get("input", {})
        if not isinstance(run_input, dict):
            continue  # the file's schema refuses it
        if validator is None:
            validator = Draft202012Validator(
                schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(run_input),
                        key=lambda e: (tuple(map(str, e.absolute_path)), e.message))
        for error in errors:
            report.add(
                (*trigger_path, "input", *error.absolute_path),
                f"{error.message}; every run of this trigger would fail with INPUT_INVALID"
                " (its input must match the workflow's parameter_schema)",
            )


# Keywords whose values are data, not schemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def _check_references(node: Any, resolver: Any, path: JsonPath, report: Report) -> None:
    """Every ``$ref`` / ``$dynamicRef`` below ``node`` resolves (an unresolvable one failed
    every run of the workflow with an internal error)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_references(item, resolver, (*path, index), report)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("$id"), str):
        resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
    for key in ("$ref", "$dynamicRef"):
        ref = node.get(key)
        if isinstance(ref, str):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                report.add((*path, key), f"{key} {ref[:200]!r} cannot be resolved: only"
                                         " references within this schema are followed")
    for key, value in node.items():
        if key not in _DATA_KEYWORDS:
            _check_references(value, resolver, (*path, key), report)


# --- triggers ------------------------------------------------------------------------


def check_trigger_config(
    trigger_type: Any, config: Mapping[str, Any], path: JsonPath, report: Report
) -> None:
    """The checks of one trigger's type-specific keys (also used for stored configs)."""
    check_scheduled(trigger_type, config, path, report)
    mapping = config.get("correlation")
    if isinstance(mapping, dict):
        for key, problem in correlation_problems(str(trigger_type), mapping):
            report.add((*path, "correlation", key), problem)
    if trigger_type == "cron":
        _check_cron(config, path, report)
    elif trigger_type == "interval":
        # Its zone only dates previews, but every preview and reload read it (an unknown
        # one passed, then stopped the daemon's start).
        _check_timezone(config, path, report)
    elif trigger_type == "webhook":
        auth = config.get("auth")
        if isinstance(auth, dict):
            _check_auth(auth, (*path, "auth"), report)
        source = config.get("filter")
        if isinstance(source, str) and source:
            for problem in filter_problems(source):
                report.add((*path, "filter"), problem)
        networks = config.get("allow_from")
        if isinstance(networks, list):
            _check_networks(networks, (*path, "allow_from"), report)
        _check_request_keys(config, path, report)
        for section in ("auth", "dedupe"):
            # No request can carry such a header: every one was refused 401 (auth), or
            # stored without a delivery id (dedupe).
            header = config.get(section, {}).get("header") if isinstance(
                config.get(section), dict) else None
            if isinstance(header, str) and header.strip() and not is_header_name(
                    header.strip()):
                report.add((*path, section, "header"),
                           f"{header.strip()[:60]!r} is not a header name ({HEADER_NAME_RULE})")


def replay_window_problem(
    trigger: str, tolerance: timedelta, ttl: timedelta
) -> str | None:
    """Why a timestamped scheme's ``tolerance`` and the dedupe ``ttl`` let a captured
    request start a second run, or ``None``. A timestamp is accepted from ``tolerance``
    before to ``tolerance`` after it, so one signed request stays acceptable for twice the
    tolerance; its delivery id must be remembered (``ttl``, from its first arrival) for as
    long, or a replay after the id expired is a new delivery."""
    window = 2 * tolerance
    if ttl >= window:
        return None
    return (
        f"webhook trigger {trigger}: auth tolerance {format_duration(tolerance)} accepts a"
        f" signed request for {format_duration(window)} (the tolerance before and after its"
        f" timestamp), longer than its dedupe ttl {format_duration(ttl)}: a captured request"
        f" could be replayed as a new run after its delivery id expires; set dedupe ttl to"
        f" at least {format_duration(window)} or lower the tolerance"
    )


def _check_replay_window(
    workflow_key: Any, trigger: Mapping[str, Any], path: JsonPath, report: Report
) -> None:
    """:func:`replay_window_problem` for a webhook trigger of a file whose scheme is
    timestamped and that dedupes (explicitly, or on its scheme's delivery id). Values the
    schema refuses are its to report."""
    auth, dedupe = trigger.get("auth"), trigger.get("dedupe")
    if trigger.get("type") != "webhook" or not isinstance(auth, dict):
        return
    scheme = auth.get("scheme")
    if not isinstance(scheme, str):
        return
    if dedupe is None and scheme in PROVIDER_DEDUPE:
        dedupe = {}  # the scheme's delivery id, with the default ttl
    if scheme not in TIMESTAMPED_SCHEMES or not isinstance(dedupe, dict):
        return  # dedupe: none, or not a mapping (the schema's to report)
    tolerance = _duration(auth.get("tolerance"), DEFAULT_TOLERANCE)
    ttl = _duration(dedupe.get("ttl"), DedupeConfig().ttl)
    if tolerance is None or ttl is None:
        return
    problem = replay_window_problem(f"{workflow_key}/{trigger.get('name')}", tolerance, ttl)
    if problem is not None:
        where = (*path, "dedupe", "ttl") if "ttl" in dedupe else (*path, "auth", "tolerance")
        report.add(where, problem)


def _check_request_keys(config: Mapping[str, Any], path: JsonPath, report: Report) -> None:
    """``debounce`` and ``concurrency``: key expressions, and max_wait not below period
    (the schema checked the shapes)."""
    for section in ("debounce", "concurrency"):
        settings = config.get(section)
        if not isinstance(settings, dict):
            continue
        key = settings.get("key")
        if isinstance(key, str):
            for problem in key_problems(key):
                report.add((*path, section, "key"), problem)
    debounce = config.get("debounce")
    if isinstance(debounce, dict) and "max_wait" in debounce:
        period = _duration(debounce.get("period"), timedelta(0))
        max_wait = _duration(debounce.get("max_wait"), timedelta(0))
        if period and max_wait and max_wait < period:
            report.add(
                (*path, "debounce", "max_wait"),
                f"max_wait {format_duration(max_wait)} is shorter than period"
                f" {format_duration(period)}",
            )


def _check_cron(config: Mapping[str, Any], path: JsonPath, report: Report) -> None:
    expression = config.get("cron")
    # Expression and zone are checked apart so that each problem lands on its own key.
    if isinstance(expression, str) and expression:  # "" is the schema's to report
        problem = cron_problem(expression)
        if problem is not None:
            report.add((*path, "cron"), problem)
    _check_timezone(config, path, report)


def _check_timezone(config: Mapping[str, Any], path: JsonPath, report: Report) -> None:
    timezone = config.get("timezone", "UTC")
    if isinstance(timezone, str) and timezone:
        try:
            parse_cron("* * * * *", timezone)
        except CronError as exc:
            report.add((*path, "timezone"), exc.message)


def _check_networks(networks: list[Any], path: JsonPath, report: Report) -> None:
    for index, network in enumerate(networks):
        if isinstance(network, str) and parse_network(network) is None:
            report.add(
                (*path, index),
                f"{network!r} is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)",
            )


def _check_auth(auth: dict[str, Any], path: JsonPath, report: Report) -> None:
    scheme = auth.get("scheme")
    if not isinstance(scheme, str) or scheme not in AUTH_KEYS:
        return
    for key in auth:
        if key in _AUTH_OPTIONS and key not in AUTH_KEYS[scheme]:
            report.add((*path, key), f"{key!r} does not apply to auth scheme {scheme!r}")
    for key in _AUTH_NEEDS.get(scheme, ()):
        if key not in auth:
            report.add(path, f"auth scheme {scheme!r} needs {_NEEDS_WHAT[key]}")
