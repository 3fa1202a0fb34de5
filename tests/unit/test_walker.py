from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from triggerd.model import JSON, Edge, EdgeOn, Graph, Node, NodeStatus
from triggerd.walker import (
    NodeOutcome,
    WalkError,
    WalkStep,
    branch_label,
    final_output,
    plan_next,
    recorded_branch,
    topological_order,
)


def make_graph(nodes: str | Mapping[str, str], *edges: Edge) -> Graph:
    """``nodes``: space-separated ids (type noop) or {id: type}."""
    types = dict.fromkeys(nodes.split(), "noop") if isinstance(nodes, str) else dict(nodes)
    return Graph(nodes=tuple(Node(id=i, type=t) for i, t in types.items()), edges=edges)


def edge(source: str, target: str, when: str | None = None, *, failure: bool = False) -> Edge:
    on = EdgeOn.FAILURE if failure else EdgeOn.SUCCESS
    return Edge(source=source, target=target, when=when, on=on)


def ok(node_id: str, output: JSON = None, branch: str | None = None) -> NodeOutcome:
    return NodeOutcome(node_id=node_id, status=NodeStatus.SUCCESS, output=output, branch=branch)


def error(node_id: str, code: str = "BOOM") -> NodeOutcome:
    return NodeOutcome(node_id=node_id, status=NodeStatus.ERROR, error_code=code)


Runner = Callable[[str], NodeOutcome]


def walk(
    graph: Graph, run: Runner
) -> tuple[list[list[tuple[str, str | None]]], list[str], WalkStep]:
    """Drive a run to its end, running every ready batch at once, as the executor does.

    Returns the batches (node, source of the edge that led there), the skipped nodes in the
    order they were skipped, and the last step.
    """
    outcomes: dict[str, NodeOutcome] = {}
    batches: list[list[tuple[str, str | None]]] = []
    skipped: list[str] = []
    for _ in range(len(graph.nodes) + 1):
        step = plan_next(graph, outcomes, frozenset())
        for node_id, _edge in step.skipped:
            skipped.append(node_id)
            outcomes[node_id] = NodeOutcome(node_id=node_id, status=NodeStatus.SKIPPED)
        if step.finished:
            return batches, skipped, step
        assert step.ready, f"stuck: {step}"
        batches.append([(n, e.source if e else None) for n, e in step.ready])
        for node_id, _edge in step.ready:
            outcomes[node_id] = run(node_id)
    raise AssertionError("the walk did not finish")


def succeed(node_id: str) -> NodeOutcome:
    return ok(node_id, output=f"out:{node_id}")


def test_linear() -> None:
    graph = make_graph("a b c", edge("a", "b"), edge("b", "c"))
    batches, skipped, last = walk(graph, succeed)
    assert batches == [[("a", None)], [("b", "a")], [("c", "b")]]
    assert skipped == []
    assert last == WalkStep(finished=True)


def test_first_step_and_edge_that_led_there() -> None:
    graph = make_graph("a b", edge("a", "b"))
    assert plan_next(graph, {}) == WalkStep(ready=(("a", None),))
    assert plan_next(graph, {"a": ok("a")}) == WalkStep(ready=(("b", graph.edges[0]),))
    assert plan_next(graph, {"a": ok("a"), "b": ok("b")}) == WalkStep(finished=True)


@pytest.mark.parametrize(
    ("branch", "ran", "skipped"),
    [("true", "yes", ["no", "after_no"]), ("false", "no", ["yes"])],
)
def test_if_takes_the_edge_of_its_branch(branch: str, ran: str, skipped: list[str]) -> None:
    graph = make_graph(
        {"cond": "if", "yes": "noop", "no": "noop", "after_no": "noop"},
        edge("cond", "yes", "true"),
        edge("cond", "no", "false"),
        edge("no", "after_no"),
    )

    def run(node_id: str) -> NodeOutcome:
        return ok(node_id, branch=branch) if node_id == "cond" else succeed(node_id)

    batches, skipped_nodes, last = walk(graph, run)
    expected_batches = [[("cond", None)], [(ran, "cond")]]
    if ran == "no":
        expected_batches.append([("after_no", "no")])
    assert batches == expected_batches
    assert skipped_nodes == skipped
    assert last.finished and last.failed is None


