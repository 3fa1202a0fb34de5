"""Checks of node params: what would otherwise fail only when a run reaches the node.

* params against their node type's ``params_schema`` (third-party types without one are
  not checked), with a readable message per parameter;
* every ``{{ }}`` template in params parsed as a run parses it (syntax errors, unknown
  filters and tests, in the run's words);
* names a template reads that no run provides, ``nodes.X`` where X does not run before the
  node (or not on every path to it, unguarded), and ``env.X`` / ``secrets.X`` that the
  workflow does not declare.

Pure functions over the raw document, like :mod:`.checks`: what the definition schema
already reported (a node that is not a mapping, params that are not one) is skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from triggerd.definitions.problems import JsonPath, Report, show, suggestion
from triggerd.definitions.schema import TYPE_WORDS
from triggerd.expressions import (
    CONTEXT_NAMES,
    EXECUTION_KEYS,
    KNOWN_NAMES,
    TRIGGER_KEYS,
    constant_failure,
    constant_value,
    inspect_template,
    is_template,
)
from triggerd.inputs import closed_input_keys
from triggerd.nodes.base import ERROR_MESSAGE, TEMPLATE_PATTERN, integer_text

if TYPE_CHECKING:
    from triggerd.nodes.registry import NodeRegistry

# Parameters whose problems the graph checks already explain in their own words.
_EXPLAINED_ELSEWHERE: Final = frozenset({("switch", "cases")})


# JSON Schema counts 200.0 as an integer; the nodes do not (a status of 200.0 fails the
# run), so neither does check.
_NodeParamsValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


# Compiled validators by node type name, with the schema each was compiled from.
_VALIDATORS: dict[str, tuple[Mapping[str, Any], Any]] = {}


def _validator_of(node_type: str, registry: NodeRegistry | None) -> Any:
    """A validator of ``node_type``'s params, or None when the type declares no (valid)
    schema. Compiled once per schema; a reloaded registry's new schema is compiled again."""
    # Imported here, like checks.known_node_types: loading node types costs imports.
    from triggerd.nodes.base import NodeFailure
    from triggerd.nodes.registry import default_registry

    try:
        schema = getattr((registry or default_registry()).get(node_type), "params_schema", None)
    except NodeFailure:
        return None
    if not isinstance(schema, Mapping):
        return None
    cached = _VALIDATORS.get(node_type)
    if cached is not None and cached[0] is schema:
        return cached[1]
    try:
        _NodeParamsValidator.check_schema(schema)
        validator = _NodeParamsValidator(schema)
    except SchemaError:
        validator = None  # a third-party type's broken schema: its run decides
    _VALIDATORS[node_type] = (schema, validator)
    return validator


def check_nodes(
    workflow: Mapping[str, Any],
    path: JsonPath,
    report: Report,
    *,
    node_types: Collection[str],
    registry: NodeRegistry | None = None,
) -> None:
    """The param and template checks of every node of ``workflow`` (at ``path``); the
    schemas come from ``registry`` (default: the installed node types)."""
    graph = workflow.get("graph")
    if (not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list)
            or too_large(graph)):
        return
    nodes: list[tuple[JsonPath, dict[str, Any]]] = [
        ((*path, "graph", "nodes", i), node)
        for i, node in enumerate(graph["nodes"])
        if isinstance(node, dict)
    ]
    ids = [node["id"] for _, node in nodes if isinstance(node.get("id"), str)]
    parents = _parents(graph.get("edges"), set(ids))
    failed_into, after_failure = _failure_only(graph.get("edges"), parents)
    paths = _EveryPath(parents, _Succession(graph.get("edges"), parents),
                       failed_after=_merged(failed_into, after_failure))
    ancestors = _Ancestors(parents)
    env = _declared(workflow.get("env"))
    # What an expression that reads nothing a run brings may read: one object for the
    # workflow, so each distinct expression is evaluated once (see constant_budget).
    constants = {"env": _literal_env(workflow.get("env"))}
    secrets = _declared(workflow.get("secrets"))
    inputs = closed_input_keys(workflow.get("parameter_schema"))
    approvals = any(node.get("type") == "approval" for _, node in nodes)
    execution = [*EXECUTION_KEYS, *(["resume_url"] if approvals else [])]
    for node_path, node in nodes:
        node_type = node.get("type")
        params = node.get("params", {})
        if not isinstance(params, dict):
            continue  # reported by the definition schema
        if isinstance(node_type, str) and node_type in node_types:
            _check_params(node_type, params, (*node_path, "params"), report, registry,
                          constants)
        node_id = node.get("id")
        scope = _Scope(
            node_id=node_id if isinstance(node_id, str) else None,
            ids=ids,
            parents=parents,
            ancestors=ancestors,
            failed_into=failed_into,
            after_failure=after_failure,
            every_path=paths,
            env=env,
            secrets=secrets,
            inputs=inputs,
            execution=execution,
        )
        for string_path, source in _templates(params, (*node_path, "params")):
            found = False
            for message in scope.problems(source):
                found = True
                report.add(string_path, f"expression {show(source, limit=80)}: {message}")
            # One that reads nothing a run brings (only literals, Jinja2's globals and the
            # workflow's env) fails in every run when it fails here ({{ 1 / 0 }}).
            failure = None if found else constant_failure(source, constants)
            if failure is not None:
                report.add(string_path, f"expression {show(source, limit=80)}: it fails in"
                                        f" every run: {failure}")


