"""Graph-walk decisions: which nodes run next, which are skipped, when a run is over.

Pure: no I/O, no clock. The executor records each node's :class:`NodeOutcome`, asks
:func:`plan_next` what to do, carries the :class:`WalkStep` out and asks again. Because the
plan depends only on the recorded outcomes, a run is resumed after a crash by reading the
outcomes back and calling :func:`plan_next` again: nodes without a finished outcome
(``SUCCESS``, ``ERROR``, ``SKIPPED``, ``CANCELED``) run again.

Edge rules (an edge is *resolved* once its source has a finished outcome):

* source ``SUCCESS``: a plain edge (``when`` None, ``on`` success) is taken; a conditional
  edge is taken when its ``when`` equals the source's branch (``if``: ``"true"`` /
  ``"false"``; ``switch``: the matched case's label), and a ``"default"`` edge when no other
  edge of the source matches the branch. Failure edges are not taken.
* source ``ERROR``: only failure edges (``on`` failure) are taken; the failure is then
  handled and the run continues. A failed node without a failure edge ends the run.
* source ``SKIPPED`` / ``CANCELED``: no edge is taken.

A node runs once every incoming edge is resolved and at least one was taken; when all are
resolved and none was taken it is skipped, which resolves its own outgoing edges in turn (a
:class:`WalkStep` contains every skip that follows from the outcomes so far). Nodes without
incoming edges (the entry) are ready at once. Several nodes ready together run
concurrently.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Set
from typing import Final, NamedTuple

from triggerd.errors import TriggerdError
from triggerd.model import JSON, Edge, EdgeOn, Graph, NodeStatus

FINISHED: Final = frozenset(
    {NodeStatus.SUCCESS, NodeStatus.ERROR, NodeStatus.SKIPPED, NodeStatus.CANCELED}
)
DEFAULT_BRANCH: Final = "default"
RESPOND_TYPE: Final = "respond"


class WalkError(TriggerdError):
    """The graph cannot be walked (a cycle, or an edge naming a node that does not exist).

    Definitions are validated before they are stored, so this means a bug or a hand-edited
    database row.
    """


class NodeOutcome(NamedTuple):
    """What one node's (last) execution ended with. (NamedTuples, this and WalkStep: one is
    made per node and per step of every run, three times faster than a frozen dataclass.)"""

    node_id: str
    status: NodeStatus
    output: JSON = None
    error_code: str | None = None
    # ``if``: "true"/"false"; ``switch``: the matched case's label or "default".
    branch: str | None = None


class WalkStep(NamedTuple):
    """What to do now.

    ``ready``: nodes to run now, each with the edge that led there (None for an entry node).
    ``skipped``: nodes to record as SKIPPED, each with its first incoming edge.
    ``finished``: the run is over once ``skipped`` is recorded (nothing runs or remains).
    ``failed``: the run ends ERROR because this node failed with no failure edge; nothing
    else is started and nodes still running should be cancelled (``finished`` is True).
    """

    ready: tuple[tuple[str, Edge | None], ...] = ()
    skipped: tuple[tuple[str, Edge | None], ...] = ()
    finished: bool = False
    failed: NodeOutcome | None = None


def branch_label(value: JSON) -> str:
    """The label a value has as a branch / ``when``: strings as they are, anything else as
    its JSON text (``true``, ``200``, ``null``). Switch cases and edge ``when`` values
    written in YAML as booleans or numbers must be normalised with this same function."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def recorded_branch(node_type: str, output: JSON) -> str | None:
    """The branch of a built-in ``if`` / ``switch`` node, recovered from its stored output.

    For resuming runs from stored rows that do not keep the branch itself.
    """
    if not isinstance(output, dict):
        return None
    if node_type == "if" and isinstance(output.get("result"), bool):
        return "true" if output["result"] else "false"
    if node_type == "switch" and isinstance(output.get("case"), str):
        return str(output["case"])
    return None


