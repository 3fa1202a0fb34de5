"""A workflow graph laid out for the console's SVG, with the path one run took.

Pure: a stored graph document and the run's node rows in, positioned boxes and edges out.
Nodes sit in layers by their longest distance from a start node (a node without incoming
edges), so every edge points down; within a layer they keep the definition's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NODE_WIDTH = 160
NODE_HEIGHT = 44
GAP_X = 40
GAP_Y = 56
MARGIN = 16


@dataclass(frozen=True, kw_only=True)
class NodeRun:
    """What the run did at one node (its latest attempt)."""

    node_id: str
    status: str
    from_node_id: str | None
    edge_condition: str | None


@dataclass(frozen=True, kw_only=True)
class PlacedNode:
    id: str
    type: str
    x: int
    y: int
    status: str | None  # None: the run never reached it

    @property
    def label(self) -> str:
        return self.id if len(self.id) <= 20 else self.id[:19] + "…"


@dataclass(frozen=True, kw_only=True)
class PlacedEdge:
    source: str
    target: str
    label: str  # the edge's condition ("true", "failure", a case) or ""
    taken: bool
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True, kw_only=True)
class Layout:
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    width: int
    height: int


def _edge_label(edge: Mapping[str, Any]) -> str:
    when = edge.get("when")
    if when is not None:
        return str(when)
    on = edge.get("on")
    return "" if on in (None, "success") else str(on)


def _layers(ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest distance from a start node; a cycle (refused by check, never trusted here)
    cannot loop: a node's layer is settled after at most len(ids) rounds."""
    layer = dict.fromkeys(ids, 0)
    for _ in range(len(ids)):
        changed = False
        for source, target in edges:
            if source in layer and target in layer and layer[target] < layer[source] + 1:
                layer[target] = min(layer[source] + 1, len(ids))
                changed = True
        if not changed:
            break
    return layer


def layout(graph: Mapping[str, Any], runs: Sequence[NodeRun] = ()) -> Layout:
    nodes = [n for n in graph.get("nodes", []) if isinstance(n, Mapping) and "id" in n]
    ids = [str(n["id"]) for n in nodes]
    raw_edges = [e for e in graph.get("edges", []) if isinstance(e, Mapping)]
    pairs = [(str(e.get("from")), str(e.get("to"))) for e in raw_edges]
    layer = _layers(ids, pairs)
    by_layer: dict[int, list[str]] = {}
    for node_id in ids:
        by_layer.setdefault(layer[node_id], []).append(node_id)
    widest = max((len(v) for v in by_layer.values()), default=1)
    width = MARGIN * 2 + widest * NODE_WIDTH + (widest - 1) * GAP_X
    position: dict[str, tuple[int, int]] = {}
    for depth, members in by_layer.items():
        row_width = len(members) * NODE_WIDTH + (len(members) - 1) * GAP_X
        left = (width - row_width) // 2
        for index, node_id in enumerate(members):
            position[node_id] = (left + index * (NODE_WIDTH + GAP_X),
                                 MARGIN + depth * (NODE_HEIGHT + GAP_Y))
    status: dict[str, str] = {}
    arrived: set[tuple[str, str]] = set()
    for run in runs:
        status[run.node_id] = run.status
        # A skipped node is recorded with the edge that would have led to it: not taken.
        if run.from_node_id is not None and run.status != "SKIPPED":
            arrived.add((run.from_node_id, run.node_id))
    placed_nodes = tuple(
        PlacedNode(id=node_id, type=str(node.get("type", "")), x=position[node_id][0],
                   y=position[node_id][1], status=status.get(node_id))
        for node_id, node in zip(ids, nodes, strict=True)
    )
    placed_edges = []
    for edge, (source, target) in zip(raw_edges, pairs, strict=True):
        if source not in position or target not in position:
            continue
        sx, sy = position[source]
        tx, ty = position[target]
        placed_edges.append(PlacedEdge(
            source=source, target=target, label=_edge_label(edge),
            taken=(source, target) in arrived,
            x1=sx + NODE_WIDTH // 2, y1=sy + NODE_HEIGHT,
            x2=tx + NODE_WIDTH // 2, y2=ty,
        ))
    depth = max(layer.values(), default=0)
    height = MARGIN * 2 + (depth + 1) * NODE_HEIGHT + depth * GAP_Y
    return Layout(nodes=placed_nodes, edges=tuple(placed_edges), width=width, height=height)