# --- params against the schema -----------------------------------------------------------


def _check_params(
    node_type: str,
    params: dict[str, Any],
    path: JsonPath,
    report: Report,
    registry: NodeRegistry | None,
    constants: Mapping[str, Any] | None = None,
) -> None:
    validator = _validator_of(node_type, registry)
    if validator is None:
        return
    # An expression that reads only literals, Jinja2's globals and the workflow's env is
    # as literal as a value written out ({{ env.URL }} with URL: ftp://x, an input of
    # {{ 5 }} failed every run): checked as what every run renders it to.
    sources = _constant_params(params, validator.schema, constants or {"env": {}})
    params = {**params, **{key: value for key, (_, value) in sources.items()}}

    def add(where: JsonPath, message: str) -> None:
        source = sources.get(str(where[0])) if where else None
        if source is not None:
            where_from = ("with the workflow's env" if "env" in inspect_template(source[0]).names
                          else "in every run")
            message += f" ({show(source[0], limit=80)} {where_from})"
        report.add((*path, *where), message)

    valid = True
    for error in validator.iter_errors(params):
        valid = False
        for where, message in _explain(node_type, error, validator.schema, params):
            if not where or (node_type, where[0]) not in _EXPLAINED_ELSEWHERE:
                add(where, message)
    if valid:
        # What the schema cannot say about literal values, as the node's run checks them
        # (a header with a line break, a port past 65535, a count that is no number).
        for where, message in _literal_problems(node_type, params, registry):
            add(where, message)


def _literal_env(section: Any) -> dict[str, str]:
    """The workflow's env values (all literal text; the schema reports any other)."""
    if not isinstance(section, dict):
        return {}
    return {k: v for k, v in section.items() if isinstance(k, str) and isinstance(v, str)}