@pytest.mark.parametrize(
    ("branch", "ran"),
    [
        ("push", "on_push"),
        ("pull_request", "on_pr"),
        ("default", "fallback"),
        ("tag", "fallback"),  # a case without an edge of its own falls back to default
    ],
)
def test_switch_takes_the_matching_case_or_default(branch: str, ran: str) -> None:
    graph = make_graph(
        {"sw": "switch", "on_push": "noop", "on_pr": "noop", "fallback": "noop"},
        edge("sw", "on_push", "push"),
        edge("sw", "on_pr", "pull_request"),
        edge("sw", "fallback", "default"),
    )
    step = plan_next(graph, {"sw": ok("sw", branch=branch)})
    assert [n for n, _ in step.ready] == [ran]
    assert sorted(n for n, _ in step.skipped) == sorted({"on_push", "on_pr", "fallback"} - {ran})
    assert step.finished is False


def test_plain_edge_from_a_branching_node_is_always_taken() -> None:
    graph = make_graph({"cond": "if", "audit": "noop", "yes": "noop"},
                       edge("cond", "audit"), edge("cond", "yes", "true"))  # fmt: skip
    step = plan_next(graph, {"cond": ok("cond", branch="false")})
    assert step.ready == (("audit", graph.edges[0]),)
    assert step.skipped == (("yes", graph.edges[1]),)


def test_failure_edge_handles_a_failure_and_the_run_continues() -> None:
    graph = make_graph(
        "call next handler end",
        edge("call", "next"),
        edge("call", "handler", failure=True),
        edge("handler", "end"),
    )

    def run(node_id: str) -> NodeOutcome:
        return error(node_id) if node_id == "call" else succeed(node_id)

    batches, skipped, last = walk(graph, run)
    assert batches == [[("call", None)], [("handler", "call")], [("end", "handler")]]
    assert skipped == ["next"]
    assert last == WalkStep(finished=True)
    assert final_output(graph, {"end": ok("end", 1), "handler": ok("handler", 2)}) == 1


def test_failure_edge_is_not_taken_when_the_node_succeeds() -> None:
    graph = make_graph("call next handler", edge("call", "next"),
                       edge("call", "handler", failure=True))  # fmt: skip
    step = plan_next(graph, {"call": ok("call")})
    assert step.ready == (("next", graph.edges[0]),)
    assert step.skipped == (("handler", graph.edges[1]),)


def test_unhandled_failure_ends_the_run() -> None:
    graph = make_graph("a b c", edge("a", "b"), edge("a", "c"))
    outcomes = {"a": ok("a"), "b": error("b", "HTTP_STATUS")}
    step = plan_next(graph, outcomes, running=frozenset({"c"}))
    assert step == WalkStep(finished=True, failed=outcomes["b"])


def test_first_unhandled_failure_in_topological_order_is_reported() -> None:
    graph = make_graph("a b c", edge("a", "c"), edge("b", "c"))
    step = plan_next(graph, {"b": error("b"), "a": error("a")})
    assert step.failed == error("a")


def test_diamond_join_runs_after_the_taken_branch_when_the_other_is_skipped() -> None:
    graph = make_graph(
        {"cond": "if", "t": "noop", "f": "noop", "join": "noop"},
        edge("cond", "t", "true"),
        edge("cond", "f", "false"),
        edge("t", "join"),
        edge("f", "join"),
    )

    def run(node_id: str) -> NodeOutcome:
        return ok(node_id, branch="true") if node_id == "cond" else succeed(node_id)

    # After cond: f is skipped, join still waits for t.
    step = plan_next(graph, {"cond": run("cond")})
    assert step == WalkStep(ready=(("t", graph.edges[0]),), skipped=(("f", graph.edges[1]),))
    batches, skipped, _ = walk(graph, run)
    assert batches == [[("cond", None)], [("t", "cond")], [("join", "t")]]
    assert skipped == ["f"]


def test_join_waits_for_every_incoming_edge() -> None:
    graph = make_graph("a b c join", edge("a", "b"), edge("a", "c"),
                       edge("b", "join"), edge("c", "join"))  # fmt: skip
    step = plan_next(graph, {"a": ok("a"), "b": ok("b")}, running=frozenset({"c"}))
    assert step == WalkStep()
    step = plan_next(graph, {"a": ok("a"), "b": ok("b"), "c": ok("c")})
    assert step.ready == (("join", graph.edges[2]),)


def test_skipping_propagates_through_joins_and_chains_in_one_step() -> None:
    graph = make_graph(
        {"cond": "if", "t": "noop", "f": "noop", "join": "noop", "after": "noop"},
        edge("cond", "t", "true"),
        edge("cond", "f", "true"),
        edge("t", "join"),
        edge("f", "join"),
        edge("join", "after"),
    )
    step = plan_next(graph, {"cond": ok("cond", branch="false")})
    assert [n for n, _ in step.skipped] == ["t", "f", "join", "after"]
    assert step.skipped[2] == ("join", graph.edges[2])
    assert step.ready == ()
    assert step.finished is True


