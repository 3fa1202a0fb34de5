"""The console's graph layout: layers, positions and the path one run took."""

from __future__ import annotations

from triggerd.console.graph import NODE_HEIGHT, NodeRun, layout

GRAPH = {
    "nodes": [{"id": "check", "type": "if", "params": {"condition": "{{ input.big }}"}},
              {"id": "big", "type": "set", "params": {"value": 1}},
              {"id": "small", "type": "set", "params": {"value": 0}},
              {"id": "done", "type": "log", "params": {"message": "done"}}],
    "edges": [{"from": "check", "to": "big", "when": "true"},
              {"from": "check", "to": "small", "when": "false"},
              {"from": "big", "to": "done"}, {"from": "small", "to": "done"},
              {"from": "check", "to": "done", "on": "failure"}],
}


def test_nodes_sit_in_layers_by_longest_distance_from_the_start() -> None:
    drawn = layout(GRAPH)
    y = {n.id: n.y for n in drawn.nodes}
    assert y["check"] < y["big"] == y["small"] < y["done"]
    x = {n.id: n.x for n in drawn.nodes}
    assert x["big"] < x["small"]  # the definition's order within a layer
    assert drawn.height >= y["done"] + NODE_HEIGHT


def test_taken_edges_follow_the_run_and_skipped_nodes_are_not_arrived_at() -> None:
    runs = [
        NodeRun(node_id="check", status="SUCCESS", from_node_id=None, edge_condition=None),
        NodeRun(node_id="big", status="SUCCESS", from_node_id="check", edge_condition="true"),
        NodeRun(node_id="small", status="SKIPPED", from_node_id="check",
                edge_condition="false"),
        NodeRun(node_id="done", status="ERROR", from_node_id="big", edge_condition=None),
    ]
    drawn = layout(GRAPH, runs)
    taken = {(e.source, e.target): e.taken for e in drawn.edges}
    assert taken == {("check", "big"): True, ("check", "small"): False,
                     ("big", "done"): True, ("small", "done"): False,
                     ("check", "done"): False}
    labels = {(e.source, e.target): e.label for e in drawn.edges}
    assert labels[("check", "done")] == "failure" and labels[("big", "done")] == ""
    status = {n.id: n.status for n in drawn.nodes}
    assert status == {"check": "SUCCESS", "big": "SUCCESS", "small": "SKIPPED",
                      "done": "ERROR"}


def test_a_cycle_or_a_dangling_edge_cannot_hang_or_break_the_layout() -> None:
    graph = {"nodes": [{"id": "a", "type": "noop"}, {"id": "b", "type": "noop"}],
             "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "a"},
                       {"from": "a", "to": "gone"}]}
    drawn = layout(graph)
    assert {n.id for n in drawn.nodes} == {"a", "b"}
    assert [(e.source, e.target) for e in drawn.edges] == [("a", "b"), ("b", "a")]
    assert layout({}).nodes == ()