def topological_order(graph: Graph) -> tuple[str, ...]:
    """Node ids so that every edge goes forward; ties keep the order nodes are declared in.

    Raises :class:`WalkError` on a cycle or an edge to an unknown node.
    """
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    indegree = dict.fromkeys(index, 0)
    successors: dict[str, list[str]] = {node_id: [] for node_id in index}
    for edge in graph.edges:
        for end in (edge.source, edge.target):
            if end not in index:
                raise WalkError(f"edge {edge.source} -> {edge.target}: no node {end!r}")
        successors[edge.source].append(edge.target)
        indegree[edge.target] += 1
    heap = [i for node_id, i in index.items() if indegree[node_id] == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        node_id = graph.nodes[heapq.heappop(heap)].id
        order.append(node_id)
        for target in successors[node_id]:
            indegree[target] -= 1
            if indegree[target] == 0:
                heapq.heappush(heap, index[target])
    if len(order) != len(index):
        stuck = sorted(node_id for node_id, n in indegree.items() if n > 0)
        raise WalkError(f"the graph has a cycle through {', '.join(stuck)}")
    return tuple(order)


def edge_taken(edge: Edge, source: NodeOutcome | None, siblings: tuple[Edge, ...]) -> bool | None:
    """Whether ``edge`` is taken: None while its source has no finished outcome.

    ``siblings`` are all outgoing edges of the source (needed for ``"default"``).
    """
    if source is None or source.status not in FINISHED:
        return None
    if source.status == NodeStatus.ERROR:
        return edge.on == EdgeOn.FAILURE
    if source.status != NodeStatus.SUCCESS or edge.on == EdgeOn.FAILURE:
        return False
    if edge.when is None:
        return True
    if source.branch is None:
        return False
    if edge.when == source.branch:
        return True
    return edge.when == DEFAULT_BRANCH and not any(
        e.when == source.branch and e.on == EdgeOn.SUCCESS for e in siblings
    )


# Order, incoming and outgoing edges per node, and the nodes with a failure edge.
_Structure = tuple[
    tuple[str, ...], dict[str, list[Edge]], dict[str, tuple[Edge, ...]], frozenset[str]
]
# Graphs are immutable and long-lived (one per cached workflow version), so their order and
# adjacency are computed once. Keyed by identity; the graph is kept alive with its entry.
_STRUCTURES: dict[int, tuple[Graph, _Structure]] = {}
_MAX_STRUCTURES = 4096


def _structure(graph: Graph) -> _Structure:
    cached = _STRUCTURES.get(id(graph))
    if cached is not None and cached[0] is graph:
        return cached[1]
    order = topological_order(graph)
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in order}
    outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in order}
    for edge in graph.edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    if len(_STRUCTURES) >= _MAX_STRUCTURES:
        _STRUCTURES.clear()
    handles_failure = frozenset(e.source for e in graph.edges if e.on == EdgeOn.FAILURE)
    structure = (
        order,
        incoming,
        {node_id: tuple(edges) for node_id, edges in outgoing.items()},
        handles_failure,
    )
    _STRUCTURES[id(graph)] = (graph, structure)
    return structure


def plan_next(
    graph: Graph,
    outcomes: Mapping[str, NodeOutcome],
    running: Set[str] = frozenset(),
) -> WalkStep:
    """Decide the next step from the finished ``outcomes`` (keyed by node id) and the
    nodes ``running`` now.

    Outcomes that are not finished (``RUNNING``, ``WAITING``: stale rows read back after a
    crash) are ignored: such nodes are ready again unless they are in ``running``. A parked
    ``wait`` node belongs in ``running`` until the executor records its SUCCESS.
    """
    order, incoming, outgoing, handles_failure = _structure(graph)
    state = {
        node_id: outcome
        for node_id, outcome in outcomes.items()
        if node_id in incoming and outcome.status in FINISHED
    }

    for node_id in order:
        outcome = state.get(node_id)
        if (
            outcome is not None
            and outcome.status == NodeStatus.ERROR
            and node_id not in handles_failure
        ):
            return WalkStep(finished=True, failed=outcome)

    ready: list[tuple[str, Edge | None]] = []
    skipped: list[tuple[str, Edge | None]] = []
    # In topological order every source is decided before its targets, so skips cascade
    # within this one pass.
    for node_id in order:
        if node_id in state or node_id in running:
            continue
        edges = incoming[node_id]
        if not edges:
            ready.append((node_id, None))
            continue
        taken: list[Edge] = []
        resolved = True
        for edge in edges:
            decision = edge_taken(edge, state.get(edge.source), outgoing[edge.source])
            if decision is None:
                resolved = False
                break
            if decision:
                taken.append(edge)
        if not resolved:
            continue
        if taken:
            ready.append((node_id, taken[0]))
        else:
            skipped.append((node_id, edges[0]))
            state[node_id] = NodeOutcome(node_id=node_id, status=NodeStatus.SKIPPED)

    finished = all(node_id in state for node_id in order)
    return WalkStep(ready=tuple(ready), skipped=tuple(skipped), finished=finished)


def final_output(graph: Graph, outcomes: Mapping[str, NodeOutcome]) -> JSON:
    """The run's output: the output of the ``respond`` node that ran (the last one in
    topological order if several did), else that of the last successful node in
    topological order, else None."""
    succeeded = [
        node_id
        for node_id in _structure(graph)[0]
        if (outcome := outcomes.get(node_id)) is not None and outcome.status == NodeStatus.SUCCESS
    ]
    responded = [node_id for node_id in succeeded if graph.node(node_id).type == RESPOND_TYPE]
    chosen = responded or succeeded
    return outcomes[chosen[-1]].output if chosen else None