def test_fan_out_runs_branches_together() -> None:
    graph = make_graph("a b c d", edge("a", "b"), edge("a", "c"), edge("a", "d"))
    batches, skipped, last = walk(graph, succeed)
    assert batches == [[("a", None)], [("b", "a"), ("c", "a"), ("d", "a")]]
    assert skipped == []
    assert last.finished


def test_running_nodes_are_not_started_again_and_the_run_is_not_finished() -> None:
    graph = make_graph("a b c", edge("a", "b"), edge("a", "c"))
    step = plan_next(graph, {"a": ok("a"), "b": ok("b")}, running=frozenset({"c"}))
    assert step == WalkStep()


def test_resume_mid_graph_from_recorded_outcomes() -> None:
    graph = make_graph("a b c d", edge("a", "b"), edge("b", "c"), edge("b", "d"))
    # Read back after a crash: b's row says RUNNING (the process died), c had finished.
    recorded = {
        "a": ok("a", 1),
        "b": NodeOutcome(node_id="b", status=NodeStatus.RUNNING),
        "c": ok("c", 3),
    }
    assert plan_next(graph, recorded) == WalkStep(ready=(("b", graph.edges[0]),))
    recorded["b"] = ok("b", 2)
    # c finished before the crash and does not run again; d does.
    assert plan_next(graph, recorded) == WalkStep(ready=(("d", graph.edges[2]),))


def test_parked_wait_node_is_left_alone_while_running() -> None:
    graph = make_graph({"w": "wait", "after": "noop"}, edge("w", "after"))
    waiting = {"w": NodeOutcome(node_id="w", status=NodeStatus.WAITING)}
    assert plan_next(graph, waiting, running=frozenset({"w"})) == WalkStep()
    assert plan_next(graph, {"w": ok("w")}).ready == (("after", graph.edges[0]),)


def test_several_entry_nodes_start_together() -> None:
    graph = make_graph("a b c", edge("a", "c"), edge("b", "c"))
    assert plan_next(graph, {}).ready == (("a", None), ("b", None))


def test_canceled_node_takes_no_edge() -> None:
    graph = make_graph("a b", edge("a", "b"))
    canceled = {"a": NodeOutcome(node_id="a", status=NodeStatus.CANCELED)}
    assert plan_next(graph, canceled) == WalkStep(skipped=(("b", graph.edges[0]),), finished=True)


def test_single_node_graph() -> None:
    graph = make_graph("only")
    assert plan_next(graph, {}) == WalkStep(ready=(("only", None),))
    assert plan_next(graph, {"only": ok("only")}) == WalkStep(finished=True)


def test_cycle_and_unknown_node_are_refused() -> None:
    with pytest.raises(WalkError, match=r"^the graph has a cycle through b, c$"):
        plan_next(make_graph("a b c", edge("a", "b"), edge("b", "c"), edge("c", "b")), {})
    with pytest.raises(WalkError, match=r"^edge a -> zz: no node 'zz'$"):
        topological_order(make_graph("a", edge("a", "zz")))


def test_topological_order_keeps_declaration_order_for_ties() -> None:
    graph = make_graph("z y x w", edge("x", "w"), edge("y", "x"))
    assert topological_order(graph) == ("z", "y", "x", "w")


def test_final_output_prefers_the_respond_node() -> None:
    graph = make_graph({"a": "http", "r": "respond", "b": "set"}, edge("a", "r"), edge("r", "b"))
    outcomes = {"a": ok("a", 1), "r": ok("r", {"status": 201}), "b": ok("b", 3)}
    assert final_output(graph, outcomes) == {"status": 201}
    assert final_output(graph, {"a": ok("a", 1), "b": ok("b", 3)}) == 3
    assert final_output(graph, {"a": ok("a", 1), "b": error("b")}) == 1
    assert final_output(graph, {}) is None


@pytest.mark.parametrize(
    ("node_type", "output", "expected"),
    [
        ("if", {"result": True}, "true"),
        ("if", {"result": False}, "false"),
        ("switch", {"value": 200, "case": "200"}, "200"),
        ("switch", {"value": "x", "case": "default"}, "default"),
        ("http", {"result": True}, None),
        ("if", None, None),
    ],
)
def test_recorded_branch(node_type: str, output: JSON, expected: str | None) -> None:
    assert recorded_branch(node_type, output) == expected


@pytest.mark.parametrize(
    ("value", "label"),
    [("push", "push"), (200, "200"), (True, "true"), (None, "null"), (1.5, "1.5"),
     ({"b": 1, "a": [2]}, '{"a":[2],"b":1}')],
)  # fmt: skip
def test_branch_label(value: JSON, label: str) -> None:
    assert branch_label(value) == label