def _constant_params(params: Mapping[str, Any], schema: Mapping[str, Any],
                     context: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """The top-level parameters with an expression (at any depth) that reads nothing a run
    brings (only ``context``: the workflow's env): parameter -> (its first such expression,
    the parameter as every run renders it). Expressions that fail, read what a run brings
    or render to a large value (see constant_value) stay as written."""
    found: dict[str, tuple[str, Any]] = {}
    properties = schema.get("properties", {})
    for key, value in params.items():
        rendered: list[str] = []
        value = _rendered(value, context, rendered)
        if not rendered:
            continue
        number = integer_text(value) if isinstance(value, str) else None
        if number is not None and _accepts(properties.get(key), "integer"):
            value = number  # as the node reads an integer rendered inside text
        found[key] = (rendered[0], value)
    return found


def _rendered(value: Any, context: Mapping[str, Any], sources: list[str]) -> Any:
    """``value`` with its expressions that read nothing a run brings rendered, each one's
    source added to ``sources``."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        found = constant_value(value, context)
        if found is None or found[1] is not None:
            return value  # known in a run only, or a failure reported as such
        sources.append(value)
        return found[0]
    if isinstance(value, dict):
        return {key: _rendered(item, context, sources) for key, item in value.items()}
    if isinstance(value, list):
        return [_rendered(item, context, sources) for item in value]
    return value


def _accepts(prop: Any, kind: str) -> bool:
    """Whether a parameter's schema takes values of JSON type ``kind``."""
    if not isinstance(prop, Mapping):
        return False
    for branch in prop.get("anyOf", [prop]):
        kinds = branch.get("type", []) if isinstance(branch, Mapping) else []
        if kinds == kind or (isinstance(kinds, list) and kind in kinds):
            return True
    return False


def _literal_problems(node_type: str, params: dict[str, Any], registry: NodeRegistry | None
                      ) -> list[tuple[JsonPath, str]]:
    from triggerd.nodes.registry import default_registry

    check = getattr((registry or default_registry()).get(node_type), "literal_problems", None)
    return list(check(params)) if callable(check) else []


def _explain(
    node_type: str, error: ValidationError, schema: Mapping[str, Any], params: dict[str, Any]
) -> list[tuple[JsonPath, str]]:
    """Located messages for one error. Errors inside a parameter are reported on the
    parameter, with its whole value: 'expected a list of HTTP statuses, got [200, "x"]'
    says more than the part of the list that failed."""
    where = tuple(error.absolute_path)
    properties = schema.get("properties", {})
    if where:
        name = where[0]
        prop = properties.get(name, {}) if isinstance(name, str) else {}
        return [((name,), _value_message(prop, params.get(str(name))))]
    custom = _custom(schema, str(error.validator), error.instance)
    if custom is not None:
        return [((), custom)]
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = sorted(properties)
        return [
            ((key,), f"{node_type} node: unknown parameter {key!r}{_hint(key, known)}")
            for key in instance
            if key not in properties
        ]
    required: Any = error.validator_value
    if error.validator == "required" and isinstance(instance, dict):
        return [
            ((), f"{node_type} node: parameter {key!r} is required")
            for key in required
            if key not in instance
            and error.message.startswith(repr(key))
            and (node_type, key) not in _EXPLAINED_ELSEWHERE
        ]
    return [((), error.message)]


def _hint(key: str, known: list[str]) -> str:
    close = suggestion(key, known)
    return close or f" (known: {', '.join(known)})"


def _custom(schema: Mapping[str, Any], keyword: str, value: Any) -> str | None:
    custom = schema.get(ERROR_MESSAGE)
    if isinstance(custom, Mapping):
        custom = custom.get(keyword)
    if not isinstance(custom, str):
        return None
    return custom.replace("{value}", show(value))


def _value_message(prop: Mapping[str, Any], value: Any) -> str:
    custom = _custom(prop, "", value)
    if custom is not None:
        return custom
    return f"expected {expected(prop)}, got {show(value)}"


def expected(prop: Mapping[str, Any]) -> str:
    """What a parameter's schema asks for, in words ('a mapping or null'), templates aside."""
    branches = prop.get("anyOf", [prop])
    words = [
        _words(branch)
        for branch in branches
        if isinstance(branch, Mapping) and branch.get("pattern") != TEMPLATE_PATTERN
    ]
    return " or ".join(w for w in words if w) or "any value"


def _words(schema: Mapping[str, Any]) -> str:
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    words = [TYPE_WORDS.get(kind, kind) for kind in kinds]
    if "minimum" in schema and "maximum" in schema:
        words = [f"{w} from {schema['minimum']} to {schema['maximum']}" for w in words]
    if schema.get("minLength") == 1:
        words = [f"a non-empty {w.removeprefix('a ')}" if w == "a string" else w for w in words]
    return " or ".join(words)


# --- templates ---------------------------------------------------------------------------


def _templates(value: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    """Every string a run renders, with its path. Keys are not rendered."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _templates(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _templates(item, (*path, i))


def _declared(section: Any) -> list[str] | None:
    """The keys a workflow declares under env or secrets; None when it cannot be read (the
    schema reports it), so that nothing is checked against it."""
    if section is None:
        return []
    if isinstance(section, dict):
        return [key for key in section if isinstance(key, str)]
    return None


def _failure_only(edges: Any, parents: Mapping[str, set[str]]
                  ) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """For each node, the nodes it runs only after they failed: every path to it from the
    graph's first nodes goes through a failure edge (``on: failure``) of theirs, so when it
    runs they have failed, and a failed node has no entry under ``nodes``. (Only the
    failing node's direct child was known before; its children read it as freely.) And
    for each node, the nodes whose failure edge leads to it, also along other paths: it
    may run after they failed."""
    links = [(e["from"], e["to"], e.get("on") == "failure") for e in
             (edges if isinstance(edges, list) else [])
             if isinstance(e, dict) and isinstance(e.get("from"), str)
             and isinstance(e.get("to"), str) and e["from"] in parents and e["to"] in parents]
    roots = [node for node, above in parents.items() if not above]
    below = _children((s, t) for s, t, _ in links)
    only: dict[str, set[str]] = {}
    maybe: dict[str, set[str]] = {}
    for failing in {source for source, _, failure in links if failure}:
        without = _reach(roots, _children(
            (s, t) for s, t, f in links if not (f and s == failing)))
        after = _reach([t for s, t, f in links if f and s == failing], below)
        for node in after - {failing}:
            (maybe if node in without else only).setdefault(node, set()).add(failing)
    return only, maybe


class _Succession:
    """What a node's success brings about. A node runs once every incoming edge is
    resolved and one was taken, and a succeeded node takes all its plain edges (no
    ``when``, not ``on: failure``): so both sides of a plain fan-out have run at its join,
    where a branch of an ``if`` or a ``switch`` may not have."""

    def __init__(self, edges: Any, parents: Mapping[str, set[str]]) -> None:
        links = [e for e in (edges if isinstance(edges, list) else [])
                 if isinstance(e, dict) and isinstance(e.get("from"), str)
                 and isinstance(e.get("to"), str) and e["from"] in parents
                 and e["to"] in parents]
        self.failing = {e["from"] for e in links if e.get("on") == "failure"}
        self.plain = _children((e["from"], e["to"]) for e in links
                               if e.get("when") is None and e.get("on", "success") == "success")
        self._after: dict[str, frozenset[str]] = {}
        firsts = [node for node, above in parents.items()
                  if not above and node not in self.failing]
        # The nodes that have succeeded whenever a node below them runs, wherever the run
        # went: the first nodes without a failure edge, and what their success brings.
        self.certain = set(firsts).union(*(self.after(node) for node in firsts))

    def after(self, node: str) -> frozenset[str]:
        """The nodes that have succeeded whenever ``node`` succeeded and a node below them
        runs: reached from it by plain edges, through nodes without a failure edge (one
        with a failure edge may fail and the run go on without what follows it)."""
        found = self._after.get(node)
        if found is None:
            reached: set[str] = set()
            todo = [node]
            while todo:
                for child in self.plain.get(todo.pop(), ()):
                    if child not in reached and child not in self.failing:
                        reached.add(child)
                        todo.append(child)
            found = self._after[node] = frozenset(reached)
        return found


def _merged(*maps: Mapping[str, set[str]]) -> dict[str, set[str]]:
    merged: dict[str, set[str]] = {}
    for one in maps:
        for key, values in one.items():
            merged.setdefault(key, set()).update(values)
    return merged


# A workflow's graph at most this large (check_graph says so): the checks keep a bitset of
# ancestors per node, n * n / 16 bytes (6 MB at 10,000 nodes; 1 GB at 100,000).
MAX_NODES: Final = 10_000
MAX_EDGES: Final = 50_000


def too_large(graph: Mapping[str, Any]) -> bool:
    nodes, edges = graph.get("nodes"), graph.get("edges", [])
    return ((isinstance(nodes, list) and len(nodes) > MAX_NODES)
            or (isinstance(edges, list) and len(edges) > MAX_EDGES))


def _children(links: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    below: dict[str, list[str]] = {}
    for source, target in links:
        below.setdefault(source, []).append(target)
    return below


def _reach(start: Iterable[str], next_of: Mapping[str, Iterable[str]]) -> set[str]:
    """The nodes reachable from ``start`` (included) along ``next_of`` (a node's children,
    or its parents for the nodes above it)."""
    seen = set(start)
    todo = list(seen)
    while todo:
        for node in next_of.get(todo.pop(), ()):
            if node not in seen:
                seen.add(node)
                todo.append(node)
    return seen


class _Ancestors:
    """Each node's ancestors along any edge, computed once per graph, on first use: in
    topological order, a node's are its parents' and its parents, kept as a bitset over
    the nodes (a walk up from every node was quadratic: 1.3 s for a 3,000-node chain).
    Nodes on or below a cycle (reported elsewhere) are walked up one by one, as before."""

    def __init__(self, parents: Mapping[str, set[str]]) -> None:
        self.parents = parents
        self._bit = {node: 1 << i for i, node in enumerate(parents)}
        self._sets: dict[str, int] | None = None
        self._walked: dict[str, set[str]] = {}

    def includes(self, node_id: str, key: str) -> bool:
        """Whether ``key`` runs before ``node_id`` (is one of its ancestors)."""
        sets = self._ordered()
        if node_id in sets:
            return key in self._bit and bool(sets[node_id] & self._bit[key])
        if node_id not in self._walked:
            self._walked[node_id] = _reach(self.parents.get(node_id, ()), self.parents)
        return key in self._walked[node_id]

    def _ordered(self) -> dict[str, int]:
        if self._sets is None:
            sets: dict[str, int] = {}
            waiting = {node: len(up) for node, up in self.parents.items()}
            below = _children((up, node) for node, ups in self.parents.items() for up in ups)
            ready = [node for node, count in waiting.items() if count == 0]
            while ready:  # a node's parents are placed before it
                node = ready.pop()
                found = 0
                for parent in self.parents[node]:
                    found |= sets[parent] | self._bit[parent]
                sets[node] = found
                for child in below.get(node, ()):
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        ready.append(child)
            self._sets = sets
        return self._sets


def _parents(edges: Any, ids: set[str]) -> dict[str, set[str]]:
    parents: dict[str, set[str]] = {node_id: set() for node_id in ids}
    if not isinstance(edges, list):
        return parents
    for edge in edges:
        if isinstance(edge, dict):
            source, target = edge.get("from"), edge.get("to")
            if isinstance(source, str) and isinstance(target, str) and {source, target} <= ids:
                parents[target].add(source)
    return parents


class _Scope:
    """What one node's templates may refer to."""

    def __init__(
        self,
        *,
        node_id: str | None,
        ids: list[str],
        parents: Mapping[str, set[str]],
        env: list[str] | None,
        ancestors: _Ancestors | None = None,
        failed_into: Mapping[str, set[str]] | None = None,
        after_failure: Mapping[str, set[str]] | None = None,
        every_path: _EveryPath | None = None,
        secrets: list[str] | None,
        inputs: list[str] | None = None,
        execution: list[str] | None = None,
    ) -> None:
        self.node_id = node_id
        self.ids = ids
        self.parents = parents  # keyed by every node id: a set to look ids up in
        self.ancestors = ancestors or _Ancestors(parents)
        self.failed_into = failed_into or {}
        self.after_failure = after_failure or {}
        self.every_path = every_path
        self.keys = {"env": env, "secrets": secrets, "input": inputs, "execution": execution,
                     "trigger": list(TRIGGER_KEYS)}

    def problems(self, source: str) -> Iterator[str]:
        facts = inspect_template(source)
        if facts.error is not None:
            yield facts.error
            return
        for name in sorted(facts.names - KNOWN_NAMES):
            close = suggestion(name, CONTEXT_NAMES)
            yield f"unknown name {name!r}" + (
                close or f" (expressions see {', '.join(CONTEXT_NAMES)})"
            )
        for node_id, attribute in facts.node_attributes:
            if attribute != "output" and node_id in self.parents:
                # A run's node entry holds its output only: every run failed ('dict object'
                # has no attribute 'outptu').
                yield f"nodes.{node_id} has no {attribute!r} (it has 'output')"
        for section, key in facts.keys:
            if section == "nodes":
                yield from self._node_problem(key, guarded=facts.guarded)
            else:
                declared = self.keys[section]
                if declared is not None and key not in declared:
                    hint = suggestion(key, declared) or (
                        f" (known: {', '.join(declared)})" if declared else " (it declares none)"
                    )
                    if section == "input":
                        yield (f"{key!r} is never in the input: the parameter_schema allows no"
                               f" other keys than its properties{hint}")
                    elif section == "execution" and key == "resume_url":
                        yield ("execution.resume_url exists only in runs of workflows with an"
                               " approval node")
                    elif section in ("execution", "trigger"):
                        yield f"{section} has no {key!r}{hint}"
                    else:
                        yield f"{key!r} is not in the workflow's {section}{hint}"

    def _node_problem(self, key: str, *, guarded: bool) -> Iterator[str]:
        if self.node_id is None:
            return
        if key not in self.parents:  # not the list: a lookup per read was quadratic
            hint = suggestion(key, self.ids)
            yield f"there is no node {key!r}{hint}"
        elif not self.ancestors.includes(self.node_id, key):
            yield f"node {key!r} does not run before node {self.node_id!r}"
        elif key in self.failed_into.get(self.node_id, ()):
            yield (f"node {self.node_id!r} runs only when node {key!r} failed, and a failed"
                   f" node has no entry under nodes")
        elif not guarded and key in self.after_failure.get(self.node_id, ()):
            yield (f"node {key!r} may have failed when node {self.node_id!r} runs (its failure"
                   f" edge leads to {self.node_id!r} too), and a failed node has no entry under"
                   f" nodes: read it behind a test such as 'nodes.{key} is defined'")
        elif not guarded and self.every_path is not None \
                and not self.every_path.through(key, self.node_id):
            # A node runs when any incoming edge is taken: past a branch that skipped
            # `key`, nodes.<key> is undefined and the run failed.
            yield (f"node {key!r} may not have run when node {self.node_id!r} runs (not"
                   f" every path to {self.node_id!r} goes through it): read it behind a test"
                   f" such as 'nodes.{key} is defined'")


class _EveryPath:
    """Which nodes lie on every path from the graph's first nodes to a node (its
    dominators), from each node's immediate one: computed once per graph, on first use,
    in O(nodes) memory. Nodes on a cycle (reported elsewhere) are not judged."""

    def __init__(self, parents: Mapping[str, set[str]], succession: _Succession, *,
                 failed_after: Mapping[str, set[str]]) -> None:
        self.parents = parents
        self.succession = succession
        # For each node, the nodes whose failure edge leads to it.
        self.failed_after = failed_after
        self._above: dict[str, str | None] | None = None
        self._depth: dict[str | None, int] = {None: -1}

    def through(self, key: str, node_id: str) -> bool:
        """Whether ``key`` has run whenever ``node_id`` runs (True when unknown): it is
        certain to (:class:`_Succession`), or every path to ``node_id`` goes through it, or
        through a node whose success brings ``key`` about and that has succeeded whenever
        ``node_id`` runs (no failure edge of it leads there)."""
        if key in self.succession.certain:
            return True
        above = self._immediate()
        if node_id not in above or key not in above:
            return True
        step = above[node_id]
        while step is not None:
            if step == key:
                return True
            if step not in self.failed_after.get(node_id, ()) \
                    and key in self.succession.after(step):
                return True
            step = above[step]
        return False

    def _immediate(self) -> dict[str, str | None]:
        if self._above is None:
            self._above = {}
            waiting = {node: len(up) for node, up in self.parents.items()}
            below = _children((up, node) for node, ups in self.parents.items() for up in ups)
            ready = [node for node, count in waiting.items() if count == 0]
            while ready:  # topological order: a node's parents are placed before it
                node = ready.pop()
                common: str | None = None
                for i, parent in enumerate(sorted(self.parents[node])):
                    common = parent if i == 0 else self._meet(common, parent)
                self._above[node] = common
                self._depth[node] = self._depth[common] + 1
                for child in below.get(node, ()):
                    waiting[child] -= 1
                    if waiting[child] == 0:
                        ready.append(child)
        return self._above

    def _meet(self, a: str | None, b: str | None) -> str | None:
        """The nearest node on every path to both ``a`` and ``b`` (None: none is)."""
        above, depth = self._above or {}, self._depth
        while a != b:
            if a is None or b is None:
                return None
            if depth[a] >= depth[b]:
                a = above[a]
            else:
                b = above[b]
        return a
